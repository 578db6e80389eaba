//! The `portcullis` command line: check-config and start-up errors.

use std::process::Command;

fn portcullis(args: &[&str], config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).arg("--config").arg(&path);
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCULLIS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"
public_url = "https://auth.example.com"
[oidc]
issuer = "https://id.example.com"
client_id = "portcullis"
client_secret = "very-secret-value"
[session]
store = "redis"
redis_url = "redis://:redis-password@127.0.0.1:6379/0"
keys = ["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]
"#;

#[test]
fn check_config_prints_effective_config_without_secrets() {
    let (code, out, err) = portcullis(&["check-config"], GOOD);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["listen"], "127.0.0.1:4180");
    assert_eq!(v["session"]["cookie_name"], "_portcullis");
    assert_eq!(v["oidc"]["client_secret"], "[redacted]");
    for secret in ["very-secret-value", "redis-password", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} printed");
    }
}

#[test]
fn env_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("PORTCULLIS_SESSION__COOKIE_NAME", "_from_env")
        .env("PORTCULLIS_LISTEN", "0.0.0.0:9000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["session"]["cookie_name"], "_from_env");
    assert_eq!(v["listen"], "0.0.0.0:9000");
}

#[test]
fn startup_errors_name_the_key() {
    for (config, key) in [
        (GOOD.replace("https://id.example.com", "http://id.example.com"), "oidc.issuer"),
        (GOOD.replace("public_url = \"https://auth.example.com\"", ""), "public_url"),
        (GOOD.replace("client_id = \"portcullis\"", ""), "oidc.client_id"),
        (GOOD.replace("store = \"redis\"", "store = \"etcd\""), "session.store"),
        (GOOD.replace("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "dG9vIHNob3J0"), "session.keys[0]"),
        (format!("{GOOD}\nttl = \"soon\""), "session.ttl"),
        (format!("surprise = 1\n{GOOD}"), "surprise"),
        (format!("listen = \"nowhere\"\n{GOOD}"), "listen"),
    ] {
        for args in [&["check-config"][..], &[][..]] {
            let (code, out, err) = portcullis(args, &config);
            assert_eq!(code, 1, "{key}: {out} {err}");
            assert!(err.contains(key), "{key} not named: {err}");
            assert!(!err.contains("very-secret-value"), "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "--config", "/nonexistent/portcullis.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/portcullis.toml"));
}

#[test]
fn shipped_example_config_is_valid() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/portcullis.toml")).unwrap();
    let (code, out, err) = portcullis(&["check-config"], &example);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["session"]["store"], "memory");
    assert_eq!(v["public_url"], "https://auth.example.com/");
    assert!(!out.contains("change-me"));
}

/// Browsers refuse a `__Host-` cookie with a Domain, and any `__Host-` or
/// `__Secure-` cookie without Secure: such a name would make sign-in fail
/// in every browser, so it is refused at once, naming the key.
#[test]
fn check_config_refuses_cookie_prefixes_their_attributes_break() {
    for (extra, key) in [
        ("cookie_name = \"__Host-pc\"\ncookie_domain = \"example.com\"\n", "session.cookie_domain"),
        ("cookie_name = \"__Host-pc\"\ncookie_secure = false\n", "session.cookie_secure"),
        ("cookie_name = \"__Secure-pc\"\ncookie_secure = false\n", "session.cookie_secure"),
    ] {
        let (code, _, err) = portcullis(&["check-config"], &format!("{GOOD}{extra}"));
        assert_ne!(code, 0, "{extra} accepted");
        assert!(err.contains(key), "{extra}: {err}");
    }
    for ok in ["cookie_name = \"__Host-pc\"\n", "cookie_name = \"__Secure-pc\"\ncookie_domain = \"example.com\"\n"] {
        let (code, _, err) = portcullis(&["check-config"], &format!("{GOOD}{ok}"));
        assert_eq!(code, 0, "{ok}: {err}");
    }
}
