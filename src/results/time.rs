//! Dates in UTC for result files and reports, computed without a time zone database.

/// Seconds since the epoch as a UTC date, "2024-06-05 12:34:56 UTC".
pub fn utc(unix_s: f64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(unix_s);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// Seconds since the epoch the way Java's `Date.toString()` writes it (what
/// HistogramLogWriter puts after StartTime): "Wed Jun 05 12:34:56 UTC 2024".
pub fn java_date(unix_s: f64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, days) = civil(unix_s);
    let dow = DAYS[days.rem_euclid(7) as usize];
    format!(
        "{dow} {} {d:02} {h:02}:{mi:02}:{s:02} UTC {y}",
        MONTHS[(mo - 1) as usize]
    )
}

/// (year, month, day, hour, minute, second, days since epoch) in UTC.
/// Days-to-civil after Howard Hinnant's algorithm.
fn civil(unix_s: f64) -> (i64, u32, u32, u32, u32, u32, i64) {
    let t = if unix_s.is_finite() {
        unix_s.floor() as i64
    } else {
        0
    };
    let days = t.div_euclid(86_400);
    let sod = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (sod / 3600) as u32,
        (sod % 3600 / 60) as u32,
        (sod % 60) as u32,
        days,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_717_590_896.0), "2024-06-05 12:34:56 UTC");
        assert_eq!(java_date(1_717_590_896.0), "Wed Jun 05 12:34:56 UTC 2024");
        assert_eq!(java_date(951_782_400.0), "Tue Feb 29 00:00:00 UTC 2000");
    }
}
