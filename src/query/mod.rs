//! The read side (DESIGN §7). Placeholder until the driver contract lands.
pub mod backends;
