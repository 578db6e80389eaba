//! `cargo run --example demo`, run as a new user would and driven end to
//! end: through Caddy and through the built-in proxy with an HTTP client,
//! and once in headless Chromium, whose screenshots the book shows
//! (`UPDATE_SCREENSHOTS=1 cargo test --test demo chromium` writes them to
//! `docs/src/images/`; otherwise they go to `target/tmp/screenshots/`).

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::webdriver::{Browser, have_chromium};
use reqwest::{Client, StatusCode};

const FAMILY_API_KEY: &str = "demo-family-api-key";
const GUEST_API_KEY: &str = "demo-guest-api-key";

/// The demo's program, built by cargo as `cargo run --example demo` does.
fn demo_program() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // Without what cargo sets for this test (CARGO_PKG_NAME, ...): build
    // scripts that watch those would otherwise rebuild their crates here,
    // and again at the next build from a shell.
    let keep = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_", "CARGO_NET_", "CARGO_REGISTRIES_", "CARGO_HTTP_", "CARGO_TERM_", "CARGO_PROFILE_", "CARGO_INCREMENTAL"];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if (name.starts_with("CARGO_") && !keep.iter().any(|k| name.starts_with(k))) || name == "OUT_DIR" {
            command.env_remove(name);
        }
    }
    let out = command
        .args(["build", "--example", "demo", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo build --example demo failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "demo")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the demo's executable")
}

/// A running demo; stopped (with SIGTERM, as Ctrl-C would) when dropped.
struct Demo {
    child: Child,
    /// The one URL it prints.
    url: String,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Demo {
    fn start(proxy: &str) -> Demo {
        let mut child = Command::new(demo_program())
            .args(["--port", "0", "--proxy", proxy])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the demo starts");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
            let (output, tx) = (std::sync::Arc::clone(&output), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("portcullis demo: open ") {
                        let _ = tx.send(url.to_string());
                    }
                    output.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the demo printed no URL:\n{}", output.lock().unwrap()));
        Demo { child, url, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser as a person uses it: cookies, follows redirects, asks for HTML.
fn person() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::ACCEPT, "text/html,application/xhtml+xml".parse().unwrap());
    Client::builder().cookie_store(true).default_headers(headers).timeout(Duration::from_secs(30)).build().unwrap()
}

/// The row the demo app shows for header `name`.
fn row(name: &str, value: &str) -> String {
    format!("<tr class=\"id\"><th>{name}</th><td>{value}</td></tr>")
}

/// Opens the demo's URL signed out: the provider's sign-in page. Returns
/// its address.
async fn to_sign_in_page(demo: &Demo, client: &Client) -> String {
    let r = client.get(&demo.url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{} {}", r.url(), demo.output());
    let at = r.url().to_string();
    assert!(at.contains("/authorize?"), "a signed-out visit ends at the provider's sign-in page, not {at}");
    let page = r.text().await.unwrap();
    assert!(page.contains("DEMO: not a real identity provider"), "{page}");
    for name in ["alice", "bob", "carol", "mallory"] {
        assert!(page.contains(&format!("<button name=\"login_as\" value=\"{name}\">")), "{name}: {page}");
    }
    at
}

/// Every person of the family example, through `proxy`.
async fn walk_through(proxy: &str) {
    let demo = Demo::start(proxy);
    let ctx = |what: &str| format!("{proxy}: {what}\n{}", demo.output());

    // A script without a session: 401, and the app sees nothing.
    let r = common::plain().get(&demo.url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", ctx("signed-out script"));

    for (who, user, key) in [("alice", "family", FAMILY_API_KEY), ("bob", "family", FAMILY_API_KEY), ("carol", "guest", GUEST_API_KEY)] {
        let client = person();
        let sign_in = to_sign_in_page(&demo, &client).await;
        let r = client.get(format!("{sign_in}&login_as={who}")).send().await.unwrap();
        let (status, at) = (r.status(), r.url().to_string());
        let page = r.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{who} at {at}: {page}\n{}", ctx(who));
        assert_eq!(at, demo.url, "{who} is back where they started");
        assert!(page.contains(&format!("<h1>Hello, {user}</h1>")), "{who}: {page}");
        assert!(page.contains(&row("remote-user", user)), "{who}: {page}");
        assert!(page.contains(&row("x-api-key", key)), "{who}: {page}");
        assert!(page.contains(&row("remote-subject", who)), "{who}: {page}");
        assert!(!page.contains("_portcullis"), "{who}: the app saw portcullis's cookies: {page}");

        // Headers a browser sends itself never reach the app.
        let r = client.get(&demo.url).header("Remote-User", "admin").header("X-Api-Key", "stolen").send().await.unwrap();
        let page = r.text().await.unwrap();
        assert!(page.contains(&row("remote-user", user)) && !page.contains("admin") && !page.contains("stolen"), "{who}: {page}");

        // Sign-out: through the provider, back to portcullis's page.
        let r = client.get(format!("{}oauth2/logout", demo.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", ctx("sign-out"));
        assert!(r.url().path().ends_with("/oauth2/signed-out"), "{}", r.url());
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        let page = r.text().await.unwrap();
        assert!(page.contains("<h1>Signed out</h1>") && page.contains("portcullis demo"), "{page}");
        to_sign_in_page(&demo, &client).await;
    }

    // mallory, in no group, is refused and never reaches the app.
    let client = person();
    let sign_in = to_sign_in_page(&demo, &client).await;
    let r = client.get(format!("{sign_in}&login_as=mallory")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", ctx("mallory"));
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Access refused</h1>"), "{page}");
    to_sign_in_page(&demo, &client).await;
}

#[tokio::test]
async fn the_demo_through_caddy() {
    if common::have_binary("caddy") {
        walk_through("caddy").await;
    }
}

#[tokio::test]
async fn the_demo_through_its_built_in_proxy() {
    walk_through("builtin").await;
}

/// One run in headless Chromium: signing in by clicking, the app, the
/// refusal and signed-out pages, on a desktop and a phone, light and dark;
/// no page breaks its own Content-Security-Policy. The screenshots are the
/// book's.
#[tokio::test]
async fn the_demo_in_headless_chromium() {
    if !have_chromium() {
        return;
    }
    let demo = Demo::start("builtin");
    // The book's copies are replaced only when asked, so a test run leaves
    // the tree as it was.
    let images = match std::env::var("UPDATE_SCREENSHOTS").as_deref() {
        Ok("1") => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/src/images"),
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    };
    let browser = Browser::start(1000, 760).await;

    browser.goto(&demo.url).await;
    browser.wait_for_url(|u| u.contains("/authorize?")).await;
    browser.screenshot(&images.join("demo-sign-in.png")).await;
    browser.click("button[value=alice]").await;
    browser.wait_for_url(|u| u == demo.url).await;
    assert!(browser.source().await.contains("Hello, family"));
    browser.screenshot(&images.join("demo-app.png")).await;

    browser.click("a[href='/oauth2/logout']").await;
    browser.wait_for_url(|u| u.contains("/oauth2/signed-out")).await;
    assert!(browser.source().await.contains("<h1>Signed out</h1>"));
    // The stylesheet applied (the nonce let it in): the accent bar is there.
    assert_eq!(browser.style("main", "border-top-width").await, "4px");
    browser.screenshot(&images.join("page-signed-out.png")).await;
    browser.dark(true).await;
    assert_ne!(browser.style("body", "background-color").await, "rgb(244, 245, 247)", "dark scheme");
    browser.screenshot(&images.join("page-signed-out-dark.png")).await;
    browser.dark(false).await;

    let violations: Vec<String> = browser.console().await.into_iter().filter(|m| m.contains("Content Security Policy")).collect();
    assert!(violations.is_empty(), "{violations:?}");

    // mallory on a phone.
    drop(browser);
    let phone = Browser::phone().await;
    phone.goto(&demo.url).await;
    phone.wait_for_url(|u| u.contains("/authorize?")).await;
    phone.click("button[value=mallory]").await;
    phone.wait_for_url(|u| u.contains("/oauth2/callback?")).await;
    assert!(phone.source().await.contains("<h1>Access refused</h1>"));
    // Laid out for the phone's width, not a desktop's shrunk.
    assert_eq!(phone.style("main", "width").await, "358px");
    phone.screenshot(&images.join("page-refused-phone.png")).await;
    phone.goto(&format!("{}oauth2/nowhere", demo.url)).await;
    assert!(phone.source().await.contains("<h1>Not found</h1>"));
    phone.dark(true).await;
    phone.screenshot(&images.join("page-not-found-phone-dark.png")).await;

    let violations: Vec<String> = phone.console().await.into_iter().filter(|m| m.contains("Content Security Policy")).collect();
    assert!(violations.is_empty(), "{violations:?}");
}
