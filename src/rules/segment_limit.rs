//! A lottery or a poll limited to a saved segment: the segment as the
//! activity names it, and what a member outside it is told. Whether a member
//! is in it is the segment's own filter (`ops::segments::SegmentFilter::matches`),
//! evaluated at the edge on that member's facts when they enter or vote.

use serde::{Deserialize, Serialize};

/// The saved segment an activity is limited to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub id: i64,
    /// `None`: the segment was deleted since (then nobody is in it).
    pub name: Option<String>,
}

impl SegmentRef {
    /// A segment named by id only (what a manager's input carries).
    pub fn id(id: i64) -> SegmentRef {
        SegmentRef { id, name: None }
    }

    /// The stored `segment_id` column with the segment's current name.
    pub fn stored(id: Option<i64>, name: Option<String>) -> Option<SegmentRef> {
        id.map(|id| SegmentRef { id, name })
    }

    /// The name, or `人群 #N` for a deleted one.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("人群 #{}", self.id))
    }
}

/// Why a member may not take part (pure): the activity is limited to
/// `segment` and they are not in it right now. `None` when they may.
pub fn refusal(segment: Option<&SegmentRef>, in_segment: bool) -> Option<String> {
    segment
        .filter(|_| !in_segment)
        .map(|s| format!("本次活动只限「{}」参加", s.label()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_member_outside_the_named_segment_is_refused_by_its_name() {
        let core = SegmentRef {
            id: 3,
            name: Some("核心会员".into()),
        };
        assert_eq!(refusal(None, false), None);
        assert_eq!(refusal(Some(&core), true), None);
        assert_eq!(
            refusal(Some(&core), false).as_deref(),
            Some("本次活动只限「核心会员」参加")
        );
        assert_eq!(
            refusal(Some(&SegmentRef::id(9)), false).as_deref(),
            Some("本次活动只限「人群 #9」参加")
        );
        assert_eq!(SegmentRef::stored(None, Some("x".into())), None);
    }
}
