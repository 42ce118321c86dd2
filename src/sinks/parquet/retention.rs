//! `retention`: whole hour partitions past their age are deleted, then
//! date and metric directories left empty.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::commit::{CommitError, subdirs};
use super::writer::sync_dir;

/// When the hour of a `date=YYYY-MM-DD/hour=HH` partition ends (ms since the
/// epoch); `None` for a directory that does not parse.
pub fn hour_end_ms(date_dir: &str, hour_dir: &str) -> Option<i64> {
    let date = date_dir.strip_prefix("date=")?;
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    let hour: u32 = hour_dir.strip_prefix("hour=")?.parse().ok()?;
    let start = NaiveDate::from_ymd_opt(y, m, d)?.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_millis();
    Some(start + 3_600_000)
}

fn name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// Deletes every hour partition under `root` that ended before `cutoff_ms`,
/// except those in `keep` (files still open in them). Returns how many.
pub fn sweep(root: &Path, cutoff_ms: i64, keep: &HashSet<PathBuf>) -> Result<usize, CommitError> {
    let err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CommitError { path: p, source }
    };
    let mut deleted = 0;
    for metric in subdirs(root, "metric=")? {
        for date in subdirs(&metric, "date=")? {
            let mut removed_any = false;
            for hour in subdirs(&date, "hour=")? {
                let expired = hour_end_ms(name(&date), name(&hour)).is_some_and(|end| end <= cutoff_ms);
                if expired && !keep.contains(&hour) {
                    std::fs::remove_dir_all(&hour).map_err(err(&hour))?;
                    deleted += 1;
                    removed_any = true;
                }
            }
            if removed_any {
                // Empty now? Then the date goes too (a failure here only leaves an empty directory).
                if std::fs::remove_dir(&date).is_err() {
                    sync_dir(&date).map_err(err(&date))?;
                }
                if std::fs::remove_dir(&metric).is_err() {
                    sync_dir(&metric).map_err(err(&metric))?;
                } else {
                    sync_dir(root).map_err(err(root))?;
                }
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_hours_go_whole_and_empty_parents_follow() {
        assert_eq!(hour_end_ms("date=1970-01-01", "hour=00"), Some(3_600_000));
        assert_eq!(hour_end_ms("date=2026-13-01", "hour=00"), None);
        assert_eq!(hour_end_ms("date=2026-12-01", "hour=24"), None);
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let old = r.join("metric=a/date=2026-12-01/hour=05");
        let kept_open = r.join("metric=a/date=2026-12-01/hour=06");
        let new = r.join("metric=b/date=2026-12-04/hour=10");
        for d in [&old, &kept_open, &new] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("part-0.parquet"), b"x").unwrap();
        }
        let cutoff = hour_end_ms("date=2026-12-03", "hour=00").unwrap();
        let keep: HashSet<PathBuf> = [kept_open.clone()].into_iter().collect();
        assert_eq!(sweep(r, cutoff, &keep).unwrap(), 1);
        assert!(!old.exists() && kept_open.exists() && new.exists());
        assert_eq!(sweep(r, cutoff, &HashSet::new()).unwrap(), 1);
        assert!(!r.join("metric=a").exists(), "empty metric directory removed");
        assert!(new.exists());
    }
}
