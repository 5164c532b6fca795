//! The gRPC listeners' accept loop: at most [`GRPC_CONNECTIONS`] connections held at once (more
//! wait in the kernel's backlog until one closes), no Nagle, and accept failures (out of file
//! descriptors) backed off and logged within a budget instead of spun on — tonic's own
//! `TcpIncoming` has neither bound.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// gRPC connections held at once by one listener.
pub const GRPC_CONNECTIONS: usize = 256;

/// An accepted connection holding its place among [`GRPC_CONNECTIONS`] until it closes.
pub struct Limited {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

/// The connections `listener` accepts, at most `max` held at once, for
/// `serve_with_incoming_shutdown`.
pub fn incoming(
    listener: TcpListener,
    max: usize,
) -> impl futures_util::Stream<Item = std::io::Result<Limited>> {
    let permits = Arc::new(Semaphore::new(max));
    // (listener, places, when a failure was last logged and how many since, back-off)
    let state = (listener, permits, (None, 0u64), Duration::from_millis(10));
    futures_util::stream::unfold(state, |(l, permits, mut log, mut backoff)| async move {
        loop {
            let permit = permits.clone().acquire_owned().await.ok()?;
            match l.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    let next = (l, permits, log, Duration::from_millis(10));
                    return Some((
                        Ok(Limited {
                            inner: s,
                            _permit: permit,
                        }),
                        next,
                    ));
                }
                Err(e) => {
                    drop(permit);
                    // One line per 10 s at most, with how many were left out.
                    let now = std::time::Instant::now();
                    let (last, left_out): (Option<std::time::Instant>, u64) = log;
                    if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, left_out, "gRPC accept failed");
                        log = (Some(now), 0);
                    } else {
                        log = (last, left_out + 1);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    })
}
