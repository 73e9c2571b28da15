//! Community days: which instants belong to which day, in the community
//! timezone with its cut-over hour (the same days check-ins use).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

pub use crate::rules::checkin::community_day;

/// The instant a community day starts. On a DST gap the first valid local
/// instant after the cut-over is used; on an overlap, the earlier one.
pub fn day_start(day: NaiveDate, tz: Tz, cutover_hour: u32) -> DateTime<Utc> {
    let mut local =
        day.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::hours(cutover_hour.into());
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&local).earliest() {
            return at.with_timezone(&Utc);
        }
        local += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&local)
}

/// A run of consecutive community days `first..=last` to (re)compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayWindow {
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub tz: Tz,
    pub cutover_hour: u32,
}

impl DayWindow {
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let first = self.first;
        let n = (self.last - self.first).num_days().max(-1) + 1;
        (0..n).map(move |i| first + Duration::days(i))
    }

    /// First instant of the window.
    pub fn start(&self) -> DateTime<Utc> {
        day_start(self.first, self.tz, self.cutover_hour)
    }

    /// First instant after the window.
    pub fn end(&self) -> DateTime<Utc> {
        day_start(self.last + Duration::days(1), self.tz, self.cutover_hour)
    }

    /// The window day a unix instant falls on, if any.
    pub fn day_of(&self, at: i64) -> Option<NaiveDate> {
        let at = DateTime::from_timestamp(at, 0)?;
        let day = community_day(at, self.tz, self.cutover_hour);
        (self.first..=self.last).contains(&day).then_some(day)
    }

    /// The end of `day` (first instant of the next day).
    pub fn end_of(&self, day: NaiveDate) -> DateTime<Utc> {
        day_start(day + Duration::days(1), self.tz, self.cutover_hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn shanghai_midnight_is_16_utc_the_day_before() {
        let window = DayWindow {
            first: d("2026-03-01"),
            last: d("2026-03-02"),
            tz: Shanghai,
            cutover_hour: 0,
        };
        assert_eq!(
            window.start(),
            Utc.with_ymd_and_hms(2026, 2, 28, 16, 0, 0).unwrap()
        );
        // 23:59:59 and 00:00:00 local fall on different days.
        let before = Utc.with_ymd_and_hms(2026, 3, 1, 15, 59, 59).unwrap();
        let after = before + Duration::seconds(1);
        assert_eq!(window.day_of(before.timestamp()), Some(d("2026-03-01")));
        assert_eq!(window.day_of(after.timestamp()), Some(d("2026-03-02")));
        // Outside the window.
        assert_eq!(
            window.day_of((window.end()).timestamp()),
            None,
            "the end is exclusive"
        );
        assert_eq!(window.day_of(window.start().timestamp() - 1), None);
        assert_eq!(window.days().count(), 2);
    }

    #[test]
    fn cutover_hour_moves_the_boundary() {
        let window = DayWindow {
            first: d("2026-03-02"),
            last: d("2026-03-02"),
            tz: Shanghai,
            cutover_hour: 4,
        };
        // 03:59 Shanghai on the 3rd still belongs to the 2nd.
        let late = Utc.with_ymd_and_hms(2026, 3, 2, 19, 59, 0).unwrap();
        assert_eq!(window.day_of(late.timestamp()), Some(d("2026-03-02")));
        assert_eq!(window.end(), late + Duration::minutes(1));
    }

    #[test]
    fn a_dst_gap_start_is_the_first_valid_instant() {
        // New York skips 02:00-03:00 on 2026-03-08.
        let tz: Tz = "America/New_York".parse().unwrap();
        let start = day_start(d("2026-03-08"), tz, 2);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap());
    }
}
