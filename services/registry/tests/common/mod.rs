//! A small recording HTTP server on loopback, standing in for hostile registries, token
//! services and internal hosts in attack tests.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, Uri};

/// One request a server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub authorization: Option<String>,
}

pub type Answer = Arc<dyn Fn(&Method, &Uri, &HeaderMap) -> Response<Body> + Send + Sync>;

/// A loopback HTTP server that records every request and answers with `answer`.
pub struct Server {
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(answer: Answer) -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into(), answer).await
    }

    /// On `ip` instead of loopback.
    pub async fn start_on(ip: std::net::IpAddr, answer: Answer) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let log = Arc::clone(&log);
            let answer = Arc::clone(&answer);
            async move {
                log.lock().expect("lock").push(Seen {
                    method: req.method().clone(),
                    path: req.uri().path().to_owned(),
                    authorization: req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                });
                answer(req.method(), req.uri(), req.headers())
            }
        });
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { addr, seen, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn respond(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(body.into()).expect("response")
}
