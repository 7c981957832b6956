//! Timestamps as tick files write them, to UTC epoch milliseconds.
//!
//! Hand-written rather than a general date library because it sits on the per-row path of a
//! quarter-million-row file and must accept the variants real exports use: ISO-8601 with `T` or a
//! space, `Z` or a numeric offset, up to nine fraction digits, and MetaTrader's `YYYY.MM.DD`.

use mtml_core::text::quote;

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fff…][Z|±HH:MM]` (also `YYYY.MM.DD`). Text without an offset
/// is UTC. Fractions beyond milliseconds are truncated.
pub fn parse_timestamp_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let q = || quote(text);
    let bytes = text.as_bytes();
    if bytes.len() < 19 {
        return Err(format!("timestamp {} is too short", q()));
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        // Bytes, not text: a character of several bytes may straddle the field's edge.
        let digits = &bytes[range];
        if digits.iter().all(u8::is_ascii_digit) {
            Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
        } else {
            Err(format!("timestamp {} has non-digits in {}", q(), quote(&String::from_utf8_lossy(digits))))
        }
    };
    let date_sep = bytes[4];
    if !(date_sep == b'-' || date_sep == b'.') || bytes[7] != date_sep {
        return Err(format!("timestamp {} is not YYYY-MM-DD", q()));
    }
    if !(bytes[10] == b'T' || bytes[10] == b' ') || bytes[13] != b':' || bytes[16] != b':' {
        return Err(format!("timestamp {} is not YYYY-MM-DD HH:MM:SS", q()));
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("timestamp {} has an impossible date", q()));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("timestamp {} has an impossible time of day", q()));
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(format!("timestamp {} has a bad fraction of a second", q()));
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().map_err(|e| e.to_string())?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "" | "Z" => 0,
        offset if offset.len() == 6 && (offset.starts_with('+') || offset.starts_with('-')) => {
            let o = offset.as_bytes();
            if !(o[1..3].iter().chain(&o[4..6]).all(u8::is_ascii_digit) && o[3] == b':') {
                return Err(format!("bad offset in {}", q()));
            }
            let (hours, mins) = (i64::from((o[1] - b'0') * 10 + (o[2] - b'0')), i64::from((o[4] - b'0') * 10 + (o[5] - b'0')));
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            sign * (hours * 60 + mins)
        }
        other => return Err(format!("timestamp {} has trailing text {}", q(), quote(other))),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {

    #[test]
    fn characters_of_several_bytes_are_refused_not_split() {
        // Found by fuzzing: a Devanagari letter across the seconds field's end, and in an offset.
        for text in ["2014.05.05 06:00:\u{930}0.123", "2014-05-05 06:00:00+0\u{e9}00", "2014-05-05 06:00:00+\u{20ac}:00"] {
            let error = parse_timestamp_ms(text).unwrap_err();
            assert!(error.contains("timestamp") || error.contains("offset"), "{error}");
        }
    }

    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("2014-05-04T19:00:51.815Z", 1_399_230_051_815)]
    #[case("2014-05-04 19:00:51.815", 1_399_230_051_815)]
    #[case("2014-05-04 19:00:51", 1_399_230_051_000)]
    #[case("2013-01-01 22:00:00.295000+00:00", 1_357_077_600_295)]
    #[case("2012-02-01 00:00:00+00:00", 1_328_054_400_000)]
    #[case("2014-05-04T14:00:51.815-05:00", 1_399_230_051_815)]
    #[case("2014.05.04 19:00:51.815", 1_399_230_051_815)]
    #[case("2020-02-29 00:00:00", 1_582_934_400_000)]
    #[case("1970-01-01T00:00:00Z", 0)]
    fn parses_real_formats(#[case] text: &str, #[case] expected: i64) {
        assert_eq!(parse_timestamp_ms(text), Ok(expected));
    }

    #[rstest]
    #[case("2014-13-04 19:00:51", "impossible date")]
    #[case("2019-02-29 00:00:00", "impossible date")]
    #[case("2014-05-04 24:00:00", "impossible time")]
    #[case("2014/05/04 19:00:51", "not YYYY-MM-DD")]
    #[case("yesterday", "too short")]
    #[case("2014-05-04 19:00:51.", "bad fraction")]
    #[case("2014-05-04 19:00:51 UTC", "trailing text")]
    fn refuses_bad_timestamps_with_the_reason(#[case] text: &str, #[case] reason: &str) {
        let error = parse_timestamp_ms(text).unwrap_err();
        assert!(error.contains(reason), "{error}");
    }
}
