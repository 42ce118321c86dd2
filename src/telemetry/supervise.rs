//! Supervision: a panic in any task or thread makes the daemon unready and
//! stops it (it drains what it can, then exits non-zero).
//!
//! Tokio catches a task's panic and only its `JoinHandle` would see it; a
//! queue thread's panic ends that thread alone. Neither may go unnoticed, so
//! one process-wide panic hook reports every panic to every running daemon.

use std::sync::{Once, OnceLock};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::Health;

type Watchers = Mutex<Vec<(Health, CancellationToken)>>;

thread_local! {
    /// Set while [`contain_panic`] runs a third-party parser known to panic on
    /// some inputs: such a panic is caught and answered as bad input, so it
    /// must neither stop the daemon nor reach other panic hooks.
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a call into a library that may panic on hostile input, e.g.
/// `promql-parser` on `t offset 1e400`) and turns a panic into `None`,
/// without reporting it as a daemon failure.
pub fn contain_panic<T>(f: impl FnOnce() -> T) -> Option<T> {
    let was = CONTAINED.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    CONTAINED.with(|c| c.set(was));
    result
}

/// True inside [`contain_panic`] on this thread: panic hooks return early.
pub fn panic_is_contained() -> bool {
    CONTAINED.with(|c| c.get())
}

fn watchers() -> &'static Watchers {
    static WATCHERS: OnceLock<Watchers> = OnceLock::new();
    WATCHERS.get_or_init(Default::default)
}

/// Reports any panic from now on to `health` (not ready) and cancels `stop`
/// (the daemon drains and stops). Watchers whose `stop` is already cancelled
/// are forgotten.
pub fn supervise(health: Health, stop: CancellationToken) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if panic_is_contained() {
                return;
            }
            previous(info);
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let thread = std::thread::current();
            let message = format!("thread {:?} panicked{at}: {what}", thread.name().unwrap_or("unnamed"));
            tracing::error!(panic = %message, "a task panicked; draining and stopping (exit status non-zero)");
            // try_lock: a panic while the list is locked must not deadlock.
            if let Some(list) = watchers().try_lock() {
                for (health, stop) in list.iter() {
                    health.panicked(&message);
                    stop.cancel();
                }
            }
        }));
    });
    let mut list = watchers().lock();
    list.retain(|(_, s)| !s.is_cancelled());
    list.push((health, stop));
}
