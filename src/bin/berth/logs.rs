//! `logs`: a container's CRI log file (ContainerStatus.log_path), records
//! `<RFC3339Nano> <stdout|stderr> <F|P> <content>`, printed to our stdout and stderr.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use k8s_cri::v1::ContainerState;

use crate::client::Clients;
use crate::lifecycle;
use crate::resolve;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow the log until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all": every line).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Only records since a time: RFC 3339 or a duration back from now (10s, 5m, 1h).
    #[arg(long)]
    pub since: Option<String>,
    /// Prefix each line with its timestamp.
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

/// One record of a CRI log.
#[derive(Debug, PartialEq)]
struct Record<'a> {
    time: &'a str,
    stderr: bool,
    /// A whole line's end (F) rather than a partial chunk (P).
    full: bool,
    content: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut it = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(it.next()?).ok()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let content = it.next().unwrap_or_default();
    Some(Record {
        time,
        stderr: stream == b"stderr",
        full: !tag.starts_with(b"P"),
        content,
    })
}

/// Nanoseconds since the epoch of an RFC 3339 time (`Z` or a `±hh:mm` offset).
fn rfc3339_nanos(t: &str) -> Option<i128> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (y, mo, d) = (num(&t[0..4])?, num(&t[5..7])?, num(&t[8..10])?);
    let (h, mi, s) = (num(&t[11..13])?, num(&t[14..16])?, num(&t[17..19])?);
    let mut rest = &t[19..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let mut f = frac[..digits].to_string();
        f.truncate(9);
        while f.len() < 9 {
            f.push('0');
        }
        nanos = f.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (num(&o[1..3])? * 3600 + num(&o[4..6])? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// `--since`: RFC 3339, or a duration (s, m, h; fractions allowed) back from `now`.
fn since_nanos(s: &str, now: i128) -> anyhow::Result<i128> {
    if let Some(t) = rfc3339_nanos(s) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .with_context(|| format!("--since {s}: want RFC 3339 or a duration like 10s, 5m, 2h"))?;
    let scale = match unit {
        "ms" => 1e6,
        "s" | "" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => anyhow::bail!("--since {s}: unknown unit {unit}"),
    };
    Ok(now - (n * scale) as i128)
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// What to print of the records: since, and tail.
struct Filter {
    since: Option<i128>,
    timestamps: bool,
}

impl Filter {
    fn emit(
        &self,
        r: &Record<'_>,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> std::io::Result<()> {
        if let Some(since) = self.since
            && rfc3339_nanos(r.time).is_some_and(|t| t < since)
        {
            return Ok(());
        }
        let w: &mut dyn Write = if r.stderr { err } else { out };
        if self.timestamps {
            write!(w, "{} ", r.time)?;
        }
        w.write_all(r.content)?;
        if r.full {
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The records of `data` (whole lines only), the last `tail` full lines of them.
fn tail_start(lines: &[&[u8]], tail: Option<usize>) -> usize {
    let Some(n) = tail else { return 0 };
    let mut full = 0;
    for (i, l) in lines.iter().enumerate().rev() {
        if parse(l).is_some_and(|r| r.full) {
            if full == n {
                return i + 1;
            }
            full += 1;
        }
    }
    0
}

pub async fn run(c: &mut Clients, a: LogsArgs) -> anyhow::Result<()> {
    let ctr = resolve::container(c, &a.container).await?;
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse()
                .with_context(|| format!("--tail {n}: a number or all"))?,
        ),
    };
    let filter = Filter {
        since: a
            .since
            .as_deref()
            .map(|s| since_nanos(s, now_nanos()))
            .transpose()?,
        timestamps: a.timestamps,
    };
    print_log(c, &ctr.id, tail, &filter, a.follow).await
}

/// Follow a container's log from its start until it exits (`run` in the foreground).
pub async fn follow_to_end(c: &mut Clients, id: &str) -> anyhow::Result<()> {
    let filter = Filter {
        since: None,
        timestamps: false,
    };
    print_log(c, id, None, &filter, true).await
}

async fn print_log(
    c: &mut Clients,
    id: &str,
    tail: Option<usize>,
    filter: &Filter,
    follow: bool,
) -> anyhow::Result<()> {
    let st = lifecycle::status(c, id, false)
        .await?
        .status
        .context("ContainerStatus without a status")?;
    if st.log_path.is_empty() {
        anyhow::bail!("container {id} has no log file");
    }
    let path = st.log_path;
    let mut file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    let mut pending = Vec::new();
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let mut first = true;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut exited_seen = false;
    loop {
        pending.extend_from_slice(&buf);
        buf.clear();
        let end = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        {
            let lines: Vec<&[u8]> = pending[..end]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let start = if first { tail_start(&lines, tail) } else { 0 };
            let (mut out, mut err) = (stdout.lock(), stderr.lock());
            for l in &lines[start..] {
                if let Some(r) = parse(l) {
                    filter.emit(&r, &mut out, &mut err)?;
                }
            }
            out.flush()?;
            err.flush()?;
        }
        pending.drain(..end);
        first = false;
        if !follow || exited_seen {
            return Ok(());
        }
        // Once the container has exited, one last read gets what it wrote before.
        let state = lifecycle::status(c, id, false)
            .await?
            .status
            .map(|s| s.state);
        exited_seen = state != Some(ContainerState::ContainerRunning as i32)
            && state != Some(ContainerState::ContainerCreated as i32);
        if !exited_seen {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Rotated (kubelet renames, then asks for a reopen): the rest of the old file, then
        // the new one from its start; truncated: from the start again.
        file.read_to_end(&mut buf)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.ino() != file.metadata()?.ino() => {
                file = std::fs::File::open(&path)?;
                file.read_to_end(&mut buf)?;
            }
            Ok(m) if m.len() < file.stream_position()? => {
                file.seek(SeekFrom::Start(0))?;
                file.read_to_end(&mut buf)?;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let r = parse(b"2026-11-22T13:05:28.103055185Z stderr P part").unwrap();
        assert_eq!(
            r,
            Record {
                time: "2026-11-22T13:05:28.103055185Z",
                stderr: true,
                full: false,
                content: b"part"
            }
        );
        assert_eq!(
            parse(b"2026-11-22T13:05:28Z stdout F ").unwrap().content,
            b""
        );
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            rfc3339_nanos("2026-11-22T13:05:28.103055185Z"),
            Some(1_795_352_728_103_055_185)
        );
        assert_eq!(
            rfc3339_nanos("2026-11-22T14:05:28.103055185+01:00"),
            rfc3339_nanos("2026-11-22T13:05:28.103055185Z")
        );
        assert_eq!(since_nanos("10s", 100_000_000_000).unwrap(), 90_000_000_000);
        assert_eq!(since_nanos("1m", 100_000_000_000).unwrap(), 40_000_000_000);
        assert!(since_nanos("yesterday", 0).is_err());
    }

    #[test]
    fn tail_counts_full_lines() {
        let lines: Vec<&[u8]> = vec![
            b"t stdout F a",
            b"t stdout P b1",
            b"t stdout F b2",
            b"t stdout F c",
        ];
        assert_eq!(tail_start(&lines, Some(1)), 3);
        assert_eq!(tail_start(&lines, Some(2)), 1);
        assert_eq!(tail_start(&lines, Some(9)), 0);
        assert_eq!(tail_start(&lines, None), 0);
        assert_eq!(tail_start(&lines, Some(0)), 4);
    }
}
