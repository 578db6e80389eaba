//! A real browser for the tests: headless Chromium driven by chromedriver
//! over the WebDriver protocol (plain HTTP and JSON), for what only a
//! browser shows: pages as rendered, screenshots, policy violations in its
//! console.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether Chromium and chromedriver are installed (panics under CI=true
/// when not, as [`super::have_binary`] does).
pub fn have_chromium() -> bool {
    let found = std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{CHROMIUM} and {CHROMEDRIVER} are required under CI=true");
        }
        eprintln!("skipping: {CHROMIUM} or {CHROMEDRIVER} is not installed");
    }
    found
}

/// One headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium window of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        Browser::launch(width, height, None).await
    }

    /// As a phone: a screen 390 pixels wide, as mobile browsers lay out.
    pub async fn phone() -> Browser {
        Browser::launch(390, 780, Some(json!({"deviceMetrics": {"width": 390, "height": 780, "pixelRatio": 1.0, "mobile": true}}))).await
    }

    async fn launch(width: u32, height: u32, mobile: Option<Value>) -> Browser {
        let port = super::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer on {base}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let mut caps = caps;
        if let Some(m) = mobile {
            caps["capabilities"]["alwaysMatch"]["goog:chromeOptions"]["mobileEmulation"] = m;
        }
        let mut browser = Browser { driver, base, session: String::new(), http, _profile: profile };
        let v = browser.call(reqwest::Method::POST, "/session", Some(caps)).await;
        browser.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v["value"].clone()
    }

    async fn session_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.session_call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    /// Waits (up to 15 s) until the browser is at an address `at` accepts
    /// (a click's navigation may still be under way), and returns it.
    pub async fn wait_for_url(&self, at: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url().await;
            if at(&url) {
                // And until its page has loaded.
                while self.session_call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": "return document.readyState", "args": []}))).await != "complete" {
                    assert!(Instant::now() < deadline, "{url} never finished loading");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return url;
            }
            assert!(Instant::now() < deadline, "the browser stayed at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's HTML as the browser has it.
    pub async fn source(&self) -> String {
        self.session_call(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_string()
    }

    /// The WebDriver ID of the element `css` selects.
    async fn find(&self, css: &str) -> String {
        let e = self.session_call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        let id = e.as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        id.unwrap_or_else(|| panic!("{css}: {e}")).to_string()
    }

    /// Clicks the element `css` selects (and waits for the page it opens).
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.session_call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// The computed style `property` of the element `css` selects.
    pub async fn style(&self, css: &str, property: &str) -> String {
        let id = self.find(css).await;
        let v = self.session_call(reqwest::Method::GET, &format!("/element/{id}/css/{property}"), None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Makes pages see `prefers-color-scheme: dark` (or light).
    pub async fn dark(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        let params = json!({"features": [{"name": "prefers-color-scheme", "value": value}]});
        self.session_call(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": params})))
            .await;
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let v = self.session_call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// The browser console's messages since the last call (policy
    /// violations are reported there).
    pub async fn console(&self) -> Vec<String> {
        let v = self.session_call(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        v.as_array().map(|a| a.iter().map(|m| m["message"].as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium (a plain DELETE: no runtime to block on here);
        // then chromedriver.
        use std::io::{Read as _, Write as _};
        let addr = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(s, "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n", self.session);
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
