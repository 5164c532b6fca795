//! `mediator-serve`: what both daemons serve beside their gRPC APIs — the Prometheus `/metrics`
//! endpoint (HTTP/1.1, the OpenMetrics text of a `prometheus-client` registry) — and the rule
//! both apply before they listen anywhere: off loopback only when the operator says so, since
//! the APIs have no authentication yet.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
pub use prometheus_client;
use prometheus_client::registry::Registry;

/// Why a daemon may not listen on `addr`, or `None` when it may: a listener off loopback
/// carries no authentication yet, so anyone who reaches it could use it; it is allowed only with
/// `insecure` (the operator's `--insecure-listen`), and then [`warn_insecure`] says so.
pub fn listen_refusal(addr: SocketAddr, insecure: bool) -> Option<String> {
    if addr.ip().is_loopback() || insecure {
        return None;
    }
    Some(format!(
        "{addr} is not a loopback address, and this listener has no authentication: anyone \
         who reaches it could use it. Listen on loopback (e.g. 127.0.0.1), or accept that with \
         --insecure-listen"
    ))
}

/// The warning at start for a listener off loopback that the operator accepted.
pub fn warn_insecure(setting: &str, addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            setting,
            listen = %addr,
            "listening off loopback without authentication (--insecure-listen): anyone who reaches this address can use it"
        );
    }
}

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
    use prometheus_client::encoding::EncodeMetric;
    use prometheus_client::metrics::counter::ConstCounter;
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    if let [(labels, v)] = series
        && labels.is_empty()
    {
        // One series without labels: `name_total 3`, not `name_total{} 3`.
        return ConstCounter::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Writes gauge `name` with one value per label set (see [`counter`]).
pub fn gauge(
    enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, i64)],
) -> std::fmt::Result {
    use prometheus_client::encoding::EncodeMetric;
    use prometheus_client::metrics::gauge::ConstGauge;
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    if let [(labels, v)] = series
        && labels.is_empty()
    {
        return ConstGauge::new(*v).encode(m);
    }
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
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

/// Serves `GET /metrics` on `listener` with `registry`'s metrics until the task is dropped.
/// Bounded: at most [`MAX_CONNECTIONS`] at once, headers within [`HEADER_TIMEOUT`], each
/// connection at most [`CONNECTION_LIMIT`]; a failing accept (out of file descriptors) backs off
/// instead of spinning.
pub async fn serve_metrics(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(respond(&req, &registry)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
        });
    }
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
    fn only_loopback_without_the_operator_s_word() {
        let lo: SocketAddr = "127.0.0.1:9100".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:9100".parse().expect("addr");
        let off: SocketAddr = "198.18.0.1:9100".parse().expect("addr");
        assert_eq!(listen_refusal(lo, false), None);
        assert_eq!(listen_refusal(lo6, false), None);
        let e = listen_refusal(off, false).expect("refused");
        assert!(
            e.starts_with("198.18.0.1:9100 is not a loopback address")
                && e.contains("--insecure-listen"),
            "{e}"
        );
        assert_eq!(listen_refusal(off, true), None);
    }

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
