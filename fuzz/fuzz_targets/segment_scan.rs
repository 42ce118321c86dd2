//! A disk-queue segment as found after a crash: well-formed records, then damage (flipped
//! bits, overwritten stretches, a torn tail). The start-up scan must not panic; on an
//! undamaged segment it must find every record exactly; on a damaged one its report must
//! be consistent (skips ordered and inside the good part, every lost byte accounted for)
//! and every record before the first damaged byte must still be live.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tsrelay::queue::disk::codec::{HEADER_LEN, seal};
use tsrelay::queue::disk::segment::{FILE_HEADER_LEN, Scan, file_header, scan};

#[derive(Arbitrary, Debug)]
struct Record {
    /// Sequence numbers skipped before this record (records settled and deleted earlier).
    gap: u8,
    samples: u16,
    /// The scan checks bodies only by their hash, so any bytes do.
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Damage {
    Flip { at: u16, bit: u8 },
    Overwrite { at: u16, bytes: Vec<u8> },
    Truncate { at: u16 },
    Append { bytes: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    first_seq: u16,
    cursor_step: u8,
    records: Vec<Record>,
    damage: Vec<Damage>,
}

fuzz_target!(|input: Input| {
    let first_seq = u64::from(input.first_seq);
    let mut data = file_header().to_vec();
    // (offset, end, seq, samples) of each record written.
    let mut written = Vec::new();
    let mut seq = first_seq;
    for r in input.records.iter().take(16) {
        seq += u64::from(r.gap % 4);
        let start = data.len();
        data.resize(start + HEADER_LEN, 0);
        data.extend_from_slice(&r.body);
        seal(&mut data[start..], u32::from(r.samples), seq, 1_700_000_000_000);
        written.push((start, data.len(), seq, u64::from(r.samples)));
        seq += 1;
    }
    let cursor = first_seq + u64::from(input.cursor_step) % (seq - first_seq + 2);
    let live: Vec<_> = written.iter().filter(|w| w.2 >= cursor).collect();

    let clean = scan(&data, first_seq, cursor).expect("a segment with a valid file header is recognized");
    let expected = Scan {
        empty: false,
        good_end: data.len() as u64,
        truncated: false,
        live_records: live.len() as u64,
        live_samples: live.iter().map(|w| w.3).sum(),
        live_bytes: live.iter().map(|w| (w.1 - w.0) as u64).sum(),
        first_live: live.first().map(|w| (w.0 as u64, w.2)),
        first_live_appended_ms: live.first().map(|_| 1_700_000_000_000),
        last_seq: written.last().map(|w| w.2),
        skips: vec![],
        lost_samples: 0,
        lost_records: 0,
        lost_bytes: 0,
    };
    assert_eq!(clean, expected);

    // The first byte that damage changes (or removes); everything before it is intact.
    let mut first_damaged = usize::MAX;
    for d in input.damage.iter().take(8) {
        match d {
            Damage::Flip { at, bit } => {
                let at = usize::from(*at);
                if at < data.len() {
                    data[at] ^= 1 << (bit % 8);
                    first_damaged = first_damaged.min(at);
                }
            }
            Damage::Overwrite { at, bytes } => {
                let at = usize::from(*at).min(data.len());
                for (i, b) in bytes.iter().enumerate() {
                    match data.get_mut(at + i) {
                        Some(slot) if *slot != *b => {
                            *slot = *b;
                            first_damaged = first_damaged.min(at + i);
                        }
                        Some(_) => {}
                        None => data.push(*b),
                    }
                }
            }
            Damage::Truncate { at } => {
                let at = usize::from(*at);
                if at < data.len() {
                    data.truncate(at);
                    first_damaged = first_damaged.min(at);
                }
            }
            Damage::Append { bytes } => data.extend_from_slice(bytes),
        }
    }
    let len = data.len() as u64;
    let s = match scan(&data, first_seq, cursor) {
        Ok(s) => s,
        Err(_) => {
            assert!(first_damaged < 12, "a segment whose file header is intact was refused");
            return;
        }
    };
    if s.empty {
        assert!(len < FILE_HEADER_LEN);
        assert_eq!((s.truncated, s.lost_bytes), (len > 0, len));
        return;
    }
    assert!(FILE_HEADER_LEN <= s.good_end && s.good_end <= len, "{s:?} of {len} bytes");
    assert_eq!(s.truncated, s.good_end < len);
    let mut at = FILE_HEADER_LEN;
    for &(from, to) in &s.skips {
        assert!(at <= from && from < to && to <= s.good_end, "skips {:?} (good end {})", s.skips, s.good_end);
        at = to;
    }
    let skipped: u64 = s.skips.iter().map(|(from, to)| to - from).sum();
    assert_eq!(s.lost_bytes, skipped + (len - s.good_end), "{s:?}");
    assert!(s.live_bytes + s.lost_bytes <= len - FILE_HEADER_LEN, "{s:?}");
    assert!(s.live_records <= s.live_bytes / HEADER_LEN as u64);
    assert_eq!(s.live_records == 0, s.first_live.is_none());
    if let Some((offset, _)) = s.first_live {
        assert!(offset >= FILE_HEADER_LEN && offset < s.good_end);
    }
    // Records untouched by the damage, and all before it, are still found.
    let intact: Vec<_> = live.iter().filter(|w| w.1 <= first_damaged).collect();
    assert!(s.live_records >= intact.len() as u64, "{s:?}, {} intact live records", intact.len());
    if let Some(w) = intact.first() {
        assert_eq!(s.first_live, Some((w.0 as u64, w.2)));
    }
    if let Some(w) = written.iter().rev().find(|w| w.1 <= first_damaged) {
        assert!(s.last_seq >= Some(w.2));
        assert!(s.good_end >= w.1 as u64);
    }
});
