//! The shape shared by the layers that decide, before a call runs, whether it may run:
//! a [`Policy`] admits a request (possibly returning a permit held until the response body
//! ends, so a stream holds it for its whole life) or refuses it with a status.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::{HttpRequest, HttpResponse, refuse};

/// An admission decision for one request.
pub trait Policy: Clone + Send + Sync + 'static {
    /// Held until the call's response body is finished.
    type Permit: Send + Sync + 'static;

    fn admit(&self, request: &mut HttpRequest) -> Result<Self::Permit, tonic::Status>;
}

/// Applies a [`Policy`] to every request.
#[derive(Clone)]
pub struct AdmissionLayer<P>(pub P);

impl<P: Clone, S> Layer<S> for AdmissionLayer<P> {
    type Service = Admission<P, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            policy: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Admission<P, S> {
    policy: P,
    inner: S,
}

impl<P, S> Service<HttpRequest> for Admission<P, S>
where
    P: Policy,
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        match self.policy.admit(&mut request) {
            Err(status) => Box::pin(async move { Ok(refuse(status)) }),
            Ok(permit) => {
                let fut = self.inner.call(request);
                Box::pin(async move {
                    let response = fut.await?;
                    Ok(response.map(|body| tonic::body::Body::new(Holding { body, permit })))
                })
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps a permit alive until it ends.
    struct Holding<P> {
        #[pin]
        body: tonic::body::Body,
        permit: P,
    }
}

impl<P> http_body::Body for Holding<P> {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
