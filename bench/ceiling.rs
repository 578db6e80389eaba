//! The ceiling for portcullis's benchmark: a bare hyper server that answers
//! every request with 200 and four small headers, as fast as this machine
//! can. Also the upstream behind NGINX in the proxy comparison.
//!
//!     cargo run --release --example bench-ceiling -- 127.0.0.1:PORT

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4190".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("ceiling listening on {}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                let mut r = Response::new(Full::new(Bytes::new()));
                let h = r.headers_mut();
                h.insert("remote-user", "alice".parse().unwrap());
                h.insert("remote-email", "alice@example.com".parse().unwrap());
                h.insert("remote-groups", "family,photos".parse().unwrap());
                h.insert("remote-role", "user".parse().unwrap());
                Ok::<_, Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
