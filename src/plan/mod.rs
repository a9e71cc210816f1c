//! The plan is data: what apply will do, per host, with before/after and the reason.
//! Printed by the views, saved as JSON, applied later (refused when the facts moved on).

pub mod build;
pub mod check;
pub mod departing;
pub mod inputs;
pub mod query;
pub mod topology;
pub mod upgrade;

pub use crate::steps::change::{Action, Change, Check};
