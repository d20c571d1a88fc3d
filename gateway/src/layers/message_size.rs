//! Refuses any request message larger than `limits.max_message_bytes` with RESOURCE_EXHAUSTED,
//! read from the gRPC length prefix before the message itself is buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tonic::Status;
use tower::{Layer, Service};

use super::HttpRequest;

#[derive(Clone, Copy)]
pub struct MessageSizeLayer {
    limit: usize,
}

impl MessageSizeLayer {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSize {
            limit: self.limit,
            inner,
        }
    }
}

#[derive(Clone)]
pub struct MessageSize<S> {
    limit: usize,
    inner: S,
}

impl<S> Service<HttpRequest> for MessageSize<S>
where
    S: Service<HttpRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let limit = self.limit;
        self.inner.call(request.map(|body| {
            tonic::body::Body::new(Framed {
                body,
                frames: FrameCounter::new(limit),
            })
        }))
    }
}

/// Follows the gRPC framing (1 flag byte, 4-byte big-endian length, the message) across body
/// chunks and reports the first message longer than the limit.
#[derive(Debug, Clone)]
pub struct FrameCounter {
    limit: usize,
    header: [u8; 5],
    header_len: usize,
    remaining: usize,
}

impl FrameCounter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
        }
    }

    /// Feeds the next chunk; `Err(len)` names the first oversized message's length.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), usize> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(chunk.len());
                self.remaining -= skip;
                chunk = &chunk[skip..];
                continue;
            }
            let take = (5 - self.header_len).min(chunk.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[..take]);
            self.header_len += take;
            chunk = &chunk[take..];
            if self.header_len == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if len > self.limit {
                    return Err(len);
                }
                self.remaining = len;
                self.header_len = 0;
            }
        }
        Ok(())
    }
}

pin_project_lite::pin_project! {
    struct Framed {
        #[pin]
        body: tonic::body::Body,
        frames: FrameCounter,
    }
}

impl Body for Framed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let frame = match this.body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(len) = this.frames.feed(data)
        {
            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                "a request message of {len} bytes exceeds this gateway's limit of {} bytes; send smaller messages (split a batch) or ask the operator to raise limits.max_message_bytes",
                this.frames.limit
            )))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, len as usize));
        f
    }

    #[test]
    fn messages_within_the_limit_pass_across_chunk_boundaries() {
        let mut stream = frame(10);
        stream.extend(frame(100));
        stream.extend(frame(0));
        for split in 1..stream.len() {
            let mut counter = FrameCounter::new(100);
            for chunk in stream.chunks(split) {
                assert_eq!(counter.feed(chunk), Ok(()), "chunk size {split}");
            }
        }
    }

    #[test]
    fn the_first_oversized_message_is_reported_even_when_its_prefix_is_split() {
        let mut stream = frame(10);
        stream.extend(frame(101));
        for split in 1..8 {
            let mut counter = FrameCounter::new(100);
            let result = stream
                .chunks(split)
                .try_for_each(|chunk| counter.feed(chunk));
            assert_eq!(result, Err(101), "chunk size {split}");
        }
    }
}
