//! Dates for expiry: parsing what an operator types (`2027-01-31`, `2027-01-31T12:00:00Z`,
//! `30d`, `12h`) and printing Unix times as UTC dates, without a date library.

use anyhow::{bail, Result};

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `2027-01-31T00:00:00Z` for a Unix time.
pub(crate) fn format_utc(t: i64) -> String {
    vpn_control::civil::format_utc(t)
}

/// `2027-01-31` for a Unix time.
pub(crate) fn format_date(t: i64) -> String {
    format_utc(t)[..10].to_string()
}

/// "3 minutes ago" style.
pub(crate) fn ago(t: i64, now: i64) -> String {
    let s = (now - t).max(0);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// An expiry: a UTC date (`2027-01-31`, meaning the start of that day), a UTC time
/// (`2027-01-31T12:00:00Z`), or a span from `now` (`30d`, `12h`, `90m`).
pub(crate) fn parse_expiry(s: &str, now: i64) -> Result<i64> {
    let s = s.trim();
    let hint = "use a date like 2027-01-31, a UTC time like 2027-01-31T12:00:00Z, or a span like 30d, 12h or 90m";
    if let Some((num, unit)) = s.find(|c: char| !c.is_ascii_digit()).map(|i| s.split_at(i)) {
        if !num.is_empty() && matches!(unit, "d" | "h" | "m") {
            let n: i64 = num.parse().map_err(|_| anyhow::anyhow!("{s:?} is not a valid span: {hint}"))?;
            let secs = match unit {
                "d" => n.checked_mul(86_400),
                "h" => n.checked_mul(3600),
                _ => n.checked_mul(60),
            };
            return match secs {
                Some(v) if v > 0 && v < 100 * 365 * 86_400 => Ok(now + v),
                _ => bail!("{s:?} is out of range: {hint}"),
            };
        }
    }
    vpn_control::civil::parse(s).map_err(|_| anyhow::anyhow!("{s:?} is not a valid date: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_spans_add_up() {
        assert_eq!(parse_expiry("1970-01-01", 0).unwrap(), 0);
        assert_eq!(parse_expiry("2000-03-01", 0).unwrap(), 951_868_800);
        assert_eq!(parse_expiry("2027-01-31T12:30:05Z", 0).unwrap(), 1_801_398_605);
        assert_eq!(format_utc(1_801_398_605), "2027-01-31T12:30:05Z");
        assert_eq!(format_date(951_868_800), "2000-03-01");
        assert_eq!(parse_expiry("30d", 1000).unwrap(), 1000 + 30 * 86_400);
        assert_eq!(parse_expiry("12h", 0).unwrap(), 43_200);
        for bad in ["2027-02-30", "2027-13-01", "tomorrow", "2027-01-31T25:00:00Z", "2027-01-31T12:00:00", "0d", "-5d", ""] {
            let e = parse_expiry(bad, 0).unwrap_err().to_string();
            assert!(e.contains("2027-01-31"), "{bad}: {e}");
        }
        assert_eq!(ago(100, 130), "30 s ago");
        assert_eq!(ago(0, 7200), "2 h ago");
    }
}
