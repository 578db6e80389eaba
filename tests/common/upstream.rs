//! A tiny app behind the proxy: answers every request with 200 and the
//! request it received as JSON, and remembers each request, so a test can
//! see exactly which headers reached the app (or that nothing did).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// One request as the app saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Lower-case names; repeated headers keep every value.
    pub headers: BTreeMap<String, Vec<String>>,
}

impl Seen {
    fn from_json(v: &Value) -> Seen {
        let headers = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, vs)| (k.clone(), vs.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()))
            .collect();
        Seen { method: v["method"].as_str().unwrap().into(), uri: v["uri"].as_str().unwrap().into(), headers }
    }

    /// Parses the JSON body the app answered with.
    pub fn parse(body: &str) -> Seen {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not the app's JSON ({e}): {body}"));
        Seen::from_json(&v)
    }

    /// The single value of header `name`, if it was sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.headers.get(&name.to_ascii_lowercase())?;
        assert_eq!(values.len(), 1, "{name} sent {} times: {values:?}", values.len());
        Some(values[0].as_str())
    }
}

/// The running app.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = Arc::clone(&log);
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                        for (name, value) in req.headers() {
                            headers
                                .entry(name.as_str().to_string())
                                .or_default()
                                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
                        }
                        let body = json!({
                            "method": req.method().as_str(),
                            "uri": req.uri().to_string(),
                            "headers": headers,
                        });
                        log.lock().unwrap().push(Seen::from_json(&body));
                        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
                        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Upstream { addr, seen, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many requests reached the app so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
