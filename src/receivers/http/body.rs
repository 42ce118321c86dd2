//! A request body read whole into one buffer sized from `Content-Length`,
//! taken from the buffers earlier requests used ([`crate::codecs::buffers`]).
//!
//! Why not axum's `Bytes` extractor: it gathers the frames hyper hands over
//! and then copies them into a new buffer for every request. A body of some
//! hundred kilobytes is above the allocator's mmap threshold
//! (`limits::allocator`), so that buffer was mapped, faulted in page by page
//! (the kernel zeroing each page) and unmapped for every request. A pooled
//! buffer is already resident. A body of a single frame is kept as it came.

use std::io::Write;
use std::ops::Deref;

use axum::body::{Body, Bytes};
use futures::StreamExt;
use hyper::HeaderMap;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH};

use crate::codecs::buffers;

/// A whole request body: one frame as it came, or a buffer that goes back to the pool.
#[derive(Debug)]
pub enum WholeBody {
    Frame(Bytes),
    Pooled(Vec<u8>),
}

impl WholeBody {
    /// An empty buffer for a body of `capacity` bytes (a gunzipped one), from the pool;
    /// [`WholeBody::Pooled`] returns it there.
    pub fn buffer(capacity: usize) -> Vec<u8> {
        buffers::take_empty(capacity)
    }
}

impl Deref for WholeBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            WholeBody::Frame(b) => b,
            WholeBody::Pooled(v) => v,
        }
    }
}

impl Drop for WholeBody {
    fn drop(&mut self) {
        if let WholeBody::Pooled(v) = self {
            buffers::give_back(std::mem::take(v));
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body exceeds max_body_bytes ({max} bytes)")]
    TooLarge { max: usize },
    #[error("body exceeds max_body_bytes ({max} bytes) after gunzip")]
    TooLargeUnpacked { max: usize },
    #[error("reading the request body: {0}")]
    Read(String),
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    #[error("unsupported Content-Encoding {0:?}; use gzip or none")]
    Encoding(String),
}

impl BodyError {
    /// 413 for a body over the limit, 415 for an unknown encoding, 400 for one that broke off
    /// or does not gunzip.
    pub fn status(&self) -> hyper::StatusCode {
        match self {
            BodyError::TooLarge { .. } | BodyError::TooLargeUnpacked { .. } => hyper::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Encoding(_) => hyper::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Read(_) | BodyError::Gzip(_) => hyper::StatusCode::BAD_REQUEST,
        }
    }
}

/// A body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub fn of(headers: &HeaderMap) -> Result<Encoding, BodyError> {
        let encoding = headers
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
            .trim()
            .to_ascii_lowercase();
        match encoding.as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            _ => Err(BodyError::Encoding(encoding)),
        }
    }
}

/// The declared `Content-Length`, refused when over `max` (before anything is read).
fn declared_length(headers: &HeaderMap, max: usize) -> Result<Option<u64>, BodyError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max });
    }
    Ok(declared)
}

/// The length a body arrives with when it is not gzipped (its declared `Content-Length`, at most
/// `max`), 0 otherwise: a hint for sizing what it decodes to.
pub fn plain_length_hint(headers: &HeaderMap, max: usize) -> usize {
    match (Encoding::of(headers), declared_length(headers, max)) {
        (Ok(Encoding::Identity), Ok(Some(n))) => n as usize,
        _ => 0,
    }
}

/// Hands `body` to `consume` as it arrives, gunzipped if its `Content-Encoding` says so:
/// for decoders that work on a stream (line protocol), so that the body is never held
/// whole. At most `max` bytes, on the wire and after gunzip. Returns the declared
pub async fn read_streaming(
    body: Body,
    headers: &HeaderMap,
    max: usize,
    mut consume: impl FnMut(&[u8]),
) -> Result<(), BodyError> {
    let encoding = Encoding::of(headers)?;
    declared_length(headers, max)?;
    let mut frames = body.into_data_stream();
    let mut len = 0usize;
    let mut to = match encoding {
        Encoding::Identity => Destination::Plain(&mut consume),
        Encoding::Gzip => Destination::Gunzip(Box::new(flate2::write::MultiGzDecoder::new(Unpacked {
            consume: &mut consume,
            len: 0,
            max,
        }))),
    };
    while let Some(data) = frames.next().await {
        let data = data.map_err(|e| BodyError::Read(e.to_string()))?;
        len += data.len();
        if len > max {
            return Err(BodyError::TooLarge { max });
        }
        match &mut to {
            Destination::Plain(consume) => consume(&data),
            Destination::Gunzip(decoder) => decoder.write_all(&data).map_err(|e| unpack_error(e, max))?,
        }
    }
    if let Destination::Gunzip(decoder) = to {
        decoder.finish().map_err(|e| unpack_error(e, max))?;
    }
    Ok(())
}

/// Where [`read_streaming`] hands a body's bytes.
enum Destination<'c, F: FnMut(&[u8])> {
    Plain(&'c mut F),
    // Boxed: the decoder's state is large, and most bodies are not gzipped.
    Gunzip(Box<flate2::write::MultiGzDecoder<Unpacked<'c, F>>>),
}

/// Where gunzipped bytes go, counted against the limit.
struct Unpacked<'c, F> {
    consume: &'c mut F,
    len: usize,
    max: usize,
}

/// What [`Unpacked`] reports when the limit is passed (told apart from a gzip error).
#[derive(Debug, thiserror::Error)]
#[error("over the limit after gunzip")]
struct OverLimit;

impl<F: FnMut(&[u8])> std::io::Write for Unpacked<'_, F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len();
        if self.len > self.max {
            return Err(std::io::Error::other(OverLimit));
        }
        (self.consume)(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn unpack_error(e: std::io::Error, max: usize) -> BodyError {
    if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
        BodyError::TooLargeUnpacked { max }
    } else {
        BodyError::Gzip(e.to_string())
    }
}

/// Reads `body` whole, at most `max` bytes; a declared length over `max` is refused
/// before anything is read.
pub async fn read_whole(body: Body, headers: &HeaderMap, max: usize) -> Result<WholeBody, BodyError> {
    let declared = declared_length(headers, max)?;
    let mut frames = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut joined: Option<Vec<u8>> = None;
    let mut len = 0usize;
    while let Some(data) = frames.next().await {
        let data = data.map_err(|e| BodyError::Read(e.to_string()))?;
        len += data.len();
        if len > max {
            return Err(BodyError::TooLarge { max });
        }
        match (&mut joined, first.take()) {
            (Some(buf), _) => buf.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                // A second frame: from here on one buffer, sized once when the length is known.
                let capacity = declared.map_or(0, |n| n as usize).max(earlier.len() + data.len());
                let mut buf = buffers::take_empty(capacity);
                buf.extend_from_slice(&earlier);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(match (joined, first) {
        (Some(buf), _) => WholeBody::Pooled(buf),
        (None, Some(only)) => WholeBody::Frame(only),
        (None, None) => WholeBody::Frame(Bytes::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let frames = parts.iter().map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))).collect::<Vec<_>>();
        Body::from_stream(futures::stream::iter(frames))
    }

    fn declared(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, n.into());
        h
    }

    #[tokio::test]
    async fn frames_are_joined_into_one_buffer_of_the_declared_size() {
        let body = read_whole(chunked(&[b"m v=1\n", b"m v=2\n", b"m v=3\n"]), &declared(18), 100).await.unwrap();
        assert_eq!(&body[..], b"m v=1\nm v=2\nm v=3\n");
        // Without a declared length too.
        let body = read_whole(chunked(&[b"ab", b"cd"]), &HeaderMap::new(), 100).await.unwrap();
        assert_eq!(&body[..], b"abcd");
        let body = read_whole(chunked(&[]), &HeaderMap::new(), 100).await.unwrap();
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn a_single_frame_is_not_copied() {
        static ONE: &[u8] = b"m v=1\n";
        let body = read_whole(chunked(&[ONE]), &declared(ONE.len()), 100).await.unwrap();
        assert_eq!(body.as_ptr(), ONE.as_ptr());
    }

    #[tokio::test]
    async fn over_the_limit_declared_or_sent_is_refused() {
        let e = read_whole(chunked(&[b"0123456789"]), &declared(10), 9).await.unwrap_err();
        assert!(matches!(e, BodyError::TooLarge { max: 9 }), "{e}");
        // A sender that declares less than it sends (or nothing) is cut off at the limit.
        let e = read_whole(chunked(&[b"01234", b"56789"]), &HeaderMap::new(), 9).await.unwrap_err();
        assert_eq!(e.to_string(), "body exceeds max_body_bytes (9 bytes)");
        assert_eq!(e.status(), hyper::StatusCode::PAYLOAD_TOO_LARGE);
    }
}
