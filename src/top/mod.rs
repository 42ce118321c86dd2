//! `tsrelay top`: the status report (`GET /api/v1/status`) of a running
//! daemon in the terminal, refreshed every second (docs/top.md).
//!
//! [`client`] fetches the report, [`view`] sorts and formats it (plain data,
//! tested without a terminal), [`ui`] draws it with ratatui and reads keys.

pub mod client;
pub mod ui;
pub mod view;

pub use client::{StatusClient, TopError};
pub use view::{SortBy, Tables};
