//! The file format: Arrow columns of one partition's rows, written by the
//! `parquet` crate's Arrow writer into a temporary file that becomes visible
//! only once finished and synced ([`OpenFile::finish`] then a rename by the
//! commit, see `commit.rs`).
//!
//! Columns: `timestamp` (INT64, TIMESTAMP(MILLIS, UTC)), `value` (DOUBLE),
//! `labels` (MAP<STRING, STRING>: every label but `__name__`), then one
//! nullable STRING column per label named in `columns`. The metric, date
//! and hour are the Hive partition keys in the path.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::model::{METRIC_NAME_LABEL, Sample};

/// What failed while writing a file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: parquet: {source}")]
    Parquet { path: PathBuf, source: ParquetError },
    #[error("{path}: arrow: {source}")]
    Arrow { path: PathBuf, source: ArrowError },
}

/// The schema and writer settings every file of one sink shares.
pub struct Format {
    pub schema: SchemaRef,
    pub columns: Vec<String>,
    pub props: WriterProperties,
}

const TIMEZONE: &str = "UTC";

fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()).with_values_field(Field::new(
        "value",
        DataType::Utf8,
        false,
    ))
}

impl Format {
    pub fn new(columns: &[String], row_group_rows: usize, zstd_level: i32) -> Result<Format, ParquetError> {
        let labels_type = map_builder().finish().data_type().clone();
        let mut fields = vec![
            Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some(TIMEZONE.into())), false),
            Field::new("value", DataType::Float64, false),
            Field::new("labels", labels_type, false),
        ];
        fields.extend(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)));
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            // Timestamps rise by a scrape interval: deltas pack to a few bits.
            .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
            .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
            // Doubles: byte planes compress far better than whole values.
            .set_column_dictionary_enabled(ColumnPath::from("value"), false)
            .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT)
            .set_created_by(format!("tsrelay {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Format { schema: Arc::new(Schema::new(fields)), columns: columns.to_vec(), props })
    }
}

/// Rows of one partition gathered from one batch, before they become a [`RecordBatch`].
pub struct Rows {
    timestamps: TimestampMillisecondBuilder,
    values: Float64Builder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    columns: Vec<StringBuilder>,
    len: usize,
}

impl Rows {
    pub fn new(format: &Format) -> Rows {
        Rows {
            timestamps: TimestampMillisecondBuilder::new().with_timezone(TIMEZONE),
            values: Float64Builder::new(),
            labels: map_builder(),
            columns: format.columns.iter().map(|_| StringBuilder::new()).collect(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, format: &Format, sample: &Sample) {
        self.timestamps.append_value(sample.timestamp_ms);
        self.values.append_value(sample.value);
        for label in sample.labels.iter() {
            if label.name != METRIC_NAME_LABEL {
                self.labels.keys().append_value(label.name);
                self.labels.values().append_value(label.value);
            }
        }
        // A map row is always valid (possibly empty); appending cannot fail
        // here because keys and values were pushed in pairs.
        let _ = self.labels.append(true);
        for (name, builder) in format.columns.iter().zip(&mut self.columns) {
            builder.append_option(sample.labels.get(name));
        }
        self.len += 1;
    }

    pub fn finish(mut self, format: &Format) -> Result<RecordBatch, ArrowError> {
        let mut arrays: Vec<ArrayRef> =
            vec![Arc::new(self.timestamps.finish()), Arc::new(self.values.finish()), Arc::new(self.labels.finish())];
        arrays.extend(self.columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        RecordBatch::try_new(format.schema.clone(), arrays)
    }
}

/// A file being written under its temporary name.
pub struct OpenFile {
    /// The partition directory (absolute).
    pub dir: PathBuf,
    pub number: u64,
    pub temp: PathBuf,
    writer: ArrowWriter<File>,
    pub rows: u64,
}

impl OpenFile {
    /// Creates `dir/.part-<number>.parquet.tmp` (and `dir` with its parents).
    pub fn create(dir: PathBuf, number: u64, format: &Format) -> Result<OpenFile, WriteError> {
        let temp = dir.join(super::partition::temp_name(number));
        let io = |source| WriteError::Io { path: temp.clone(), source };
        create_dir_durably(&dir).map_err(io)?;
        let file = File::create_new(&temp).map_err(io)?;
        let writer = ArrowWriter::try_new(file, format.schema.clone(), Some(format.props.clone()))
            .map_err(|source| WriteError::Parquet { path: temp.clone(), source })?;
        Ok(OpenFile { dir, number, temp, writer, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        self.writer.write(batch).map_err(|source| WriteError::Parquet { path: self.temp.clone(), source })?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Bytes written plus the estimated size of the row group in progress.
    pub fn estimated_bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Writes the footer and syncs the file; returns its size. The file is
    /// still under its temporary name.
    pub fn finish(self) -> Result<u64, WriteError> {
        let path = self.temp;
        let file = self.writer.into_inner().map_err(|source| WriteError::Parquet { path: path.clone(), source })?;
        let io = |source| WriteError::Io { path: path.clone(), source };
        file.sync_all().map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(size)
    }
}

/// `create_dir_all`, then syncs each parent of a directory it created so the
/// new entries survive a crash.
pub fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Makes creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
