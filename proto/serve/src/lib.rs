//! `mediator-serve`: what both daemons serve beside their gRPC APIs — the Prometheus `/metrics`
//! endpoint (HTTP/1.1, the OpenMetrics text of a `prometheus-client` registry) — and the
//! authentication of both APIs ([`auth`]), with the rule both apply before they listen anywhere:
//! off loopback only with authentication, or when the operator says so.

pub mod auth;
pub mod incoming;
pub use auth::{ServerAuth, listen_refusal, warn_insecure};

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
pub use prometheus_client;
use prometheus_client::registry::Registry;

/// Label pairs of one series: (name, value).
pub type Labels<'a> = Vec<(&'static str, std::borrow::Cow<'a, str>)>;

/// Writes counter `name` (exposed as `name_total`) with one value per label set, for a
/// [`prometheus_client::collector::Collector`] that reads its figures at scrape time.
pub fn counter(
    enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, u64)],
) -> std::fmt::Result {
    use prometheus_client::metrics::counter::ConstCounter;
    let series = series.iter().map(|(l, v)| (l, ConstCounter::new(*v)));
    family(enc, name, help, series)
}

/// Writes gauge `name` with one value per label set (see [`counter`]).
pub fn gauge(
    enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, i64)],
) -> std::fmt::Result {
    use prometheus_client::metrics::gauge::ConstGauge;
    let series = series.iter().map(|(l, v)| (l, ConstGauge::new(*v)));
    family(enc, name, help, series)
}

/// One metric family of constant series, of the type of its series: one series without labels
/// is written `name 3`, not `name{} 3`.
fn family<'a, 'l: 'a, M>(
    enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl ExactSizeIterator<Item = (&'a Labels<'l>, M)>,
) -> std::fmt::Result
where
    M: prometheus_client::encoding::EncodeMetric + prometheus_client::metrics::TypedMetric,
{
    let mut m = enc.encode_descriptor(name, help, None, M::TYPE)?;
    let lone = series.len() == 1;
    for (labels, v) in series {
        if lone && labels.is_empty() {
            return v.encode(m);
        }
        v.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Connections to the metrics endpoint served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A request's headers must arrive within this (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this, whatever it is doing.
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A TLS handshake on the metrics listener must end within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` with `registry`'s metrics until the task is dropped, with
/// `auth`'s TLS and token when configured. Bounded: at most [`MAX_CONNECTIONS`] at once, a TLS
/// handshake within [`HANDSHAKE_TIMEOUT`], headers within [`HEADER_TIMEOUT`], each connection at
/// most [`CONNECTION_LIMIT`]; a failing accept (out of file descriptors) backs off instead of
/// spinning.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    auth: ServerAuth,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let acceptor = auth.acceptor();
    let auth = Arc::new(auth);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // dropped: closed
        };
        let (registry, auth, acceptor) = (registry.clone(), auth.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (registry, auth) = (registry.clone(), auth.clone());
                async move { Ok::<_, Infallible>(respond_to(&req, &registry, &auth)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, async {
                match acceptor {
                    Some(a) => {
                        // A failed handshake (no or a wrong client certificate) just closes.
                        if let Ok(Ok(tls)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(stream)).await
                        {
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            })
            .await;
        });
    }
}

/// [`respond`] behind `auth`'s token: `401` with `WWW-Authenticate: Bearer` without it.
pub fn respond_to<B>(
    req: &Request<B>,
    registry: &Registry,
    auth: &ServerAuth,
) -> Response<Full<Bytes>> {
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !auth.admits(presented) {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"a bearer token is required\n",
        )));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    respond(req, registry)
}

/// The answer to one request: the metrics for `GET /metrics`, a short error otherwise.
pub fn respond<B>(req: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found: GET /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    if let Ok(v) = CONTENT_TYPE.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn metrics_on_get_metrics_and_short_errors_elsewhere() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry.register("mediator_test", "A test counter", c.clone());
        c.inc_by(3);
        let get = |method: Method, path: &str| {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .expect("request");
            respond(&req, &registry)
        };
        let ok = get(Method::GET, "/metrics");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("\nmediator_test_total 3\n"), "{text}");
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[hyper::header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(get(Method::GET, "/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            get(Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}

#[cfg(test)]
mod collector_tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
            counter(&mut enc, "mediator_plain", "One series", &[(Vec::new(), 7)])?;
            gauge(
                &mut enc,
                "mediator_by_path",
                "Two series",
                &[
                    (vec![("path", "xdp".into())], 1),
                    (vec![("path", "userspace".into())], 2),
                ],
            )
        }
    }

    #[test]
    fn series_are_written_with_and_without_labels() {
        let mut r = Registry::default();
        r.register_collector(Box::new(Two));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
        assert!(text.contains("\nmediator_plain_total 7\n"), "{text}");
        assert!(
            text.contains("mediator_by_path{path=\"xdp\"} 1\n")
                && text.contains("mediator_by_path{path=\"userspace\"} 2\n"),
            "{text}"
        );
    }
}
