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
//! # When it is loaded (see `process.rs`)
//!
//! Without no_new_privs the kernel lets only a CAP_SYS_ADMIN holder install a filter, so it
//! is loaded while the init is still privileged, before it switches user and drops its
//! capabilities (runc's order); the profile must then allow the few calls the init makes
//! afterwards (setgroups, setres[ug]id, capset, prctl, umask, chdir, close_range). With
//! no_new_privs it is loaded last, after privileges are dropped and no_new_privs is set.
//! Either way it is loaded before the init reports ready, so a filter the kernel refuses
//! fails the container's creation; after it the init only reports (sendmsg), waits for the
//! Start (recvfrom, close) and execs (execve, and exit_group/sendmsg on failure), so a
//! profile must allow those, as any runc profile must allow runc's final calls.

use std::collections::BTreeMap;

use nix::errno::Errno;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use super::{Container, Context, Error, Result};

/// `SECCOMP_RET_*` (include/uapi/linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// What a syscall of an architecture the filter does not cover gets.
const BAD_ARCH: u32 = RET_KILL_PROCESS;

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// x32 syscalls are x86_64's audit arch with this bit in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Classic BPF opcodes (include/uapi/linux/bpf_common.h): class | size/op | mode/source.
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K (0)
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA (0)
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGT_K: u16 = 0x05 | 0x20;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06; // BPF_RET | BPF_K (0)

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// One BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
        Insn { code, jt, jf, k }
    }
    fn ret(action: u32) -> Insn {
        Insn::stmt(RET_K, action)
    }
}

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

/// One argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cmp {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

/// Conditions (all must hold) and the action when they do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    cmps: Vec<Cmp>,
    action: u32,
}

/// What one syscall number (or range) gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    Ret(u32),
    Rules {
        wide: bool,
        rules: Vec<Rule>,
        otherwise: u32,
    },
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

/// The action for numbers no rule names, as (first number, action) steps from `base`: the
/// default, and the ENOSYS stub above the highest number the profile names.
fn bands(
    rules: &BTreeMap<u32, Vec<Rule>>,
    base: u32,
    default: u32,
    stub: Option<u32>,
) -> Vec<(u32, u32)> {
    let mut out = vec![(base, default)];
    if let (Some(stub), Some(last)) = (stub, rules.keys().next_back())
        && let Some(above) = last.checked_add(1)
    {
        out.push((above, stub));
    }
    out
}

/// Each named syscall's leaf: conditional rules first (profile order), then the first
/// unconditional rule's action, else the default.
fn leaves(rules: &BTreeMap<u32, Vec<Rule>>, wide: bool, default: u32) -> BTreeMap<u32, Leaf> {
    rules
        .iter()
        .map(|(nr, rs)| {
            let otherwise = rs
                .iter()
                .find(|r| r.cmps.is_empty())
                .map_or(default, |r| r.action);
            let mut conditional: Vec<Rule> =
                rs.iter().filter(|r| !r.cmps.is_empty()).cloned().collect();
            // Trailing rules that end where falling through ends change nothing.
            while conditional.last().is_some_and(|r| r.action == otherwise) {
                conditional.pop();
            }
            let leaf = if conditional.is_empty() {
                Leaf::Ret(otherwise)
            } else {
                Leaf::Rules {
                    wide,
                    rules: conditional,
                    otherwise,
                }
            };
            (*nr, leaf)
        })
        .collect()
}

/// Split 0..=u32::MAX into (first number, leaf) segments: `bands` (sorted steps) overlaid with
/// the single-number `leaves`; neighbours with the same `ret` are merged.
fn segments(bands: &[(u32, u32)], leaves: &BTreeMap<u32, Leaf>) -> Vec<(u32, Leaf)> {
    let band_at = |nr: u32| {
        bands
            .iter()
            .take_while(|(start, _)| *start <= nr)
            .last()
            .map_or(RET_KILL_PROCESS, |(_, a)| *a)
    };
    let mut points: Vec<u32> = bands.iter().map(|(s, _)| *s).collect();
    for nr in leaves.keys() {
        points.push(*nr);
        if let Some(next) = nr.checked_add(1) {
            points.push(next);
        }
    }
    points.push(0);
    points.sort_unstable();
    points.dedup();
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    for p in points {
        let leaf = leaves
            .get(&p)
            .cloned()
            .unwrap_or_else(|| Leaf::Ret(band_at(p)));
        if matches!((out.last(), &leaf), (Some((_, Leaf::Ret(a))), Leaf::Ret(b)) if a == b) {
            continue;
        }
        out.push((p, leaf));
    }
    out
}

/// Binary search over the segments (the accumulator holds the syscall number).
fn search(segments: &[(u32, Leaf)]) -> Vec<Insn> {
    if segments.len() <= 1 {
        return match segments.first() {
            Some((_, leaf)) => leaf_code(leaf),
            None => vec![Insn::ret(RET_KILL_PROCESS)],
        };
    }
    let mid = segments.len() / 2;
    let left = search(&segments[..mid]);
    let right = search(&segments[mid..]);
    let bound = segments[mid].0;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(Insn::jump(JMP_JGE_K, bound, skip, 0)),
        Err(_) => {
            out.push(Insn::jump(JMP_JGE_K, bound, 0, 1));
            out.push(Insn::stmt(JMP_JA, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

fn leaf_code(leaf: &Leaf) -> Vec<Insn> {
    match leaf {
        Leaf::Ret(a) => vec![Insn::ret(*a)],
        Leaf::Rules {
            wide,
            rules,
            otherwise,
        } => {
            let mut out = Vec::new();
            for rule in rules {
                let parts: Vec<Vec<Jmp>> = rule.cmps.iter().map(|c| cmp_code(c, *wide)).collect();
                let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
                for (i, part) in parts.iter().enumerate() {
                    // After this comparison: the rest of the rule and its `ret`.
                    let rest = lens[i + 1..].iter().sum::<usize>() + 1;
                    out.extend(resolve(part, rest));
                }
                out.push(Insn::ret(rule.action));
            }
            out.push(Insn::ret(*otherwise));
            out
        }
    }
}

/// Where a comparison's jump goes: the next instruction, past the comparison (it holds), or
/// past the rule (it fails).
#[derive(Debug, Clone, Copy)]
enum To {
    Next,
    Holds,
    Fails,
}

#[derive(Debug, Clone, Copy)]
enum Jmp {
    Stmt(u16, u32),
    Jump(u16, u32, To, To),
}

/// One argument comparison; 64-bit values compare the high word first.
fn cmp_code(c: &Cmp, wide: bool) -> Vec<Jmp> {
    use LinuxSeccompOperator as Op;
    use To::{Fails, Holds, Next};
    let base = OFF_ARGS + 8 * c.index;
    let (lo_off, hi_off) = if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    };
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let (hi2, lo2) = ((c.value_two >> 32) as u32, c.value_two as u32);
    let ld_hi = Jmp::Stmt(LD_W_ABS, hi_off);
    let ld_lo = Jmp::Stmt(LD_W_ABS, lo_off);
    let j = Jmp::Jump;
    if !wide {
        return match c.op {
            Op::ScmpCmpEq => vec![ld_lo, j(JMP_JEQ_K, lo, Holds, Fails)],
            Op::ScmpCmpNe => vec![ld_lo, j(JMP_JEQ_K, lo, Fails, Holds)],
            Op::ScmpCmpGt => vec![ld_lo, j(JMP_JGT_K, lo, Holds, Fails)],
            Op::ScmpCmpGe => vec![ld_lo, j(JMP_JGE_K, lo, Holds, Fails)],
            Op::ScmpCmpLt => vec![ld_lo, j(JMP_JGE_K, lo, Fails, Holds)],
            Op::ScmpCmpLe => vec![ld_lo, j(JMP_JGT_K, lo, Fails, Holds)],
            Op::ScmpCmpMaskedEq => vec![
                ld_lo,
                Jmp::Stmt(ALU_AND_K, lo),
                j(JMP_JEQ_K, lo2, Holds, Fails),
            ],
        };
    }
    match c.op {
        Op::ScmpCmpEq => vec![
            ld_hi,
            j(JMP_JEQ_K, hi, Next, Fails),
            ld_lo,
            j(JMP_JEQ_K, lo, Holds, Fails),
        ],
        Op::ScmpCmpNe => vec![
            ld_hi,
            j(JMP_JEQ_K, hi, Next, Holds),
            ld_lo,
            j(JMP_JEQ_K, lo, Fails, Holds),
        ],
        Op::ScmpCmpGt => vec![
            ld_hi,
            j(JMP_JGT_K, hi, Holds, Next),
            j(JMP_JEQ_K, hi, Next, Fails),
            ld_lo,
            j(JMP_JGT_K, lo, Holds, Fails),
        ],
        Op::ScmpCmpGe => vec![
            ld_hi,
            j(JMP_JGT_K, hi, Holds, Next),
            j(JMP_JEQ_K, hi, Next, Fails),
            ld_lo,
            j(JMP_JGE_K, lo, Holds, Fails),
        ],
        Op::ScmpCmpLt => vec![
            ld_hi,
            j(JMP_JGT_K, hi, Fails, Next),
            j(JMP_JEQ_K, hi, Next, Holds),
            ld_lo,
            j(JMP_JGE_K, lo, Fails, Holds),
        ],
        Op::ScmpCmpLe => vec![
            ld_hi,
            j(JMP_JGT_K, hi, Fails, Next),
            j(JMP_JEQ_K, hi, Next, Holds),
            ld_lo,
            j(JMP_JGT_K, lo, Fails, Holds),
        ],
        Op::ScmpCmpMaskedEq => vec![
            ld_hi,
            Jmp::Stmt(ALU_AND_K, hi),
            j(JMP_JEQ_K, hi2, Next, Fails),
            ld_lo,
            Jmp::Stmt(ALU_AND_K, lo),
            j(JMP_JEQ_K, lo2, Holds, Fails),
        ],
    }
}

/// Turn symbolic targets into offsets; `rest` instructions follow the comparison up to where
/// a failed rule goes on. Comparisons are at most 6 instructions and a rule at most 6 of them,
/// so every offset fits in a jump's 8 bits.
fn resolve(code: &[Jmp], rest: usize) -> Vec<Insn> {
    let len = code.len();
    code.iter()
        .enumerate()
        .map(|(i, op)| match *op {
            Jmp::Stmt(code, k) => Insn::stmt(code, k),
            Jmp::Jump(code, k, jt, jf) => {
                let to_end = len - i - 1;
                let off = |t: To| {
                    let o = match t {
                        To::Next => 0,
                        To::Holds => to_end,
                        To::Fails => to_end + rest,
                    };
                    u8::try_from(o).unwrap_or(u8::MAX)
                };
                Insn::jump(code, k, off(jt), off(jf))
            }
        })
        .collect()
}

/// The architecture dispatch, then each section.
fn assemble(sections: &[(u32, Vec<Insn>)]) -> Vec<Insn> {
    let mut out = vec![Insn::stmt(LD_W_ABS, OFF_ARCH)];
    let n = sections.len();
    let mut before = 0usize;
    for (i, (arch, code)) in sections.iter().enumerate() {
        // After this `ja`: the other checks (2 each), the bad-arch `ret`, earlier sections.
        let skip = 2 * (n - i - 1) + 1 + before;
        out.push(Insn::jump(JMP_JEQ_K, *arch, 0, 1));
        out.push(Insn::stmt(JMP_JA, skip as u32));
        before += code.len();
    }
    out.push(Insn::ret(BAD_ARCH));
    for (_, code) in sections {
        out.extend_from_slice(code);
    }
    out
}

/// Syscall numbers: (name, x86_64, x86, x32 without the x32 bit, aarch64, arm); -1 where the
/// ABI has no such syscall. From libseccomp's syscalls.csv (kernel 7.1).
#[rustfmt::skip]
const SYSCALLS: &[(&str, i32, i32, i32, i32, i32)] = &[
    ("accept", 43, -1, 43, 202, 285),
    ("accept4", 288, 364, 288, 242, 366),
    ("access", 21, 33, 21, -1, 33),
    ("acct", 163, 51, 163, 89, 51),
    ("add_key", 248, 286, 248, 217, 309),
    ("adjtimex", 159, 124, 159, 171, 124),
    ("afs_syscall", 183, 137, 183, -1, -1),
    ("alarm", 37, 27, 37, -1, -1),
    ("arch_prctl", 158, 384, 158, -1, -1),
    ("arm_fadvise64_64", -1, -1, -1, -1, 270),
    ("arm_sync_file_range", -1, -1, -1, -1, 341),
    ("bdflush", -1, 134, -1, -1, 134),
    ("bind", 49, 361, 49, 200, 282),
    ("bpf", 321, 357, 321, 280, 386),
    ("break", -1, 17, -1, -1, -1),
    ("breakpoint", -1, -1, -1, -1, 983041),
    ("brk", 12, 45, 12, 214, 45),
    ("cacheflush", -1, -1, -1, -1, 983042),
    ("cachestat", 451, 451, 451, 451, 451),
    ("capget", 125, 184, 125, 90, 184),
    ("capset", 126, 185, 126, 91, 185),
    ("chdir", 80, 12, 80, 49, 12),
    ("chmod", 90, 15, 90, -1, 15),
    ("chown", 92, 182, 92, -1, 182),
    ("chown32", -1, 212, -1, -1, 212),
    ("chroot", 161, 61, 161, 51, 61),
    ("clock_adjtime", 305, 343, 305, 266, 372),
    ("clock_adjtime64", -1, 405, -1, -1, 405),
    ("clock_getres", 229, 266, 229, 114, 264),
    ("clock_getres_time64", -1, 406, -1, -1, 406),
    ("clock_gettime", 228, 265, 228, 113, 263),
    ("clock_gettime64", -1, 403, -1, -1, 403),
    ("clock_nanosleep", 230, 267, 230, 115, 265),
    ("clock_nanosleep_time64", -1, 407, -1, -1, 407),
    ("clock_settime", 227, 264, 227, 112, 262),
    ("clock_settime64", -1, 404, -1, -1, 404),
    ("clone", 56, 120, 56, 220, 120),
    ("clone3", 435, 435, 435, 435, 435),
    ("close", 3, 6, 3, 57, 6),
    ("close_range", 436, 436, 436, 436, 436),
    ("connect", 42, 362, 42, 203, 283),
    ("copy_file_range", 326, 377, 326, 285, 391),
    ("creat", 85, 8, 85, -1, 8),
    ("create_module", 174, 127, -1, -1, -1),
    ("delete_module", 176, 129, 176, 106, 129),
    ("dup", 32, 41, 32, 23, 41),
    ("dup2", 33, 63, 33, -1, 63),
    ("dup3", 292, 330, 292, 24, 358),
    ("epoll_create", 213, 254, 213, -1, 250),
    ("epoll_create1", 291, 329, 291, 20, 357),
    ("epoll_ctl", 233, 255, 233, 21, 251),
    ("epoll_ctl_old", 214, -1, -1, -1, -1),
    ("epoll_pwait", 281, 319, 281, 22, 346),
    ("epoll_pwait2", 441, 441, 441, 441, 441),
    ("epoll_wait", 232, 256, 232, -1, 252),
    ("epoll_wait_old", 215, -1, -1, -1, -1),
    ("eventfd", 284, 323, 284, -1, 351),
    ("eventfd2", 290, 328, 290, 19, 356),
    ("execve", 59, 11, 520, 221, 11),
    ("execveat", 322, 358, 545, 281, 387),
    ("exit", 60, 1, 60, 93, 1),
    ("exit_group", 231, 252, 231, 94, 248),
    ("faccessat", 269, 307, 269, 48, 334),
    ("faccessat2", 439, 439, 439, 439, 439),
    ("fadvise64", 221, 250, 221, 223, -1),
    ("fadvise64_64", -1, 272, -1, -1, -1),
    ("fallocate", 285, 324, 285, 47, 352),
    ("fanotify_init", 300, 338, 300, 262, 367),
    ("fanotify_mark", 301, 339, 301, 263, 368),
    ("fchdir", 81, 133, 81, 50, 133),
    ("fchmod", 91, 94, 91, 52, 94),
    ("fchmodat", 268, 306, 268, 53, 333),
    ("fchmodat2", 452, 452, 452, 452, 452),
    ("fchown", 93, 95, 93, 55, 95),
    ("fchown32", -1, 207, -1, -1, 207),
    ("fchownat", 260, 298, 260, 54, 325),
    ("fcntl", 72, 55, 72, 25, 55),
    ("fcntl64", -1, 221, -1, -1, 221),
    ("fdatasync", 75, 148, 75, 83, 148),
    ("fgetxattr", 193, 231, 193, 10, 231),
    ("file_getattr", 468, 468, 468, 468, 468),
    ("file_setattr", 469, 469, 469, 469, 469),
    ("finit_module", 313, 350, 313, 273, 379),
    ("flistxattr", 196, 234, 196, 13, 234),
    ("flock", 73, 143, 73, 32, 143),
    ("fork", 57, 2, 57, -1, 2),
    ("fremovexattr", 199, 237, 199, 16, 237),
    ("fsconfig", 431, 431, 431, 431, 431),
    ("fsetxattr", 190, 228, 190, 7, 228),
    ("fsmount", 432, 432, 432, 432, 432),
    ("fsopen", 430, 430, 430, 430, 430),
    ("fspick", 433, 433, 433, 433, 433),
    ("fstat", 5, 108, 5, 80, 108),
    ("fstat64", -1, 197, -1, -1, 197),
    ("fstatat64", -1, 300, -1, -1, 327),
    ("fstatfs", 138, 100, 138, 44, 100),
    ("fstatfs64", -1, 269, -1, -1, 267),
    ("fsync", 74, 118, 74, 82, 118),
    ("ftime", -1, 35, -1, -1, -1),
    ("ftruncate", 77, 93, 77, 46, 93),
    ("ftruncate64", -1, 194, -1, -1, 194),
    ("futex", 202, 240, 202, 98, 240),
    ("futex_requeue", 456, 456, 456, 456, 456),
    ("futex_time64", -1, 422, -1, -1, 422),
    ("futex_wait", 455, 455, 455, 455, 455),
    ("futex_waitv", 449, 449, 449, 449, 449),
    ("futex_wake", 454, 454, 454, 454, 454),
    ("futimesat", 261, 299, 261, -1, 326),
    ("getcpu", 309, 318, 309, 168, 345),
    ("getcwd", 79, 183, 79, 17, 183),
    ("getdents", 78, 141, 78, -1, 141),
    ("getdents64", 217, 220, 217, 61, 217),
    ("getegid", 108, 50, 108, 177, 50),
    ("getegid32", -1, 202, -1, -1, 202),
    ("geteuid", 107, 49, 107, 175, 49),
    ("geteuid32", -1, 201, -1, -1, 201),
    ("getgid", 104, 47, 104, 176, 47),
    ("getgid32", -1, 200, -1, -1, 200),
    ("getgroups", 115, 80, 115, 158, 80),
    ("getgroups32", -1, 205, -1, -1, 205),
    ("getitimer", 36, 105, 36, 102, 105),
    ("get_kernel_syms", 177, 130, -1, -1, -1),
    ("get_mempolicy", 239, 275, 239, 236, 320),
    ("getpeername", 52, 368, 52, 205, 287),
    ("getpgid", 121, 132, 121, 155, 132),
    ("getpgrp", 111, 65, 111, -1, 65),
    ("getpid", 39, 20, 39, 172, 20),
    ("getpmsg", 181, 188, 181, -1, -1),
    ("getppid", 110, 64, 110, 173, 64),
    ("getpriority", 140, 96, 140, 141, 96),
    ("getrandom", 318, 355, 318, 278, 384),
    ("getresgid", 120, 171, 120, 150, 171),
    ("getresgid32", -1, 211, -1, -1, 211),
    ("getresuid", 118, 165, 118, 148, 165),
    ("getresuid32", -1, 209, -1, -1, 209),
    ("getrlimit", 97, 76, 97, 163, -1),
    ("get_robust_list", 274, 312, 531, 100, 339),
    ("getrusage", 98, 77, 98, 165, 77),
    ("getsid", 124, 147, 124, 156, 147),
    ("getsockname", 51, 367, 51, 204, 286),
    ("getsockopt", 55, 365, 542, 209, 295),
    ("get_thread_area", 211, 244, -1, -1, -1),
    ("gettid", 186, 224, 186, 178, 224),
    ("gettimeofday", 96, 78, 96, 169, 78),
    ("get_tls", -1, -1, -1, -1, 983046),
    ("getuid", 102, 24, 102, 174, 24),
    ("getuid32", -1, 199, -1, -1, 199),
    ("getxattr", 191, 229, 191, 8, 229),
    ("getxattrat", 464, 464, 464, 464, 464),
    ("gtty", -1, 32, -1, -1, -1),
    ("idle", -1, 112, -1, -1, -1),
    ("init_module", 175, 128, 175, 105, 128),
    ("inotify_add_watch", 254, 292, 254, 27, 317),
    ("inotify_init", 253, 291, 253, -1, 316),
    ("inotify_init1", 294, 332, 294, 26, 360),
    ("inotify_rm_watch", 255, 293, 255, 28, 318),
    ("io_cancel", 210, 249, 210, 3, 247),
    ("ioctl", 16, 54, 514, 29, 54),
    ("io_destroy", 207, 246, 207, 1, 244),
    ("io_getevents", 208, 247, 208, 4, 245),
    ("ioperm", 173, 101, 173, -1, -1),
    ("io_pgetevents", 333, 385, 333, 292, 399),
    ("io_pgetevents_time64", -1, 416, -1, -1, 416),
    ("iopl", 172, 110, 172, -1, -1),
    ("ioprio_get", 252, 290, 252, 31, 315),
    ("ioprio_set", 251, 289, 251, 30, 314),
    ("io_setup", 206, 245, 543, 0, 243),
    ("io_submit", 209, 248, 544, 2, 246),
    ("io_uring_enter", 426, 426, 426, 426, 426),
    ("io_uring_register", 427, 427, 427, 427, 427),
    ("io_uring_setup", 425, 425, 425, 425, 425),
    ("ipc", -1, 117, -1, -1, -1),
    ("kcmp", 312, 349, 312, 272, 378),
    ("kexec_file_load", 320, -1, 320, 294, 401),
    ("kexec_load", 246, 283, 528, 104, 347),
    ("keyctl", 250, 288, 250, 219, 311),
    ("kill", 62, 37, 62, 129, 37),
    ("landlock_add_rule", 445, 445, 445, 445, 445),
    ("landlock_create_ruleset", 444, 444, 444, 444, 444),
    ("landlock_restrict_self", 446, 446, 446, 446, 446),
    ("lchown", 94, 16, 94, -1, 16),
    ("lchown32", -1, 198, -1, -1, 198),
    ("lgetxattr", 192, 230, 192, 9, 230),
    ("link", 86, 9, 86, -1, 9),
    ("linkat", 265, 303, 265, 37, 330),
    ("listen", 50, 363, 50, 201, 284),
    ("listmount", 458, 458, 458, 458, 458),
    ("listns", 470, 470, 470, 470, 470),
    ("listxattr", 194, 232, 194, 11, 232),
    ("listxattrat", 465, 465, 465, 465, 465),
    ("llistxattr", 195, 233, 195, 12, 233),
    ("_llseek", -1, 140, -1, -1, 140),
    ("lock", -1, 53, -1, -1, -1),
    ("lookup_dcookie", 212, 253, 212, 18, 249),
    ("lremovexattr", 198, 236, 198, 15, 236),
    ("lseek", 8, 19, 8, 62, 19),
    ("lsetxattr", 189, 227, 189, 6, 227),
    ("lsm_get_self_attr", 459, 459, 459, 459, 459),
    ("lsm_list_modules", 461, 461, 461, 461, 461),
    ("lsm_set_self_attr", 460, 460, 460, 460, 460),
    ("lstat", 6, 107, 6, -1, 107),
    ("lstat64", -1, 196, -1, -1, 196),
    ("madvise", 28, 219, 28, 233, 220),
    ("map_shadow_stack", 453, 453, 453, 453, 453),
    ("mbind", 237, 274, 237, 235, 319),
    ("membarrier", 324, 375, 324, 283, 389),
    ("memfd_create", 319, 356, 319, 279, 385),
    ("memfd_secret", 447, 447, 447, 447, -1),
    ("migrate_pages", 256, 294, 256, 238, 400),
    ("mincore", 27, 218, 27, 232, 219),
    ("mkdir", 83, 39, 83, -1, 39),
    ("mkdirat", 258, 296, 258, 34, 323),
    ("mknod", 133, 14, 133, -1, 14),
    ("mknodat", 259, 297, 259, 33, 324),
    ("mlock", 149, 150, 149, 228, 150),
    ("mlock2", 325, 376, 325, 284, 390),
    ("mlockall", 151, 152, 151, 230, 152),
    ("mmap", 9, 90, 9, 222, -1),
    ("mmap2", -1, 192, -1, -1, 192),
    ("modify_ldt", 154, 123, 154, -1, -1),
    ("mount", 165, 21, 165, 40, 21),
    ("mount_setattr", 442, 442, 442, 442, 442),
    ("move_mount", 429, 429, 429, 429, 429),
    ("move_pages", 279, 317, 533, 239, 344),
    ("mprotect", 10, 125, 10, 226, 125),
    ("mpx", -1, 56, -1, -1, -1),
    ("mq_getsetattr", 245, 282, 245, 185, 279),
    ("mq_notify", 244, 281, 527, 184, 278),
    ("mq_open", 240, 277, 240, 180, 274),
    ("mq_timedreceive", 243, 280, 243, 183, 277),
    ("mq_timedreceive_time64", -1, 419, -1, -1, 419),
    ("mq_timedsend", 242, 279, 242, 182, 276),
    ("mq_timedsend_time64", -1, 418, -1, -1, 418),
    ("mq_unlink", 241, 278, 241, 181, 275),
    ("mremap", 25, 163, 25, 216, 163),
    ("mseal", 462, 462, 462, 462, 462),
    ("msgctl", 71, 402, 71, 187, 304),
    ("msgget", 68, 399, 68, 186, 303),
    ("msgrcv", 70, 401, 70, 188, 302),
    ("msgsnd", 69, 400, 69, 189, 301),
    ("msync", 26, 144, 26, 227, 144),
    ("munlock", 150, 151, 150, 229, 151),
    ("munlockall", 152, 153, 152, 231, 153),
    ("munmap", 11, 91, 11, 215, 91),
    ("name_to_handle_at", 303, 341, 303, 264, 370),
    ("nanosleep", 35, 162, 35, 101, 162),
    ("newfstatat", 262, -1, 262, 79, -1),
    ("_newselect", -1, 142, -1, -1, 142),
    ("nfsservctl", 180, 169, -1, 42, 169),
    ("nice", -1, 34, -1, -1, 34),
    ("oldfstat", -1, 28, -1, -1, -1),
    ("oldlstat", -1, 84, -1, -1, -1),
    ("oldolduname", -1, 59, -1, -1, -1),
    ("oldstat", -1, 18, -1, -1, -1),
    ("olduname", -1, 109, -1, -1, -1),
    ("open", 2, 5, 2, -1, 5),
    ("openat", 257, 295, 257, 56, 322),
    ("openat2", 437, 437, 437, 437, 437),
    ("open_by_handle_at", 304, 342, 304, 265, 371),
    ("open_tree", 428, 428, 428, 428, 428),
    ("open_tree_attr", 467, 467, 467, 467, 467),
    ("pause", 34, 29, 34, -1, 29),
    ("pciconfig_iobase", -1, -1, -1, -1, 271),
    ("pciconfig_read", -1, -1, -1, -1, 272),
    ("pciconfig_write", -1, -1, -1, -1, 273),
    ("perf_event_open", 298, 336, 298, 241, 364),
    ("personality", 135, 136, 135, 92, 136),
    ("pidfd_getfd", 438, 438, 438, 438, 438),
    ("pidfd_open", 434, 434, 434, 434, 434),
    ("pidfd_send_signal", 424, 424, 424, 424, 424),
    ("pipe", 22, 42, 22, -1, 42),
    ("pipe2", 293, 331, 293, 59, 359),
    ("pivot_root", 155, 217, 155, 41, 218),
    ("pkey_alloc", 330, 381, 330, 289, 395),
    ("pkey_free", 331, 382, 331, 290, 396),
    ("pkey_mprotect", 329, 380, 329, 288, 394),
    ("poll", 7, 168, 7, -1, 168),
    ("ppoll", 271, 309, 271, 73, 336),
    ("ppoll_time64", -1, 414, -1, -1, 414),
    ("prctl", 157, 172, 157, 167, 172),
    ("pread64", 17, 180, 17, 67, 180),
    ("preadv", 295, 333, 534, 69, 361),
    ("preadv2", 327, 378, 546, 286, 392),
    ("prlimit64", 302, 340, 302, 261, 369),
    ("process_madvise", 440, 440, 440, 440, 440),
    ("process_mrelease", 448, 448, 448, 448, 448),
    ("process_vm_readv", 310, 347, 539, 270, 376),
    ("process_vm_writev", 311, 348, 540, 271, 377),
    ("prof", -1, 44, -1, -1, -1),
    ("profil", -1, 98, -1, -1, -1),
    ("pselect6", 270, 308, 270, 72, 335),
    ("pselect6_time64", -1, 413, -1, -1, 413),
    ("ptrace", 101, 26, 521, 117, 26),
    ("putpmsg", 182, 189, 182, -1, -1),
    ("pwrite64", 18, 181, 18, 68, 181),
    ("pwritev", 296, 334, 535, 70, 362),
    ("pwritev2", 328, 379, 547, 287, 393),
    ("query_module", 178, 167, -1, -1, -1),
    ("quotactl", 179, 131, 179, 60, 131),
    ("quotactl_fd", 443, 443, 443, 443, 443),
    ("read", 0, 3, 0, 63, 3),
    ("readahead", 187, 225, 187, 213, 225),
    ("readdir", -1, 89, -1, -1, -1),
    ("readlink", 89, 85, 89, -1, 85),
    ("readlinkat", 267, 305, 267, 78, 332),
    ("readv", 19, 145, 515, 65, 145),
    ("reboot", 169, 88, 169, 142, 88),
    ("recv", -1, -1, -1, -1, 291),
    ("recvfrom", 45, 371, 517, 207, 292),
    ("recvmmsg", 299, 337, 537, 243, 365),
    ("recvmmsg_time64", -1, 417, -1, -1, 417),
    ("recvmsg", 47, 372, 519, 212, 297),
    ("remap_file_pages", 216, 257, 216, 234, 253),
    ("removexattr", 197, 235, 197, 14, 235),
    ("removexattrat", 466, 466, 466, 466, 466),
    ("rename", 82, 38, 82, -1, 38),
    ("renameat", 264, 302, 264, 38, 329),
    ("renameat2", 316, 353, 316, 276, 382),
    ("request_key", 249, 287, 249, 218, 310),
    ("restart_syscall", 219, 0, 219, 128, 0),
    ("rmdir", 84, 40, 84, -1, 40),
    ("rseq", 334, 386, 334, 293, 398),
    ("rseq_slice_yield", 471, 471, 471, 471, 471),
    ("rt_sigaction", 13, 174, 512, 134, 174),
    ("rt_sigpending", 127, 176, 522, 136, 176),
    ("rt_sigprocmask", 14, 175, 14, 135, 175),
    ("rt_sigqueueinfo", 129, 178, 524, 138, 178),
    ("rt_sigreturn", 15, 173, 513, 139, 173),
    ("rt_sigsuspend", 130, 179, 130, 133, 179),
    ("rt_sigtimedwait", 128, 177, 523, 137, 177),
    ("rt_sigtimedwait_time64", -1, 421, -1, -1, 421),
    ("rt_tgsigqueueinfo", 297, 335, 536, 240, 363),
    ("sched_getaffinity", 204, 242, 204, 123, 242),
    ("sched_getattr", 315, 352, 315, 275, 381),
    ("sched_getparam", 143, 155, 143, 121, 155),
    ("sched_get_priority_max", 146, 159, 146, 125, 159),
    ("sched_get_priority_min", 147, 160, 147, 126, 160),
    ("sched_getscheduler", 145, 157, 145, 120, 157),
    ("sched_rr_get_interval", 148, 161, 148, 127, 161),
    ("sched_rr_get_interval_time64", -1, 423, -1, -1, 423),
    ("sched_setaffinity", 203, 241, 203, 122, 241),
    ("sched_setattr", 314, 351, 314, 274, 380),
    ("sched_setparam", 142, 154, 142, 118, 154),
    ("sched_setscheduler", 144, 156, 144, 119, 156),
    ("sched_yield", 24, 158, 24, 124, 158),
    ("seccomp", 317, 354, 317, 277, 383),
    ("security", 185, -1, 185, -1, -1),
    ("select", 23, 82, 23, -1, -1),
    ("semctl", 66, 394, 66, 191, 300),
    ("semget", 64, 393, 64, 190, 299),
    ("semop", 65, -1, 65, 193, 298),
    ("semtimedop", 220, -1, 220, 192, 312),
    ("semtimedop_time64", -1, 420, -1, -1, 420),
    ("send", -1, -1, -1, -1, 289),
    ("sendfile", 40, 187, 40, 71, 187),
    ("sendfile64", -1, 239, -1, -1, 239),
    ("sendmmsg", 307, 345, 538, 269, 374),
    ("sendmsg", 46, 370, 518, 211, 296),
    ("sendto", 44, 369, 44, 206, 290),
    ("setdomainname", 171, 121, 171, 162, 121),
    ("setfsgid", 123, 139, 123, 152, 139),
    ("setfsgid32", -1, 216, -1, -1, 216),
    ("setfsuid", 122, 138, 122, 151, 138),
    ("setfsuid32", -1, 215, -1, -1, 215),
    ("setgid", 106, 46, 106, 144, 46),
    ("setgid32", -1, 214, -1, -1, 214),
    ("setgroups", 116, 81, 116, 159, 81),
    ("setgroups32", -1, 206, -1, -1, 206),
    ("sethostname", 170, 74, 170, 161, 74),
    ("setitimer", 38, 104, 38, 103, 104),
    ("set_mempolicy", 238, 276, 238, 237, 321),
    ("set_mempolicy_home_node", 450, 450, 450, 450, 450),
    ("setns", 308, 346, 308, 268, 375),
    ("setpgid", 109, 57, 109, 154, 57),
    ("setpriority", 141, 97, 141, 140, 97),
    ("setregid", 114, 71, 114, 143, 71),
    ("setregid32", -1, 204, -1, -1, 204),
    ("setresgid", 119, 170, 119, 149, 170),
    ("setresgid32", -1, 210, -1, -1, 210),
    ("setresuid", 117, 164, 117, 147, 164),
    ("setresuid32", -1, 208, -1, -1, 208),
    ("setreuid", 113, 70, 113, 145, 70),
    ("setreuid32", -1, 203, -1, -1, 203),
    ("setrlimit", 160, 75, 160, 164, 75),
    ("set_robust_list", 273, 311, 530, 99, 338),
    ("setsid", 112, 66, 112, 157, 66),
    ("setsockopt", 54, 366, 541, 208, 294),
    ("set_thread_area", 205, 243, -1, -1, -1),
    ("set_tid_address", 218, 258, 218, 96, 256),
    ("settimeofday", 164, 79, 164, 170, 79),
    ("set_tls", -1, -1, -1, -1, 983045),
    ("setuid", 105, 23, 105, 146, 23),
    ("setuid32", -1, 213, -1, -1, 213),
    ("setxattr", 188, 226, 188, 5, 226),
    ("setxattrat", 463, 463, 463, 463, 463),
    ("sgetmask", -1, 68, -1, -1, -1),
    ("shmat", 30, 397, 30, 196, 305),
    ("shmctl", 31, 396, 31, 195, 308),
    ("shmdt", 67, 398, 67, 197, 306),
    ("shmget", 29, 395, 29, 194, 307),
    ("shutdown", 48, 373, 48, 210, 293),
    ("sigaction", -1, 67, -1, -1, 67),
    ("sigaltstack", 131, 186, 525, 132, 186),
    ("signal", -1, 48, -1, -1, -1),
    ("signalfd", 282, 321, 282, -1, 349),
    ("signalfd4", 289, 327, 289, 74, 355),
    ("sigpending", -1, 73, -1, -1, 73),
    ("sigprocmask", -1, 126, -1, -1, 126),
    ("sigreturn", -1, 119, -1, -1, 119),
    ("sigsuspend", -1, 72, -1, -1, 72),
    ("socket", 41, 359, 41, 198, 281),
    ("socketcall", -1, 102, -1, -1, -1),
    ("socketpair", 53, 360, 53, 199, 288),
    ("splice", 275, 313, 275, 76, 340),
    ("ssetmask", -1, 69, -1, -1, -1),
    ("stat", 4, 106, 4, -1, 106),
    ("stat64", -1, 195, -1, -1, 195),
    ("statfs", 137, 99, 137, 43, 99),
    ("statfs64", -1, 268, -1, -1, 266),
    ("statmount", 457, 457, 457, 457, 457),
    ("statx", 332, 383, 332, 291, 397),
    ("stime", -1, 25, -1, -1, -1),
    ("stty", -1, 31, -1, -1, -1),
    ("swapoff", 168, 115, 168, 225, 115),
    ("swapon", 167, 87, 167, 224, 87),
    ("symlink", 88, 83, 88, -1, 83),
    ("symlinkat", 266, 304, 266, 36, 331),
    ("sync", 162, 36, 162, 81, 36),
    ("sync_file_range", 277, 314, 277, 84, -1),
    ("syncfs", 306, 344, 306, 267, 373),
    ("_sysctl", 156, 149, -1, -1, 149),
    ("sysfs", 139, 135, 139, -1, 135),
    ("sysinfo", 99, 116, 99, 179, 116),
    ("syslog", 103, 103, 103, 116, 103),
    ("tee", 276, 315, 276, 77, 342),
    ("tgkill", 234, 270, 234, 131, 268),
    ("time", 201, 13, 201, -1, -1),
    ("timer_create", 222, 259, 526, 107, 257),
    ("timer_delete", 226, 263, 226, 111, 261),
    ("timerfd_create", 283, 322, 283, 85, 350),
    ("timerfd_gettime", 287, 326, 287, 87, 354),
    ("timerfd_gettime64", -1, 410, -1, -1, 410),
    ("timerfd_settime", 286, 325, 286, 86, 353),
    ("timerfd_settime64", -1, 411, -1, -1, 411),
    ("timer_getoverrun", 225, 262, 225, 109, 260),
    ("timer_gettime", 224, 261, 224, 108, 259),
    ("timer_gettime64", -1, 408, -1, -1, 408),
    ("timer_settime", 223, 260, 223, 110, 258),
    ("timer_settime64", -1, 409, -1, -1, 409),
    ("times", 100, 43, 100, 153, 43),
    ("tkill", 200, 238, 200, 130, 238),
    ("truncate", 76, 92, 76, 45, 92),
    ("truncate64", -1, 193, -1, -1, 193),
    ("tuxcall", 184, -1, 184, -1, -1),
    ("ugetrlimit", -1, 191, -1, -1, 191),
    ("ulimit", -1, 58, -1, -1, -1),
    ("umask", 95, 60, 95, 166, 60),
    ("umount", -1, 22, -1, -1, -1),
    ("umount2", 166, 52, 166, 39, 52),
    ("uname", 63, 122, 63, 160, 122),
    ("unlink", 87, 10, 87, -1, 10),
    ("unlinkat", 263, 301, 263, 35, 328),
    ("unshare", 272, 310, 272, 97, 337),
    ("uprobe", 336, -1, 336, -1, -1),
    ("uretprobe", 335, -1, 335, -1, -1),
    ("uselib", 134, 86, -1, -1, 86),
    ("userfaultfd", 323, 374, 323, 282, 388),
    ("usr26", -1, -1, -1, -1, 983043),
    ("usr32", -1, -1, -1, -1, 983044),
    ("ustat", 136, 62, 136, -1, 62),
    ("utime", 132, 30, 132, -1, -1),
    ("utimensat", 280, 320, 280, 88, 348),
    ("utimensat_time64", -1, 412, -1, -1, 412),
    ("utimes", 235, 271, 235, -1, 269),
    ("vfork", 58, 190, 58, -1, 190),
    ("vhangup", 153, 111, 153, 58, 111),
    ("vm86", -1, 166, -1, -1, -1),
    ("vm86old", -1, 113, -1, -1, -1),
    ("vmsplice", 278, 316, 532, 75, 343),
    ("vserver", 236, 273, -1, -1, 313),
    ("wait4", 61, 114, 61, 260, 114),
    ("waitid", 247, 284, 529, 95, 280),
    ("waitpid", -1, 7, -1, -1, -1),
    ("write", 1, 4, 1, 64, 4),
    ("writev", 20, 146, 516, 66, 146),
];

#[cfg(test)]
mod tests {
    use super::*;

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;
    const AARCH64: u32 = 0xc000_00b7;
    const EPERM: u32 = RET_ERRNO | 1;
    const ENOSYS: u32 = RET_ERRNO | 38;

    /// A classic-BPF interpreter for the instructions the compiler emits.
    fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            let skip = |cond: bool| usize::from(if cond { i.jt } else { i.jf });
            match i.code {
                LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                ALU_AND_K => acc &= i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K => pc += skip(acc == i.k),
                JMP_JGT_K => pc += skip(acc > i.k),
                JMP_JGE_K => pc += skip(acc >= i.k),
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

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
