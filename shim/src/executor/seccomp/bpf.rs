//! The classic BPF side of the seccomp compiler: the kernel's encoding (opcodes, `struct
//! seccomp_data` offsets, `SECCOMP_RET_*` values) and the code generation that `mod.rs` drives
//! once per architecture: default bands and per-syscall leaves over the syscall numbers, the
//! binary search over them, the argument comparisons of a leaf's rules, and the architecture
//! dispatch in front of the sections (see the program's layout in `mod.rs`).

use std::collections::BTreeMap;

use oci_spec::runtime::LinuxSeccompOperator;

/// `SECCOMP_RET_*` (include/uapi/linux/seccomp.h).
pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(super) const RET_TRAP: u32 = 0x0003_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_TRACE: u32 = 0x7ff0_0000;
pub(super) const RET_LOG: u32 = 0x7ffc_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;

/// What a syscall of an architecture the filter does not cover gets.
pub(super) const BAD_ARCH: u32 = RET_KILL_PROCESS;

/// Classic BPF opcodes (include/uapi/linux/bpf_common.h): class | size/op | mode/source.
pub(super) const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K (0)
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA (0)
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JGT_K: u16 = 0x05 | 0x20;
const JMP_JGE_K: u16 = 0x05 | 0x30;
const RET_K: u16 = 0x06; // BPF_RET | BPF_K (0)

/// Offsets in `struct seccomp_data`.
pub(super) const OFF_NR: u32 = 0;
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
    pub(super) fn stmt(code: u16, k: u32) -> Insn {
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

/// One argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cmp {
    pub(super) index: u32,
    pub(super) op: LinuxSeccompOperator,
    pub(super) value: u64,
    pub(super) value_two: u64,
}

/// Conditions (all must hold) and the action when they do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) cmps: Vec<Cmp>,
    pub(super) action: u32,
}

/// What one syscall number (or range) gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Leaf {
    Ret(u32),
    Rules {
        wide: bool,
        rules: Vec<Rule>,
        otherwise: u32,
    },
}

/// The action for numbers no rule names, as (first number, action) steps from `base`: the
/// default, and the ENOSYS stub above the highest number the profile names.
pub(super) fn bands(
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
pub(super) fn leaves(
    rules: &BTreeMap<u32, Vec<Rule>>,
    wide: bool,
    default: u32,
) -> BTreeMap<u32, Leaf> {
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
pub(super) fn segments(bands: &[(u32, u32)], leaves: &BTreeMap<u32, Leaf>) -> Vec<(u32, Leaf)> {
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
pub(super) fn search(segments: &[(u32, Leaf)]) -> Vec<Insn> {
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
pub(super) fn assemble(sections: &[(u32, Vec<Insn>)]) -> Vec<Insn> {
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

/// A classic-BPF interpreter for the instructions this module emits (the compiler's tests run
/// programs with it).
#[cfg(test)]
pub(super) fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
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
