//! CPU clocks for benchmarks that report samples per CPU-second (shared by
//! several bench targets through `#[path]`; not a bench target itself).

use std::time::Duration;

/// Which CPU time to read.
#[allow(dead_code)] // each bench target uses one of them
#[derive(Clone, Copy)]
pub enum CpuClock {
    /// All threads of the process (`CLOCK_PROCESS_CPUTIME_ID`).
    Process,
    /// The calling thread only (`CLOCK_THREAD_CPUTIME_ID`).
    Thread,
}

/// CPU time consumed so far by `clock`'s subject.
#[cfg(target_os = "linux")]
pub fn cpu_time(clock: CpuClock) -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock_id: i32, tp: *mut Timespec) -> i32;
    }
    let id = match clock {
        CpuClock::Process => 2,
        CpuClock::Thread => 3,
    };
    let mut now = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec; the call only writes into it.
    let rc = unsafe { clock_gettime(id, &mut now) };
    assert_eq!(rc, 0, "clock_gettime({id}) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Without CPU clocks, fall back to wall time since the first call.
#[cfg(not(target_os = "linux"))]
pub fn cpu_time(_clock: CpuClock) -> Duration {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}
