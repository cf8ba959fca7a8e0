//! v2 device rules (`linux.resources.devices`): cgroup v2 has no devices files; the kernel asks
//! a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the cgroup instead. berth emits that
//! program from the rules (the way runc's devicefilter.go does, without a BPF library), loads
//! it and attaches it to the container's directory; a new set of rules attaches its program
//! first and then detaches the old ones, so the container is never left unfiltered.
//!
//! The rules mean what they mean on v1 (`devices.allow` / `devices.deny`, in order): a rule
//! of type `a` resets everything (allow or deny all), each later rule overrides the earlier
//! ones for what it names. The program checks them last first and returns the verdict of the
//! first that matches; what none names gets the verdict of the last `a` rule, deny without
//! one. An allow rule matches an access it grants whole (`rw` needs both `r` and `w`); a deny
//! rule matches an access it refuses any part of.
//!
//! The program gets `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }` in
//! r1: the device type in the low 16 bits of `access_type`, the access bits in the high 16.

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::bpf;
use crate::controller::Controller;
use crate::error::{Error, Result, io_err};

pub struct Devices;

impl Controller for Devices {
    fn name(&self) -> &'static str {
        "devices"
    }

    fn what(&self) -> &'static str {
        "device rules"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.devices().as_ref().is_some_and(|d| !d.is_empty())
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        let prog = program(r.devices().as_deref().unwrap_or_default())?;
        attach(dir, &prog)
    }
}

// The kernel's values (include/uapi/linux/bpf.h).
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Registers r0-r5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reg(u8);

const R0: Reg = Reg(0);
const R1: Reg = Reg(1);
const R2: Reg = Reg(2);
const R3: Reg = Reg(3);
const R4: Reg = Reg(4);
const R5: Reg = Reg(5);

/// The few eBPF instructions a device program needs. Jump offsets count instructions after
/// the jump's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insn {
    /// dst = *(u32 *)(src + off)
    LoadWord { dst: Reg, src: Reg, off: i16 },
    /// dst = (u32)dst & imm
    And32 { dst: Reg, imm: i32 },
    /// dst = (u32)dst >> imm
    Rsh32 { dst: Reg, imm: i32 },
    /// dst = (u32)src
    Mov32Reg { dst: Reg, src: Reg },
    /// dst = (u32)imm
    Mov32 { dst: Reg, imm: i32 },
    /// if dst != imm goto +off
    JneImm { dst: Reg, imm: i32, off: i16 },
    /// if dst != src goto +off
    JneReg { dst: Reg, src: Reg, off: i16 },
    /// if dst == imm goto +off
    JeqImm { dst: Reg, imm: i32, off: i16 },
    /// return r0
    Exit,
}

impl Insn {
    /// The kernel's `struct bpf_insn`: opcode, dst_reg in the low nibble and src_reg in the
    /// high one, then off and imm, little or big endian as the host.
    pub(crate) fn encode(self) -> [u8; 8] {
        // Opcodes: class | operation | source (include/uapi/linux/bpf_common.h, bpf.h).
        let (code, dst, src, off, imm) = match self {
            Insn::LoadWord { dst, src, off } => (0x61, dst, src, off, 0), // LDX|MEM|W
            Insn::And32 { dst, imm } => (0x54, dst, R0, 0, imm),          // ALU|AND|K
            Insn::Rsh32 { dst, imm } => (0x74, dst, R0, 0, imm),          // ALU|RSH|K
            Insn::Mov32Reg { dst, src } => (0xbc, dst, src, 0, 0),        // ALU|MOV|X
            Insn::Mov32 { dst, imm } => (0xb4, dst, R0, 0, imm),          // ALU|MOV|K
            Insn::JneImm { dst, imm, off } => (0x55, dst, R0, off, imm),  // JMP|JNE|K
            Insn::JneReg { dst, src, off } => (0x5d, dst, src, off, 0),   // JMP|JNE|X
            Insn::JeqImm { dst, imm, off } => (0x15, dst, R0, off, imm),  // JMP|JEQ|K
            Insn::Exit => (0x95, R0, R0, 0, 0),                           // JMP|EXIT
        };
        let mut out = [0u8; 8];
        out[0] = code;
        out[1] = (src.0 << 4) | dst.0;
        out[2..4].copy_from_slice(&off.to_ne_bytes());
        out[4..8].copy_from_slice(&imm.to_ne_bytes());
        out
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Insn::LoadWord { dst, src, off } => write!(f, "ldxw {dst}, [{src}+{off}]"),
            Insn::And32 { dst, imm } => write!(f, "and32 {dst}, {imm:#x}"),
            Insn::Rsh32 { dst, imm } => write!(f, "rsh32 {dst}, {imm}"),
            Insn::Mov32Reg { dst, src } => write!(f, "mov32 {dst}, {src}"),
            Insn::Mov32 { dst, imm } => write!(f, "mov32 {dst}, {imm}"),
            Insn::JneImm { dst, imm, off } => write!(f, "jne {dst}, {imm}, +{off}"),
            Insn::JneReg { dst, src, off } => write!(f, "jne {dst}, {src}, +{off}"),
            Insn::JeqImm { dst, imm, off } => write!(f, "jeq {dst}, {imm}, +{off}"),
            Insn::Exit => write!(f, "exit"),
        }
    }
}

/// One rule in the program's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    typ: i32,
    major: Option<i32>,
    minor: Option<i32>,
    access: i32,
}

/// A rule in the program's terms; None for a rule of type `a` (its verdict is then the
/// default), Some(None) for a rule that can match no device (a number the kernel's 12-bit
/// majors and 20-bit minors never reach).
fn rule(r: &LinuxDeviceCgroup) -> Result<Option<Option<Rule>>> {
    let text = r
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    let mut access = 0;
    for c in text.chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(Error::InvalidSpec(format!(
                    "device rule access {text:?} is not a subset of \"rwm\""
                )));
            }
        };
    }
    let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => return Ok(None),
        LinuxDeviceType::B => DEV_BLOCK,
        LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
        LinuxDeviceType::P => {
            return Err(Error::InvalidSpec(
                "device rules cannot name FIFOs (type \"p\")".into(),
            ));
        }
    };
    let mut never = false;
    let mut num = |n: Option<i64>| match n {
        None | Some(-1) => Ok(None),
        Some(n) if n < 0 => Err(Error::InvalidSpec(format!("device number {n} is negative"))),
        Some(n) => Ok(i32::try_from(n).inspect_err(|_| never = true).ok()),
    };
    let major = num(r.major())?;
    let minor = num(r.minor())?;
    if never {
        return Ok(Some(None));
    }
    Ok(Some(Some(Rule {
        allow: r.allow(),
        typ,
        major,
        minor,
        access,
    })))
}

/// The device program for `rules`.
pub(crate) fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let mut default_allow = false;
    let mut checked = Vec::new();
    for r in rules {
        match rule(r)? {
            None => {
                default_allow = r.allow();
                checked.clear();
            }
            Some(Some(r)) => checked.push(r),
            Some(None) => {}
        }
    }
    // r2 = type, r3 = access, r4 = major, r5 = minor.
    let mut prog = vec![
        Insn::LoadWord {
            dst: R2,
            src: R1,
            off: 0,
        },
        Insn::And32 {
            dst: R2,
            imm: 0xffff,
        },
        Insn::LoadWord {
            dst: R3,
            src: R1,
            off: 0,
        },
        Insn::Rsh32 { dst: R3, imm: 16 },
        Insn::LoadWord {
            dst: R4,
            src: R1,
            off: 4,
        },
        Insn::LoadWord {
            dst: R5,
            src: R1,
            off: 8,
        },
    ];
    // Last rule first: the first to match decides.
    for r in checked.iter().rev() {
        // Each check jumps to the next block on a mismatch; NEXT stands for "the end of this
        // block" until the block's length is known.
        const NEXT: i16 = i16::MAX;
        let mut block = vec![Insn::JneImm {
            dst: R2,
            imm: r.typ,
            off: NEXT,
        }];
        if r.access != ACC_ALL {
            // r1 = asked & granted (r1, the context, is not needed any more).
            block.push(Insn::Mov32Reg { dst: R1, src: R3 });
            block.push(Insn::And32 {
                dst: R1,
                imm: r.access,
            });
            block.push(if r.allow {
                // Allow: everything asked is granted.
                Insn::JneReg {
                    dst: R1,
                    src: R3,
                    off: NEXT,
                }
            } else {
                // Deny: something asked is refused.
                Insn::JeqImm {
                    dst: R1,
                    imm: 0,
                    off: NEXT,
                }
            });
        }
        if let Some(major) = r.major {
            block.push(Insn::JneImm {
                dst: R4,
                imm: major,
                off: NEXT,
            });
        }
        if let Some(minor) = r.minor {
            block.push(Insn::JneImm {
                dst: R5,
                imm: minor,
                off: NEXT,
            });
        }
        block.push(Insn::Mov32 {
            dst: R0,
            imm: i32::from(r.allow),
        });
        block.push(Insn::Exit);
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if let Insn::JneImm { off, .. } | Insn::JneReg { off, .. } | Insn::JeqImm { off, .. } =
                insn
            {
                // At most a handful of instructions.
                *off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(Insn::Mov32 {
        dst: R0,
        imm: i32::from(default_allow),
    });
    prog.push(Insn::Exit);
    Ok(prog)
}

/// The instructions as the kernel reads them.
pub(crate) fn encode(prog: &[Insn]) -> Vec<u8> {
    prog.iter().flat_map(|i| i.encode()).collect()
}

/// Load `prog` and attach it to the cgroup directory `dir`, then detach the device programs
/// that were there before.
pub(crate) fn attach(dir: &Path, prog: &[Insn]) -> Result<()> {
    let what = || format!("device rules of {}", dir.display());
    let fd = bpf::load_device_program(&encode(prog))
        .map_err(io_err(|| format!("{}: loading the eBPF program", what())))?;
    let cgroup = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_err(|| format!("opening {}", dir.display())))?;
    let old = bpf::attached_device_programs(cgroup.as_fd())
        .map_err(io_err(|| format!("{}: listing the eBPF programs", what())))?;
    bpf::attach_device_program(cgroup.as_fd(), fd.as_fd())
        .map_err(io_err(|| format!("{}: attaching the eBPF program", what())))?;
    for id in old {
        bpf::detach_device_program(cgroup.as_fd(), id).map_err(io_err(|| {
            format!("{}: detaching eBPF program {id}", what())
        }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
