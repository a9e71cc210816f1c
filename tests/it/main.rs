//! The one integration-test binary: the CLI end to end, and the engine with fixture facts.

mod engine;
mod render;
mod sandbox;
mod support;
mod validate;
