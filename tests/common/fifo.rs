//! A stalled or slow backend for the `file` sink: a named pipe the test reads
//! from a thread. While paused, the sink's writes block once the pipe buffer
//! is full (the backend is down); a rate bounds how fast it drains. Every
//! complete line is counted, so losses and duplicates are seen exactly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Default)]
struct State {
    lines: Mutex<HashMap<String, u32>>,
    paused: AtomicBool,
    /// Lines per second; 0 = as fast as they come.
    rate: AtomicU64,
    stop: AtomicBool,
    total: AtomicU64,
    /// Lines cut short by a writer that died mid-line.
    torn: AtomicU64,
}

pub struct FifoBackend {
    pub path: PathBuf,
    state: Arc<State>,
}

impl FifoBackend {
    /// Creates `dir/<name>.fifo` and starts reading it (paused if `paused`).
    pub fn start(dir: &Path, name: &str, paused: bool) -> FifoBackend {
        let path = dir.join(format!("{name}.fifo"));
        let ok = std::process::Command::new("mkfifo").arg(&path).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "mkfifo {} failed", path.display());
        let state = Arc::new(State::default());
        state.paused.store(paused, Ordering::SeqCst);
        let (p, s) = (path.clone(), state.clone());
        std::thread::spawn(move || read_forever(&p, &s));
        FifoBackend { path, state }
    }

    pub fn pause(&self) {
        self.state.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.state.paused.store(false, Ordering::SeqCst);
    }

    pub fn set_rate(&self, lines_per_second: u64) {
        self.state.rate.store(lines_per_second, Ordering::SeqCst);
    }

    /// Complete lines read so far (duplicates included).
    pub fn total(&self) -> u64 {
        self.state.total.load(Ordering::SeqCst)
    }

    pub fn torn(&self) -> u64 {
        self.state.torn.load(Ordering::SeqCst)
    }

    /// Each distinct line and how often it arrived.
    pub fn lines(&self) -> HashMap<String, u32> {
        self.state.lines.lock().clone()
    }

    pub fn distinct(&self) -> usize {
        self.state.lines.lock().len()
    }
}

impl Drop for FifoBackend {
    fn drop(&mut self) {
        // The thread notices at its next line or reopen; the process ends it otherwise.
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

fn read_forever(path: &Path, state: &State) {
    while !state.stop.load(Ordering::SeqCst) {
        // Blocks until a writer (tsrelay's file sink) opens the pipe; EOF when it closes or dies.
        let Ok(file) = std::fs::File::open(path) else { return };
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut line = Vec::new();
        let mut window_start = Instant::now();
        let mut in_window = 0u64;
        loop {
            while state.paused.load(Ordering::SeqCst) && !state.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
                window_start = Instant::now();
                in_window = 0;
            }
            if state.stop.load(Ordering::SeqCst) {
                return;
            }
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.last() != Some(&b'\n') => {
                    state.torn.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            *state.lines.lock().entry(text).or_default() += 1;
            state.total.fetch_add(1, Ordering::SeqCst);
            let rate = state.rate.load(Ordering::SeqCst);
            if rate > 0 {
                in_window += 1;
                let due = Duration::from_secs_f64(in_window as f64 / rate as f64);
                let elapsed = window_start.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
                if elapsed > Duration::from_secs(1) {
                    window_start = Instant::now();
                    in_window = 0;
                }
            }
        }
    }
}
