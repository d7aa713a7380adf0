//! The accept loop under the link server and the edge: HTTP/1.1 connections served by hyper
//! with the limits an open port needs. A client that sends its headers too slowly, lets its
//! body idle or trickle, or stops reading its answer is cut off; one address holds a bounded
//! number of connections (`[http]` in docs/configuration.md).
//!
//! The limits live here, under the router, so that every front end served on the port gets
//! them and no handler has to think of them: a body too slow ends in an error the handlers
//! turn into `408 request_timeout` ([`BodyTooSlow`], see [`crate::body_error`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// `[http]`: how long the server waits on a client, and how many connections one address
/// may hold.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds a client has to send a request's line and headers, counted from the moment the
    /// connection is ready for a request (so an idle keep-alive connection is closed after
    /// as long) (default 30).
    pub header_timeout_secs: u64,
    /// Seconds of a request body's window (default 30): a body that brings fewer than
    /// `body_min_bytes_per_sec` × this many bytes in any such window, counting only the time
    /// the server waits for it, is cut with `408 request_timeout`.
    pub body_timeout_secs: u64,
    /// The slowest body accepted, in bytes per second, averaged over a window (default 1024;
    /// 0: only a body that brings nothing for a whole window is cut).
    pub body_min_bytes_per_sec: u64,
    /// Seconds an answer may wait on a client that does not read it before the connection is
    /// closed (default 60).
    pub send_timeout_secs: u64,
    /// Connections one client address (an IPv6 client: its /64) may hold at once (default
    /// 256); one more is answered
    /// `503 too_many_connections` and closed. Behind a reverse proxy every client has the
    /// proxy's address: raise it there.
    pub connections_per_client: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: 30,
            body_timeout_secs: 30,
            body_min_bytes_per_sec: 1024,
            send_timeout_secs: 60,
            connections_per_client: 256,
        }
    }
}

impl HttpConfig {
    /// Refuses values that would turn a limit off by accident.
    pub fn validate(&self) -> anyhow::Result<()> {
        for t in [self.header_timeout_secs, self.body_timeout_secs, self.send_timeout_secs] {
            anyhow::ensure!(
                (1..=MAX_TIMEOUT_SECS).contains(&t),
                "[http]: the timeouts are between 1 second and a day ({MAX_TIMEOUT_SECS})"
            );
        }
        anyhow::ensure!(self.connections_per_client > 0, "[http]: connections_per_client is at least 1");
        Ok(())
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (idle connections are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: HttpConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors, most likely: wait instead of spinning.
                    tracing::error!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&open, client_of(peer.ip()), config.connections_per_client) else {
            log_refused(peer.ip(), config.connections_per_client);
            tokio::spawn(refuse(stream));
            continue;
        };
        // A chunk is one write; do not let Nagle hold its last segment back.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(SendTimeout::new(stream, secs(config.send_timeout_secs)));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            let read_whole = Arc::new(AtomicBool::new(false));
            let request = request.map(|body| {
                if body.is_end_stream() {
                    read_whole.store(true, Ordering::Relaxed);
                    Body::new(body)
                } else {
                    Body::new(Paced::new(body, config, read_whole.clone()))
                }
            });
            let answer = tower::ServiceExt::oneshot(app.clone(), request);
            async move {
                let mut response = answer.await?;
                // Refused before its body was read (a bad digest header, a failed condition,
                // a client waiting for `100 Continue` that never came): the rest of the body
                // may still be on its way, or never come, and would be read as the next
                // request. The connection ends with this answer.
                if !read_whole.load(Ordering::Relaxed) {
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(secs(config.header_timeout_secs))
            .serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection from {peer}: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Requests in flight get a grace period; a download to a client that reads slowly must
    // not keep the process from stopping.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("stopping with requests still in flight after {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// How long a stopping server waits for the requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The longest timeout accepted (a day): more would be no limit, and could overflow a clock.
const MAX_TIMEOUT_SECS: u64 = 86_400;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Errors of one connection that do not say anything about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One connection of a client address, counted while it lives.
struct Slot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Slot {
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut counts = open.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { open: open.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The answer to a connection over the address's limit, written without reading the
/// request (a client may have sent one already: it sees the answer, then the close).
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"code":"too_many_connections","message":"this address has too many connections open; close some or retry later"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent (a bounded amount, for a second at most) before closing:
        // a socket closed with unread bytes is reset, and the client might then see the reset
        // instead of the answer.
        let mut sink = [0u8; 8192];
        let mut left = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left -= n.min(left),
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Logs a refused connection, at most once every 10 seconds (a flood of them must not
/// flood the log too).
fn log_refused(ip: IpAddr, max: usize) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        tracing::warn!(
            "refusing connections from {ip}: it holds {max} already ([http] connections_per_client)"
        );
    }
}

/// The address a connection is counted under: an IPv4 address, or the /64 of an IPv6 one
/// (one subscriber gets a whole /64, and would otherwise have no limit at all).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// The error a request body ends with when it came too slowly (see [`HttpConfig`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body came too slowly (less than {min} bytes in {window:?})")]
pub struct BodyTooSlow {
    min: u64,
    window: Duration,
}

/// A request body held to a minimum rate: each window of `body_timeout_secs` the server
/// spends waiting on it must bring `body_min_bytes_per_sec` × that many bytes (at least one).
/// The time the handler spends elsewhere (storing the chunks already read) is not counted:
/// the window's deadline moves on by as much.
struct Paced {
    inner: Incoming,
    window: Duration,
    /// Bytes a window must bring.
    needed: u64,
    /// Bytes the current window brought so far.
    got: u64,
    /// Armed at the first poll: the time before the handler first reads is not the client's.
    deadline: Option<Pin<Box<Sleep>>>,
    /// When the last frame was handed out: until the next poll, the handler is busy.
    handed_out: Option<Instant>,
    failed: bool,
    /// Set once the body has been read to its end.
    read_whole: Arc<AtomicBool>,
}

impl Paced {
    fn new(inner: Incoming, config: HttpConfig, read_whole: Arc<AtomicBool>) -> Paced {
        let window = secs(config.body_timeout_secs);
        Paced {
            inner,
            window,
            needed: config.body_min_bytes_per_sec.saturating_mul(config.body_timeout_secs).max(1),
            got: 0,
            deadline: None,
            handed_out: None,
            failed: false,
            read_whole,
        }
    }
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let window = this.window;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
        if let Some(at) = this.handed_out.take() {
            let moved = deadline.deadline() + at.elapsed();
            deadline.as_mut().reset(moved);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.got += data.len() as u64;
                    if this.got >= this.needed {
                        this.got = 0;
                        deadline.as_mut().reset(Instant::now() + window);
                    }
                }
                this.handed_out = Some(Instant::now());
                if this.inner.is_end_stream() {
                    this.read_whole.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.read_whole.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(deadline.as_mut().poll(cx));
                this.failed = true;
                Poll::Ready(Some(Err(Box::new(BodyTooSlow { min: this.needed, window: this.window }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once one has waited `limit` on a client that reads
/// nothing.
struct SendTimeout {
    inner: TcpStream,
    limit: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl SendTimeout {
    fn new(inner: TcpStream, limit: Duration) -> SendTimeout {
        SendTimeout { inner, limit, waiting: None }
    }

    /// Turns a write that waits into an error once it waited too long.
    fn pace<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.waiting = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")))
            }
        }
    }
}

impl AsyncRead for SendTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendTimeout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.pace(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.pace(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.pace(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Resolves when the process gets SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer to one request written raw on `stream`, as text (headers and a short body).
    async fn exchange(stream: &mut TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
    }

    #[tokio::test]
    async fn a_request_refused_before_its_body_was_read_ends_its_connection() {
        use axum::routing::put;
        let app = Router::new()
            .route("/refuse", put(|| async { axum::http::StatusCode::PRECONDITION_FAILED }))
            .route("/read", put(|body: String| async move { body }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, app, HttpConfig::default(), std::future::pending()));

        // A client that waits for `100 Continue` before its body: the refusal comes first, and
        // the connection closes, so that what the client sends next is never read as the body.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(
            &mut s,
            "PUT /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: 40\r\nexpect: 100-continue\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("http/1.1 412"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the server closed the connection");

        // A body read whole keeps the connection for the next request.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let answer =
            exchange(&mut s, "PUT /read HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello").await;
        assert!(answer.starts_with("http/1.1 200") && answer.ends_with("hello"), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
        let again = exchange(&mut s, "PUT /read HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok").await;
        assert!(again.starts_with("http/1.1 200") && again.ends_with("ok"), "{again}");
    }

    #[test]
    fn defaults_validate_and_zero_limits_do_not() {
        HttpConfig::default().validate().unwrap();
        for bad in [
            HttpConfig { header_timeout_secs: 0, ..Default::default() },
            HttpConfig { body_timeout_secs: 0, ..Default::default() },
            HttpConfig { send_timeout_secs: 0, ..Default::default() },
            HttpConfig { connections_per_client: 0, ..Default::default() },
            HttpConfig { body_timeout_secs: u64::MAX, ..Default::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a = client_of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_of("2001:db8:1:2:bbbb::9".parse().unwrap());
        let other = client_of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(client_of(v4), v4);
        assert_eq!(client_of("::ffff:10.1.2.3".parse().unwrap()), v4);
    }

    #[test]
    fn slots_count_per_address_and_free_on_drop() {
        let open = Arc::new(Mutex::new(HashMap::new()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = Slot::take(&open, a, 2).unwrap();
        let _second = Slot::take(&open, a, 2).unwrap();
        assert!(Slot::take(&open, a, 2).is_none());
        let _other = Slot::take(&open, b, 2).expect("another address has its own count");
        drop(first);
        assert!(Slot::take(&open, a, 2).is_some());
    }
}
