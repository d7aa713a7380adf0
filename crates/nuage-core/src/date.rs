//! Calendar arithmetic for the few places that print dates (the CLI, HTTP date headers in
//! tests), so that no date library is needed for it.

/// The proleptic Gregorian date `(year, month 1..=12, day 1..=31)` of a day counted from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        for (days, date) in
            [(0, (1970, 1, 1)), (11_016, (2000, 2, 29)), (-1, (1969, 12, 31)), (20_780, (2026, 11, 23))]
        {
            assert_eq!(super::civil(days), date, "{days}");
        }
    }
}
