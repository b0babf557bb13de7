//! The accept loop: connections, their timeouts and their limits.
//!
//! `axum::serve` has no timer, so an idle or a slow client could hold a
//! connection (and a file descriptor) for ever: 1,000 of them made the
//! server unreachable. This loop serves each connection with hyper's own
//! builder and a timer, and:
//!
//! - closes a connection whose request headers do not arrive within
//!   [`Limits::header_timeout`]; hyper starts that timer again whenever a
//!   kept-alive connection waits for its next request, so it is also the
//!   idle timeout (a streaming response such as `/api/live` is not idle);
//! - caps connections per client address ([`Limits::per_client`]) and in
//!   all ([`Limits::total`], below the open-file limit, which
//!   [`raise_open_file_limit`] lifts to the hard limit at start); a
//!   connection over a cap gets a short `503` saying which cap and is
//!   closed, so the client knows why;
//! - tells handlers who is calling (`ConnectInfo<SocketAddr>`);
//! - keeps accepting when `accept` fails (out of descriptors for a moment).
//!
//! A request body must arrive whole within [`Limits::body_timeout`]
//! (the `read_body` middleware in `mod.rs`).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

pub use crate::app::Limits;

/// Raises the soft open-file limit to the hard limit and returns it (the
/// default soft limit of 1,024 lets a few hundred idle clients lock
/// everyone else out).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write and read the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                return None;
            }
            if r.rlim_cur < r.rlim_max {
                let want = libc::rlimit {
                    rlim_cur: r.rlim_max,
                    rlim_max: r.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    r.rlim_cur = r.rlim_max;
                }
            }
        }
        Some(r.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Open connections per client address.
#[derive(Default)]
struct Counts {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// One counted connection; uncounted when dropped.
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = match self.counts.per_ip.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Counts {
    /// A slot for a new connection, or why not.
    fn take(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Slot, String> {
        use std::sync::atomic::Ordering;
        let mut m = match self.per_ip.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mine = m.get(&ip).copied().unwrap_or(0);
        if mine >= limits.per_client {
            return Err(format!(
                "too many connections from {ip}: {mine} open, at most {} per client; \
                 close idle ones and retry",
                limits.per_client
            ));
        }
        if self.total.load(Ordering::Relaxed) >= limits.total {
            return Err(format!(
                "the server holds its most connections ({}); retry shortly",
                limits.total
            ));
        }
        *m.entry(ip).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            counts: self.clone(),
            ip,
        })
    }
}

/// Answers a connection over a cap with a 503 and closes it.
async fn refuse(mut tcp: tokio::net::TcpStream, why: String) {
    let body = serde_json::json!({
        "type": "https://onemap.invalid/problems/503",
        "title": "Service Unavailable",
        "status": 503,
        "detail": why,
    })
    .to_string();
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(msg.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

pub use crate::app::Tls;

/// Serves `app` on `listener` until `shutdown` resolves, then lets the open
/// connections finish (at most `grace`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let counts = Arc::new(Counts::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1 only: the auto (h1/h2) builder first waits for the client's
    // first bytes to tell the versions apart, with no timeout, so a client
    // that connects and says nothing would be held for ever. Browsers speak
    // HTTP/1.1 to a plain-http server anyway.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it
                    // was accepted: wait a moment, keep serving.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let slot = match counts.take(remote.ip(), &limits) {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!("refused a connection: {why}");
                tokio::spawn(refuse(tcp, why));
                continue;
            }
        };
        // A live frame is one small write that must leave now; with
        // Nagle's algorithm it waited for the client's delayed ACK (up to
        // 40 ms: measured in BENCHMARKS.md, replication lag p99 40 → 4 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let handshake = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let r = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(tcp), svc))
                        .await
                }
                Some(Tls(acceptor)) => {
                    // The handshake has the header timeout too: a client
                    // that opens and says nothing is not held.
                    match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), svc))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!("TLS handshake from {remote}: {e}");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!("connection from {remote}: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("connections still open after {} s; stopping anyway", grace.as_secs());
        }
    }
    Ok(())
}
