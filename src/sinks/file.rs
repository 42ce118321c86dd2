//! `type = "file"`: appends line protocol to one file (DESIGN §4); the embedded default sink.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::line_protocol::encode_sample;
use super::{BatchConfig, Delivery, Sink, SinkBatch, SinkError};
use crate::queue::QueueConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Output file, relative to the config file; created with its directories.
    pub path: PathBuf,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long writes may fail before `/readyz` reports the sink failing.
    #[serde(default = "defaults::unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
}

pub mod defaults {
    use std::time::Duration;

    pub fn unhealthy_after() -> Duration {
        Duration::from_secs(60)
    }
}

pub struct FileSink {
    name: String,
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn new(name: &str, path: PathBuf) -> Self {
        FileSink { name: name.to_string(), path, file: None, buf: Vec::with_capacity(1 << 20) }
    }

    async fn file(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await?;
            }
            self.file = Some(OpenOptions::new().create(true).append(true).open(&self.path).await?);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn io_error(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            sink: self.name.clone(),
            source: std::io::Error::new(source.kind(), format!("{}: {source}", self.path.display())),
        }
    }
}

impl Sink for FileSink {
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        self.buf.clear();
        let mut unrepresentable = 0;
        for s in batch.samples() {
            if !encode_sample(s, s.name(), "value", &mut self.buf) {
                unrepresentable += 1;
            }
        }
        let buf = std::mem::take(&mut self.buf);
        let written = async {
            let f = self.file().await?;
            f.write_all(&buf).await?;
            f.flush().await
        }
        .await;
        self.buf = buf;
        match written {
            Err(e) => {
                // Reopen next time: the file may have been rotated or its disk remounted.
                self.file = None;
                Delivery::none(batch.len(), self.io_error(e))
            }
            Ok(()) if unrepresentable > 0 => Delivery::partial(
                batch.len() - unrepresentable,
                unrepresentable,
                SinkError::Unrepresentable {
                    sink: self.name.clone(),
                    count: unrepresentable,
                    message: "NaN/Inf value, empty name or timestamp out of range".into(),
                },
            ),
            Ok(()) => Delivery::all(batch.len()),
        }
    }

    async fn close(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.sync_all().await;
        }
    }
}
