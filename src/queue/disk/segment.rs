//! Segment files: `<first seq, 20 digits>.seg`, a 16-byte file header, then
//! records back to back (see `codec`). Only the newest segment is appended to;
//! a segment is deleted once the persisted cursor has passed all of its records.
//!
//! [`scan`] reads a segment at start-up and finds what is usable: records
//! whose header and body both check out. A torn or damaged tail is cut off;
//! a damaged stretch followed by good records is skipped. Whatever is lost is
//! reported (exactly, in samples, whenever the record's own header survived).

use std::path::{Path, PathBuf};

use super::codec::{HEADER_LEN, RecordHeader};

pub const FILE_MAGIC: &[u8; 8] = b"TSRQSEG\0";
pub const FILE_VERSION: u32 = 1;
pub const FILE_HEADER_LEN: u64 = 16;

pub fn file_header() -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(FILE_MAGIC);
    h[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
    h
}

pub fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first sequence number encoded in a segment's file name.
pub fn parse_file_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every segment file in `dir`, oldest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(seq) = parse_file_name(&path) {
            out.push((seq, path));
        }
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// What a start-up scan found in one segment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The file is not a segment at all (too short to hold its header: a
    /// crash right after creating it).
    pub empty: bool,
    /// End of the last good record; the file is cut to this length.
    pub good_end: u64,
    /// Whether bytes after `good_end` were discarded.
    pub truncated: bool,
    /// Good records at or after the cursor: still to deliver.
    pub live_records: u64,
    pub live_samples: u64,
    pub live_bytes: u64,
    /// Offset and sequence number of the first live record.
    pub first_live: Option<(u64, u64)>,
    pub first_live_appended_ms: Option<i64>,
    /// Highest sequence number seen in a checked header.
    pub last_seq: Option<u64>,
    /// Damaged stretches between good records: `[from, to)` byte ranges the reader skips.
    pub skips: Vec<(u64, u64)>,
    /// Samples lost in records whose header survived (exact).
    pub lost_samples: u64,
    /// Records lost, counted by their headers or by gaps in sequence numbers.
    pub lost_records: u64,
    /// Bytes discarded in damaged stretches and the cut-off tail.
    pub lost_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("not a tsrelay queue segment of a known version (expected magic {FILE_MAGIC:?} version {FILE_VERSION})")]
pub struct UnrecognizedSegment;

/// Scans a segment's bytes; records with `seq < cursor` are already settled
/// and count neither as live nor as lost.
pub fn scan(data: &[u8], first_seq: u64, cursor: u64) -> Result<Scan, UnrecognizedSegment> {
    let mut s = Scan::default();
    if (data.len() as u64) < FILE_HEADER_LEN {
        s.empty = true;
        s.truncated = !data.is_empty();
        s.lost_bytes = data.len() as u64;
        return Ok(s);
    }
    if &data[..8] != FILE_MAGIC || data[8..12] != FILE_VERSION.to_le_bytes() {
        return Err(UnrecognizedSegment);
    }
    let len = data.len();
    let mut pos = FILE_HEADER_LEN as usize;
    // Sequence number of the last record whose header checked out.
    let mut prev: Option<u64> = None;
    let plausible = |h: &RecordHeader, prev: Option<u64>| h.seq >= first_seq && prev.is_none_or(|p| h.seq > p);
    // Whether the bytes after `pos` (if any) are already accounted for.
    let mut tail_counted = false;
    while pos < len {
        let Some(h) = RecordHeader::parse(&data[pos..]).filter(|h| plausible(h, prev)) else {
            let Some((next, h)) = find_next_record(data, pos + 1, |h| plausible(h, prev)) else { break };
            s.skips.push((pos as u64, next as u64));
            s.lost_bytes += (next - pos) as u64;
            // How many records the stretch held: the gap in sequence numbers.
            let from = prev.map_or(first_seq, |p| p + 1).max(cursor);
            s.lost_records += h.seq.saturating_sub(from);
            pos = next;
            continue;
        };
        let from = prev.map_or(first_seq, |p| p + 1).max(cursor);
        let unseen = h.seq.saturating_sub(from);
        prev = Some(h.seq);
        let end = pos + h.record_len() as usize;
        let whole = end <= len && h.body_matches(&data[pos + HEADER_LEN..end]);
        if !whole {
            // The header survived, so the loss is known exactly.
            s.lost_records += unseen;
            if h.seq >= cursor {
                s.lost_records += 1;
                s.lost_samples += u64::from(h.samples);
            }
            if end > len {
                tail_counted = true;
                break;
            }
            s.skips.push((pos as u64, end as u64));
            s.lost_bytes += (end - pos) as u64;
        } else if h.seq >= cursor {
            s.live_records += 1;
            s.live_samples += u64::from(h.samples);
            s.live_bytes += h.record_len();
            s.first_live.get_or_insert((pos as u64, h.seq));
            s.first_live_appended_ms.get_or_insert(h.appended_ms);
        }
        pos = end;
    }
    s.last_seq = prev;
    s.good_end = pos.min(len) as u64;
    if s.good_end < len as u64 {
        s.truncated = true;
        s.lost_bytes += len as u64 - s.good_end;
        // A tail with no readable header: at least one record, unless all before the cursor.
        if !tail_counted && prev.is_none_or(|p| p + 1 >= cursor) {
            s.lost_records += 1;
        }
    }
    Ok(s)
}

/// The first offset at or after `from` where a complete, checked record starts.
fn find_next_record(
    data: &[u8],
    from: usize,
    plausible: impl Fn(&RecordHeader) -> bool,
) -> Option<(usize, RecordHeader)> {
    (from..data.len().saturating_sub(HEADER_LEN - 1)).find_map(|p| {
        let h = RecordHeader::parse(&data[p..]).filter(&plausible)?;
        let end = p.checked_add(h.record_len() as usize)?;
        (end <= data.len() && h.body_matches(&data[p + HEADER_LEN..end])).then_some((p, h))
    })
}
