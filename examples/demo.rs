//! `cargo run --release --example demo`: the whole sign-in flow on this
//! machine, with no account anywhere.
//!
//! Starts, on loopback:
//! - a small local OpenID provider (the test suite's, with real RS256 ID
//!   tokens) whose sign-in page offers the family example's people: alice
//!   and bob (group `family`), carol (`guests`) and mallory (no group);
//! - portcullis, configured from `examples/identity.toml` (only the
//!   provider, the URL and the family's API key file changed);
//! - a small app that shows the headers it receives;
//! - in front, a proxy that asks portcullis about every request: the
//!   installed Caddy with the shipped `examples/caddy/same-host.Caddyfile`,
//!   or, without Caddy, a minimal forward-auth proxy built in here.
//!
//! It prints one URL to open. Options: `--port N` (the URL's port; 0 for
//! any free one), `--proxy caddy|builtin`.

#[path = "../tests/common/idp.rs"]
#[allow(dead_code)]
mod idp;
#[path = "../tests/common/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use idp::{CLIENT_ID, CLIENT_SECRET, Idp, Person};

/// The API key `examples/identity.toml` gives the shared user `family`
/// (from a file) and `guest` (from `IMMICH_GUEST_KEY`), in this demo.
pub const FAMILY_API_KEY: &str = "demo-family-api-key";
pub const GUEST_API_KEY: &str = "demo-guest-api-key";
const DEFAULT_PORT: u16 = 8480;

/// The headers portcullis answers a verify with, which the proxy copies to
/// the app (and removes from what clients send).
const IDENTITY_HEADERS: [&str; 7] =
    ["remote-user", "remote-email", "remote-name", "remote-groups", "remote-role", "remote-subject", "x-api-key"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProxyKind {
    Caddy,
    Builtin,
}

struct Args {
    port: u16,
    proxy: ProxyKind,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut port = None;
    let mut proxy = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = Some(args.next().and_then(|p| p.parse().ok()).ok_or("--port needs a number")?),
            "--proxy" => {
                proxy = Some(match args.next().as_deref() {
                    Some("caddy") => ProxyKind::Caddy,
                    Some("builtin") => ProxyKind::Builtin,
                    _ => return Err("--proxy is caddy or builtin".into()),
                })
            }
            "-h" | "--help" => return Err("usage: demo [--port N] [--proxy caddy|builtin]".into()),
            other => return Err(format!("unknown argument `{other}`; usage: demo [--port N] [--proxy caddy|builtin]")),
        }
    }
    let proxy = proxy.unwrap_or(if on_path("caddy") { ProxyKind::Caddy } else { ProxyKind::Builtin });
    let port = match port {
        Some(0) => free_port(),
        Some(p) => p,
        None if std::net::TcpListener::bind(("127.0.0.1", DEFAULT_PORT)).is_ok() => DEFAULT_PORT,
        None => free_port(),
    };
    Ok(Args { port, proxy })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var_os("IMMICH_GUEST_KEY").is_none() {
        // SAFETY: no other thread runs yet (the runtime starts below).
        unsafe { std::env::set_var("IMMICH_GUEST_KEY", GUEST_API_KEY) };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let public = format!("http://127.0.0.1:{}", args.port);

    let idp = Idp::start().await;
    idp.offer_people(people());
    let app_addr = start_app().await;

    // portcullis, from examples/identity.toml.
    let secrets = tempfile::tempdir().map_err(|e| e.to_string())?;
    let family_key = secrets.path().join("immich-family-key");
    std::fs::write(&family_key, format!("{FAMILY_API_KEY}\n")).map_err(|e| e.to_string())?;
    let toml = config(&public, &idp.issuer, &family_key)?;
    let config = portcullis::Config::from_toml_str(&toml).map_err(|e| e.to_string())?;
    let portcullis = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let portcullis_addr = portcullis.local_addr().map_err(|e| e.to_string())?;
    let service = portcullis::server::App::new(config).map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(portcullis::server::serve(service, portcullis, async {
        let _ = stopped.await;
    }));

    // Ready once it has read the provider's discovery document and keys.
    let probe = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !probe.get(format!("http://{portcullis_addr}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        if std::time::Instant::now() > deadline {
            return Err("portcullis did not become ready within 30 s".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The proxy in front.
    let _caddy = match args.proxy {
        ProxyKind::Caddy => Some(start_caddy(args.port, portcullis_addr, app_addr)?),
        ProxyKind::Builtin => {
            start_builtin_proxy(args.port, portcullis_addr, app_addr).await?;
            None
        }
    };
    let proxy_name = if args.proxy == ProxyKind::Caddy { "Caddy (examples/caddy/same-host.Caddyfile)" } else { "the demo's built-in forward-auth proxy" };

    println!();
    println!("portcullis demo: open {public}/");
    println!();
    println!("  Sign in as alice or bob: both arrive at the app as the shared user `family`, with the family's API key.");
    println!("  carol (group guests) arrives as `guest`; mallory (no group) is refused. Sign out from the app's page.");
    println!("  Provider (demo only, anyone can be anyone): {}", idp.issuer);
    println!("  portcullis: {portcullis_addr}, configured from examples/identity.toml; proxy: {proxy_name}; app: {app_addr}");
    println!("  Ctrl-C stops everything.");

    wait_for_stop().await;
    let _ = stop.send(());
    let _ = serving.await;
    Ok(())
}

/// The family example's people, as the provider signs them in.
fn people() -> Vec<Person> {
    let person = |name: &str, about: &str, email: &str, groups: &[&str]| Person {
        name: name.into(),
        about: about.into(),
        claims: json!({
            "sub": name,
            "preferred_username": name,
            "email": email,
            "email_verified": true,
            "name": format!("{}{}", name[..1].to_uppercase(), &name[1..]),
            "groups": groups,
        }),
    };
    vec![
        person("alice", "family: arrives as the shared user family", "alice@example.com", &["family"]),
        person("bob", "family: arrives as the shared user family", "bob@example.com", &["family"]),
        person("carol", "a friend in guests: arrives as guest", "carol@friends.example", &["guests"]),
        person("mallory", "in no group: refused", "mallory@example.net", &[]),
    ]
}

/// `examples/identity.toml` with the provider, the public URL and the
/// family's key file changed; plain http on loopback, so the session cookie
/// is not `Secure`. Every change must find its text: an edited example
/// fails here rather than quietly running something else.
fn config(public: &str, issuer: &str, family_key: &std::path::Path) -> Result<String, String> {
    let path = proxy::repo_path("examples/identity.toml");
    let mut text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let changes = [
        ("public_url = \"https://auth.example.com\"", format!("public_url = \"{public}\"")),
        ("issuer = \"https://id.example.com/application/o/portcullis/\"", format!("issuer = \"{issuer}\"\ninsecure_http = true")),
        ("client_id = \"portcullis\"", format!("client_id = \"{CLIENT_ID}\"")),
        ("client_secret = \"replace-me\"", format!("client_secret = \"{CLIENT_SECRET}\"")),
        ("/run/secrets/immich-family-key", family_key.display().to_string()),
    ];
    for (from, to) in changes {
        if !text.contains(from) {
            return Err(format!("examples/identity.toml no longer has `{from}`; update examples/demo.rs"));
        }
        text = text.replace(from, &to);
    }
    text.push_str("\n[session]\ncookie_secure = false\n\n[ui]\ntitle = \"portcullis demo\"\n");
    Ok(text)
}

/// Caddy with the shipped same-host example: the site on plain http at
/// 127.0.0.1:`port`, portcullis and the app at their ports.
fn start_caddy(port: u16, portcullis: SocketAddr, app: SocketAddr) -> Result<proxy::Caddy, String> {
    let site = proxy::Template::example("examples/caddy/same-host.Caddyfile")
        .port("http_port 80", port, false)
        .port("https_port 443", free_port(), false)
        .port("admin localhost:2019", free_port(), false)
        .port("127.0.0.1:4180", portcullis.port(), false)
        .port("127.0.0.1:8080", app.port(), false)
        .render();
    let tls = "\ttls /etc/ssl/example.com/fullchain.pem /etc/ssl/example.com/privkey.pem\n";
    let host = "app.example.com {\n";
    if !site.contains(tls) || !site.contains(host) {
        return Err("examples/caddy/same-host.Caddyfile changed; update examples/demo.rs".into());
    }
    let site = site.replace(tls, "").replace(host, &format!("http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n"));
    Ok(proxy::Caddy::start(&site, port))
}

/// The app: a page listing the headers it received.
async fn start_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    serve(listener, |req: Request<Incoming>| async move {
        let headers: BTreeMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let user = headers.get("remote-user").cloned().unwrap_or_else(|| "(nobody)".into());
        // portcullis's headers first.
        let (mut ours, theirs): (Vec<_>, Vec<_>) = headers.iter().partition(|(k, _)| IDENTITY_HEADERS.contains(&k.as_str()));
        ours.extend(theirs);
        let rows: String = ours
            .into_iter()
            .map(|(k, v)| {
                let class = if IDENTITY_HEADERS.contains(&k.as_str()) { " class=\"id\"" } else { "" };
                format!("<tr{class}><th>{}</th><td>{}</td></tr>\n", escape(k), escape(v))
            })
            .collect();
        let page = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\">\
             <title>Demo app</title><style>{APP_STYLE}</style></head>\n<body><main>\
             <h1>Hello, {user}</h1><p>This small app trusts the headers the proxy sends it: portcullis decided who you are.</p>\
             <p><a href=\"/oauth2/logout\">Sign out</a></p>\n<table>\n{rows}</table></main></body></html>\n",
            user = escape(&user),
        );
        let mut r = Response::new(Full::new(Bytes::from(page)));
        r.headers_mut().insert("content-type", "text/html; charset=utf-8".parse().unwrap());
        Ok(r)
    });
    addr
}

const APP_STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;padding:1rem}main{max-width:46rem;margin:auto}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #8884;\
overflow-wrap:anywhere}th{white-space:nowrap}tr.id{background:#3558d422;font-weight:600}a{font-weight:600}";

/// The built-in proxy: `/oauth2/*` goes to portcullis; everything else is
/// asked about at `/auth/forward` and, when portcullis answers 200, sent to
/// the app with portcullis's identity headers (and nobody else's), or else
/// answered with portcullis's answer (a sign-in redirect, 401 or 403).
async fn start_builtin_proxy(port: u16, portcullis: SocketAddr, app: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let client = Arc::new(client);
    serve(listener, move |req: Request<Incoming>| {
        let client = Arc::clone(&client);
        async move {
            Ok(match forward(&client, req, portcullis, app).await {
                Ok(r) => r,
                Err(e) => {
                    let mut r = Response::new(Full::new(Bytes::from(format!("demo proxy: {e}\n"))));
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    r
                }
            })
        }
    });
    Ok(())
}

async fn forward(
    client: &reqwest::Client,
    req: Request<Incoming>,
    portcullis: SocketAddr,
    app: SocketAddr,
) -> Result<Response<Full<Bytes>>, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut headers = parts.headers.clone();
    for hop in ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"] {
        headers.remove(hop);
    }
    if parts.uri.path().starts_with("/oauth2/") {
        let r = client.request(parts.method, format!("http://{portcullis}{path}")).headers(headers).body(body).send().await?;
        return answer(r).await;
    }
    // Nobody may send the identity headers themselves, in any spelling.
    let names: Vec<_> = headers.keys().cloned().collect();
    for name in names {
        if IDENTITY_HEADERS.contains(&name.as_str().replace('_', "-").as_str()) {
            headers.remove(&name);
        }
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let verdict = client
        .get(format!("http://{portcullis}/auth/forward"))
        .headers(headers.clone())
        .header("x-forwarded-method", parts.method.as_str())
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", &host)
        .header("x-forwarded-uri", &path)
        .send()
        .await?;
    if verdict.status() != reqwest::StatusCode::OK {
        return answer(verdict).await;
    }
    for name in IDENTITY_HEADERS {
        if let Some(v) = verdict.headers().get(name) {
            headers.insert(name, v.clone());
        }
    }
    // The app never sees portcullis's own cookies.
    if let Some(cookie) = headers.get("cookie").and_then(|c| c.to_str().ok()) {
        let kept: Vec<&str> = cookie.split(';').map(str::trim).filter(|c| !c.starts_with("_portcullis")).collect();
        match kept.is_empty() {
            true => headers.remove("cookie"),
            false => headers.insert("cookie", kept.join("; ").parse().expect("cookies were a header value")),
        };
    }
    let r = client.request(parts.method, format!("http://{app}{path}")).headers(headers).body(body).send().await?;
    answer(r).await
}

async fn answer(r: reqwest::Response) -> Result<Response<Full<Bytes>>, reqwest::Error> {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await?;
    let mut out = Response::new(Full::new(body));
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "connection" | "transfer-encoding" | "content-length") {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(out)
}

/// Serves `listener` with `handle`, in the background.
fn serve<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be caught");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn on_path(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
