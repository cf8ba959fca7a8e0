//! The container process's identity and privileges, one call each: user and groups,
//! capabilities, no_new_privs, rlimits, oom_score_adj, AppArmor, signal dispositions.
//!
//! Order matters and is `privileges.rs`'s: oom_score_adj and rlimits while still fully
//! privileged, then the bounding set (needs CAP_SETPCAP), then groups/gid/uid with
//! PR_SET_KEEPCAPS so the permitted set survives the uid change, then capset and the ambient
//! set, then no_new_privs.

// Capabilities, the bounding set, rlimits and signal dispositions are set with libc calls.
#![allow(unsafe_code)]

use std::os::unix::fs::OpenOptionsExt;

use nix::sys::prctl;
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, PosixRlimit, PosixRlimitType, User,
};

use super::error::{Context, Result};

/// The kernel's number for a capability.
pub fn cap_number(cap: Capability) -> u8 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// A capability set as the kernel's 64-bit mask.
pub fn cap_mask(caps: Option<&Capabilities>) -> u64 {
    caps.into_iter()
        .flatten()
        .fold(0u64, |m, c| m | (1u64 << cap_number(*c)))
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding_set(keep: u64) -> Result<()> {
    drop_bounding_set_upto(keep, last_cap())
}

/// [`drop_bounding_set`] with the kernel's [`last_cap`] read beforehand (no file is opened:
/// it may run under a seccomp filter).
pub fn drop_bounding_set_upto(keep: u64, last_cap: u8) -> Result<()> {
    for cap in 0..=last_cap {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number; no pointers are involved.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        // EINVAL: the kernel does not know this capability; nothing to drop.
        if rc != 0 && nix::errno::Errno::last() != nix::errno::Errno::EINVAL {
            return Err(nix::Error::last())
                .ctx(|| format!("dropping capability {cap} from the bounding set"));
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's (effective, permitted, inheritable) sets.
pub fn get_caps() -> Result<(u64, u64, u64)> {
    let mut hdr = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData structs (version 3) into `data`, which has room for them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(nix::Error::last()).ctx(|| "capget");
    }
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

fn set_caps(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    let mut hdr = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |m: u64| [m as u32, (m >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: capset reads the header and two CapData structs (version 3) from valid memory.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(nix::Error::last()).ctx(|| {
            format!("capset effective={effective:#x} permitted={permitted:#x} inheritable={inheritable:#x}")
        });
    }
    Ok(())
}

/// The capability sets asked for, limited to what this process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    pub fn from_spec(caps: &LinuxCapabilities) -> CapSets {
        CapSets {
            bounding: cap_mask(caps.bounding().as_ref()),
            effective: cap_mask(caps.effective().as_ref()),
            permitted: cap_mask(caps.permitted().as_ref()),
            inheritable: cap_mask(caps.inheritable().as_ref()),
            ambient: cap_mask(caps.ambient().as_ref()),
        }
    }

    /// Restrict to `held` (capset cannot grant what the process lacks); returns what was removed.
    pub fn limit_to(&mut self, held: u64) -> u64 {
        let wanted =
            self.bounding | self.effective | self.permitted | self.inheritable | self.ambient;
        self.bounding &= held;
        self.effective &= held;
        self.permitted &= held;
        self.inheritable &= held;
        self.ambient &= held;
        wanted & !held
    }
}

/// Switch to the container's user: groups, then gid, then uid. With `keep_caps`
/// (PR_SET_KEEPCAPS first) the permitted set survives the uid change; the kernel clears the
/// effective set, which [`apply_capabilities`] sets again after clearing keepcaps.
pub fn switch_user(user: &User, keep_caps: bool) -> Result<()> {
    if keep_caps {
        prctl::set_keepcaps(true).ctx(|| "PR_SET_KEEPCAPS")?;
    }
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    setgroups(&groups).ctx(|| format!("setgroups {:?}", user.additional_gids()))?;
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).ctx(|| format!("setgid {gid}"))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).ctx(|| format!("setuid {uid}"))?;
    Ok(())
}

/// Clear keepcaps, then set the effective, permitted, inheritable and ambient sets (after
/// [`switch_user`]; runc's order).
pub fn apply_capabilities(sets: &CapSets) -> Result<()> {
    prctl::set_keepcaps(false).ctx(|| "PR_SET_KEEPCAPS")?;
    set_caps(sets.effective, sets.permitted, sets.inheritable)?;
    // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(nix::Error::last()).ctx(|| "clearing the ambient capabilities");
    }
    for cap in 0..64u8 {
        if sets.ambient & (1u64 << cap) == 0 {
            continue;
        }
        // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
                0,
                0,
            )
        };
        if rc != 0 {
            return Err(nix::Error::last()).ctx(|| {
                format!("raising ambient capability {cap} (it must be permitted and inheritable)")
            });
        }
    }
    Ok(())
}

/// Write `value` to the /proc file at `path`, after checking that what was opened is on procfs
/// (fstatfs PROC_SUPER_MAGIC): a volume mounted over /proc, or a symlink raced in, must not
/// turn an AppArmor, sysctl or oom_score_adj write into a write to a file of the container's
/// choosing (CVE-2019-16884, CVE-2019-19921).
pub fn write_proc(path: &std::path::Path, value: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    let fs = nix::sys::statfs::fstatfs(&f).map_err(std::io::Error::from)?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(std::io::Error::other(format!(
            "{} is not on procfs (filesystem type {:#x})",
            path.display(),
            fs.filesystem_type().0
        )));
    }
    f.write_all(value)
}

/// `process.apparmorProfile`: ask the kernel to confine the next execve with `profile`, as
/// runc does (`exec <profile>` into the task's AppArmor exec attribute; the older kernels'
/// attribute path when the per-LSM one is absent). None or empty: unchanged.
pub fn apply_apparmor(profile: Option<&str>) -> Result<()> {
    let Some(profile) = profile.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let request = format!("exec {profile}");
    let mut last = None;
    for path in [
        "/proc/thread-self/attr/apparmor/exec",
        "/proc/thread-self/attr/exec",
    ] {
        match write_proc(std::path::Path::new(path), request.as_bytes()) {
            Ok(()) => return Ok(()),
            // Absent on this kernel: try the older attribute.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => last = Some(e),
            Err(e) => {
                return Err(e).ctx(|| format!("setting the AppArmor profile {profile:?}"));
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no AppArmor attribute")))
        .ctx(|| format!("setting the AppArmor profile {profile:?}"))
}

/// chdir to `cwd`, then make sure the new working directory is inside the process's root: a
/// directory descriptor of the host leaked into the container (`cwd: /proc/self/fd/N`,
/// CVE-2024-21626) would otherwise leave the container's process working in the host's tree.
/// getcwd(3) reports such a directory, unreachable from the root, as ENOENT.
pub fn enter_cwd(cwd: &std::path::Path) -> Result<()> {
    std::env::set_current_dir(cwd).ctx(|| format!("chdir to cwd {}", cwd.display()))?;
    let outside = || {
        Err(super::error::Error::Init(format!(
            "cwd {} is outside the container's root",
            cwd.display()
        )))
    };
    match std::env::current_dir() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(_) => outside(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => outside(),
        Err(e) => Err(e).ctx(|| format!("getcwd after chdir to {}", cwd.display())),
    }
}

/// PR_SET_NO_NEW_PRIVS.
pub fn set_no_new_privs() -> Result<()> {
    prctl::set_no_new_privs().ctx(|| "PR_SET_NO_NEW_PRIVS")
}

fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// `process.rlimits`.
pub fn set_rlimits(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        let lim = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: setrlimit reads one rlimit struct from valid memory.
        let rc = unsafe { libc::setrlimit(rlimit_resource(l.typ()), &lim) };
        if rc != 0 {
            return Err(nix::Error::last()).ctx(|| {
                format!(
                    "setrlimit {:?} soft={} hard={}",
                    l.typ(),
                    l.soft(),
                    l.hard()
                )
            });
        }
    }
    Ok(())
}

/// Write `value` to /proc/self/oom_score_adj. Some hosts refuse negative values (the write fails
/// or does not stick): then the process keeps the score it inherited from the shim, and the
/// returned warning says so. Never fails the container.
pub fn set_oom_score_adj(value: i32) -> Option<String> {
    const PATH: &str = "/proc/self/oom_score_adj";
    let read = || -> Option<i32> { std::fs::read_to_string(PATH).ok()?.trim().parse().ok() };
    let own = read();
    if own == Some(value) {
        return None;
    }
    let written = write_proc(std::path::Path::new(PATH), value.to_string().as_bytes());
    let now = read();
    if written.is_ok() && now == Some(value) {
        return None;
    }
    if let Some(own) = own {
        // Put back the shim's own score in case a partial value stuck.
        let _ = write_proc(std::path::Path::new(PATH), own.to_string().as_bytes());
    }
    Some(format!(
        "oom_score_adj {value} refused ({}); keeping {}",
        written
            .err()
            .map_or_else(|| "did not stick".to_string(), |e| e.to_string()),
        own.map_or_else(|| "the inherited score".to_string(), |o| o.to_string())
    ))
}

/// Give every signal its default disposition and unblock all: the container must not inherit
/// the shim's (Rust ignores SIGPIPE, for one).
pub fn reset_signals() -> Result<()> {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler code; failures (glibc-reserved signals) are
        // harmless and ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let empty = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    )
    .ctx(|| "unblocking signals")
}

/// A capability mask as a list of numbers, for log lines: `0,25`.
pub fn describe_mask(mask: u64) -> String {
    (0..64u8)
        .filter(|c| mask & (1u64 << c) != 0)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_default_caps_mask() {
        let caps: Capabilities = serde_json::from_str(
            r#"["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW",
                "CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]"#,
        )
        .unwrap();
        assert_eq!(cap_mask(Some(&caps)), 0xa80425fb);
        assert_eq!(cap_mask(None), 0);
        assert_eq!(cap_number(Capability::CheckpointRestore), 40);
    }

    #[test]
    fn proc_writes_go_to_procfs_only() {
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("oom_score_adj");
        std::fs::write(&fake, "0").unwrap();
        let e = write_proc(&fake, b"-999").unwrap_err();
        assert!(e.to_string().contains("not on procfs"), "{e}");
        assert_eq!(std::fs::read_to_string(&fake).unwrap(), "0");
        // The real one: this thread's name.
        write_proc(
            std::path::Path::new("/proc/thread-self/comm"),
            b"procfs-check",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string("/proc/thread-self/comm").unwrap(),
            "procfs-check\n"
        );
    }

    /// chroot without chdir leaves the cwd outside the root, as a leaked host directory would.
    #[test]
    fn cwd_outside_the_root_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let root_c = std::ffi::CString::new(root.path().as_os_str().as_encoded_bytes()).unwrap();
        let outside_c =
            std::ffi::CString::new(outside.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: the child only makes system calls and the checks under test, then _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: NUL-terminated paths alive for the calls; _exit ends the child.
                let code = unsafe {
                    let userns = libc::geteuid() == 0 || libc::unshare(libc::CLONE_NEWUSER) == 0;
                    if !userns || libc::chdir(outside_c.as_ptr()) != 0 {
                        10
                    } else if libc::chroot(root_c.as_ptr()) != 0 {
                        11
                    } else if enter_cwd(std::path::Path::new(".")).is_ok() {
                        12
                    } else if enter_cwd(std::path::Path::new("/")).is_err() {
                        13
                    } else {
                        0
                    }
                };
                // SAFETY: ends the forked child at once.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn limits_to_held_caps() {
        let mut s = CapSets {
            bounding: 0b111,
            effective: 0b101,
            permitted: 0b111,
            inheritable: 0,
            ambient: 0b100,
        };
        assert_eq!(s.limit_to(0b011), 0b100);
        assert_eq!(s.bounding, 0b011);
        assert_eq!(s.effective, 0b001);
        assert_eq!(s.ambient, 0);
        assert_eq!(
            describe_mask(0b10_0000_0000_0000_0000_0000_0000 | 1),
            "0,25"
        );
    }
}
