//! The proxy examples, run for real: NGINX and Caddy started from the files
//! in `examples/` (only ports and paths changed), portcullis started from
//! `examples/portcullis.toml`, the mock identity provider, and a small app
//! that echoes the headers it receives.
//!
//! A browser (cookie jar, redirects followed one hop at a time) visits
//! `https://app.example.com` through the proxy; the example host names
//! resolve to the proxy's loopback port, and the proxy serves the test
//! certificate from `tests/fixtures/tls`, so URLs, cookies and redirects are
//! exactly those a user would see.

mod common;

use std::net::SocketAddr;

use common::idp::{CLIENT_ID, CLIENT_SECRET, Idp};
use common::proxy::{Caddy, Nginx, Template, TestTls, repo_path};
use common::service::Service;
use common::upstream::{Seen, Upstream};
use reqwest::header::{ACCEPT, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use serde_json::json;
use url::Url;

const APP: &str = "app.example.com";
const AUTH: &str = "auth.example.com";
/// The API key `examples/portcullis.toml` gives user `alice`.
const ALICE_API_KEY: &str = "alice-key-5d0c7e";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProxyKind {
    Nginx,
    Caddy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// portcullis at https://auth.example.com, cookie for example.com.
    AuthHost,
    /// portcullis at https://app.example.com/oauth2/.
    SameHost,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::AuthHost => "auth-host",
            Layout::SameHost => "same-host",
        }
    }

    /// Where portcullis's /oauth2/ pages are, as browsers see them.
    fn public_url(self) -> &'static str {
        match self {
            Layout::AuthHost => "https://auth.example.com",
            Layout::SameHost => "https://app.example.com",
        }
    }
}

enum Proxy {
    Nginx(Nginx),
    Caddy(Caddy),
}

impl Proxy {
    fn log(&self) -> String {
        match self {
            Proxy::Nginx(n) => n.error_log(),
            Proxy::Caddy(c) => c.log(),
        }
    }
}

/// Everything one test runs against.
struct Stack {
    kind: ProxyKind,
    layout: Layout,
    idp: Idp,
    app: Upstream,
    svc: Service,
    proxy: Proxy,
    /// The proxy's HTTPS port; app/auth.example.com resolve to it.
    port: u16,
    _secrets: tempfile::TempDir,
}

/// Whether the proxy's binary is here (panics under CI=true when not).
fn have(kind: ProxyKind) -> bool {
    common::have_binary(match kind {
        ProxyKind::Nginx => "nginx",
        ProxyKind::Caddy => "caddy",
    })
}

impl Stack {
    async fn start(kind: ProxyKind, layout: Layout) -> Stack {
        let idp = Idp::start().await;
        idp.set_user(json!({
            "sub": "user-1",
            "preferred_username": "alice",
            "email": "alice@example.com",
            "email_verified": true,
            "name": "Alice Liddell",
            "groups": ["family", "photos"],
        }));
        let app = Upstream::start().await;
        let tls = TestTls::get();

        // The app credential the example reads from a file.
        let secrets = tempfile::tempdir().unwrap();
        let api_key = secrets.path().join("alice-api-key");
        std::fs::write(&api_key, format!("{ALICE_API_KEY}\n")).unwrap();

        // portcullis: examples/portcullis.toml with its port and file path
        // changed; the provider (a mock on plain http) and, for the
        // same-host layout, the two documented changes come from the
        // environment, as a deployment could do.
        let portcullis_port = common::free_port();
        let toml = Template::example("examples/portcullis.toml")
            .port("127.0.0.1:4180", portcullis_port, false)
            .path("/etc/portcullis/alice-api-key", &api_key)
            .render();
        let issuer = idp.issuer.clone();
        let mut env = vec![
            ("PORTCULLIS_OIDC__ISSUER", issuer.as_str()),
            ("PORTCULLIS_OIDC__CLIENT_ID", CLIENT_ID),
            ("PORTCULLIS_OIDC__CLIENT_SECRET", CLIENT_SECRET),
            ("PORTCULLIS_OIDC__INSECURE_HTTP", "true"),
        ];
        if layout == Layout::SameHost {
            env.push(("PORTCULLIS_PUBLIC_URL", "https://app.example.com"));
            env.push(("PORTCULLIS_SESSION__COOKIE_DOMAIN", ""));
        }
        let svc = Service::start_with_env(&toml, &env).await;
        assert_eq!(svc.addr.port(), portcullis_port);
        svc.wait_ready().await;

        let port = common::free_port();
        let proxy = match kind {
            ProxyKind::Nginx => {
                let site = Template::example(&format!("examples/nginx/{}.conf", layout.name()))
                    .port("listen 443", port, true)
                    .port("server 127.0.0.1:4180", portcullis_port, false)
                    .port("server 127.0.0.1:8080", app.port(), false)
                    .path("/etc/ssl/example.com/fullchain.pem", &tls.cert)
                    .path("/etc/ssl/example.com/privkey.pem", &tls.key)
                    .render();
                Proxy::Nginx(Nginx::start(&site, port))
            }
            ProxyKind::Caddy => {
                let caddyfile = Template::example(&format!("examples/caddy/{}.Caddyfile", layout.name()))
                    .port("https_port 443", port, false)
                    .port("http_port 80", common::free_port(), false)
                    .port("admin localhost:2019", common::free_port(), false)
                    .port("127.0.0.1:4180", portcullis_port, false)
                    .port("127.0.0.1:8080", app.port(), false)
                    .path("/etc/ssl/example.com/fullchain.pem", &tls.cert)
                    .path("/etc/ssl/example.com/privkey.pem", &tls.key)
                    .render();
                Proxy::Caddy(Caddy::start(&caddyfile, port))
            }
        };
        let stack = Stack { kind, layout, idp, app, svc, proxy, port, _secrets: secrets };
        stack.wait_serving().await;
        stack
    }

    /// A proxy listens before it has loaded its sites and certificates:
    /// wait until it answers a sign-in request end to end.
    async fn wait_serving(&self) {
        let url = format!("https://{}/oauth2/userinfo", if self.layout == Layout::SameHost { APP } else { AUTH });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Ok(r) = self.script().get(&url).send().await {
                if r.status() == StatusCode::UNAUTHORIZED {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "proxy never served {url}\n{}", self.logs());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn client(&self, accept: Option<&str>) -> Client {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT, a.parse().unwrap());
        }
        Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .add_root_certificate(TestTls::get().ca_certificate())
            .resolve(APP, addr)
            .resolve(AUTH, addr)
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap()
    }

    /// A browser: cookies, asks for HTML, follows no redirect by itself.
    fn browser(&self) -> Client {
        self.client(Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"))
    }

    /// A script: cookies kept, but no HTML in Accept.
    fn script(&self) -> Client {
        self.client(Some("application/json"))
    }

    /// Context for assertion messages: the logs of everything involved.
    fn logs(&self) -> String {
        format!(
            "--- {:?} {} ---\n--- proxy log ---\n{}\n--- portcullis log ---\n{}",
            self.kind,
            self.layout.name(),
            self.proxy.log(),
            self.svc.logs()
        )
    }

    /// The URL portcullis's sign-in starts at for this layout.
    fn start_url(&self) -> String {
        format!("{}/oauth2/start", self.layout.public_url())
    }
}

async fn get(client: &Client, url: &str) -> Response {
    client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The Location of a redirect, resolved against the request URL.
fn location(r: &Response) -> Url {
    let loc = r
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("{} {} has no Location", r.status(), r.url()))
        .to_str()
        .unwrap();
    r.url().join(loc).unwrap()
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

/// The session cookie set by a response (the one not being cleared).
fn session_cookie(r: &Response) -> Option<String> {
    set_cookies(r).into_iter().find(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;"))
}

/// An original URL whose path and query must survive the round trip:
/// several parameters, an encoded `&` and a `+` (which a raw, unencoded
/// `rd=` would cut off or turn into a space).
const DEEP_LINK: &str = "https://app.example.com/photos/2024/summer?view=grid&page=2&q=sea+sun%26sand";

/// Visits `url` signed out and follows the login as a browser does,
/// asserting every hop; returns the session cookie portcullis set and the
/// app's view of the final request.
async fn sign_in(s: &Stack, browser: &Client, url: &str) -> (String, Seen) {
    let before = s.app.count();
    let logs = || s.logs();

    // 1. The proxy sends the signed-out browser to portcullis's sign-in.
    let r = get(browser, url).await;
    assert_eq!(r.status(), StatusCode::FOUND, "signed-out visit to {url}\n{}", logs());
    let start = location(&r);
    assert_eq!(
        format!("{}://{}{}", start.scheme(), start.host_str().unwrap(), start.path()),
        s.start_url(),
        "sign-in URL\n{}",
        logs()
    );
    assert_eq!(query_param(&start, "rd").as_deref(), Some(url), "rd carries the original URL: {start}");
    assert_eq!(s.app.count(), before, "the app saw a signed-out request");

    // 2. portcullis sends it to the identity provider.
    let r = get(browser, start.as_str()).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{start}\n{}", logs());
    let authorize = location(&r);
    assert!(
        authorize.as_str().starts_with(&format!("{}/authorize?", s.idp.issuer)),
        "not sent to the provider: {authorize}"
    );
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(format!("{}/oauth2/callback", s.layout.public_url()).as_str())
    );
    assert!(set_cookies(&r).iter().any(|c| c.starts_with("_portcullis_login_")), "no login cookie");

    // 3. The provider (signing the user in at once) sends it back.
    let r = get(browser, authorize.as_str()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let callback = location(&r);
    assert!(
        callback.as_str().starts_with(&format!("{}/oauth2/callback?", s.layout.public_url())),
        "{callback}"
    );

    // 4. The callback, through the proxy, sets the session cookie and
    // returns to the original URL.
    let r = get(browser, callback.as_str()).await;
    assert_eq!(r.status(), StatusCode::FOUND, "callback\n{}", logs());
    assert_eq!(location(&r).as_str(), url, "back at the original URL");
    let cookie = session_cookie(&r).unwrap_or_else(|| panic!("no session cookie in {:?}", set_cookies(&r)));
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    match s.layout {
        Layout::AuthHost => assert!(cookie.contains("; Domain=example.com"), "{cookie}"),
        Layout::SameHost => assert!(!cookie.contains("Domain="), "{cookie}"),
    }
    assert_eq!(s.app.count(), before, "the app saw a request during sign-in");

    // 5. The original URL now reaches the app.
    let r = get(browser, url).await;
    assert_eq!(r.status(), StatusCode::OK, "signed-in visit\n{}", logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    assert_eq!(s.app.count(), before + 1);
    let value = cookie.split(';').next().unwrap().trim_start_matches("_portcullis=").to_string();
    (value, seen)
}

fn path_and_query(url: &str) -> String {
    let u = Url::parse(url).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

const IDENTITY_HEADERS: [&str; 6] =
    ["remote-user", "remote-email", "remote-name", "remote-groups", "remote-role", "remote-subject"];

fn assert_alice(seen: &Seen, ctx: &str) {
    assert_eq!(seen.header("remote-user"), Some("alice"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-email"), Some("alice@example.com"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-name"), Some("Alice Liddell"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-groups"), Some("family,photos"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-role"), Some("guest"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-subject"), Some("alice"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("x-api-key"), Some(ALICE_API_KEY), "{ctx}: {seen:?}");
}

/// The whole story through one proxy and layout.
async fn run(kind: ProxyKind, layout: Layout) {
    if !have(kind) {
        return;
    }
    let s = Stack::start(kind, layout).await;
    let url = DEEP_LINK;

    // Signed out, a browser is sent to sign in and comes back to the same
    // path and query; the app sees who it is.
    let browser = s.browser();
    let (session, seen) = sign_in(&s, &browser, url).await;
    assert_eq!(seen.uri, path_and_query(url), "path and query reach the app unchanged");
    assert_alice(&seen, "after sign-in");
    assert_eq!(seen.header("host"), Some(APP));

    // Headers a client sends itself never reach the app: not on a
    // protected path (portcullis's values win) ...
    let forged = [
        ("Remote-User", "mallory"),
        ("remote-email", "mallory@evil.test"),
        ("Remote-Name", "Mallory"),
        ("Remote-Groups", "admins"),
        ("Remote-Role", "admin"),
        ("Remote-Subject", "mallory"),
        ("X-Api-Key", "forged-key"),
    ];
    let mut req = browser.get("https://app.example.com/photos/");
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    assert_alice(&Seen::parse(&r.text().await.unwrap()), "with forged headers");

    // ... nor on a `bypass` path, where portcullis sends no identity ...
    let stranger = s.browser();
    let mut req = stranger.get("https://app.example.com/public/logo.png?v=3");
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a bypass path needs no sign-in\n{}", s.logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    assert_eq!(seen.uri, "/public/logo.png?v=3");
    for h in IDENTITY_HEADERS.iter().chain(&["x-api-key"]) {
        assert_eq!(seen.header(h), None, "forged {h} reached the app on a bypass path: {seen:?}");
    }

    // ... and a signed-out request with forged headers is sent to sign in.
    let before = s.app.count();
    let mut req = stranger.get("https://app.example.com/photos/");
    for (k, v) in forged {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(s.app.count(), before);

    // Signed in but not allowed (only `admins` reach /admin/): 403 from
    // the proxy, nothing reaches the app.
    let before = s.app.count();
    let r = get(&browser, "https://app.example.com/admin/users").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", s.logs());
    assert_eq!(s.app.count(), before, "a forbidden request reached the app");

    // A script (no text/html in Accept) gets 401, not a redirect.
    let script = s.script();
    let r = get(&script, "https://app.example.com/api/albums").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", s.logs());
    assert!(r.headers().get(LOCATION).is_none(), "a script was redirected: {r:?}");
    assert_eq!(s.app.count(), before);
    // With the session cookie, the same script is let in.
    let r = script
        .get("https://app.example.com/api/albums")
        .header("cookie", format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    assert_alice(&Seen::parse(&r.text().await.unwrap()), "script with the session cookie");

    // Sign-out ends the session: the cookie is cleared, the provider is
    // told, the next visit goes to sign in again, and the old cookie value
    // no longer opens anything.
    let logout = format!("{}/oauth2/logout?rd=https://app.example.com/", s.layout.public_url());
    let r = get(&browser, &logout).await;
    assert_eq!(r.status(), StatusCode::FOUND, "logout\n{}", s.logs());
    let to = location(&r);
    assert!(to.as_str().starts_with(&format!("{}/logout?", s.idp.issuer)), "logout goes to the provider: {to}");
    // The ID token came back through the proxy in the logout hint cookie.
    let hint = to.query_pairs().find(|(k, _)| k == "id_token_hint").map(|(_, v)| v.into_owned()).expect("id_token_hint");
    assert!(s.idp.issued().iter().any(|i| i.id_token == hint), "{hint}");
    let cleared = set_cookies(&r);
    assert!(
        cleared.iter().any(|c| c.starts_with("_portcullis=;") && c.contains("Max-Age=0")),
        "session cookie not cleared: {cleared:?}"
    );
    let before = s.app.count();
    let r = get(&browser, url).await;
    assert_eq!(r.status(), StatusCode::FOUND, "signed out, yet let in\n{}", s.logs());
    let again = location(&r);
    assert!(again.as_str().starts_with(&s.start_url()), "{again}");
    let r = script
        .get("https://app.example.com/api/albums")
        .header("cookie", format!("_portcullis={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the old session still opens");
    assert_eq!(s.app.count(), before);

    // Signing in again works (and lands where asked).
    let (_, seen) = sign_in(&s, &browser, "https://app.example.com/").await;
    assert_alice(&seen, "second sign-in");

    // With portcullis down, the proxy refuses everything: signed in or not,
    // protected or bypass path. Nothing reaches the app.
    let mut s = s;
    s.svc.stop();
    let before = s.app.count();
    for (client, path) in [
        (&browser, "/photos/"),
        (&stranger, "/photos/"),
        (&stranger, "/public/logo.png"),
        (&script, "/api/albums"),
    ] {
        let r = get(client, &format!("https://app.example.com{path}")).await;
        assert!(r.status().is_server_error(), "portcullis down, {path} answered {}\n{}", r.status(), s.logs());
    }
    assert_eq!(s.app.count(), before, "a request reached the app while portcullis was down");
}

#[tokio::test]
async fn nginx_with_sign_in_on_its_own_host() {
    run(ProxyKind::Nginx, Layout::AuthHost).await;
}

#[tokio::test]
async fn nginx_with_sign_in_under_the_app_host() {
    run(ProxyKind::Nginx, Layout::SameHost).await;
}

#[tokio::test]
async fn caddy_with_sign_in_on_its_own_host() {
    run(ProxyKind::Caddy, Layout::AuthHost).await;
}

#[tokio::test]
async fn caddy_with_sign_in_under_the_app_host() {
    run(ProxyKind::Caddy, Layout::SameHost).await;
}

/// The README text shows the very files the tests above run.
#[test]
fn docs_embed_the_tested_examples() {
    let docs = std::fs::read_to_string(repo_path("README.md")).unwrap();
    for file in [
        "examples/portcullis.toml",
        "examples/nginx/auth-host.conf",
        "examples/nginx/same-host.conf",
        "examples/caddy/auth-host.Caddyfile",
        "examples/caddy/same-host.Caddyfile",
    ] {
        let text = std::fs::read_to_string(repo_path(file)).unwrap();
        assert!(docs.contains(&text), "README.md does not embed {file} as it is now");
    }
}
