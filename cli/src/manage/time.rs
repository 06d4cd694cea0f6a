//! Dates for expiry: parsing what an operator types (`2027-01-31`, `2027-01-31T12:00:00Z`,
//! `30d`, `12h`) and printing Unix times as UTC dates, without a date library.

use anyhow::{bail, Result};

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2027-01-31T00:00:00Z` for a Unix time.
pub(crate) fn format_utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
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
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else { bail!("{s:?} is not a date: {hint}") };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) else { bail!("{s:?} is not a date: {hint}") };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        bail!("{s:?} is not a valid date: {hint}");
    }
    let mut t = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let time = time.strip_suffix('Z').ok_or_else(|| anyhow::anyhow!("{s:?}: times must be UTC and end in Z: {hint}"))?;
        let hms: Vec<&str> = time.split(':').collect();
        let [h, mi, se] = hms[..] else { bail!("{s:?} is not a time: {hint}") };
        let (Ok(h), Ok(mi), Ok(se)) = (h.parse::<i64>(), mi.parse::<i64>(), se.parse::<i64>()) else {
            bail!("{s:?} is not a time: {hint}")
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..60).contains(&se) {
            bail!("{s:?} is not a valid time: {hint}");
        }
        t += h * 3600 + mi * 60 + se;
    }
    Ok(t)
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
