//! Bounds every unary call by the server's deadline, or by the caller's `grpc-timeout` when
//! that is shorter, answering DEADLINE_EXCEEDED when it passes. Streaming calls are exempt:
//! a subscription or a bank link is meant to stay open.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use tower::{Layer, Service};

use super::{HttpRequest, HttpResponse, refuse};

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[derive(Clone)]
pub struct DeadlineLayer {
    limit: Duration,
    streaming: Arc<HashSet<String>>,
}

impl DeadlineLayer {
    /// `streaming` holds the paths (`/package.Service/Method`) of streaming methods.
    pub fn new(limit: Duration, streaming: HashSet<String>) -> Self {
        Self {
            limit,
            streaming: Arc::new(streaming),
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            layer: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Deadline<S> {
    layer: DeadlineLayer,
    inner: S,
}

impl<S> Service<HttpRequest> for Deadline<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if self.layer.streaming.contains(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let limit = self.layer.limit;
        let asked = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let (deadline, source) = match asked {
            Some(asked) if asked < limit => (asked, "the caller's grpc-timeout"),
            _ => (limit, "the gateway's limits.request_deadline_ms"),
        };
        let path = request.uri().path().to_owned();
        let fut = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(deadline, fut).await {
                Ok(result) => result,
                Err(_) => Ok(refuse(Status::deadline_exceeded(format!(
                    "{path} did not finish within {} ms, the deadline set by {source}; retry later or with a longer grpc-timeout (at most {} ms)",
                    deadline.as_millis(),
                    limit.as_millis()
                )))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn request(path: &str, timeout: Option<&str>) -> HttpRequest {
        let mut builder = http::Request::builder().uri(path);
        if let Some(t) = timeout {
            builder = builder.header("grpc-timeout", t);
        }
        builder.body(tonic::body::Body::empty()).unwrap()
    }

    /// A service that answers OK after `delay`.
    fn slow(
        delay: Duration,
    ) -> impl Service<
        HttpRequest,
        Response = HttpResponse,
        Error = Infallible,
        Future = BoxFuture<'static, Result<HttpResponse, Infallible>>,
    > + Clone {
        tower::service_fn(
            move |_req: HttpRequest| -> BoxFuture<'static, Result<HttpResponse, Infallible>> {
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    Ok(http::Response::new(tonic::body::Body::empty()))
                })
            },
        )
    }

    fn status_of(response: &HttpResponse) -> Option<tonic::Code> {
        tonic::Status::from_header_map(response.headers()).map(|s| s.code())
    }

    #[test]
    fn grpc_timeouts_parse_by_the_spec() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("123456789m"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_unary_call_gets_deadline_exceeded() {
        let layer = DeadlineLayer::new(Duration::from_millis(50), HashSet::new());
        let mut svc = layer.layer(slow(Duration::from_millis(200)));
        let response = svc
            .call(request("/wagelink.v1.Identity/WhoAmI", None))
            .await
            .unwrap();
        assert_eq!(status_of(&response), Some(tonic::Code::DeadlineExceeded));

        let mut fast = layer.layer(slow(Duration::from_millis(10)));
        let response = fast
            .call(request("/wagelink.v1.Identity/WhoAmI", None))
            .await
            .unwrap();
        assert_eq!(status_of(&response), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_callers_shorter_timeout_wins_and_streams_are_exempt() {
        let streaming = HashSet::from(["/wagelink.v1.Delivery/Subscribe".to_owned()]);
        let layer = DeadlineLayer::new(Duration::from_secs(30), streaming);
        let mut svc = layer.layer(slow(Duration::from_millis(200)));
        let response = svc.call(request("/x.Y/Z", Some("100m"))).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(
            status.message().contains("grpc-timeout"),
            "{}",
            status.message()
        );

        let mut svc = layer.layer(slow(Duration::from_secs(60)));
        let response = svc
            .call(request("/wagelink.v1.Delivery/Subscribe", None))
            .await
            .unwrap();
        assert_eq!(status_of(&response), None);
    }
}
