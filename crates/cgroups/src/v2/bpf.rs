//! The bpf(2) commands a cgroup device program needs, through libc's raw syscall (no BPF
//! library): load a `BPF_PROG_TYPE_CGROUP_DEVICE` program, list, attach and detach the programs
//! of a cgroup directory.
//!
//! Each command takes its own prefix of the kernel's `union bpf_attr`, declared here as a
//! `#[repr(C)]` struct; the kernel reads `size_of` bytes of it and zeroes the rest.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// The kernel's limit of programs per cgroup and attach type (`BPF_CGROUP_MAX_PROGS`).
const MAX_PROGS: usize = 64;

/// The license the program declares (as runc's).
const LICENSE: &[u8] = b"Apache\0";

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(cmd, attr, sizeof attr).
#[allow(unsafe_code)]
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] prefix of union bpf_attr whose
    // size is passed along; every pointer inside it (set by the callers) points to memory that
    // outlives the call and has the length the attr says.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A file descriptor the kernel just returned.
#[allow(unsafe_code)]
fn owned_fd(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd =
        libc::c_int::try_from(fd).map_err(|_| io::Error::other(format!("bpf returned fd {fd}")))?;
    // SAFETY: bpf(2) returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Load a cgroup device program (encoded instructions, 8 bytes each). On failure the error
/// carries the verifier's log.
pub(crate) fn load_device_program(insns: &[u8]) -> io::Result<OwnedFd> {
    let insn_cnt = u32::try_from(insns.len() / 8)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "program too long"))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"berth_device");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => owned_fd(fd),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => {
            // Again, with the verifier's log for the error.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            match again {
                Ok(fd) => owned_fd(fd),
                Err(_) => Err(io::Error::new(e.kind(), format!("{e}: {}", log.trim()))),
            }
        }
        Err(e) => Err(e),
    }
}

/// The ids of the device programs attached to the cgroup directory `cgroup` itself.
pub(crate) fn attached_device_programs(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_PROGS];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_PROGS as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let n = (attr.prog_cnt as usize).min(MAX_PROGS);
    Ok(ids[..n].to_vec())
}

/// Attach `prog` to the cgroup directory `cgroup`, next to the programs already there (each
/// must allow an access).
pub(crate) fn attach_device_program(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Detach the program with id `id` from the cgroup directory `cgroup`; Ok(false) if it is
/// gone already.
pub(crate) fn detach_device_program(cgroup: BorrowedFd<'_>, id: u32) -> io::Result<bool> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    let prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(fd) => owned_fd(fd)?,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    match bpf(BPF_PROG_DETACH, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
