//! Real NGINX and Caddy for the tests, started from the files in
//! `examples/` with only ports and paths changed.
//!
//! Both run as child processes in their own temp directory (configuration,
//! logs, state), listen on free loopback ports and are stopped by PID when
//! dropped. Neither touches the system's nginx or caddy service.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (for `examples/` and `tests/fixtures/`).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The test certificate for `example.com` and `*.example.com`, and the CA
/// that signed it (`tests/fixtures/tls/`).
pub struct TestTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TestTls {
    pub fn get() -> TestTls {
        let dir = repo_path("tests/fixtures/tls");
        TestTls { cert: dir.join("example.com.pem"), key: dir.join("example.com.key"), ca: dir.join("ca.pem") }
    }

    pub fn ca_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap()
    }
}

/// An example file being rendered for a test. Only two kinds of change are
/// possible: a port (optionally pinned to the loopback address) and an
/// absolute path. Every change must find its text in the file, or the test
/// fails: an edited example can never silently stop matching the test.
pub struct Template {
    name: String,
    text: String,
}

impl Template {
    /// Reads `examples/...` relative to the repository root.
    pub fn example(rel: &str) -> Template {
        let path = repo_path(rel);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Template { name: rel.to_string(), text }
    }

    /// Replaces every occurrence of `from` (text holding one port number,
    /// e.g. `127.0.0.1:4180` or `listen 443`) by the same text with `port`
    /// instead; with `loopback`, a bare port also gets `127.0.0.1:` in front.
    pub fn port(self, from: &str, port: u16, loopback: bool) -> Template {
        // The port is the last run of digits, right after `:` or a space.
        let end = from.rfind(|c: char| c.is_ascii_digit()).map(|i| i + 1);
        let end = end.unwrap_or_else(|| panic!("{}: `{from}` holds no port", self.name));
        let start = from[..end].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
        let before = from[..start].chars().last();
        assert!(
            from[start..end].parse::<u16>().is_ok() && matches!(before, Some(':' | ' ')),
            "{}: `{from}` must end its port with `:PORT` or ` PORT`",
            self.name
        );
        let new_port =
            if loopback && before == Some(' ') { format!("127.0.0.1:{port}") } else { port.to_string() };
        let to = format!("{}{new_port}{}", &from[..start], &from[end..]);
        self.replace(from, &to)
    }

    /// Replaces every occurrence of the absolute path `from` by `to`.
    pub fn path(self, from: &str, to: &Path) -> Template {
        assert!(from.starts_with('/'), "{}: `{from}` is not an absolute path", self.name);
        let to = to.to_str().expect("test paths are UTF-8").to_string();
        assert!(!to.contains(['"', '\'', ' ', ';', '{', '}']), "test path `{to}` needs quoting");
        self.replace(from, &to)
    }

    fn replace(mut self, from: &str, to: &str) -> Template {
        let count = self.text.matches(from).count();
        assert!(count > 0, "{}: `{from}` not found: the example changed, update the test", self.name);
        self.text = self.text.replace(from, to);
        self
    }

    pub fn render(self) -> String {
        self.text
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, or
/// panics with `what`'s log if it exits or takes too long.
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 15 s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A running NGINX serving one rendered example file.
pub struct Nginx {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nginx {
    /// Starts NGINX with `site` (server blocks, as in `examples/nginx/`)
    /// included in a minimal main configuration; waits for `port`.
    pub fn start(site: &str, port: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("site.conf"), site).unwrap();
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(d.join("tmp").join(sub)).unwrap();
        }
        let p = d.display();
        // One process (no workers to orphan), everything in the temp dir.
        let main = format!(
            "master_process off;\n\
             daemon off;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/error.log info;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n\
             \x20   access_log {p}/access.log;\n\
             \x20   client_body_temp_path {p}/tmp/body;\n\
             \x20   proxy_temp_path {p}/tmp/proxy;\n\
             \x20   fastcgi_temp_path {p}/tmp/fastcgi;\n\
             \x20   uwsgi_temp_path {p}/tmp/uwsgi;\n\
             \x20   scgi_temp_path {p}/tmp/scgi;\n\
             \x20   include {p}/site.conf;\n\
             }}\n"
        );
        let conf = d.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let log = d.join("error.log");
        let out = std::fs::File::create(d.join("stderr.log")).unwrap();
        let mut child = Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("nginx starts");
        wait_listening(&mut child, port, "nginx", &log);
        Nginx { dir, child: Some(child) }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A running Caddy serving one rendered Caddyfile.
pub struct Caddy {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Caddy {
    /// Starts `caddy run` with `caddyfile`; waits for `port`. HOME and the
    /// XDG directories point into the temp dir, so Caddy's state (and any
    /// autosaved configuration) stays there.
    pub fn start(caddyfile: &str, port: u16) -> Caddy {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let file = d.join("Caddyfile");
        std::fs::write(&file, caddyfile).unwrap();
        let log = d.join("caddy.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", d)
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("caddy starts");
        wait_listening(&mut child, port, "caddy", &log);
        Caddy { dir, child: Some(child) }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
