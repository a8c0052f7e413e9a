//! Calendar-aligned UTC usage windows: minute, hour, day, ISO week (Monday 00:00) and
//! month.
//!
//! Owns: [`Window`] and the arithmetic that maps an instant to the window containing it.
//! Pure functions on Unix milliseconds; no clock is read here, so callers pass their
//! (injectable) clock's time.

use serde::{Deserialize, Serialize};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// A usage window, aligned to the UTC calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// From second 0 of the minute.
    Minute,
    /// From minute 0 of the hour.
    Hour,
    /// From 00:00 UTC.
    Day,
    /// From Monday 00:00 UTC (ISO week).
    Week,
    /// From the first of the month, 00:00 UTC.
    Month,
}

impl Window {
    /// All windows, shortest first.
    pub const ALL: [Window; 5] = [
        Window::Minute,
        Window::Hour,
        Window::Day,
        Window::Week,
        Window::Month,
    ];

    /// Its place in [`Window::ALL`] (minute 0, …, month 4): where it goes in per-window
    /// arrays.
    pub fn index(self) -> usize {
        match self {
            Window::Minute => 0,
            Window::Hour => 1,
            Window::Day => 2,
            Window::Week => 3,
            Window::Month => 4,
        }
    }

    /// The name used in keys and messages (`minute`, ..., `month`).
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }

    /// Start (inclusive) of the window containing `unix_ms`.
    pub fn start(self, unix_ms: i64) -> i64 {
        match self {
            Window::Minute => unix_ms.div_euclid(MINUTE) * MINUTE,
            Window::Hour => unix_ms.div_euclid(HOUR) * HOUR,
            Window::Day => unix_ms.div_euclid(DAY) * DAY,
            Window::Week => {
                let days = unix_ms.div_euclid(DAY);
                // 1970-01-01 was a Thursday: days since the previous Monday.
                let since_monday = (days + 3).rem_euclid(7);
                (days - since_monday) * DAY
            }
            Window::Month => {
                let (y, m, _) = civil_from_days(unix_ms.div_euclid(DAY));
                days_from_civil(y, m, 1) * DAY
            }
        }
    }

    /// End (exclusive) of the window containing `unix_ms`: the next window's start.
    pub fn end(self, unix_ms: i64) -> i64 {
        let start = self.start(unix_ms);
        match self {
            Window::Minute => start + MINUTE,
            Window::Hour => start + HOUR,
            Window::Day => start + DAY,
            Window::Week => start + 7 * DAY,
            Window::Month => {
                let (y, m, _) = civil_from_days(start.div_euclid(DAY));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY
            }
        }
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64, min: i64, s: i64) -> i64 {
        days_from_civil(y, m, d) * DAY + h * HOUR + min * MINUTE + s * 1000
    }

    #[test]
    fn civil_round_trips_over_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn windows_align_to_the_utc_calendar() {
        // Wednesday 2026-11-25 04:13:55.250 UTC.
        let t = at(2026, 11, 25, 4, 13, 55) + 250;
        assert_eq!(Window::Minute.start(t), at(2026, 11, 25, 4, 13, 0));
        assert_eq!(Window::Hour.start(t), at(2026, 11, 25, 4, 0, 0));
        assert_eq!(Window::Day.start(t), at(2026, 11, 25, 0, 0, 0));
        assert_eq!(Window::Week.start(t), at(2026, 11, 23, 0, 0, 0), "Monday");
        assert_eq!(Window::Week.end(t), at(2026, 11, 30, 0, 0, 0));
        assert_eq!(Window::Month.start(t), at(2026, 11, 1, 0, 0, 0));
        assert_eq!(Window::Month.end(t), at(2026, 12, 1, 0, 0, 0));
        // December rolls into the next year; February of a leap year has 29 days.
        let dec = at(2026, 12, 31, 23, 59, 59);
        assert_eq!(Window::Month.end(dec), at(2027, 1, 1, 0, 0, 0));
        assert_eq!(
            Window::Month.end(at(2028, 2, 10, 0, 0, 0)),
            at(2028, 3, 1, 0, 0, 0)
        );
        // A Monday at midnight starts its own week; the instant before belongs to the last.
        let monday = at(2026, 11, 30, 0, 0, 0);
        assert_eq!(Window::Week.start(monday), monday);
        assert_eq!(Window::Week.start(monday - 1), at(2026, 11, 23, 0, 0, 0));
    }

    #[test]
    fn every_instant_is_inside_its_window() {
        for t in (0..400 * DAY).step_by(7_777_777) {
            for w in Window::ALL {
                assert!(w.start(t) <= t && t < w.end(t), "{w:?} at {t}");
                assert_eq!(w.start(w.end(t)), w.end(t), "windows tile");
            }
        }
    }
}
