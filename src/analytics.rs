//! Community analytics, pure: daily rollups from raw facts, member lifecycle
//! stages and alert episodes. No I/O and no clock reads; `jobs::analytics`
//! loads the facts (`store::analytics`), calls these functions with `now` as a
//! value and writes what they decide in one transaction.

pub mod alerts;
pub mod days;
pub mod funnel;
pub mod lifecycle;
pub mod rfm;
pub mod rollup;

pub use alerts::{AlertKind, AlertLevel, AlertStep};
pub use days::DayWindow;
pub use lifecycle::Stage;
pub use rollup::{DailyRow, Facts, COMMUNITY};
