//! Memory is bounded by configuration, not by the input (DESIGN §1.4).
//!
//! At start-up, [`MemoryBudget::estimate`] adds up the worst case of every
//! queue and table the config allows and the daemon refuses to start when it
//! exceeds `limits.memory_bytes`. At run time, [`watch_rss`] samples the
//! resident set and raises [`MemoryPressure`] above the high-water mark;
//! receivers then refuse data instead of growing.

mod allocator;
mod budget;
mod derive;
mod kept;
mod rss;
mod system;

pub use allocator::MMAP_THRESHOLD;
pub use allocator::tune_allocator;
pub use budget::{BudgetError, BudgetItem, MemoryBudget};
pub use derive::{Explicit, derive_defaults};
pub use kept::KeptVecs;
pub use rss::{MemoryPressure, read_rss_bytes, watch_rss};
pub use system::{SystemMemory, available_memory};
