//! How results are shown: a human view (colours on a terminal, plain otherwise) and JSON.
//! The engine never prints; commands hand their data to a view.

pub mod drill;
pub mod plan;
pub mod progress;
pub mod status;
pub mod verify;
