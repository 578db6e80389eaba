//! Runs the real `portcullis` binary for a test: config in a temp dir,
//! `listen = "127.0.0.1:0"`, logs captured to a file, stopped by PID.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::idp::{CLIENT_ID, CLIENT_SECRET, Idp};

/// A 32-byte base64 cookie key for tests that need fixed keys.
pub const KEY_A: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const KEY_B: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// A configuration that talks to `idp`, for `public_url`. It ends inside
/// the `[session]` table (with `cookie_secure = false`, since tests use
/// plain http), so a test can append more session keys, then other tables.
pub fn base_toml(idp: &Idp, public_url: &str) -> String {
    toml_at(idp, "127.0.0.1:0", public_url)
}

/// As [`base_toml`] for a portcullis reached directly (no proxy): it
/// listens on a free port and `public_url` is that address.
pub fn local_toml(idp: &Idp) -> String {
    let port = super::free_port();
    toml_at(idp, &format!("127.0.0.1:{port}"), &format!("http://127.0.0.1:{port}"))
}

fn toml_at(idp: &Idp, listen: &str, public_url: &str) -> String {
    format!(
        r#"listen = "{listen}"
public_url = "{public_url}"
log_level = "info,portcullis=debug"

[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
insecure_http = true

[session]
cookie_secure = false
"#,
        issuer = idp.issuer
    )
}

/// A running portcullis process.
pub struct Service {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    log_path: PathBuf,
    config_path: PathBuf,
}

impl Service {
    /// Starts portcullis with `toml`; waits until it listens.
    pub async fn start(toml: &str) -> Service {
        Self::start_with_env(toml, &[]).await
    }

    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, toml).unwrap();
        let log_path = dir.path().join("portcullis.log");
        let (child, addr) = spawn(&config_path, &log_path, env, None).await;
        Service { url: format!("http://{addr}"), addr, child: Some(child), dir, log_path, config_path }
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits up to `timeout` for a log line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "portcullis never became ready; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same configuration, on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let (child, addr) = spawn(&self.config_path, &self.log_path, &[], Some(self.addr)).await;
        self.child = Some(child);
        self.addr = addr;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn spawn(config: &PathBuf, log: &PathBuf, env: &[(&str, &str)], listen: Option<SocketAddr>) -> (Child, SocketAddr) {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let start_len = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0) as usize;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("--config").arg(config).stdin(Stdio::null()).stdout(log_file.try_clone().unwrap()).stderr(log_file);
    // Only what the test sets: the developer's PORTCULLIS_* must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCULLIS_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    if let Some(addr) = listen {
        cmd.env("PORTCULLIS_LISTEN", addr.to_string());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("portcullis binary starts");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let fresh = text.get(start_len..).unwrap_or("");
        if let Some(pos) = fresh.find("listening on ") {
            let rest = &fresh[pos + "listening on ".len()..];
            let addr_text: String =
                rest.chars().take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')).collect();
            if let Ok(addr) = addr_text.parse() {
                return (child, addr);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("portcullis exited with {status} before listening; output:\n{fresh}");
        }
        assert!(Instant::now() < deadline, "portcullis did not listen within 15 s; output:\n{fresh}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
