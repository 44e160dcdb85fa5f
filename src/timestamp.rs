//! UTC timestamps in RFC 3339 with microseconds (`2026-11-24T04:31:58.123456Z`).
//!
//! std can tell the time since the Unix epoch but has no calendar, so the
//! conversion between day numbers and dates is done here, after Howard
//! Hinnant's `civil_from_days` / `days_from_civil` algorithms (proleptic
//! Gregorian calendar, eras of 400 years). Years are limited to 1970..=9999:
//! RFC 3339 has four-digit years, and a clock before 1970 is broken.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: u64 = 86_400;
/// Days from 1970-01-01 to 10000-01-01, the first instant we refuse.
const DAYS_TO_YEAR_10000: u64 = 2_932_897;

/// A moment in UTC, to the microsecond, between 1970 and the end of 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    since_epoch: Duration,
}

impl Timestamp {
    /// Converts a `SystemTime`, or returns `None` if it is before 1970 or
    /// after 9999 and so cannot be written as RFC 3339.
    #[must_use]
    pub fn from_system_time(time: SystemTime) -> Option<Self> {
        let since = time.duration_since(UNIX_EPOCH).ok()?;
        let since_epoch = Duration::new(since.as_secs(), since.subsec_micros() * 1000);
        let in_range = since.as_secs() / SECONDS_PER_DAY < DAYS_TO_YEAR_10000;
        in_range.then_some(Timestamp { since_epoch })
    }

    /// Returns the same moment as a `SystemTime`.
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + self.since_epoch
    }

    /// The text form, built without going through `fmt`: the server writes
    /// one per exchange.
    #[must_use]
    pub fn to_rfc3339(self) -> Rfc3339 {
        let seconds = self.since_epoch.as_secs();
        let (year, month, day) = civil_from_days(seconds / SECONDS_PER_DAY);
        let in_day = seconds % SECONDS_PER_DAY;
        let micros = u64::from(self.since_epoch.subsec_micros());
        let values = [year, month, day, in_day / 3600, in_day / 60 % 60, in_day % 60, micros];
        let mut text = *FORM;
        for (field, value) in FIELDS.into_iter().zip(values) {
            put_digits(&mut text[field], value);
        }
        Rfc3339(text)
    }

    /// Parses exactly the form this module writes: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        // A digit where the form has a 0, its separators everywhere else.
        let fits = |(&c, &form): (&u8, &u8)| c == form || (form == b'0' && c.is_ascii_digit());
        if b.len() != RFC3339_LEN || !b.iter().zip(FORM).all(fits) {
            return None;
        }
        let [year, month, day, hour, minute, second, micros] = FIELDS.map(|at| decimal(&b[at]));
        // Day numbers count from 1970-01-01; months and days count from 1.
        let counted = year >= 1970 && month >= 1 && day >= 1;
        let days = counted.then(|| days_from_civil(year, month, day))?;
        // A date exists if its day number gives it back: not the 13th month,
        // not 31 April, not 29 February 2025.
        if civil_from_days(days) != (year, month, day) || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let seconds = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second;
        let since_epoch = Duration::from_secs(seconds) + Duration::from_micros(micros);
        Some(Timestamp { since_epoch })
    }
}

/// When something arrived, on both clocks: the monotonic one that rules
/// are judged on, and the wall clock that replies state. Knowing both from
/// the read on saves converting between them for the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Arrival {
    /// The present moment.
    pub(crate) fn now() -> Arrival {
        Arrival { mono: Instant::now(), wall: SystemTime::now() }
    }

    /// The arrival the kernel stamped (`stamp`), placed on the monotonic
    /// clock by its distance from the wall clock now; with no stamp, or one
    /// from the future (the wall clock stepped back), the present moment.
    pub(crate) fn stamped(stamp: Option<SystemTime>) -> Arrival {
        let now = Arrival::now();
        let placed = stamp.and_then(|wall| {
            let mono = now.mono.checked_sub(now.wall.duration_since(wall).ok()?)?;
            Some(Arrival { mono, wall })
        });
        placed.unwrap_or(now)
    }
}

/// How long the text is: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const RFC3339_LEN: usize = 27;
/// The text's form: its separators, and a 0 where each digit goes.
const FORM: &[u8; RFC3339_LEN] = b"0000-00-00T00:00:00.000000Z";
/// Where its numbers are: year, month, day, hour, minute, second, microsecond.
const FIELDS: [Range<usize>; 7] = [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..26];

/// A timestamp's text, `YYYY-MM-DDTHH:MM:SS.ffffffZ`: ASCII in a fixed
/// array, so that the server's one stamp per exchange allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339([u8; RFC3339_LEN]);

impl Rfc3339 {
    /// The text itself.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written, so this never
        // fails; the empty fallback is only for the type checker.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Writes `value` in decimal, right-aligned and zero-padded, into `field`.
fn put_digits(field: &mut [u8], mut value: u64) {
    for digit in field.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_rfc3339().as_str())
    }
}

/// The number that ASCII `digits` write.
fn decimal(digits: &[u8]) -> u64 {
    digits.iter().fold(0, |n, &digit| n * 10 + u64::from(digit - b'0'))
}

/// Day number since 1970-01-01 to (year, month, day). Only non-negative day
/// numbers reach here, so unsigned arithmetic with a March-based year works.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to day number since 1970-01-01; `year` is at least 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year % 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, micros: u64) -> String {
        let time = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros);
        Timestamp::from_system_time(time).unwrap().to_string()
    }

    #[test]
    fn epoch() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn leap_day_2000() {
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
    }

    #[test]
    fn end_of_2024() {
        assert_eq!(at(1_735_689_599, 999_999), "2024-12-31T23:59:59.999999Z");
        assert_eq!(at(1_735_689_600, 0), "2025-01-01T00:00:00.000000Z");
    }

    #[test]
    fn no_leap_day_in_2100() {
        // 2100 is divisible by 100 and not by 400: February has 28 days.
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000000Z");
    }

    #[test]
    fn last_representable_moment_and_beyond() {
        let end = 253_402_300_799;
        assert_eq!(at(end, 999_999), "9999-12-31T23:59:59.999999Z");
        let past = UNIX_EPOCH + Duration::from_secs(end + 1);
        assert_eq!(Timestamp::from_system_time(past), None);
    }

    #[test]
    fn before_1970_is_refused() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(Timestamp::from_system_time(before), None);
    }

    #[test]
    fn nanoseconds_are_truncated_not_rounded() {
        let time = UNIX_EPOCH + Duration::from_nanos(1_999_999_999);
        let stamp = Timestamp::from_system_time(time).unwrap();
        assert_eq!(stamp.to_string(), "1970-01-01T00:00:01.999999Z");
    }

    #[test]
    fn every_day_round_trips_through_parse() {
        // One moment on each day across four centuries, including 2000 and 2100.
        for day in (0..DAYS_TO_YEAR_10000).step_by(7).chain([DAYS_TO_YEAR_10000 - 1]) {
            let time = UNIX_EPOCH + Duration::from_secs(day * SECONDS_PER_DAY + 45_296);
            let stamp = Timestamp::from_system_time(time).unwrap();
            assert_eq!(Timestamp::parse(&stamp.to_string()), Some(stamp));
        }
    }

    #[test]
    fn parse_refuses_malformed_text() {
        for bad in [
            "",
            "2026-11-24T04:31:58Z",
            "2026-11-24 04:31:58.123456Z",
            "2026-13-01T00:00:00.000000Z",
            "2025-02-29T00:00:00.000000Z",
            "2026-11-24T24:00:00.000000Z",
            "1969-12-31T23:59:59.999999Z",
            "2026-11-24T04:31:58.12345xZ",
            "+026-11-24T04:31:58.123456Z",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parse_refuses_dates_that_do_not_exist() {
        for bad in [
            "1970-00-15T00:00:00.000000Z",
            "2026-04-00T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "2100-02-29T00:00:00.000000Z",
            "9999-13-01T00:00:00.000000Z",
            "2026-01-99T00:00:00.000000Z",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
        assert!(Timestamp::parse("2000-02-29T00:00:00.000000Z").is_some());
    }
}
