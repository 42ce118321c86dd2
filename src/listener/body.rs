//! Body wrappers: a total deadline on reading a request body, and a value
//! kept alive until a response body has been sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Set when a [`DeadlineBody`] ran out of time.
#[derive(Debug, Clone, Default)]
pub struct Expired(Arc<AtomicBool>);

impl Expired {
    pub fn fired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?} (timeouts.body_read)")]
pub struct BodyReadTimeout(Duration);

pin_project_lite::pin_project! {
    /// A request body that must be complete within a fixed time from its
    /// creation: a client trickling bytes cannot keep a request (and the
    /// worker reading it) alive, however steadily it sends.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: tokio::time::Sleep,
        limit: Duration,
        expired: Expired,
    }
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> (Self, Expired) {
        let expired = Expired::default();
        let body = DeadlineBody { inner, deadline: tokio::time::sleep(limit), limit, expired: expired.clone() };
        (body, expired)
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.poll(cx).is_ready() {
            this.expired.0.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout(*this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps `guard` alive until it is dropped, that is
    /// until the response was sent or the client went away.
    pub struct WithGuard<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

impl<B, G> WithGuard<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        WithGuard { inner, guard }
    }
}

impl<B: Body, G> Body for WithGuard<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_trickling_body_fails_at_the_deadline() {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
        let stream = http_body_util::StreamBody::new(rx);
        let (body, expired) = DeadlineBody::new(stream, Duration::from_millis(300));
        let feeder = tokio::spawn(async move {
            let mut tx = tx;
            for _ in 0..10 {
                use futures::SinkExt;
                if tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let err = body.collect().await.expect_err("deadline");
        assert!(err.to_string().contains("timeouts.body_read"), "{err}");
        assert!(expired.fired());
        feeder.abort();
    }

    #[tokio::test]
    async fn a_complete_body_passes() {
        let (body, expired) =
            DeadlineBody::new(http_body_util::Full::new(Bytes::from_static(b"abc")), Duration::from_secs(1));
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"abc");
        assert!(!expired.fired());
    }
}
