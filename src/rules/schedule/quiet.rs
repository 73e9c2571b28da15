//! Quiet hours (免打扰): a daily wall-clock window in which pushes are held back.

use std::fmt;

use chrono::{DateTime, NaiveTime, Utc};

use super::ValidSchedule;

/// A daily window `[start, end)` on the wall clock; wraps midnight when
/// `end < start` (`22:00-08:00` covers 22:00 up to, not including, 08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    /// Parses `"HH:MM-HH:MM"`. An empty window (start equal to end) is refused:
    /// it is unclear whether it means "never" or "always".
    pub fn parse(text: &str) -> Result<Self, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("expected \"HH:MM-HH:MM\", got {text:?}"))?;
        let parse_time = |part: &str| {
            NaiveTime::parse_from_str(part.trim(), "%H:%M")
                .map_err(|_| format!("{:?} is not a time of day like 08:00", part.trim()))
        };
        let (start, end) = (parse_time(start)?, parse_time(end)?);
        if start == end {
            return Err("quiet hours start and end at the same time".to_owned());
        }
        Ok(Self { start, end })
    }

    /// When the window opens, on the wall clock.
    pub fn start(&self) -> NaiveTime {
        self.start
    }

    /// When the window closes (exclusive), on the wall clock.
    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// Whether the wall-clock time `time` is inside the window.
    pub fn contains(&self, time: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// Whether `at` falls in the schedule's quiet hours, read on its wall clock.
/// False when the schedule has none.
pub fn in_quiet_hours(schedule: &ValidSchedule, at: DateTime<Utc>) -> bool {
    schedule
        .quiet_hours()
        .is_some_and(|quiet| quiet.contains(at.with_timezone(&schedule.timezone()).time()))
}

/// Whether a push at `at` must be held back: inside quiet hours and the
/// schedule does not set `allow_quiet_hours`.
pub fn suppressed_by_quiet_hours(schedule: &ValidSchedule, at: DateTime<Utc>) -> bool {
    !schedule.allow_quiet_hours() && in_quiet_hours(schedule, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(hour: u32, minute: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(hour, minute, 0).unwrap()
    }

    #[test]
    fn window_wrapping_midnight_covers_late_evening_and_early_morning() {
        let quiet = QuietHours::parse("22:00-08:00").unwrap();
        assert!(quiet.contains(time(22, 0)));
        assert!(quiet.contains(time(23, 59)));
        assert!(quiet.contains(time(0, 0)));
        assert!(quiet.contains(time(7, 59)));
        assert!(!quiet.contains(time(8, 0)));
        assert!(!quiet.contains(time(12, 0)));
        assert!(!quiet.contains(time(21, 59)));
    }

    #[test]
    fn window_within_one_day_is_half_open() {
        let quiet = QuietHours::parse("12:00-13:30").unwrap();
        assert!(!quiet.contains(time(11, 59)));
        assert!(quiet.contains(time(12, 0)));
        assert!(quiet.contains(time(13, 29)));
        assert!(!quiet.contains(time(13, 30)));
        assert!(!quiet.contains(time(0, 0)));
    }

    #[test]
    fn malformed_or_empty_windows_are_refused() {
        for text in ["22:00", "22:00-25:00", "ten-eleven", "08:00-08:00", ""] {
            assert!(
                QuietHours::parse(text).is_err(),
                "{text:?} should be refused"
            );
        }
        assert_eq!(
            QuietHours::parse(" 22:00 - 08:00 ").unwrap().to_string(),
            "22:00-08:00"
        );
    }
}
