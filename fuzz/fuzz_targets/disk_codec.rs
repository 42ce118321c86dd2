//! Any record body read back from a disk-queue segment: decoding must not panic, must
//! name a position inside the body when it refuses it, and what it accepts must be
//! exactly what the encoder writes back (decode → encode → seal → parse → decode gives
//! the same samples, in no more bytes: the encoder's choices are the shortest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::queue::disk::codec::{HEADER_LEN, RecordHeader, decode_body, encode_body, seal};

fuzz_target!(|data: &[u8]| {
    let Some((&n, body)) = data.split_first() else { return };
    let expected = usize::from(n % 32);

    // Any 32 bytes as a header: refused, or a header that is internally consistent.
    if let Some(h) = RecordHeader::parse(body) {
        assert_eq!(h.record_len(), HEADER_LEN as u64 + u64::from(h.body_len));
    }

    let samples = match decode_body(body, expected) {
        Ok(samples) => samples,
        Err(e) => {
            assert!(e.at <= body.len(), "{e} (body is {} bytes)", body.len());
            return;
        }
    };
    assert_eq!(samples.len(), expected);

    let mut record = Vec::new();
    encode_body(&samples, &mut record);
    assert!(
        record.len() - HEADER_LEN <= body.len(),
        "re-encoded {} bytes from {}",
        record.len() - HEADER_LEN,
        body.len()
    );
    seal(&mut record, expected as u32, 7, -3);
    let h = RecordHeader::parse(&record).expect("a sealed header parses");
    assert_eq!((h.samples as usize, h.seq, h.appended_ms), (expected, 7, -3));
    assert!(h.body_matches(&record[HEADER_LEN..]));
    let again = decode_body(&record[HEADER_LEN..], expected).expect("an encoded body decodes");
    for (a, b) in samples.iter().zip(&again) {
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.value.to_bits(), b.value.to_bits());
        assert_eq!((a.timestamp_ms, a.kind), (b.timestamp_ms, b.kind));
    }
});
