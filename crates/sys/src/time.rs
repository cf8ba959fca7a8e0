//! The clock CRI timestamps are in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in nanoseconds (CRI's `created_at`, `finished_at`, stats timestamps).
pub fn now_nanos() -> i64 {
    unix_nanos(SystemTime::now())
}

/// `t` as Unix nanoseconds: 0 before the epoch, `i64::MAX` past 2262.
pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nanos() {
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(now_nanos() > 1_700_000_000_000_000_000);
    }
}
