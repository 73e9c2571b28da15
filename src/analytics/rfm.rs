//! RFM: recency, frequency and monetary scores over the community's buyers,
//! and the classic eight segments. Pure: the analytics job loads each
//! buyer's purchase summary and passes `today` as a value. The exact rule is
//! documented in `docs/rfm.md`; the tests here pin it.

use chrono::NaiveDate;
use serde::Serialize;

/// One buyer's purchases, as the order table sums them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchases {
    pub user_id: String,
    /// Community day of the latest order with a positive amount.
    pub last_order_day: NaiveDate,
    /// Orders with a positive amount (refunds are not orders bought).
    pub orders: i64,
    /// Net amount in fen: orders minus refunds.
    pub monetary: i64,
}

/// One buyer's scores (1 = worst fifth, 5 = best fifth) and segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RfmScore {
    pub user_id: String,
    pub recency_days: i64,
    pub frequency: i64,
    pub monetary: i64,
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub segment: Segment,
}

/// The classic eight RFM segments; "high" means a score of 3 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// R high, F high, M high.
    ImportantValue,
    /// R low, F high, M high: bought often and much, not lately.
    ImportantRecall,
    /// R high, F low, M high: bought much recently, but rarely.
    ImportantDevelop,
    /// R low, F low, M high: one big purchase long ago.
    ImportantRetain,
    /// R high, F high, M low.
    Potential,
    /// R high, F low, M low.
    New,
    /// R low, F high, M low.
    GeneralMaintain,
    /// R low, F low, M low.
    Lost,
}

impl Segment {
    pub const ALL: [Segment; 8] = [
        Segment::ImportantValue,
        Segment::ImportantRecall,
        Segment::ImportantDevelop,
        Segment::ImportantRetain,
        Segment::Potential,
        Segment::New,
        Segment::GeneralMaintain,
        Segment::Lost,
    ];

    /// The segment's name as operators know it (stored and shown).
    pub fn label(self) -> &'static str {
        match self {
            Segment::ImportantValue => "重要价值",
            Segment::ImportantRecall => "重要唤回",
            Segment::ImportantDevelop => "重要深耕",
            Segment::ImportantRetain => "重要挽留",
            Segment::Potential => "潜力",
            Segment::New => "新客",
            Segment::GeneralMaintain => "一般维持",
            Segment::Lost => "流失",
        }
    }

    pub fn parse(label: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|s| s.label() == label)
    }

    /// The segment of three scores.
    pub fn of(r: u8, f: u8, m: u8) -> Segment {
        let high = |score: u8| score >= HIGH;
        match (high(r), high(f), high(m)) {
            (true, true, true) => Segment::ImportantValue,
            (false, true, true) => Segment::ImportantRecall,
            (true, false, true) => Segment::ImportantDevelop,
            (false, false, true) => Segment::ImportantRetain,
            (true, true, false) => Segment::Potential,
            (true, false, false) => Segment::New,
            (false, true, false) => Segment::GeneralMaintain,
            (false, false, false) => Segment::Lost,
        }
    }
}

/// Serialized (API, CSV) by its label.
impl Serialize for Segment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// A score at or above this is "high".
pub const HIGH: u8 = 3;

/// Quintile score of each value: values are ranked ascending (ties share the
/// lowest rank of their value) and rank `i` of `n` scores `1 + 5i/n`. So the
/// lowest fifth scores 1 and the highest fifth 5; equal values score equal.
fn quintiles(values: &[i64]) -> Vec<u8> {
    let n = values.len();
    let mut sorted: Vec<i64> = values.to_vec();
    sorted.sort_unstable();
    values
        .iter()
        .map(|value| {
            let rank = sorted.partition_point(|v| v < value);
            (1 + rank * 5 / n) as u8
        })
        .collect()
}

/// Scores every buyer. Recency scores higher the fewer days since the last
/// order; frequency and monetary score higher the larger they are.
pub fn score(buyers: &[Purchases], today: NaiveDate) -> Vec<RfmScore> {
    if buyers.is_empty() {
        return Vec::new();
    }
    let recency: Vec<i64> = buyers
        .iter()
        .map(|b| (today - b.last_order_day).num_days().max(0))
        .collect();
    // Fewer days is better: rank the negated value.
    let r = quintiles(&recency.iter().map(|d| -d).collect::<Vec<_>>());
    let f = quintiles(&buyers.iter().map(|b| b.orders).collect::<Vec<_>>());
    let m = quintiles(&buyers.iter().map(|b| b.monetary).collect::<Vec<_>>());
    buyers
        .iter()
        .enumerate()
        .map(|(i, buyer)| RfmScore {
            user_id: buyer.user_id.clone(),
            recency_days: recency[i],
            frequency: buyer.orders,
            monetary: buyer.monetary,
            r: r[i],
            f: f[i],
            m: m[i],
            segment: Segment::of(r[i], f[i], m[i]),
        })
        .collect()
}

/// Sums the orders per buyer; `day_of` maps paid_at to a community day.
/// People whose only orders are refunds are not buyers.
pub fn purchases(
    orders: &[(String, i64, i64)],
    day_of: impl Fn(i64) -> NaiveDate,
) -> Vec<Purchases> {
    let mut by_user: std::collections::BTreeMap<&str, (Option<i64>, i64, i64)> =
        std::collections::BTreeMap::new();
    for (user_id, amount, paid_at) in orders {
        let entry = by_user.entry(user_id).or_insert((None, 0, 0));
        if *amount > 0 {
            entry.0 = Some(entry.0.map_or(*paid_at, |last: i64| last.max(*paid_at)));
            entry.1 += 1;
        }
        entry.2 += amount;
    }
    by_user
        .into_iter()
        .filter_map(|(user_id, (last, orders, monetary))| {
            Some(Purchases {
                user_id: user_id.to_owned(),
                last_order_day: day_of(last?),
                orders,
                monetary,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn five_distinct_values_score_one_to_five() {
        assert_eq!(quintiles(&[50, 10, 40, 20, 30]), [5, 1, 4, 2, 3]);
    }

    #[test]
    fn ties_share_the_score_of_their_lowest_rank() {
        assert_eq!(quintiles(&[7, 7, 7, 7]), [1, 1, 1, 1]);
        // ranks 0,0,2,3 of 4 → 1 + 0, 1 + 0, 1 + 10/4, 1 + 15/4
        assert_eq!(quintiles(&[1, 1, 2, 3]), [1, 1, 3, 4]);
    }

    #[test]
    fn every_combination_of_high_and_low_has_its_segment() {
        let labels: Vec<&str> = [
            (5, 5, 5),
            (1, 5, 5),
            (5, 1, 5),
            (1, 1, 5),
            (5, 5, 1),
            (5, 1, 1),
            (1, 5, 1),
            (1, 1, 1),
        ]
        .into_iter()
        .map(|(r, f, m)| Segment::of(r, f, m).label())
        .collect();
        assert_eq!(
            labels,
            [
                "重要价值",
                "重要唤回",
                "重要深耕",
                "重要挽留",
                "潜力",
                "新客",
                "一般维持",
                "流失"
            ]
        );
        assert_eq!(Segment::of(3, 3, 3), Segment::ImportantValue);
        assert_eq!(Segment::of(2, 2, 2), Segment::Lost);
        for segment in Segment::ALL {
            assert_eq!(Segment::parse(segment.label()), Some(segment));
        }
    }

    #[test]
    fn recent_frequent_big_buyers_are_important_value() {
        let buyer = |id: &str, last: &str, orders, monetary| Purchases {
            user_id: id.into(),
            last_order_day: day(last),
            orders,
            monetary,
        };
        let scores = score(
            &[
                buyer("a", "2026-06-30", 5, 50_000),
                buyer("b", "2026-01-01", 1, 1_000),
            ],
            day("2026-07-01"),
        );
        assert_eq!((scores[0].r, scores[0].f, scores[0].m), (3, 3, 3));
        assert_eq!(scores[0].segment, Segment::ImportantValue);
        assert_eq!(scores[0].recency_days, 1);
        assert_eq!((scores[1].r, scores[1].f, scores[1].m), (1, 1, 1));
        assert_eq!(scores[1].segment, Segment::Lost);
        assert!(score(&[], day("2026-07-01")).is_empty());
    }
}
