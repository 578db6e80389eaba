//! End to end against a real OpenID Certified provider: panva's
//! `oidc-provider` (from npm), on a free loopback port, with one client
//! whose redirect URI and post-logout redirect URI are registered exactly
//! as the book says, behind the shipped NGINX and Caddy examples.
//!
//! A browser signs in on the provider's own login page, signs out from a
//! deep app URL with `rd`, lands on that URL signed out, and is then shown
//! the provider's login form again: the provider's session ended too. The
//! same without `rd` (the signed-out page), and with a provider that
//! advertises no `end_session_endpoint`.
//!
//! The provider is installed with `npm ci` into `target/oidc-provider`
//! (scripts/test does it ahead). Without node and npm these tests are
//! skipped, except under `CI=true`, where that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::idp::{CLIENT_ID, CLIENT_SECRET};
use common::proxy::repo_path;
use common::stack::*;
use common::upstream::Seen;
use reqwest::{Client, Response, StatusCode};
use url::Url;

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// The provider's directory with its package installed, or `None` to skip.
fn installed() -> Option<PathBuf> {
    if !common::have_binary("node") || !common::have_binary("npm") {
        return None;
    }
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo_path("target/oidc-provider");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = repo_path("tests/fixtures/oidc-provider");
    let mut changed = false;
    for file in ["package.json", "package-lock.json", "provider.mjs"] {
        let want = std::fs::read(fixture.join(file)).unwrap();
        if std::fs::read(dir.join(file)).ok().as_ref() != Some(&want) {
            std::fs::write(dir.join(file), &want).unwrap();
            changed |= file != "provider.mjs";
        }
    }
    if changed || !dir.join("node_modules/oidc-provider/package.json").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            if under_ci() {
                panic!("npm could not install oidc-provider under CI=true:\n{why}");
            }
            eprintln!("skipping: npm could not install oidc-provider (scripts/test installs it):\n{why}");
            return None;
        }
    }
    Some(dir)
}

/// The provider process (tests/fixtures/oidc-provider/provider.mjs).
struct Provider {
    child: Child,
    issuer: String,
    log: tempfile::NamedTempFile,
}

impl Provider {
    async fn start(dir: &Path, public_url: &str, end_session: bool) -> Provider {
        let port = common::free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir)
            .env("PORT", port.to_string())
            .env("PUBLIC_URL", public_url)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("NO_END_SESSION", if end_session { "0" } else { "1" })
            .stdout(Stdio::from(log.reopen().unwrap()))
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .unwrap();
        let p = Provider { child, issuer: format!("http://127.0.0.1:{port}"), log };
        let discovery = format!("{}/.well-known/openid-configuration", p.issuer);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(&discovery).await {
                if r.status() == StatusCode::OK {
                    let meta: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(meta["end_session_endpoint"].is_string(), end_session, "{meta}");
                    return p;
                }
            }
            assert!(Instant::now() < deadline, "oidc-provider did not start:\n{}", p.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The provider and the proxy example in front of portcullis, which is
/// configured for that provider.
async fn stack(kind: ProxyKind, layout: Layout, end_session: bool) -> Option<(Provider, Stack)> {
    if !have(kind) {
        return None;
    }
    let dir = installed()?;
    let provider = Provider::start(&dir, layout.public_url(), end_session).await;
    let s = Stack::start_against(kind, layout, &[("PORTCULLIS_OIDC__ISSUER", &provider.issuer)]).await;
    Some((provider, s))
}

/// Follows redirects from `url` one hop at a time, as a browser does; the
/// last answer and its URL.
async fn follow(browser: &Client, mut url: Url) -> (Url, Response) {
    for _ in 0..20 {
        let r = get(browser, url.as_str()).await;
        if !r.status().is_redirection() {
            return (url, r);
        }
        url = location(&r);
    }
    panic!("more than 20 redirects, at {url}");
}

/// Submits the first form of `page` (at `url`): its hidden fields and
/// `fields` (which win over hidden fields of the same name). The answer,
/// redirects not followed.
async fn submit(browser: &Client, url: &Url, page: &str, fields: &[(&str, &str)]) -> Response {
    let start = page.find("<form").unwrap_or_else(|| panic!("no form at {url}:\n{page}"));
    let form = &page[start..start + page[start..].find("</form>").unwrap_or(page.len() - start)];
    let action = url.join(&attr(&form[..form.find('>').unwrap()], "action").unwrap_or_default()).unwrap();
    let mut body: Vec<(String, String)> = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        if attr(tag, "type").as_deref() == Some("hidden") {
            body.push((attr(tag, "name").unwrap(), attr(tag, "value").unwrap_or_default()));
        }
    }
    body.retain(|(k, _)| !fields.iter().any(|(f, _)| f == k));
    body.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    browser.post(action.as_str()).form(&body).send().await.unwrap_or_else(|e| panic!("POST {action}: {e}"))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..from + tag[from..].find('"')?].replace("&amp;", "&"))
}

/// Visits `deep` signed out and must be shown the provider's login form.
async fn at_the_login_form(p: &Provider, s: &Stack, browser: &Client, deep: &str) -> (Url, String) {
    let before = s.app.count();
    let (url, r) = follow(browser, Url::parse(deep).unwrap()).await;
    assert!(url.as_str().starts_with(&p.issuer), "expected the provider's login form, ended at {url}\n{}", s.logs());
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"login\"") && page.contains("name=\"password\""), "not a login form at {url}:\n{page}");
    assert_eq!(s.app.count(), before, "the app saw a signed-out request");
    (url, page)
}

/// From the provider's login form, signs in as `user` (consenting when
/// asked) and must come back to `deep`, which the app then answers.
async fn sign_in_from(p: &Provider, s: &Stack, browser: &Client, (url, page): (Url, String), deep: &str, user: &str) {
    let r = submit(browser, &url, &page, &[("login", user), ("password", "any password")]).await;
    assert!(r.status().is_redirection(), "login form answered {}\n{}", r.status(), p.logs());
    let (mut url, mut r) = follow(browser, location(&r)).await;
    if url.as_str().starts_with(&p.issuer) {
        // The consent page, the first time.
        let page = r.text().await.unwrap();
        let answer = submit(browser, &url, &page, &[]).await;
        assert!(answer.status().is_redirection(), "consent answered {}\n{}", answer.status(), p.logs());
        (url, r) = follow(browser, location(&answer)).await;
    }
    assert_eq!(url.as_str(), deep, "not back where the sign-in started\n{}", s.logs());
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    let seen = Seen::parse(&r.text().await.unwrap());
    assert_eq!(seen.header("remote-user"), Some(user), "{seen:?}");
}

/// `/oauth2/logout` (with `rd`, if any) through the provider's own logout
/// confirmation; the answer of `/oauth2/signed-out` the provider sends the
/// browser back to.
async fn sign_out(p: &Provider, s: &Stack, browser: &Client, rd: Option<&str>) -> Response {
    let public = s.layout.public_url();
    let mut logout = Url::parse(&format!("{public}/oauth2/logout")).unwrap();
    if let Some(rd) = rd {
        logout.query_pairs_mut().append_pair("rd", rd);
    }
    let r = get(browser, logout.as_str()).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", s.logs());
    let to = location(&r);
    assert!(to.as_str().starts_with(&format!("{}/session/end?", p.issuer)), "{to}");
    let r = get(browser, to.as_str()).await;
    assert_eq!(r.status(), StatusCode::OK, "the provider refused the logout:\n{}", p.logs());
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"xsrf\""), "not the provider's logout confirmation:\n{page}");
    // "Yes, sign me out": the whole provider session, not this client's only.
    let r = submit(browser, &to, &page, &[("logout", "yes")]).await;
    assert!(r.status().is_redirection(), "{}\n{}", r.status(), p.logs());
    let back = location(&r);
    assert!(back.as_str().starts_with(&format!("{public}/oauth2/signed-out?")), "{back}");
    assert!(query_param(&back, "state").is_some(), "the provider dropped state: {back}");
    get(browser, back.as_str()).await
}

async fn run(kind: ProxyKind, layout: Layout) {
    let Some((p, s)) = stack(kind, layout, true).await else { return };
    let browser = s.browser();
    let deep = "https://app.example.com/photos/album?id=7&sort=date";

    // Sign in, sign out from the deep URL with rd: back at that URL, signed
    // out at portcullis and at the provider (its login form shows).
    let form = at_the_login_form(&p, &s, &browser, deep).await;
    sign_in_from(&p, &s, &browser, form, deep, "alice").await;
    let r = sign_out(&p, &s, &browser, Some(deep)).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", s.logs());
    assert_eq!(location(&r).as_str(), deep);
    let form = at_the_login_form(&p, &s, &browser, deep).await;

    // Without rd: the signed-out page, whose link signs in again at the
    // provider's login form.
    sign_in_from(&p, &s, &browser, form, deep, "alice").await;
    let r = sign_out(&p, &s, &browser, None).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    let page = r.text().await.unwrap();
    assert!(page.contains("You are signed out."), "{page}");
    let again = format!("{}/oauth2/start", s.layout.public_url());
    assert!(page.contains(&format!(" href=\"{again}\">Sign in again</a>")), "{page}");
    let (url, r) = follow(&browser, Url::parse(&again).unwrap()).await;
    assert!(url.as_str().starts_with(&p.issuer), "{url}");
    assert!(r.text().await.unwrap().contains("name=\"login\""));
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

/// A provider that advertises no `end_session_endpoint`: sign-out goes
/// straight to `rd`, signed out at portcullis, or to the signed-out page.
#[tokio::test]
async fn a_provider_without_end_session_endpoint() {
    let Some((p, s)) = stack(ProxyKind::Nginx, Layout::AuthHost, false).await else { return };
    let browser = s.browser();
    let deep = "https://app.example.com/photos/album?id=7&sort=date";
    let form = at_the_login_form(&p, &s, &browser, deep).await;
    sign_in_from(&p, &s, &browser, form, deep, "alice").await;

    let logout = format!("{}/oauth2/logout?rd={}", s.layout.public_url(), url::form_urlencoded::byte_serialize(deep.as_bytes()).collect::<String>());
    let r = get(&browser, &logout).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", s.logs());
    assert_eq!(location(&r).as_str(), deep);
    let before = s.app.count();
    let r = get(&browser, deep).await;
    assert_eq!(r.status(), StatusCode::FOUND, "signed out, yet let in\n{}", s.logs());
    assert!(location(&r).as_str().starts_with(&s.start_url()));
    assert_eq!(s.app.count(), before);

    // The provider still knows the user (it has no logout to send them
    // to): signing in again needs no password. Then sign out without rd.
    let (url, r) = follow(&browser, Url::parse(deep).unwrap()).await;
    assert_eq!(url.as_str(), deep, "{}", s.logs());
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&browser, &format!("{}/oauth2/logout", s.layout.public_url())).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", s.logs());
    assert!(r.text().await.unwrap().contains("You are signed out."));
}
