//! The shipped proxy examples, run for real: NGINX or Caddy started from
//! the files in `examples/` (only ports and paths changed), portcullis
//! started from `examples/portcullis.toml`, the mock identity provider, and
//! a small app that echoes the headers it receives; and a browser that
//! signs in through them.

use std::net::SocketAddr;

use reqwest::header::{ACCEPT, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use serde_json::json;
use url::Url;

use super::idp::{CLIENT_ID, CLIENT_SECRET, Idp};
use super::proxy::{Caddy, Nginx, Template, TestTls};
use super::service::Service;
use super::upstream::{Seen, Upstream};

pub const APP: &str = "app.example.com";
pub const AUTH: &str = "auth.example.com";
/// The API key `examples/portcullis.toml` gives user `alice`.
pub const ALICE_API_KEY: &str = "alice-key-5d0c7e";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Nginx,
    Caddy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// portcullis at https://auth.example.com, cookie for example.com.
    AuthHost,
    /// portcullis at https://app.example.com/oauth2/.
    SameHost,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::AuthHost => "auth-host",
            Layout::SameHost => "same-host",
        }
    }

    /// Where portcullis's /oauth2/ pages are, as browsers see them.
    pub fn public_url(self) -> &'static str {
        match self {
            Layout::AuthHost => "https://auth.example.com",
            Layout::SameHost => "https://app.example.com",
        }
    }
}

pub enum Proxy {
    Nginx(Nginx),
    Caddy(Caddy),
}

impl Proxy {
    pub fn log(&self) -> String {
        match self {
            Proxy::Nginx(n) => n.error_log(),
            Proxy::Caddy(c) => c.log(),
        }
    }
}

/// Everything one test runs against.
pub struct Stack {
    pub kind: ProxyKind,
    pub layout: Layout,
    pub idp: Idp,
    pub app: Upstream,
    pub svc: Service,
    pub proxy: Proxy,
    /// The proxy's HTTPS port; app/auth.example.com resolve to it.
    pub port: u16,
    _secrets: tempfile::TempDir,
}

/// Whether the proxy's binary is here (panics under CI=true when not).
pub fn have(kind: ProxyKind) -> bool {
    super::have_binary(match kind {
        ProxyKind::Nginx => "nginx",
        ProxyKind::Caddy => "caddy",
    })
}

impl Stack {
    pub async fn start(kind: ProxyKind, layout: Layout) -> Stack {
        Stack::start_with(kind, layout, |site| site).await
    }

    /// As [`Stack::start`], with the proxy's rendered configuration passed
    /// through `edit` first (a test's variant of a shipped example).
    pub async fn start_with(kind: ProxyKind, layout: Layout, edit: impl FnOnce(String) -> String) -> Stack {
        Stack::start_full(kind, layout, edit, &[]).await
    }

    /// As [`Stack::start`], with portcullis's environment extended by `env`
    /// (say, another identity provider than the mock).
    pub async fn start_against(kind: ProxyKind, layout: Layout, env: &[(&str, &str)]) -> Stack {
        Stack::start_full(kind, layout, |site| site, env).await
    }

    async fn start_full(kind: ProxyKind, layout: Layout, edit: impl FnOnce(String) -> String, extra_env: &[(&str, &str)]) -> Stack {
        let idp = Idp::start().await;
        idp.set_user(alice());
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
        let portcullis_port = super::free_port();
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
        env.extend_from_slice(extra_env);
        let svc = Service::start_with_env(&toml, &env).await;
        assert_eq!(svc.addr.port(), portcullis_port);
        svc.wait_ready().await;

        let port = super::free_port();
        let proxy = match kind {
            ProxyKind::Nginx => {
                let site = Template::example(&format!("examples/nginx/{}.conf", layout.name()))
                    .port("listen 443", port, true)
                    .port("server 127.0.0.1:4180", portcullis_port, false)
                    .port("server 127.0.0.1:8080", app.port(), false)
                    .path("/etc/ssl/example.com/fullchain.pem", &tls.cert)
                    .path("/etc/ssl/example.com/privkey.pem", &tls.key)
                    .render();
                Proxy::Nginx(Nginx::start(&edit(site), port))
            }
            ProxyKind::Caddy => {
                let caddyfile = Template::example(&format!("examples/caddy/{}.Caddyfile", layout.name()))
                    .port("https_port 443", port, false)
                    .port("http_port 80", super::free_port(), false)
                    .port("admin localhost:2019", super::free_port(), false)
                    .port("127.0.0.1:4180", portcullis_port, false)
                    .port("127.0.0.1:8080", app.port(), false)
                    .path("/etc/ssl/example.com/fullchain.pem", &tls.cert)
                    .path("/etc/ssl/example.com/privkey.pem", &tls.key)
                    .render();
                Proxy::Caddy(Caddy::start(&edit(caddyfile), port))
            }
        };
        let stack = Stack { kind, layout, idp, app, svc, proxy, port, _secrets: secrets };
        stack.wait_serving().await;
        stack
    }

    /// A proxy listens before it has loaded its sites and certificates:
    /// wait until it answers a sign-in request end to end.
    pub async fn wait_serving(&self) {
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

    pub fn client(&self, accept: Option<&str>) -> Client {
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
    pub fn browser(&self) -> Client {
        self.client(Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"))
    }

    /// A script: cookies kept, but no HTML in Accept.
    pub fn script(&self) -> Client {
        self.client(Some("application/json"))
    }

    /// Context for assertion messages: the logs of everything involved.
    pub fn logs(&self) -> String {
        format!(
            "--- {:?} {} ---\n--- proxy log ---\n{}\n--- portcullis log ---\n{}",
            self.kind,
            self.layout.name(),
            self.proxy.log(),
            self.svc.logs()
        )
    }

    /// The URL portcullis's sign-in starts at for this layout.
    pub fn start_url(&self) -> String {
        format!("{}/oauth2/start", self.layout.public_url())
    }
}

pub async fn get(client: &Client, url: &str) -> Response {
    client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The Location of a redirect, resolved against the request URL.
pub fn location(r: &Response) -> Url {
    let loc = r
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("{} {} has no Location", r.status(), r.url()))
        .to_str()
        .unwrap();
    r.url().join(loc).unwrap()
}

pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub fn set_cookies(r: &Response) -> Vec<String> {
    r.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

/// The session cookie set by a response (the one not being cleared).
pub fn session_cookie(r: &Response) -> Option<String> {
    set_cookies(r).into_iter().find(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;"))
}

/// An original URL whose path and query must survive the round trip:
/// several parameters, an encoded `&` and a `+` (which a raw, unencoded
/// `rd=` would cut off or turn into a space).
pub const DEEP_LINK: &str = "https://app.example.com/photos/2024/summer?view=grid&page=2&q=sea+sun%26sand";

/// Visits `url` signed out and follows the login as a browser does,
/// asserting every hop; returns the session cookie portcullis set and the
/// app's view of the final request.
pub async fn sign_in(s: &Stack, browser: &Client, url: &str) -> (String, Seen) {
    let before = s.app.count();
    let cookie = sign_in_cookie(s, browser, url).await;

    // 5. The original URL now reaches the app.
    let r = get(browser, url).await;
    assert_eq!(r.status(), StatusCode::OK, "signed-in visit\n{}", s.logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    assert_eq!(s.app.count(), before + 1);
    (cookie, seen)
}

/// Steps 1 to 4 of [`sign_in`]: the session cookie's value.
pub async fn sign_in_cookie(s: &Stack, browser: &Client, url: &str) -> String {
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

    cookie.split(';').next().unwrap().trim_start_matches("_portcullis=").to_string()
}

pub fn path_and_query(url: &str) -> String {
    let u = Url::parse(url).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

pub const IDENTITY_HEADERS: [&str; 6] =
    ["remote-user", "remote-email", "remote-name", "remote-groups", "remote-role", "remote-subject"];

pub fn assert_alice(seen: &Seen, ctx: &str) {
    assert_eq!(seen.header("remote-user"), Some("alice"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-email"), Some("alice@example.com"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-name"), Some("Alice Liddell"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-groups"), Some("family,photos"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-role"), Some("guest"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("remote-subject"), Some("alice"), "{ctx}: {seen:?}");
    assert_eq!(seen.header("x-api-key"), Some(ALICE_API_KEY), "{ctx}: {seen:?}");
}

/// The claims of the person every stack signs in: alice, in `family` and
/// `photos`.
pub fn alice() -> serde_json::Value {
    json!({
        "sub": "user-1",
        "preferred_username": "alice",
        "email": "alice@example.com",
        "email_verified": true,
        "name": "Alice Liddell",
        "groups": ["family", "photos"],
    })
}
