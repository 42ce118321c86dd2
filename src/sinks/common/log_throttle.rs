//! "Log the backend's message once per interval": the first occurrence is
//! logged at once, the rest at most once per interval with a count of what
//! was left out, so a backend refusing every request cannot flood the log.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle::new(DEFAULT_INTERVAL)
    }
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        LogThrottle { interval, state: Mutex::new(ThrottleState::default()) }
    }

    /// `Some(suppressed)` when this occurrence should be logged, with the
    /// number left out since the last one; `None` when it should not.
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut st = self.state.lock();
        match st.last_logged {
            Some(t) if now.duration_since(t) < self.interval => {
                st.suppressed += 1;
                None
            }
            _ => {
                st.last_logged = Some(now);
                Some(std::mem::take(&mut st.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_first_then_once_per_interval_with_count() {
        let t = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(t.check(), Some(0));
        assert_eq!(t.check(), None);
        assert_eq!(t.check(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.check(), Some(2));
    }
}
