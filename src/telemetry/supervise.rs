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
