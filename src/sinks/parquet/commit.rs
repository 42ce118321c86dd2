//! Making a roll durable and recovering after a crash.
//!
//! A roll finishes every open file under its temporary name and syncs it,
//! then writes the *commit record* `path/_tsrelay/commit.json` (temporary
//! name, sync, rename, sync of the directory) naming those files and the
//! queue position they reach, then renames each file to `part-<n>.parquet`
//! and syncs its directory. Only then are the batches in the files settled
//! (queue records released, acknowledgements completed).
//!
//! At start, [`recover`] finishes the renames of the last commit (a crash
//! may have stopped between the record and the renames), then deletes every
//! other temporary file: their samples were never settled, so the queue
//! still holds them. A crash therefore never leaves a torn file visible.
//!
//! Exactly once with a disk queue: the disk queue persists which records are
//! settled only periodically, so records settled just before a crash come
//! back. The commit's `watermark` is the position (record sequence number,
//! sample index) just after the last sample in committed files; replayed
//! samples before it are already in a visible file and are skipped. Only
//! records replayed from an earlier run are compared with it, so a queue
//! directory that was removed (sequence numbers restarting) skips nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::partition;
use super::writer::sync_dir;

pub const STATE_DIR: &str = "_tsrelay";
const FILE: &str = "commit.json";
const TMP_FILE: &str = "commit.json.tmp";

/// A position in a disk queue: sample `index` of record `seq`. Ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub seq: u64,
    pub index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    /// The partition directory, relative to the archive root.
    pub dir: PathBuf,
    pub number: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// Every replayed sample before this position is in a committed file.
    pub watermark: Option<Position>,
    pub files: Vec<CommittedFile>,
}

/// What start-up recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub watermark: Option<Position>,
    /// Files of the last commit renamed now (the crash came before).
    pub finished: usize,
    /// Unfinished temporary files deleted.
    pub removed: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("parquet archive {path}: {source}")]
pub struct CommitError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> CommitError + '_ {
    move |source| CommitError { path: path.to_path_buf(), source }
}

/// Durably records `commit` (before its files are renamed).
pub fn write(root: &Path, commit: &Commit) -> Result<(), CommitError> {
    let dir = root.join(STATE_DIR);
    super::writer::create_dir_durably(&dir).map_err(err(&dir))?;
    let tmp = dir.join(TMP_FILE);
    let body = serde_json::to_vec(commit).map_err(|e| CommitError { path: tmp.clone(), source: e.into() })?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err(&tmp))?;
        f.write_all(&body).map_err(err(&tmp))?;
        f.sync_all().map_err(err(&tmp))?;
    }
    std::fs::rename(&tmp, dir.join(FILE)).map_err(err(&tmp))?;
    sync_dir(&dir).map_err(err(&dir))
}

/// The last commit; `None` if there is none or it cannot be read (then
/// nothing is rolled forward and nothing replayed is skipped: duplicates
/// are possible, losses are not).
pub fn read(root: &Path) -> Option<Commit> {
    let path = root.join(STATE_DIR).join(FILE);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "parquet commit record unreadable; ignoring it");
            None
        }
    }
}

/// Renames a committed file into view (idempotent) — the last step of a roll.
pub fn publish(root: &Path, file: &CommittedFile) -> Result<bool, CommitError> {
    let dir = root.join(&file.dir);
    let temp = dir.join(partition::temp_name(file.number));
    match std::fs::rename(&temp, dir.join(partition::part_name(file.number))) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CommitError { path: temp, source: e }),
    }
}

/// Start-up: finish the last commit, delete every other temporary file.
pub fn recover(root: &Path) -> Result<Recovered, CommitError> {
    let mut recovered = Recovered::default();
    if !root.exists() {
        return Ok(recovered);
    }
    if let Some(commit) = read(root) {
        let mut dirs = std::collections::BTreeSet::new();
        for f in &commit.files {
            if publish(root, f)? {
                recovered.finished += 1;
                dirs.insert(root.join(&f.dir));
            }
        }
        for d in dirs {
            sync_dir(&d).map_err(err(&d))?;
        }
        recovered.watermark = commit.watermark;
    }
    for dir in partition_dirs(root)? {
        let mut removed_here = false;
        for entry in std::fs::read_dir(&dir).map_err(err(&dir))? {
            let entry = entry.map_err(err(&dir))?;
            if entry.file_name().to_str().is_some_and(partition::is_temp) {
                let p = entry.path();
                std::fs::remove_file(&p).map_err(err(&p))?;
                recovered.removed += 1;
                removed_here = true;
            }
        }
        if removed_here {
            sync_dir(&dir).map_err(err(&dir))?;
        }
    }
    Ok(recovered)
}

/// Every `metric=*/date=*/hour=*` directory under `root`.
pub fn partition_dirs(root: &Path) -> Result<Vec<PathBuf>, CommitError> {
    let mut out = Vec::new();
    for metric in subdirs(root, "metric=")? {
        for date in subdirs(&metric, "date=")? {
            out.extend(subdirs(&date, "hour=")?);
        }
    }
    Ok(out)
}

pub fn subdirs(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, CommitError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CommitError { path: dir.to_path_buf(), source: e }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err(dir))?;
        let is_dir = entry.file_type().map_err(err(dir))?.is_dir();
        if is_dir && entry.file_name().to_str().is_some_and(|n| n.starts_with(prefix)) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_rolls_the_last_commit_forward_and_removes_other_temporaries() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let a = PathBuf::from("metric=m/date=2026-12-04/hour=13");
        let b = PathBuf::from("metric=n/date=2026-12-04/hour=13");
        std::fs::create_dir_all(r.join(&a)).unwrap();
        std::fs::create_dir_all(r.join(&b)).unwrap();
        // Committed but the crash came before the rename of the second file.
        std::fs::write(r.join(&a).join(partition::part_name(0)), b"done").unwrap();
        std::fs::write(r.join(&b).join(partition::temp_name(0)), b"committed").unwrap();
        // Written after the commit, never committed.
        std::fs::write(r.join(&a).join(partition::temp_name(1)), b"torn").unwrap();
        let commit = Commit {
            watermark: Some(Position { seq: 7, index: 3 }),
            files: vec![CommittedFile { dir: a.clone(), number: 0 }, CommittedFile { dir: b.clone(), number: 0 }],
        };
        write(r, &commit).unwrap();
        assert_eq!(read(r), Some(commit));
        let rec = recover(r).unwrap();
        assert_eq!(rec.watermark, Some(Position { seq: 7, index: 3 }));
        assert_eq!((rec.finished, rec.removed), (1, 1));
        assert_eq!(std::fs::read(r.join(&b).join(partition::part_name(0))).unwrap(), b"committed");
        assert!(!r.join(&a).join(partition::temp_name(1)).exists());
        // Idempotent.
        let again = recover(r).unwrap();
        assert_eq!((again.finished, again.removed), (0, 0));
        assert!(Position { seq: 7, index: 2 } < Position { seq: 7, index: 3 });
        assert!(Position { seq: 6, index: 9 } < Position { seq: 7, index: 0 });
    }

    #[test]
    fn a_damaged_commit_record_is_ignored() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(STATE_DIR)).unwrap();
        std::fs::write(root.path().join(STATE_DIR).join(FILE), b"{not json").unwrap();
        assert_eq!(read(root.path()), None);
        assert!(recover(root.path()).unwrap().watermark.is_none());
    }
}
