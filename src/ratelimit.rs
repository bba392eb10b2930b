//! Parsing of server wait hints (`Retry-After`, `X-RateLimit-Reset`) and RFC 3339 timestamps.
//!
//! The calendar math is proleptic Gregorian in UTC and ignores leap seconds,
//! as Unix time does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;

/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const DAYS_FROM_YEAR_0_MARCH_TO_EPOCH: i64 = 719_468;

/// Days in one 400-year cycle of the Gregorian calendar.
const DAYS_PER_400_YEARS: i64 = 146_097;

const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Parses a `Retry-After` header value into the time left to wait from `now`.
///
/// The value is either delta-seconds ("120") or an IMF-fixdate
/// ("Wed, 21 Oct 2015 07:28:00 GMT"). A date at or before `now` gives
/// `Duration::ZERO`. Delta-seconds too large for a `u64` saturate to
/// `u64::MAX` seconds, so callers should cap the result. Anything else gives `None`.
///
/// NOTE: the obsolete RFC 850 and asctime forms of HTTP-date are not parsed
/// and give `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }

    let target = parse_imf_fixdate(value)?;
    Some(duration_until(target, now))
}

/// Parses an `X-RateLimit-Reset` header value into the time left to wait from `now`.
///
/// Mastodon sends an RFC 3339 timestamp such as "2026-12-04T21:45:00.000000Z".
/// Any numeric offset is accepted too (see [`parse_rfc3339`]). A time at or
/// before `now` gives `Duration::ZERO`, and a value that is not a valid
/// timestamp gives `None`.
pub fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let target = parse_rfc3339(value.trim())?;
    Some(duration_until(target, now))
}

/// Parses an RFC 3339 timestamp, such as "2026-12-04T21:45:00.5+01:00", into a `SystemTime`.
///
/// Accepted forms: a four-digit year, `T`, `t` or a space between date and
/// time, an optional fraction of any length (digits past nanoseconds are
/// dropped), and a zone of `Z`, `z`, `±HH:MM` or `±HHMM`. An offset of
/// "-00:00" is read as UTC. A leap second (second 60) is read as the first
/// second of the next minute. Impossible dates and times such as month 13,
/// February 30 or hour 24 give `None`, as does surrounding whitespace.
pub fn parse_rfc3339(value: &str) -> Option<SystemTime> {
    let bytes = value.as_bytes();
    let mut reader = Reader { bytes, pos: 0 };

    let year = reader.digits(4)?;
    reader.expect(b"-")?;
    let month = reader.digits(2)?;
    reader.expect(b"-")?;
    let day = reader.digits(2)?;
    reader.expect(b"Tt ")?;
    let hour = reader.digits(2)?;
    reader.expect(b":")?;
    let minute = reader.digits(2)?;
    reader.expect(b":")?;
    let second = reader.digits(2)?;

    let nanos = if reader.peek() == Some(b'.') {
        reader.pos += 1;
        reader.fraction_as_nanos()?
    } else {
        0
    };

    let offset_seconds = reader.zone_offset()?;
    if reader.pos != bytes.len() {
        return None;
    }

    let seconds = seconds_since_epoch(year, month, day, hour, minute, second)? - offset_seconds;
    system_time_from_parts(seconds, nanos)
}

/// Formats `time` as "YYYY-MM-DDTHH:MM:SSZ" in UTC, dropping any fraction of a second.
///
/// Years past 9999 are printed with more digits, and years before 0 with a minus sign.
pub fn format_rfc3339(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            // Round toward the past, so 0.5 s before the epoch prints as 23:59:59.
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            let partial = i64::from(before.subsec_nanos() > 0);
            -whole.saturating_add(partial)
        }
    };

    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Parses an IMF-fixdate such as "Sun, 06 Nov 1994 08:49:37 GMT".
///
/// Day and month names are matched without regard to case. The day name is
/// checked against the list of names but not against the date, because the
/// date and time fields alone fix the instant.
fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    let bytes = value.as_bytes();
    if bytes.len() != 29 {
        return None;
    }

    let day_name = value.get(0..3)?;
    if !DAY_NAMES
        .iter()
        .any(|name| name.eq_ignore_ascii_case(day_name))
    {
        return None;
    }
    let month_name = value.get(8..11)?;
    let month_index = MONTH_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(month_name))?;
    let month = u32::try_from(month_index).ok()? + 1;

    let mut reader = Reader { bytes, pos: 3 };
    reader.expect(b",")?;
    reader.expect(b" ")?;
    let day = reader.digits(2)?;
    reader.expect(b" ")?;
    reader.pos += 3;
    reader.expect(b" ")?;
    let year = reader.digits(4)?;
    reader.expect(b" ")?;
    let hour = reader.digits(2)?;
    reader.expect(b":")?;
    let minute = reader.digits(2)?;
    reader.expect(b":")?;
    let second = reader.digits(2)?;
    reader.expect(b" ")?;
    if value.get(reader.pos..)? != "GMT" {
        return None;
    }

    let seconds = seconds_since_epoch(year, month, day, hour, minute, second)?;
    system_time_from_parts(seconds, 0)
}

/// Returns how long from `now` until `target`, or zero when `target` is not in the future.
fn duration_until(target: SystemTime, now: SystemTime) -> Duration {
    target.duration_since(now).unwrap_or(Duration::ZERO)
}

/// Validates a UTC calendar date and time and converts it to seconds since the Unix epoch.
fn seconds_since_epoch(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<i64> {
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }

    let days = days_from_civil(year, month, day);
    Some(days * SECONDS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second))
}

fn system_time_from_parts(seconds: i64, nanos: u32) -> Option<SystemTime> {
    let whole = if seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(seconds.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Converts a proleptic Gregorian date to days since 1970-01-01.
///
/// The count runs in years that start on March 1, so the leap day is the last
/// day of its year and each month's first day follows from a linear formula.
/// `month` must be 1 to 12.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let march_year = if month <= 2 { year - 1 } else { year };
    let era = march_year.div_euclid(400);
    let year_of_era = march_year - era * 400;

    // Months counted from March = 0, so January and February are 10 and 11.
    let march_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * march_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;

    era * DAYS_PER_400_YEARS + day_of_era - DAYS_FROM_YEAR_0_MARCH_TO_EPOCH
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// This is the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + DAYS_FROM_YEAR_0_MARCH_TO_EPOCH;
    let era = shifted.div_euclid(DAYS_PER_400_YEARS);
    let day_of_era = shifted - era * DAYS_PER_400_YEARS;

    // Remove the leap days before `day_of_era` so that whole years are 365 days.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };

    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both values are in range by construction: day 1..=31, month 1..=12.
    (year, month as u32, day as u32)
}

/// Cursor over ASCII bytes for the fixed-layout timestamp formats.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Consumes one byte if it is any of `allowed`.
    fn expect(&mut self, allowed: &[u8]) -> Option<u8> {
        let byte = self.peek().filter(|b| allowed.contains(b))?;
        self.pos += 1;
        Some(byte)
    }

    /// Consumes exactly `count` ASCII digits and returns their value.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let field = self.bytes.get(self.pos..self.pos + count)?;
        let mut value = 0u32;
        for &byte in field {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(byte - b'0');
        }
        self.pos += count;
        Some(value)
    }

    /// Consumes one or more fraction digits and returns them as nanoseconds.
    fn fraction_as_nanos(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut nanos = 0u32;
        while let Some(byte) = self.peek().filter(u8::is_ascii_digit) {
            if self.pos - start < 9 {
                nanos = nanos * 10 + u32::from(byte - b'0');
            }
            self.pos += 1;
        }

        let digit_count = self.pos - start;
        if digit_count == 0 {
            return None;
        }
        for _ in digit_count..9 {
            nanos *= 10;
        }
        Some(nanos)
    }

    /// Consumes a zone designator and returns its offset east of UTC in seconds.
    fn zone_offset(&mut self) -> Option<i64> {
        let sign = match self.expect(b"Zz+-")? {
            b'Z' | b'z' => return Some(0),
            b'+' => 1,
            _ => -1,
        };

        let hours = self.digits(2)?;
        if self.peek() == Some(b':') {
            self.pos += 1;
        }
        let minutes = self.digits(2)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        Some(sign * i64::from(hours * 3600 + minutes * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a `SystemTime` from signed Unix seconds.
    fn at(seconds: i64) -> SystemTime {
        system_time_from_parts(seconds, 0).unwrap()
    }

    /// Converts a `SystemTime` back to signed Unix seconds and nanoseconds.
    fn unix(time: SystemTime) -> (i64, u32) {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => (after.as_secs() as i64, after.subsec_nanos()),
            Err(before) => {
                let before = before.duration();
                assert_eq!(
                    before.subsec_nanos(),
                    0,
                    "test helper expects whole seconds"
                );
                (-(before.as_secs() as i64), 0)
            }
        }
    }

    // Expected values were computed with GNU `date -u -d TIMESTAMP +%s`.
    const KNOWN: [(&str, i64); 9] = [
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59Z", -1),
        ("1900-03-01T00:00:00Z", -2_203_891_200),
        ("0001-01-01T00:00:00Z", -62_135_596_800),
        ("2000-02-29T00:00:00Z", 951_782_400),
        ("2024-02-29T12:00:00Z", 1_709_208_000),
        ("2026-12-04T21:45:00Z", 1_796_420_700),
        ("2400-02-29T00:00:00Z", 13_574_563_200),
        ("9999-12-31T23:59:59Z", 253_402_300_799),
    ];

    #[test]
    fn rfc3339_known_epoch_values() {
        for (text, seconds) in KNOWN {
            assert_eq!(parse_rfc3339(text).map(unix), Some((seconds, 0)), "{text}");
        }
    }

    #[test]
    fn rfc3339_format_known_values() {
        for (text, seconds) in KNOWN {
            assert_eq!(format_rfc3339(at(seconds)), text, "{seconds}");
        }
    }

    #[test]
    fn format_drops_fraction() {
        let time = UNIX_EPOCH + Duration::new(1_796_420_700, 999_999_999);
        assert_eq!(format_rfc3339(time), "2026-12-04T21:45:00Z");

        let before_epoch = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format_rfc3339(before_epoch), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn civil_days_round_trip() {
        // Covers every day from 1600 to 2500, including all century rules.
        let first = days_from_civil(1600, 1, 1);
        let last = days_from_civil(2500, 12, 31);
        let mut expected = (1600, 1, 1);
        for days in first..=last {
            let date = civil_from_days(days);
            assert_eq!(date, expected, "day {days}");
            assert_eq!(days_from_civil(date.0, date.1, date.2), days);

            let (year, month, day) = expected;
            expected = if day < days_in_month(year, month) {
                (year, month, day + 1)
            } else if month < 12 {
                (year, month + 1, 1)
            } else {
                (year + 1, 1, 1)
            };
        }
    }

    #[test]
    fn rfc3339_leap_years() {
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339("2400-02-29T00:00:00Z").is_some());
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("1900-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2100-02-29T00:00:00Z"), None);
    }

    #[test]
    fn rfc3339_impossible_values() {
        let invalid = [
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-12-00T00:00:00Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04T21:60:00Z",
            "2026-12-04T21:45:61Z",
            "2026-12-04T21:45:00+24:00",
            "2026-12-04T21:45:00+01:60",
        ];
        for text in invalid {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn rfc3339_fractions() {
        let base = 1_796_420_700;
        let cases = [
            ("2026-12-04T21:45:00.000000Z", 0),
            ("2026-12-04T21:45:00.5Z", 500_000_000),
            ("2026-12-04T21:45:00.123456Z", 123_456_000),
            ("2026-12-04T21:45:00.123456789Z", 123_456_789),
            ("2026-12-04T21:45:00.1234567891234Z", 123_456_789),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse_rfc3339(text).map(unix), Some((base, nanos)), "{text}");
        }
        assert_eq!(parse_rfc3339("2026-12-04T21:45:00.Z"), None);
    }

    #[test]
    fn rfc3339_offsets() {
        let cases = [
            ("2026-12-04T21:45:00+00:00", 1_796_420_700),
            ("2026-12-04T21:45:00-00:00", 1_796_420_700),
            ("2026-12-04T21:45:00z", 1_796_420_700),
            ("2026-12-04t21:45:00Z", 1_796_420_700),
            ("2026-12-04 21:45:00Z", 1_796_420_700),
            ("2026-12-04T21:45:00+02:00", 1_796_413_500),
            ("2026-12-04T21:45:00+0200", 1_796_413_500),
            ("2026-12-04T21:45:00-05:30", 1_796_440_500),
            ("2026-12-04T21:45:00.25-05:30", 1_796_440_500),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_rfc3339(text).map(|t| unix(t).0),
                Some(seconds),
                "{text}"
            );
        }
    }

    #[test]
    fn rfc3339_leap_second() {
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z").map(unix),
            parse_rfc3339("2017-01-01T00:00:00Z").map(unix)
        );
        assert_eq!(
            parse_rfc3339("2017-01-01T00:00:00Z").map(unix),
            Some((1_483_228_800, 0))
        );
    }

    #[test]
    fn rfc3339_garbage() {
        let invalid = [
            "",
            "garbage",
            "2026-12-04",
            "2026-12-04T21:45:00",
            "2026-12-04T21:45Z",
            "2026-12-04T21:45:00ZZ",
            "2026-12-04T21:45:00+02",
            "2026-12-04T21:45:00+2:00",
            "26-12-04T21:45:00Z",
            "+2026-12-04T21:45:00Z",
            "2026/12/04T21:45:00Z",
            " 2026-12-04T21:45:00Z",
            "2026-12-04T21:45:00Z ",
            "2026-12-04T21:45:00.\u{664}Z",
            "1796420700",
        ];
        for text in invalid {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }

    #[test]
    fn rate_limit_reset_future_and_past() {
        let now = at(1_796_420_640);
        assert_eq!(
            parse_rate_limit_reset("2026-12-04T21:45:00.000000Z", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_rate_limit_reset(" 2026-12-04T21:45:00.250Z\r\n", now),
            Some(Duration::from_millis(60_250))
        );
        assert_eq!(
            parse_rate_limit_reset("2026-12-04T22:45:00+01:00", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_rate_limit_reset("2026-12-04T21:00:00Z", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_rate_limit_reset("2026-12-04T21:44:00Z", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_rate_limit_reset("soon", now), None);
        assert_eq!(parse_rate_limit_reset("", now), None);
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = at(1_796_420_700);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 5 ", now), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date() {
        // 2015-10-21T07:28:00Z is 1445412480 (GNU date).
        let now = at(1_445_412_480 - 90);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("wed, 21 oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(90))
        );
        // 1994-11-06T08:49:37Z is 784111777 (GNU date), so this date is in the past.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT").map(unix),
            Some((784_111_777, 0))
        );
    }

    #[test]
    fn retry_after_garbage() {
        let now = at(1_796_420_700);
        let invalid = [
            "",
            "soon",
            "-5",
            "1.5",
            "12s",
            "Wed, 21 Oct 2015 07:28:00 UTC",
            "Xyz, 21 Oct 2015 07:28:00 GMT",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 31 Nov 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 24:28:00 GMT",
            "Wed, 21 Oct 2015 07:28 GMT",
            "Wed,  21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "2026-12-04T21:45:00Z",
            "Wed, 21 Oct 2015 07:28:00 GMTé",
            "Wéd, 21 Oct 2015 07:28:00 GMT",
        ];
        for text in invalid {
            assert_eq!(parse_retry_after(text, now), None, "{text:?}");
        }
    }
}
