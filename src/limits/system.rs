//! How much memory this process may use: its cgroup's limit (v2
//! `memory.max`, v1 `memory.limit_in_bytes`), else the machine's physical
//! memory. `limits.memory_bytes` defaults to a share of it (like vmagent's
//! `-memory.allowedPercent`).

use std::path::{Path, PathBuf};

/// cgroup v1 reports "no limit" as a huge number (the page-aligned i64::MAX).
const V1_UNLIMITED_ABOVE: u64 = 1 << 60;

/// Where the memory figure came from, for `tsrelay validate` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemMemory {
    pub bytes: u64,
    pub source: String,
}

/// The memory available to this process, if anything can be read.
pub fn available_memory() -> Option<SystemMemory> {
    let physical = physical_memory();
    let cgroup =
        std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|c| cgroup_limit(&c, Path::new("/sys/fs/cgroup")));
    match (cgroup, physical) {
        (Some(c), Some(p)) if c.bytes < p.bytes => Some(c),
        (Some(c), None) => Some(c),
        (_, p) => p,
    }
}

fn physical_memory() -> Option<SystemMemory> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(SystemMemory { bytes: kib * 1024, source: "physical memory (/proc/meminfo MemTotal)".into() })
}

/// The memory limit of the cgroup `/proc/self/cgroup` names, looked up
/// under `root` (v2 unified hierarchy first, then v1's memory controller);
/// also the limits of its ancestors, the smallest winning.
fn cgroup_limit(proc_self_cgroup: &str, root: &Path) -> Option<SystemMemory> {
    let mut best: Option<SystemMemory> = None;
    let mut consider = |file: PathBuf, unlimited_above: u64| {
        let Ok(text) = std::fs::read_to_string(&file) else { return };
        let text = text.trim();
        let Ok(bytes) = text.parse::<u64>() else { return }; // "max": no limit
        if bytes == 0 || bytes >= unlimited_above {
            return;
        }
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(SystemMemory { bytes, source: format!("cgroup limit ({})", file.display()) });
        }
    };
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (dir, file, unlimited) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max", u64::MAX)
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes", V1_UNLIMITED_ABOVE)
        } else {
            continue;
        };
        // The cgroup itself and each ancestor up to the root of the mount.
        let mut p = Path::new(path.trim_start_matches('/'));
        loop {
            consider(dir.join(p).join(file), unlimited);
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v2_and_v1_limits_and_ignores_unlimited() {
        let root = tempfile::tempdir().unwrap();
        let v2 = root.path().join("a/b");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "1073741824\n").unwrap();
        std::fs::write(root.path().join("a/memory.max"), "max\n").unwrap();
        let got = cgroup_limit("0::/a/b\n", root.path()).unwrap();
        assert_eq!(got.bytes, 1 << 30);

        let v1 = root.path().join("memory/x");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "536870912\n").unwrap();
        std::fs::write(root.path().join("memory/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        let got = cgroup_limit("4:memory:/x\n1:cpu:/\n", root.path()).unwrap();
        assert_eq!(got.bytes, 512 << 20);
        assert!(got.source.contains("memory.limit_in_bytes"), "{got:?}");

        assert_eq!(cgroup_limit("0::/nowhere\n", root.path()), None);
    }

    #[test]
    fn this_machine_has_some_memory() {
        let m = available_memory().expect("/proc/meminfo");
        assert!(m.bytes > 64 << 20, "{m:?}");
    }
}
