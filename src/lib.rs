//! pgha: declarative PostgreSQL high-availability clusters over SSH.
//!
//! Data flows one way, one folder per phase:
//! `inventory` (YAML -> checked `model`) -> `playbook` (steps per host, typed in `steps`)
//! -> `facts` (what the hosts hold) -> `plan` (changes) -> `apply` -> `verify`.
//! Beside them: `render` (templates), `transport` (how commands reach a host), `views`
//! (how events and plans are shown), `sandbox` (local test hosts), `cli`. HA flavours plug
//! in from `flavours/<name>/` (see docs/ARCHITECTURE.md).

pub mod apply;
pub mod cli;
pub mod components;
pub mod diag;
pub mod drill;
pub mod exit;
pub mod facts;
pub mod flavours;
pub mod human;
pub mod inventory;
pub mod model;
pub mod plan;
pub mod playbook;
pub mod project;
pub mod render;
pub mod sandbox;
pub mod secret;
pub mod session;
pub mod steps;
pub mod tls;
pub mod transport;
pub mod verify;
pub mod views;
pub mod yaml;
