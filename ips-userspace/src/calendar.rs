//! Civil dates (proleptic Gregorian, UTC) from and to Unix time, without a time-zone database:
//! the parsers date log lines with it and the CLI prints times with it. [`now_ms`] is the one
//! wall clock of the daemon.

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The civil year of Unix milliseconds.
pub fn year_of(ms: i64) -> i64 {
    civil_from_days(ms.div_euclid(86_400_000)).0
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS`, with `sep` between date and time and the
/// fraction of a second to `frac_digits` digits (0, 3 or 6).
pub fn format(ms_or_us: i64, per_second: i64, sep: char, frac_digits: usize) -> String {
    let secs = ms_or_us.div_euclid(per_second);
    let frac = ms_or_us.rem_euclid(per_second);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac_digits > 0 {
        out += &format!(".{frac:0frac_digits$}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [-1000, 0, 11_017, 20_419, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(year_of(1_795_737_600_000), 2026);
        assert_eq!(
            format(1_795_000_000_000, 1000, ' ', 0),
            "2026-11-18 11:06:40"
        );
        assert_eq!(
            format(1_700_000_000_123_456, 1_000_000, 'T', 6),
            "2023-11-14T22:13:20.123456"
        );
    }
}
