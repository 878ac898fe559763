//! A small HTTP proxy that injects faults in front of a real service: a registry that
//! answers 500 for a while, a KMS that answers "throttled" to the first calls. Requests
//! that no fault matches are forwarded unchanged (the `Host` header included, so that a
//! registry builds its upload URLs with the proxy's address), and every request is
//! counted.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use signet_testkit::proxy::{Fault, FaultProxy};
//! let proxy = FaultProxy::start("http://127.0.0.1:5000").await?;
//! proxy.inject(Fault::status(500).times(3));
//! proxy.inject(Fault::status(400).when(|r| r.header("x-amz-target") == Some("TrentService.Sign")));
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tokio::task::JoinHandle;

/// What a fault sees of a request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Matcher = Box<dyn Fn(&Seen) -> bool + Send + Sync>;

/// An answer the proxy gives instead of forwarding.
pub struct Fault {
    matcher: Matcher,
    status: StatusCode,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// How many more times; `None` until cleared.
    remaining: Option<usize>,
}

impl Fault {
    /// Answers every request with `status` and an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            matcher: Box::new(|_| true),
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: Bytes::new(),
            headers: Vec::new(),
            remaining: None,
        }
    }

    /// Only for requests `matcher` accepts.
    pub fn when(mut self, matcher: impl Fn(&Seen) -> bool + Send + Sync + 'static) -> Self {
        self.matcher = Box::new(matcher);
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }
}

#[derive(Default)]
struct Shared {
    faults: Vec<Fault>,
    seen: Vec<Seen>,
    faulted: Vec<Seen>,
}

struct Inner {
    upstream: String,
    http: reqwest::Client,
    shared: Mutex<Shared>,
}

/// The running proxy; stopped when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only(Vec::new())
            .timeout(Duration::from_secs(60))
            // The client under test follows redirects itself.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the proxy's HTTP client")?;
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http,
            shared: Mutex::new(Shared::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("the fault proxy cannot bind a loopback port")?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// `127.0.0.1:PORT`: the registry part of an image reference through the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault; faults are tried in the order they were added.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every fault: from now on everything is forwarded.
    pub fn heal(&self) {
        self.lock().faults.clear();
    }

    /// Requests seen so far (forwarded or not) that `filter` accepts.
    pub fn seen(&self, filter: impl Fn(&Seen) -> bool) -> usize {
        self.lock().seen.iter().filter(|s| filter(s)).count()
    }

    /// Requests answered by a fault so far that `filter` accepts.
    pub fn faulted(&self, filter: impl Fn(&Seen) -> bool) -> usize {
        self.lock().faulted.iter().filter(|s| filter(s)).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inner
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hop-by-hop headers a proxy does not pass on (RFC 9110 section 7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

async fn forward(State(inner): State<Arc<Inner>>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let seen = Seen {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
    };
    let fault = {
        let mut shared = inner
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shared.seen.push(seen.clone());
        let hit = shared
            .faults
            .iter_mut()
            .find(|f| f.remaining != Some(0) && (f.matcher)(&seen));
        let answer = hit.map(|f| {
            if let Some(n) = f.remaining.as_mut() {
                *n -= 1;
            }
            (f.status, f.body.clone(), f.headers.clone())
        });
        if answer.is_some() {
            shared.faulted.push(seen.clone());
        }
        answer
    };
    if let Some((status, body, headers)) = fault {
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        for (k, v) in headers {
            resp.headers_mut().insert(k, v);
        }
        return resp;
    }
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("proxy: reading the body: {e}"),
            )
        }
    };
    let mut out = inner
        .http
        .request(parts.method, format!("{}{path}", inner.upstream))
        .body(body);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) && k != "content-length" {
            out = out.header(k, v);
        }
    }
    let upstream = match out.send().await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("proxy: upstream: {e}")),
    };
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("proxy: upstream body: {e}"),
            )
        }
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    // Content-Length is kept: the body is passed on whole, and a HEAD answer must say
    // the length of what a GET would return.
    for (k, v) in &headers {
        if !hop_by_hop(k) {
            resp.headers_mut().append(k, v.clone());
        }
    }
    resp
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(message));
    *resp.status_mut() = status;
    resp
}
