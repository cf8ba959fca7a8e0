//! Output helpers shared by the verbs: sizes, short ids, ages, `--format`.

use std::time::{SystemTime, UNIX_EPOCH};

/// `--format` of the verbs scripts read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

/// Decimal byte units, as docker prints them.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}{}", UNITS[u])
    }
}

/// Binary units for memory, as `docker stats` prints them.
pub fn human_binary(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

/// The first 13 hex digits of an id (a `sha256:` prefix dropped).
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(13)]
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Nanoseconds since the epoch as RFC 3339 in UTC, with nanoseconds (the CRI log's clock).
pub fn rfc3339(nanos: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    berth_sys::time::rfc3339_nano(t)
}

/// A duration as docker says it: "5 seconds", "About a minute", "3 hours", "2 days".
pub fn human_duration(nanos: i64) -> String {
    let s = nanos.max(0) / 1_000_000_000;
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..60 => format!("{s} seconds"),
        60..120 => "About a minute".into(),
        120..3600 => format!("{} minutes", s / 60),
        3600..7200 => "About an hour".into(),
        7200..172_800 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// Print rows as left-aligned columns, two spaces apart (the last column unpadded).
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (a pipe's reader gone) ends the output; nothing else to do.
    let _ = table_into(&mut out, header, rows);
}

/// [`table`] into any writer.
pub fn table_into(
    out: &mut impl std::io::Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| -> std::io::Result<()> {
        let n = cells.len();
        let mut s = String::new();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(header.to_vec())?;
    for r in rows {
        line(r.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_durations() {
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_500_000), "1.500MB");
        assert_eq!(human_binary(1536), "1.50KiB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5_000_000_000), "5 seconds");
        assert_eq!(human_duration(90_000_000_000), "About a minute");
        assert_eq!(human_duration(10_800_000_000_000), "3 hours");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_795_352_728_103_055_185),
            "2026-11-22T13:05:28.103055185Z"
        );
    }
}
