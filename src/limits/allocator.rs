//! The system allocator's settings (glibc `mallopt`), chosen for a daemon
//! whose peak resident set is part of its contract (DESIGN §6).
//!
//! glibc's defaults suit short programs, not a long-running daemon under
//! bursts: up to eight arenas per core, each keeping what was freed in it, and
//! a threshold for handing large blocks straight to the kernel that rises to
//! the largest block ever freed (up to 32 MiB), after which request bodies and
//! batch buffers of a past burst stay in the heap. The daemon does its work on
//! one runtime thread per core, so one arena per thread is all the
//! concurrency the allocator needs; blocks from [`MMAP_THRESHOLD`] up are
//! mapped and unmapped on their own, and a heap whose free top exceeds
//! [`TRIM_THRESHOLD`] gives it back. Measured on the bench-e2e load in
//! BENCHMARKS.md (thirteenth session).
//!
//! A setting given in the environment (`MALLOC_ARENA_MAX`,
//! `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) is left as the
//! operator set it.

/// Blocks of at least this many bytes are mapped on their own (and returned
/// to the kernel when freed) instead of coming from an arena.
pub const MMAP_THRESHOLD: usize = 256 << 10;
/// An arena's free top beyond this many bytes is returned to the kernel.
pub const TRIM_THRESHOLD: usize = 256 << 10;

/// What [`tune_allocator`] set: `(setting, value)` for the start-up log.
pub type Tuned = Vec<(&'static str, usize)>;

/// Applies the settings above (call before any thread starts). Returns what
/// it set; nothing on an allocator other than glibc's.
pub fn tune_allocator() -> Tuned {
    #[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(unused_mut))]
    let mut tuned = Tuned::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let settings = [
            ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, arenas),
            ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ];
        for (variable, option, value) in settings {
            if std::env::var_os(variable).is_some() {
                continue;
            }
            let Ok(as_int) = libc::c_int::try_from(value) else { continue };
            // SAFETY: mallopt only changes the allocator's parameters; it is called
            // before any other thread exists, with options glibc defines.
            if unsafe { libc::mallopt(option, as_int) } == 1 {
                tuned.push((variable, value));
            }
        }
    }
    tuned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_every_setting_not_given_in_the_environment() {
        let tuned = tune_allocator();
        for variable in ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"] {
            let given = std::env::var_os(variable).is_some();
            assert_eq!(tuned.iter().any(|(v, _)| *v == variable), !given, "{variable}: {tuned:?}");
        }
        // A block above the threshold still allocates, writes and frees.
        let block = vec![7u8; MMAP_THRESHOLD * 2];
        assert_eq!(block.iter().map(|&b| b as usize).sum::<usize>(), 7 * MMAP_THRESHOLD * 2);
    }
}
