//! `linux.seccomp`: the OCI profile compiled into a classic BPF program and loaded with
//! seccomp(2), without libseccomp.
//!
//! # The program
//!
//! ```text
//! ld  arch                    one section per architecture of the filter, else the
//! jeq AUDIT_ARCH_X86_64 ...   "bad arch" action: kill (libseccomp's default kills the
//! ret KILL_PROCESS            thread; the whole process is the safer unit)
//! section: ld nr, then a binary search over syscall-number ranges; each leaf is a `ret` or
//!          the argument checks of one syscall (its rules in profile order, then its
//!          unconditional action or the default one)
//! ```
//!
//! Semantics follow runc + libseccomp:
//!
//! - the native architecture is always in the filter, the profile's `architectures` add to it
//!   (x86 and x32 on x86_64; arm on aarch64; others are ignored: their syscalls never reach
//!   this kernel). x32 syscalls (nr | 0x40000000) share x86_64's audit arch: without x32 in
//!   the profile they get the bad-arch action;
//! - syscall names unknown on an architecture are skipped there (libseccomp's behaviour);
//! - conditions on distinct arguments of one rule are AND-ed; several conditions on one
//!   argument are split into one rule each (OR-ed), as runc does; 32-bit ABIs compare the low
//!   32 bits only;
//! - a syscall's conditional rules are tried in profile order, then its first unconditional
//!   rule applies, else the default action;
//! - runc's `-ENOSYS` stub: with a default action that refuses, syscall numbers above the
//!   highest one the profile names (per architecture) fail with ENOSYS, so that libcs fall
//!   back from syscalls newer than the profile instead of seeing EPERM.
//!
//! Not the `seccompiler` crate: its filters have one match action and one architecture each
//! (no x86 or x32 beside x86_64) and it has no syscall tables for compat ABIs; an OCI
//! profile needs per-syscall actions and errnos across architectures.
//!
//! # Files
//!
//! - `mod.rs` (here): the profile's semantics: architectures, actions, rules per syscall
//!   number, the ENOSYS stub; [`Filter`] and its loading;
//! - `bpf.rs`: the classic BPF encoding and code generation (search tree, comparisons,
//!   architecture dispatch);
//! - `syscalls.rs`: data only, the syscall-number table per ABI (from libseccomp; how to
//!   regenerate or extend it is in its header).
//!
//! # When it is loaded (see `privileges.rs`)
//!
//! Without no_new_privs the kernel lets only a CAP_SYS_ADMIN holder install a filter, so it
//! is loaded while the init (or exec'd process) is still privileged, before it switches user
//! and drops its capabilities (runc's order); the profile must then allow the few calls it
//! makes afterwards (close_range, prctl, setgroups, setres[ug]id, capset, umask, chdir, and
//! getppid for an exec'd process). With no_new_privs it is loaded last, after privileges
//! are dropped and no_new_privs is set. Either way it is loaded before the init reports ready, so a filter the kernel refuses
//! fails the container's creation; after it the init only reports (sendmsg), waits for the
//! Start (recvfrom, close) and execs (execve, and exit_group/sendmsg on failure), so a
//! profile must allow those, as any runc profile must allow runc's final calls.

use std::collections::BTreeMap;

use nix::errno::Errno;
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag};

use super::bundle::Container;
use super::error::{Context, Error, Result};
use bpf::{
    BAD_ARCH, Cmp, LD_W_ABS, OFF_NR, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD,
    RET_LOG, RET_TRACE, RET_TRAP, Rule, assemble, bands, leaves, search, segments,
};
use syscalls::SYSCALLS;

mod bpf;
mod syscalls;

pub use bpf::Insn;

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// x32 syscalls are x86_64's audit arch with this bit in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI this executor has a table for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Abi {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
}

impl Abi {
    /// The ABI of the running binary (the kernel's native one).
    pub fn native() -> Option<Abi> {
        if cfg!(target_arch = "x86_64") {
            Some(Abi::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Abi::Aarch64)
        } else {
            None
        }
    }

    fn from_spec(arch: Arch) -> Option<Abi> {
        match arch {
            Arch::ScmpArchX86_64 => Some(Abi::X86_64),
            Arch::ScmpArchX86 => Some(Abi::X86),
            Arch::ScmpArchX32 => Some(Abi::X32),
            Arch::ScmpArchAarch64 => Some(Abi::Aarch64),
            Arch::ScmpArchArm => Some(Abi::Arm),
            _ => None,
        }
    }

    /// AUDIT_ARCH_* (include/uapi/linux/audit.h).
    fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => 0xc000_003e,
            Abi::X86 => 0x4000_0003,
            Abi::Aarch64 => 0xc000_00b7,
            Abi::Arm => 0x4000_0028,
        }
    }

    /// The ABIs a kernel of this native ABI runs (and so may show a filter).
    fn compat(self) -> &'static [Abi] {
        match self {
            Abi::X86_64 => &[Abi::X86, Abi::X32],
            Abi::Aarch64 => &[Abi::Arm],
            _ => &[],
        }
    }

    /// Whether syscall arguments are 64 bits wide.
    fn wide(self) -> bool {
        matches!(self, Abi::X86_64 | Abi::Aarch64)
    }

    /// The syscall number of `name`, if this ABI has that syscall.
    pub fn syscall(self, name: &str) -> Option<u32> {
        let row = SYSCALLS.iter().find(|r| r.0 == name)?;
        let nr = match self {
            Abi::X86_64 => row.1,
            Abi::X86 => row.2,
            Abi::X32 => row.3,
            Abi::Aarch64 => row.4,
            Abi::Arm => row.5,
        };
        let nr = u32::try_from(nr).ok()?;
        Some(if self == Abi::X32 {
            nr | X32_SYSCALL_BIT
        } else {
            nr
        })
    }
}

/// A compiled filter, ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    program: Vec<Insn>,
    flags: libc::c_ulong,
}

impl Filter {
    /// The container's filter, if its spec has `linux.seccomp`.
    pub fn for_container(c: &Container) -> Result<Option<Filter>> {
        match c.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Filter::compile(s).map(Some),
            None => Ok(None),
        }
    }

    /// Compile a profile for this machine.
    pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
        let native = Abi::native().ok_or_else(|| {
            Error::Unsupported("seccomp on this architecture is not supported".into())
        })?;
        Filter::compile_for(profile, native)
    }

    /// Compile a profile for a kernel whose native ABI is `native`.
    pub fn compile_for(profile: &LinuxSeccomp, native: Abi) -> Result<Filter> {
        let invalid = |m: String| Error::InvalidSpec(format!("linux.seccomp: {m}"));
        if profile.listener_path().is_some() {
            return Err(Error::Unsupported(
                "linux.seccomp.listenerPath (seccomp user notification)".into(),
            ));
        }
        let mut flags: libc::c_ulong = 0;
        for f in profile.flags().iter().flatten() {
            flags |= match f {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    return Err(Error::Unsupported(format!(
                        "linux.seccomp flag {f} (seccomp user notification)"
                    )));
                }
            };
        }
        let default_action = profile.default_action();
        let default = action(default_action, profile.default_errno_ret()).map_err(invalid)?;

        // The ABIs of the filter: the native one, and the compatible ones the profile lists.
        let mut abis = vec![native];
        for a in profile.architectures().iter().flatten() {
            match Abi::from_spec(*a) {
                Some(abi) if native.compat().contains(&abi) && !abis.contains(&abi) => {
                    abis.push(abi)
                }
                _ => {}
            }
        }

        // Rules per ABI and syscall number, in profile order.
        let mut rules: BTreeMap<Abi, BTreeMap<u32, Vec<Rule>>> = BTreeMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        for (i, call) in profile.syscalls().iter().flatten().enumerate() {
            let act = action(call.action(), call.errno_ret())
                .map_err(|m| invalid(format!("syscalls[{i}]: {m}")))?;
            let mut cmps = Vec::new();
            for arg in call.args().iter().flatten() {
                let index = u32::try_from(arg.index())
                    .ok()
                    .filter(|i| *i < 6)
                    .ok_or_else(|| {
                        invalid(format!(
                            "syscalls[{i}]: argument index {} is not 0 to 5",
                            arg.index()
                        ))
                    })?;
                cmps.push(Cmp {
                    index,
                    op: arg.op(),
                    value: arg.value(),
                    value_two: arg.value_two().unwrap_or(0),
                });
            }
            // runc: several conditions on one argument become one rule each.
            let repeated = cmps
                .iter()
                .enumerate()
                .any(|(j, c)| cmps[..j].iter().any(|d| d.index == c.index));
            let call_rules: Vec<Rule> = if repeated {
                cmps.iter()
                    .map(|c| Rule {
                        cmps: vec![*c],
                        action: act,
                    })
                    .collect()
            } else {
                vec![Rule { cmps, action: act }]
            };
            for name in call.names() {
                let mut known = false;
                for abi in &abis {
                    if let Some(nr) = abi.syscall(name) {
                        known = true;
                        rules
                            .entry(*abi)
                            .or_default()
                            .entry(nr)
                            .or_default()
                            .extend(call_rules.iter().cloned());
                    }
                }
                if !known {
                    unknown.push(name);
                }
            }
        }
        if !unknown.is_empty() {
            tracing::debug!(
                "seccomp: syscalls unknown on this architecture, skipped: {}",
                unknown.join(" ")
            );
        }

        // runc's -ENOSYS stub, unless the default lets calls through or is ENOSYS already.
        let enosys = RET_ERRNO | libc::ENOSYS as u32;
        let stub = match default_action {
            LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace => None,
            _ if default == enosys => None,
            _ => Some(enosys),
        };

        let empty = BTreeMap::new();
        let mut sections = Vec::new();
        for abi in &abis {
            if *abi == Abi::X32 {
                continue; // inside x86_64's section
            }
            let mine = rules.get(abi).unwrap_or(&empty);
            let mut steps = bands(mine, 0, default, stub);
            let mut named = leaves(mine, abi.wide(), default);
            if *abi == Abi::X86_64 {
                // x32 numbers: the x32 table, or the bad-arch action without x32.
                steps.retain(|(start, _)| *start < X32_SYSCALL_BIT);
                if abis.contains(&Abi::X32) {
                    let x32 = rules.get(&Abi::X32).unwrap_or(&empty);
                    steps.extend(bands(x32, X32_SYSCALL_BIT, default, stub));
                    named.extend(leaves(x32, false, default));
                } else {
                    steps.push((X32_SYSCALL_BIT, BAD_ARCH));
                }
                // -1 is "no syscall" (a tracer skipping one): never the bad-arch kill.
                steps.push((u32::MAX, stub.unwrap_or(default)));
            }
            let segments = segments(&steps, &named);
            let mut code = vec![Insn::stmt(LD_W_ABS, OFF_NR)];
            code.extend(search(&segments));
            sections.push((abi.audit_arch(), code));
        }

        let program = assemble(&sections);
        if program.len() > MAX_INSNS {
            return Err(invalid(format!(
                "the filter has {} instructions, more than the kernel's {MAX_INSNS}",
                program.len()
            )));
        }
        Ok(Filter { program, flags })
    }

    /// The BPF program.
    pub fn program(&self) -> &[Insn] {
        &self.program
    }

    /// Install the filter on the calling thread (seccomp(2), SECCOMP_SET_MODE_FILTER).
    // seccomp(2) and prctl(2) take a pointer to the program.
    #[allow(unsafe_code)]
    pub fn load(&self) -> Result<()> {
        let mut insns: Vec<libc::sock_filter> = self
            .program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let prog = libc::sock_fprog {
            // compile_for keeps programs within MAX_INSNS.
            len: u16::try_from(insns.len()).unwrap_or(u16::MAX),
            filter: insns.as_mut_ptr(),
        };
        // SAFETY: seccomp(2) reads `prog` and the `len` instructions it points to; both live
        // until the call returns (the kernel copies the program).
        let mut rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 && Errno::last() == Errno::ENOSYS && self.flags == 0 {
            // SAFETY: as above; prctl(PR_SET_SECCOMP) is the pre-3.17 interface.
            rc = libc::c_long::from(unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                    0,
                    0,
                )
            });
        }
        if rc != 0 {
            let e = Errno::last();
            return Err(e).ctx(|| {
                if e == Errno::EACCES {
                    "loading the seccomp filter: without no_new_privs this needs CAP_SYS_ADMIN"
                        .to_string()
                } else {
                    format!("loading the seccomp filter ({} instructions)", insns.len())
                }
            });
        }
        Ok(())
    }
}

/// The return value of an action.
fn action(a: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32, String> {
    let data = |what: &str, default: u32| match errno_ret {
        None => Ok(default),
        Some(v) if v <= 0xffff => Ok(v),
        Some(v) => Err(format!("{what} value {v} does not fit in 16 bits")),
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data("errnoRet", libc::EPERM as u32)?,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data("trace", libc::EPERM as u32)?,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err("SCMP_ACT_NOTIFY (seccomp user notification) is not supported".into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::bpf::run;
    use super::*;

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;
    const AARCH64: u32 = 0xc000_00b7;
    const EPERM: u32 = RET_ERRNO | 1;
    const ENOSYS: u32 = RET_ERRNO | 38;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn nr(abi: Abi, name: &str) -> u32 {
        abi.syscall(name).unwrap()
    }

    const PROFILE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "exit_group", "no_such_syscall", "arch_prctl"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}
        ]
    }"#;

    #[test]
    fn syscall_tables() {
        assert_eq!(Abi::X86_64.syscall("read"), Some(0));
        assert_eq!(Abi::X86_64.syscall("mount"), Some(165));
        assert_eq!(Abi::X86.syscall("mount"), Some(21));
        assert_eq!(Abi::X32.syscall("execve"), Some(X32_SYSCALL_BIT | 520));
        assert_eq!(Abi::Aarch64.syscall("openat"), Some(56));
        assert_eq!(Abi::Aarch64.syscall("open"), None);
        assert_eq!(Abi::X86_64.syscall("no_such_syscall"), None);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(Abi::native(), Some(Abi::X86_64));
            for (name, sys) in [
                ("clone3", libc::SYS_clone3),
                ("mseal", libc::SYS_mseal),
                ("unshare", libc::SYS_unshare),
                ("rt_sigreturn", libc::SYS_rt_sigreturn),
            ] {
                assert_eq!(Abi::X86_64.syscall(name), Some(sys as u32), "{name}");
            }
        }
    }

    #[test]
    fn actions_per_syscall_and_arch() {
        let f = Filter::compile_for(&profile(PROFILE), Abi::X86_64).unwrap();
        let p = f.program();
        let x = |name: &str, args: [u64; 6]| run(p, X86_64, nr(Abi::X86_64, name), args);
        let none = [0; 6];
        assert_eq!(x("read", none), RET_ALLOW);
        assert_eq!(x("arch_prctl", none), RET_ALLOW);
        assert_eq!(x("mount", none), EPERM, "the default action");
        assert_eq!(x("clone3", none), ENOSYS);
        assert_eq!(x("getpid", none), RET_KILL_PROCESS);
        // clone: no namespace flags only.
        assert_eq!(x("clone", [0x0001_1200, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(x("clone", [0x1000_0000, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(x("clone", [0x1_0000_0000, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(x("personality", [0xffff_ffff, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(x("personality", [8, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(x("personality", [0x1_ffff_ffff, 0, 0, 0, 0, 0]), EPERM);
        // Two conditions on one argument: either holds.
        assert_eq!(x("kill", [1, 9, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(x("kill", [1, 15, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(x("kill", [1, 2, 0, 0, 0, 0]), EPERM);
        // The conditional rule before the unconditional one.
        assert_eq!(x("socket", [40, 0, 0, 0, 0, 0]), RET_ERRNO | 97);
        assert_eq!(x("socket", [2, 0, 0, 0, 0, 0]), RET_ALLOW);
        // Above the highest syscall the profile names: ENOSYS (runc's stub); below: default.
        assert_eq!(run(p, X86_64, 1000, none), ENOSYS);
        assert_eq!(run(p, X86_64, u32::MAX, none), ENOSYS);
        assert_eq!(run(p, X86_64, 200, none), EPERM);
        // i386: its own numbers, 32-bit arguments.
        assert_eq!(run(p, I386, nr(Abi::X86, "read"), none), RET_ALLOW);
        assert_eq!(run(p, I386, nr(Abi::X86, "mount"), none), EPERM);
        assert_eq!(
            run(p, I386, nr(Abi::X86, "personality"), [0xffff_ffff; 6]),
            RET_ALLOW
        );
        assert_eq!(run(p, I386, nr(Abi::X86, "clone3"), none), ENOSYS);
        // x32 is in the profile.
        assert_eq!(run(p, X86_64, nr(Abi::X32, "read"), none), RET_ALLOW);
        assert_eq!(run(p, X86_64, nr(Abi::X32, "mount"), none), EPERM);
        // Other architectures: killed.
        assert_eq!(run(p, AARCH64, 63, none), RET_KILL_PROCESS);
        assert_eq!(f.flags, 0);
    }

    #[test]
    fn native_arch_only_without_architectures() {
        let json = PROFILE.replace(
            r#""SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32""#,
            "",
        );
        let f = Filter::compile_for(&profile(&json), Abi::X86_64).unwrap();
        let p = f.program();
        assert_eq!(run(p, X86_64, 0, [0; 6]), RET_ALLOW);
        assert_eq!(run(p, I386, 3, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(p, X86_64, X32_SYSCALL_BIT, [0; 6]), RET_KILL_PROCESS);
        // -1 (a tracer skipping a syscall) is not mistaken for x32.
        assert_eq!(run(p, X86_64, u32::MAX, [0; 6]), ENOSYS);
        // aarch64 tables, for an arm64 kernel.
        let f = Filter::compile_for(&profile(&json), Abi::Aarch64).unwrap();
        assert_eq!(run(f.program(), AARCH64, 63, [0; 6]), RET_ALLOW); // read
        assert_eq!(run(f.program(), X86_64, 0, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn default_allow_has_no_enosys_stub() {
        let f = Filter::compile_for(
            &profile(
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                    {"names": ["chroot"], "action": "SCMP_ACT_LOG"},
                    {"names": ["umount2"], "action": "SCMP_ACT_TRAP"},
                    {"names": ["unshare"], "action": "SCMP_ACT_KILL"}
                ], "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
            ),
            Abi::X86_64,
        )
        .unwrap();
        let p = f.program();
        assert_eq!(run(p, X86_64, 165, [0; 6]), RET_ERRNO | 13);
        assert_eq!(run(p, X86_64, 161, [0; 6]), RET_LOG);
        assert_eq!(run(p, X86_64, 166, [0; 6]), RET_TRAP);
        assert_eq!(run(p, X86_64, 272, [0; 6]), RET_KILL_THREAD);
        assert_eq!(run(p, X86_64, 1000, [0; 6]), RET_ALLOW);
        assert_eq!(run(p, X86_64, 0, [0; 6]), RET_ALLOW);
        assert_eq!(
            f.flags,
            libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
    }

    /// Every operator against a reference, at 64-bit boundaries (x86_64) and 32-bit ones (x86).
    #[test]
    fn comparisons_match_their_definition() {
        let samples: [u64; 10] = [
            0,
            1,
            7,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0007,
            0x2_0000_0000,
            0xffff_ffff_0000_0000,
            0xffff_ffff_ffff_fffe,
            u64::MAX,
        ];
        let ops = [
            "SCMP_CMP_EQ",
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_GT",
            "SCMP_CMP_GE",
            "SCMP_CMP_MASKED_EQ",
        ];
        let holds = |op: &str, a: u64, v: u64, v2: u64| match op {
            "SCMP_CMP_EQ" => a == v,
            "SCMP_CMP_NE" => a != v,
            "SCMP_CMP_LT" => a < v,
            "SCMP_CMP_LE" => a <= v,
            "SCMP_CMP_GT" => a > v,
            "SCMP_CMP_GE" => a >= v,
            _ => a & v == v2,
        };
        for op in ops {
            for v in samples {
                let v2 = v & 0x1_0000_0007;
                let json = format!(
                    r#"{{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
                        "syscalls": [{{"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                        "args": [{{"index": 3, "value": {v}, "valueTwo": {v2}, "op": "{op}"}}]}}]}}"#
                );
                let f = Filter::compile_for(&profile(&json), Abi::X86_64).unwrap();
                for a in samples {
                    let mut args = [0u64; 6];
                    args[3] = a;
                    let want = if holds(op, a, v, v2) {
                        RET_ALLOW
                    } else {
                        EPERM
                    };
                    assert_eq!(
                        run(f.program(), X86_64, 39, args),
                        want,
                        "{a:#x} {op} {v:#x}"
                    );
                    let (a32, v32, v2_32) = (a & 0xffff_ffff, v & 0xffff_ffff, v2 & 0xffff_ffff);
                    let want = if holds(op, a32, v32, v2_32) {
                        RET_ALLOW
                    } else {
                        EPERM
                    };
                    args[3] = a32;
                    assert_eq!(
                        run(f.program(), I386, 20, args),
                        want,
                        "x86 {a32:#x} {op} {v32:#x}"
                    );
                }
            }
        }
    }

    /// A large profile: 200 syscalls with two conditions each (long jumps over big subtrees);
    /// every syscall with them is too much for the kernel.
    #[test]
    fn large_profiles_keep_their_jumps_in_range() {
        let all: Vec<&str> = SYSCALLS.iter().map(|r| r.0).collect();
        let names = &all[..200];
        let json = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 5, "op": "SCMP_CMP_GE"},
                {"index": 5, "value": 1u64 << 40, "op": "SCMP_CMP_LT"}]}]
        });
        let f = Filter::compile_for(&serde_json::from_value(json).unwrap(), Abi::X86_64).unwrap();
        let p = f.program();
        assert!(p.len() > 256 && p.len() <= MAX_INSNS, "{}", p.len());
        let too_big = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": all, "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 5, "op": "SCMP_CMP_GE"},
                {"index": 5, "value": 1u64 << 40, "op": "SCMP_CMP_LT"}]}]
        });
        let e = Filter::compile_for(&serde_json::from_value(too_big).unwrap(), Abi::X86_64)
            .unwrap_err();
        assert!(e.to_string().contains("more than the kernel's 4096"), "{e}");
        for name in ["accept", "execve", "init_module"] {
            let n = nr(Abi::X86_64, name);
            assert_eq!(run(p, X86_64, n, [5, 0, 0, 0, 0, 1]), RET_ALLOW, "{name}");
            assert_eq!(run(p, X86_64, n, [4, 0, 0, 0, 0, 1]), EPERM, "{name}");
            assert_eq!(run(p, X86_64, n, [9, 0, 0, 0, 0, 1 << 41]), EPERM, "{name}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_express() {
        let err = |json: &str| {
            Filter::compile_for(&profile(json), Abi::X86_64)
                .unwrap_err()
                .to_string()
        };
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(e.contains("argument index 6"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#);
        assert!(e.contains("does not fit"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#);
        assert!(e.contains("not supported"), "{e}");
    }
}
