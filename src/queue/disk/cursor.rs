//! The persisted cursor: the lowest sequence number not yet settled. Records
//! below it are never replayed. It is written to a temporary file and renamed
//! over the old one, so a reader sees the old or the new value, never a mix;
//! a missing or damaged cursor means "replay everything still on disk"
//! (duplicates, never loss). A cursor that lags only causes duplicates, so it
//! is written at most every tick rather than on every settle.

use std::io::Write;
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 8] = b"TSRQCUR1";
const LEN: usize = 24;
pub const FILE: &str = "cursor";
const TMP_FILE: &str = "cursor.tmp";

/// Reads the cursor; `Ok(None)` when there is none or it does not check out.
pub fn read(dir: &Path) -> std::io::Result<Option<u64>> {
    let bytes = match std::fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(decode(&bytes))
}

fn decode(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let hash = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    (xxh3_64(&bytes[..16]) == hash).then_some(seq)
}

fn encode(seq: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    let hash = xxh3_64(&b[..16]);
    b[16..24].copy_from_slice(&hash.to_le_bytes());
    b
}

/// Replaces the cursor with `seq`; with `durable`, also syncs the file and the directory.
pub fn write(dir: &Path, seq: u64, durable: bool) -> std::io::Result<()> {
    let tmp = dir.join(TMP_FILE);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&encode(seq))?;
    if durable {
        f.sync_data()?;
    }
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes file creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), 1234, true).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(1234));
        let mut bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        bytes[9] ^= 4;
        std::fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(FILE), b"").unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
