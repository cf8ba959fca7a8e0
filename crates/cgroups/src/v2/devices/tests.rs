use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;

fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
    serde_json::from_str(json).unwrap()
}

fn listing(json: &str) -> String {
    program(&rules(json))
        .unwrap()
        .iter()
        .map(|i| format!("{i}\n"))
        .collect()
}

const PROLOGUE: &str = "\
ldxw r2, [r1+0]
and32 r2, 0xffff
ldxw r3, [r1+0]
rsh32 r3, 16
ldxw r4, [r1+4]
ldxw r5, [r1+8]
";

#[test]
fn no_rules_deny_everything() {
    assert_eq!(listing("[]"), format!("{PROLOGUE}mov32 r0, 0\nexit\n"));
}

#[test]
fn allow_all_after_deny_all() {
    // The last `a` rule decides what no later rule names; what came before it is gone.
    let l = listing(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "access": "rwm"}]"#,
    );
    assert_eq!(l, format!("{PROLOGUE}mov32 r0, 1\nexit\n"));
}

#[test]
fn berth_defaults_last_rule_first() {
    let l = listing(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"}]"#,
    );
    let want = format!(
        "{PROLOGUE}\
jne r2, 1, +5
mov32 r1, r3
and32 r1, 0x1
jne r1, r3, +2
mov32 r0, 1
exit
jne r2, 2, +5
mov32 r1, r3
and32 r1, 0x1
jne r1, r3, +2
mov32 r0, 1
exit
jne r2, 2, +3
jne r4, 136, +2
mov32 r0, 1
exit
jne r2, 2, +4
jne r4, 1, +3
jne r5, 3, +2
mov32 r0, 1
exit
mov32 r0, 0
exit
"
    );
    assert_eq!(l, want);
}

#[test]
fn deny_rule_matches_any_refused_access() {
    // Allow every char device, then refuse writes to 1:5 (and type u is a char device).
    let l = listing(
        r#"[{"allow": true, "type": "u", "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "w"}]"#,
    );
    let want = format!(
        "{PROLOGUE}\
jne r2, 2, +7
mov32 r1, r3
and32 r1, 0x4
jeq r1, 0, +4
jne r4, 1, +3
jne r5, 5, +2
mov32 r0, 0
exit
jne r2, 2, +2
mov32 r0, 1
exit
mov32 r0, 0
exit
"
    );
    assert_eq!(l, want);
}

#[test]
fn impossible_numbers_match_nothing_bad_rules_are_refused() {
    assert_eq!(
        listing(r#"[{"allow": true, "type": "c", "major": 4294967296, "access": "r"}]"#),
        format!("{PROLOGUE}mov32 r0, 0\nexit\n")
    );
    for bad in [
        r#"[{"allow": true, "type": "c", "access": "x"}]"#,
        r#"[{"allow": true, "type": "p"}]"#,
        r#"[{"allow": true, "type": "c", "major": -5}]"#,
    ] {
        let err = program(&rules(bad)).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{bad}: {err}");
    }
}

#[test]
fn encoding() {
    let enc = |i: Insn| i.encode();
    assert_eq!(
        enc(Insn::LoadWord {
            dst: R4,
            src: R1,
            off: 4
        }),
        [0x61, 0x14, 4, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        enc(Insn::JneImm {
            dst: R2,
            imm: 2,
            off: 3
        }),
        [0x55, 0x02, 3, 0, 2, 0, 0, 0]
    );
    assert_eq!(
        enc(Insn::JneReg {
            dst: R1,
            src: R3,
            off: 2
        }),
        [0x5d, 0x31, 2, 0, 0, 0, 0, 0]
    );
    assert_eq!(enc(Insn::Exit), [0x95, 0, 0, 0, 0, 0, 0, 0]);
}

/// A cgroup2 directory of our own on this host (the hybrid host's controller-less tree or a
/// pure v2 host's root), removed on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let root = [
            Path::new("/sys/fs/cgroup/unified"),
            Path::new("/sys/fs/cgroup"),
        ]
        .into_iter()
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
        .expect("a cgroup2 hierarchy");
        let dir = root.join(format!("berth-test-{name}-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        TestCgroup(dir)
    }

    fn programs(&self) -> Vec<u32> {
        let f = File::open(&self.0).unwrap();
        bpf::attached_device_programs(f.as_fd()).unwrap()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Run `script` with sh in the cgroup (moved in before it starts its work); its exit code and
/// stderr.
fn sh_in(cg: &TestCgroup, script: &str) -> (i32, String) {
    let mut child = Command::new("sh")
        .args(["-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fs::write(cg.0.join("cgroup.procs"), child.id().to_string()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The kernel runs the program: only what the rules allow opens; a new set of rules replaces
/// the old program; allow-all lets everything through.
#[test]
fn kernel_enforces_the_rules() {
    let cg = TestCgroup::new("devices");
    let nodes = tempfile::tempdir_in("/var/tmp").unwrap();
    let d = nodes.path().display();

    let null_only = rules(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"}]"#,
    );
    let dir = cg.0.clone();
    attach(&dir, &program(&null_only).unwrap()).unwrap();
    assert_eq!(cg.programs().len(), 1);

    // mknod of any char device is allowed; only 1:3 opens.
    let (code, err) = sh_in(
        &cg,
        &format!(
            "mknod {d}/null c 1 3 && mknod {d}/zero c 1 5 && echo x > {d}/null && \
             head -c1 {d}/zero"
        ),
    );
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    let (code, err) = sh_in(&cg, &format!("mknod {d}/sda b 8 0"));
    assert_ne!(code, 0, "block mknod allowed");
    assert!(err.contains("Operation not permitted"), "{err}");
    // Outside the cgroup, the same node opens.
    let mut byte = [1u8];
    File::open(nodes.path().join("zero"))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut byte))
        .unwrap();
    assert_eq!(byte, [0]);

    // New rules: zero readable, not writable. The old program is detached.
    let mut with_zero = null_only.clone();
    with_zero.extend(rules(
        r#"[{"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rw"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "w"}]"#,
    ));
    attach(&dir, &program(&with_zero).unwrap()).unwrap();
    assert_eq!(cg.programs().len(), 1);
    let (code, err) = sh_in(&cg, &format!("head -c1 {d}/zero >/dev/null"));
    assert_eq!(code, 0, "{err}");
    let (code, _) = sh_in(&cg, &format!("echo x > {d}/zero"));
    assert_ne!(code, 0, "write allowed");

    // Allow all (a privileged container).
    attach(
        &dir,
        &program(&rules(r#"[{"allow": true, "access": "rwm"}]"#)).unwrap(),
    )
    .unwrap();
    assert_eq!(cg.programs().len(), 1);
    let (code, err) = sh_in(&cg, &format!("echo x > {d}/zero && mknod {d}/loop b 7 0"));
    assert_eq!(code, 0, "{err}");
}
