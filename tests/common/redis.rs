//! A `redis-server` of the test's own on a free loopback port, stopped and
//! started again by PID (never the machine's own instance).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A single Redis node that keeps what it acknowledged across a kill.
pub struct Redis {
    pub port: u16,
    node: Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a fresh server, or `None` (with a note) when `redis-server` is
    /// missing outside CI. Under `CI=true` a missing binary fails the test.
    pub async fn start() -> Option<Redis> {
        if !super::have_binary("redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = [
            "--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "",
            // Every write is on disk before Redis answers, so a killed and
            // restarted server still has the sessions (as a real one would).
            "--appendonly", "yes", "--appendfsync", "always",
            "--dir", &dir.path().display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let node = Proc::start(port, args).await;
        Some(Redis { port, node, _dir: dir })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server again on the same port.
    pub async fn start_again(&mut self) {
        self.node.start_again().await;
    }

    /// Kills the server (SIGKILL); what it acknowledged is kept on disk.
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Runs a redis-cli command against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.node.cli(args)
    }
}

/// Any redis-server process of a test's own, by arguments; killed on drop.
pub struct Proc {
    pub port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl Proc {
    pub async fn start(port: u16, args: Vec<String>) -> Proc {
        let mut p = Proc { port, child: None, args };
        p.start_again().await;
        p
    }

    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A primary, a replica and one sentinel watching them as `mymaster`.
pub struct Sentinel {
    pub primary: Proc,
    pub replica: Proc,
    pub sentinel: Proc,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    pub async fn start() -> Option<Sentinel> {
        if !super::have_binary("redis-server") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = |port: u16, name: &str| -> Vec<String> {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                "".into(),
                "--dir".into(),
                d.display().to_string(),
            ]
        };
        let (pp, rp, sp) = (free_port(), free_port(), free_port());
        let primary = Proc::start(pp, base(pp, "primary")).await;
        let mut replica_args = base(rp, "replica");
        replica_args.extend(["--replicaof".into(), "127.0.0.1".into(), pp.to_string()]);
        let replica = Proc::start(rp, replica_args).await;
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sp}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {pp} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let sentinel = Proc::start(sp, vec![conf.display().to_string(), "--sentinel".into()]).await;
        // Wait until the replica is in sync and the sentinel knows it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !replica.cli(&["INFO", "replication"]).contains("master_link_status:up")
            || !sentinel.cli(&["SENTINEL", "replicas", "mymaster"]).contains(&rp.to_string())
        {
            assert!(Instant::now() < deadline, "sentinel set-up did not settle");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Sentinel { primary, replica, sentinel, _dir: dir })
    }

    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/mymaster", self.sentinel.port)
    }
}

/// Three cluster nodes holding all slots between them.
pub struct Cluster {
    pub nodes: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Option<Cluster> {
        if !super::have_binary("redis-server") || !super::have_binary("redis-cli") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let d = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let args = vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                "".into(),
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                d.join("nodes.conf").display().to_string(),
                "--dir".into(),
                d.display().to_string(),
            ];
            nodes.push(Proc::start(port, args).await);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "cluster did not reach state ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Cluster { nodes, _dir: dir })
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}/", n.port)).collect()
    }
}
