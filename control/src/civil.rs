//! UTC calendar dates without a date library: the civil-date arithmetic (proleptic Gregorian),
//! and absolute expiry dates as operators and bulk files write them (`2027-01-31`, the start of
//! that day, or `2027-01-31T12:00:00Z`). Bulk files take only these, so that running the same
//! file again means the same thing; the CLI also takes spans like `30d`.

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (the inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
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

/// What [`parse`] accepts, for error messages.
pub const HINT: &str = "use a UTC date like 2027-01-31 or a UTC time like 2027-01-31T12:00:00Z";

/// Parses an absolute expiry into Unix seconds. The error says what is accepted.
pub fn parse(s: &str) -> Result<i64, String> {
    let bad = |what: &str| Err(format!("{s:?} is not a valid {what}: {HINT}"));
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |p: &str, len: usize| (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<i64>().ok()).flatten();
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else { return bad("date") };
    let (Some(y), Some(m), Some(d)) = (num(y, 4), num(m, 2), num(d, 2)) else { return bad("date") };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if y < 1970 || !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        return bad("date");
    }
    let mut t = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let Some(time) = time.strip_suffix('Z') else { return bad("UTC time (it must end in Z)") };
        let hms: Vec<&str> = time.split(':').collect();
        let [h, mi, se] = hms[..] else { return bad("time") };
        let (Some(h), Some(mi), Some(se)) = (num(h, 2), num(mi, 2), num(se, 2)) else { return bad("time") };
        if h > 23 || mi > 59 || se > 59 {
            return bad("time");
        }
        t += h * 3600 + mi * 60 + se;
    }
    Ok(t)
}

/// Formats Unix seconds the way [`parse`] reads them back: `2027-01-31` at midnight UTC, else
/// `2027-01-31T12:00:00Z`.
pub fn format(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    if s == 0 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
    }
}

/// `2027-01-31T00:00:00Z`: always the full UTC time.
pub fn format_utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse("1970-01-01"), Ok(0));
        assert_eq!(parse("2000-03-01"), Ok(951_868_800));
        assert_eq!(parse("2027-01-31T12:30:05Z"), Ok(1_801_398_605));
        assert_eq!(parse("2024-02-29"), Ok(1_709_164_800));
        for t in [0, 951_868_800, 1_801_398_605, 4_070_908_800, 1_709_164_800] {
            assert_eq!(parse(&format(t)), Ok(t), "{t}");
        }
        assert_eq!(format(4_070_908_800), "2099-01-01");
        assert_eq!(format(1_801_398_605), "2027-01-31T12:30:05Z");
    }

    #[test]
    fn refuses_what_is_not_an_absolute_utc_date() {
        for bad in [
            "",
            "30d",
            "tomorrow",
            "2027-02-30",
            "2023-02-29",
            "2027-13-01",
            "27-01-01",
            "2027-1-1",
            "2027-01-31T25:00:00Z",
            "2027-01-31T12:00:00",
            "1969-12-31",
            "2027-01-31T12:00Z",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("2027-01-31"), "{bad}: {e}");
        }
    }
}
