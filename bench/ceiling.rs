//! The ceilings for portcullis's benchmark: a bare hyper server that answers
//! every request with 200 and four small headers, as fast as this machine
//! can (also the upstream behind NGINX in the proxy comparison); and, given
//! a Redis URL and a key, the same server reading that key with one Redis
//! GET per request over one multiplexed connection, as a verify on the
//! redis store must at least (the ceiling for the redis store cases).
//!
//!     cargo run --release --example bench-ceiling -- 127.0.0.1:PORT
//!     cargo run --release --example bench-ceiling -- 127.0.0.1:PORT redis://127.0.0.1:6379/ KEY
//!
//! With Redis, a request whose GET fails or finds nothing is answered 500,
//! so a benchmark never counts an answer that did not read the value.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use redis::AsyncCommands as _;

type Redis = Option<(redis::aio::MultiplexedConnection, Arc<str>)>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().cloned().unwrap_or_else(|| "127.0.0.1:4190".into());
    let redis: Redis = match (args.get(1), args.get(2)) {
        (Some(url), Some(key)) => {
            let client = redis::Client::open(url.as_str()).expect("a Redis URL");
            let mut conn = client.get_multiplexed_async_connection().await.expect("connect to Redis");
            let value: Option<Vec<u8>> = conn.get(key).await.expect("GET");
            let Some(value) = value else {
                eprintln!("bench-ceiling: Redis has no value at {key}");
                std::process::exit(2);
            };
            eprintln!("ceiling reads {} bytes from Redis per request", value.len());
            Some((conn, Arc::from(key.as_str())))
        }
        (None, None) => None,
        _ => {
            eprintln!("usage: bench-ceiling ADDR [REDIS_URL KEY]");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("ceiling listening on {}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let redis = redis.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let redis = redis.clone();
                async move {
                    if let Some((mut conn, key)) = redis {
                        let value: redis::RedisResult<Option<Vec<u8>>> = conn.get(&*key).await;
                        if !matches!(value, Ok(Some(_))) {
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            return Ok::<_, Infallible>(r);
                        }
                    }
                    let mut r = Response::new(Full::new(Bytes::new()));
                    let h = r.headers_mut();
                    h.insert("remote-user", "alice".parse().unwrap());
                    h.insert("remote-email", "alice@example.com".parse().unwrap());
                    h.insert("remote-groups", "family,photos".parse().unwrap());
                    h.insert("remote-role", "user".parse().unwrap());
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
