//! The run-time guard: above the RSS high-water mark, receivers refuse data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::telemetry::MemoryMetrics;

/// How often the resident set is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A shared flag: set while the process is above its high-water mark.
#[derive(Debug, Clone, Default)]
pub struct MemoryPressure(Arc<AtomicBool>);

impl MemoryPressure {
    pub fn is_high(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }
}

/// The process's resident set in bytes (Linux `/proc/self/status`), if known.
pub fn read_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples RSS until the runtime stops, raising `pressure` at or above
/// `high_water` and clearing it below 95 % of it (so it does not flap).
pub fn watch_rss(high_water: u64, pressure: MemoryPressure, metrics: MemoryMetrics) -> tokio::task::JoinHandle<()> {
    let low_water = high_water / 100 * 95;
    tokio::spawn(async move {
        if read_rss_bytes().is_none() {
            tracing::warn!("cannot read the resident set size (/proc/self/status); the RSS guard is off");
            return;
        }
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(rss) = read_rss_bytes() else { continue };
            metrics.rss_bytes.set(rss as f64);
            let was = pressure.is_high();
            let now = if was { rss >= low_water } else { rss >= high_water };
            if now != was {
                pressure.set(now);
                metrics.pressure.set(if now { 1.0 } else { 0.0 });
                if now {
                    tracing::warn!(rss, high_water, "resident set above the high-water mark; receivers refuse data");
                } else {
                    tracing::info!(rss, low_water, "resident set back below the mark; receivers accept data");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss() {
        let rss = read_rss_bytes().expect("Linux /proc");
        assert!(rss > 1 << 20, "{rss}");
    }

    #[tokio::test]
    async fn pressure_rises_above_and_clears_below_the_mark() {
        let pressure = MemoryPressure::default();
        let watcher = watch_rss(1, pressure.clone(), MemoryMetrics::new());
        tokio::time::timeout(Duration::from_secs(2), async {
            while !pressure.is_high() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("pressure raised with a 1-byte mark");
        watcher.abort();
        let pressure = MemoryPressure::default();
        let watcher = watch_rss(u64::MAX / 2, pressure.clone(), MemoryMetrics::new());
        tokio::time::sleep(SAMPLE_EVERY * 3).await;
        assert!(!pressure.is_high());
        watcher.abort();
    }
}
