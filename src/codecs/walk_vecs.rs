//! The vectors a protobuf request walk fills (remote-write 1.0 in
//! `remote_write::v1`, tsrelay's own gRPC/Kafka protobuf in `protobuf`),
//! kept between requests.
//!
//! A walk holds every series' labels and samples as slices of the body, in
//! flat vectors; a 10,000-series request's labels alone take 1.6 MB. Grown by
//! doubling from empty for every request, they were fresh mappings faulted in
//! page by page and most of remote-write in's page faults (BENCHMARKS.md,
//! fifteenth session). The pools keep about one request's worth of each
//! vector, bounded in bytes ([`BYTES`], an item of the start-up memory budget).
//! Each walk's own series type has a pool next to it, [`SERIES_BYTES`] each.

use crate::limits::KeptVecs;

/// Bound of each codec's pool of series entries.
pub const SERIES_BYTES: usize = 1 << 20;
const LABEL_BYTES: usize = 2 << 20;
const SAMPLE_BYTES: usize = 256 << 10;
/// The shared pools and the two codecs' series pools together.
pub const BYTES: usize = LABEL_BYTES + SAMPLE_BYTES + 2 * SERIES_BYTES;

/// Label name and value pairs, as byte slices (a pair of `&str` has the same layout).
pub static LABELS: KeptVecs<(&'static [u8], &'static [u8])> = KeptVecs::new(LABEL_BYTES);
/// `(value, timestamp)` of every sample.
pub static SAMPLES: KeptVecs<(f64, i64)> = KeptVecs::new(SAMPLE_BYTES);

/// The allocation of an emptied vector as a vector of another element type
/// of the same layout (borrowed slices of another lifetime, `&str` for
/// `&[u8]`): collecting nothing from a vector's own iterator reuses its
/// allocation (std's in-place collection). Were that not applied, the result
/// would merely be a new empty vector, which the pools do not keep.
pub fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    const { assert!(std::mem::size_of::<T>() == std::mem::size_of::<U>()) };
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// Hands a walk's samples vector back, emptied.
pub fn give_back_samples(mut samples: Vec<(f64, i64)>) {
    samples.clear();
    SAMPLES.give_back(samples);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycling_keeps_the_allocation() {
        let bytes = b"abc".to_vec();
        let mut v: Vec<(&[u8], &[u8])> = Vec::with_capacity(1000);
        v.push((&bytes[..1], &bytes[1..]));
        let ptr = v.as_ptr() as usize;
        let back: Vec<(&'static str, &'static str)> = recycle(v);
        assert_eq!((back.as_ptr() as usize, back.capacity(), back.len()), (ptr, 1000, 0));
    }
}
