//! The `portcullis` command line: check-config and start-up errors.

use std::process::Command;

fn portcullis(args: &[&str], config: &str) -> (i32, String, String) {
    portcullis_env(args, config, &[])
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

/// The provider setup needs every URI portcullis answers the provider at,
/// together: check-config names them all.
#[test]
fn check_config_lists_every_uri_to_register_at_the_provider() {
    let (code, out, err) = portcullis(&["check-config"], GOOD);
    assert_eq!(code, 0, "{err}");
    for (what, uri) in [
        ("redirect URI (callback)", "https://auth.example.com/oauth2/callback"),
        ("post-logout redirect URI", "https://auth.example.com/oauth2/signed-out"),
        ("back-channel logout URI", "https://auth.example.com/oauth2/backchannel-logout"),
        ("front-channel logout URI", "https://auth.example.com/oauth2/frontchannel-logout"),
    ] {
        assert!(err.contains(&format!("info: register at the identity provider as the {what}: {uri}\n")), "{what} missing: {err}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["oidc"]["post_logout_redirect_uri"], "https://auth.example.com/oauth2/signed-out");

    let own = GOOD.replace("[oidc]\n", "[oidc]\npost_logout_redirect_uri = \"https://www.example.com/bye\"\n");
    let (code, _, err) = portcullis(&["check-config"], &own);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("post-logout redirect URI: https://www.example.com/bye\n"), "{err}");
    for bad in ["nowhere", "ftp://example.com/bye", "https://example.com/bye#x"] {
        let (code, _, err) = portcullis(&["check-config"], &GOOD.replace("[oidc]\n", &format!("[oidc]\npost_logout_redirect_uri = \"{bad}\"\n")));
        assert_eq!(code, 1, "{bad}: {err}");
        assert!(err.contains("oidc.post_logout_redirect_uri"), "{bad}: {err}");
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

/// As [`portcullis`], with environment variables set.
fn portcullis_env(args: &[&str], config: &str, env: &[(&str, &str)]) -> (i32, String, String) {
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
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GOOD` with the TOML line that sets `key` (`table.key`) replaced by `line`.
fn with_line(key: &str, line: &str) -> String {
    let (table, name) = key.split_once('.').unwrap();
    let start = format!("\n{name} = ");
    let mut out = String::new();
    let mut section = "";
    let mut replaced = false;
    for l in GOOD.lines() {
        if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = t;
        }
        if section == table && format!("\n{l}").starts_with(&start) {
            out.push_str(line);
            replaced = true;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(&format!("[{table}]\n{line}\n"));
    }
    out
}

/// The secret keys: where they live, and how a wrong type is written.
const SECRET_KEYS: [&str; 4] = ["oidc.client_secret", "graph.client_secret", "session.keys", "session.redis_url"];

#[test]
fn a_secret_of_the_wrong_type_is_named_but_never_shown() {
    let value = "s3cret-4f9d0e2a";
    for key in SECRET_KEYS {
        let name = key.split_once('.').unwrap().1;
        for wrong in [format!("{{ value = \"{value}\" }}"), format!("[[\"{value}\"]]"), format!("{{ nested = [\"{value}\", 42] }}")] {
            let config = with_line(key, &format!("{name} = {wrong}"));
            for args in [&["check-config"][..], &[][..]] {
                let (code, out, err) = portcullis(args, &config);
                assert_eq!(code, 1, "{key} = {wrong}: {out} {err}");
                assert!(err.contains(&format!("`{key}`")), "{key} = {wrong}: the key is not named: {err}");
                assert!(!err.contains(value) && !out.contains(value), "{key} = {wrong}: the value is shown: {err}");
                assert!(!err.contains("panicked"), "{err}");
            }
        }
    }
    // From the environment (only keys that may be lists can have another
    // shape there: any other text is the secret itself).
    for (var, key) in [("PORTCULLIS_SESSION__KEYS", "session.keys"), ("PORTCULLIS_SESSION__REDIS_URL", "session.redis_url")] {
        let (code, _, err) = portcullis_env(&["check-config"], GOOD, &[(var, &format!("[{{v = \"{value}\"}}]"))]);
        assert_eq!(code, 1, "{var}: {err}");
        assert!(err.contains(&format!("`{key}`")) && !err.contains(value), "{var}: {err}");
    }
}

#[test]
fn an_upstream_credential_written_inline_is_named_but_never_shown() {
    let value = "immich-key-77f1c3";
    for wrong in [format!("\"{value}\""), format!("[\"{value}\"]"), "12345678".to_string(), format!("{{ value = \"{value}\" }}")] {
        let config = format!("{GOOD}\n[upstream_headers.family]\nx-api-key = {wrong}\n");
        let (code, out, err) = portcullis(&["check-config"], &config);
        assert_eq!(code, 1, "{wrong}: {out}");
        assert!(err.contains("`upstream_headers.family.x-api-key"), "{wrong}: {err}");
        assert!(!err.contains(value) && !err.contains("12345678"), "{wrong}: the value is shown: {err}");
    }
    let (code, _, err) = portcullis_env(
        &["check-config"],
        GOOD,
        &[("PORTCULLIS_UPSTREAM_HEADERS__FAMILY__X-API-KEY", "87654321")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("upstream_headers.family") && !err.contains("87654321"), "{err}");
}

#[test]
fn a_numeric_secret_is_accepted_and_never_shown() {
    // Numbers, as TOML and as environment variables.
    for key in ["oidc.client_secret", "graph.client_secret"] {
        let name = key.split_once('.').unwrap().1;
        for value in ["12345678", "1.625", "true", "-424242"] {
            let (code, out, err) = portcullis(&["check-config"], &with_line(key, &format!("{name} = {value}")));
            assert_eq!(code, 0, "{key} = {value}: {err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            for shown in [&v["oidc"]["client_secret"], &v["graph"]["client_secret"]] {
                assert_eq!(shown, "[redacted]", "{key} = {value}");
            }
            if value != "true" {
                assert!(!out.contains(value) && !err.contains(value), "{key} = {value} shown:\n{out}\n{err}");
            }
        }
    }
    let (code, out, err) = portcullis_env(&["check-config"], GOOD, &[("PORTCULLIS_OIDC__CLIENT_SECRET", "0012345678")]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("12345678") && !err.contains("12345678"), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["oidc"]["client_secret"], "[redacted]");
    let (code, out, err) = portcullis_env(&["check-config"], GOOD, &[("PORTCULLIS_GRAPH__CLIENT_SECRET", "98765432")]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("98765432") && !err.contains("98765432"));

    // A numeric key or Redis URL is read, refused for what it is, and not shown.
    for (key, var, why) in [
        ("session.keys", "PORTCULLIS_SESSION__KEYS", "32 bytes"),
        ("session.redis_url", "PORTCULLIS_SESSION__REDIS_URL", "is not a Redis URL"),
    ] {
        let name = key.split_once('.').unwrap().1;
        for config in [with_line(key, &format!("{name} = 12345678")), with_line(key, &format!("{name} = [12345678]"))] {
            let (code, out, err) = portcullis(&["check-config"], &config);
            assert_eq!(code, 1, "{key}: {out}");
            assert!(err.contains(key) && err.contains(why) && !err.contains("12345678"), "{key}: {err}");
        }
        let (code, _, err) = portcullis_env(&["check-config"], GOOD, &[(var, "12345678")]);
        assert_eq!(code, 1, "{var}");
        assert!(err.contains(key) && err.contains(why) && !err.contains("12345678"), "{var}: {err}");
    }
}

#[test]
fn a_toml_syntax_error_does_not_quote_the_secret_line() {
    let config = GOOD.replace("client_secret = \"very-secret-value\"", "client_secret = very-secret-value\"");
    let (code, _, err) = portcullis(&["check-config"], &config);
    assert_eq!(code, 1);
    assert!(err.contains("line 6") && !err.contains("very-secret-value"), "{err}");
}

#[test]
fn check_config_says_once_that_preferred_username_must_be_administrator_set() {
    let (code, _, err) = portcullis(&["check-config"], GOOD);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("warning:") && l.contains("preferred_username")).count(), 1, "{err}");
    assert!(err.contains("unique and set only by an administrator"), "{err}");
    let config = format!("{GOOD}\n[identity]\nusername_claims = [\"sub\"]\n");
    let (code, _, err) = portcullis(&["check-config"], &config);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("preferred_username"), "{err}");
}

/// `[ui]` is checked at start: a colour that is not one, a logo or a
/// templates directory that cannot be used stop portcullis, naming the
/// key; the environment sets the keys as the file does.
#[test]
fn ui_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(templates.join("message.html"), "{% extends \"base.html\" %}{% block content %}{{ message }").unwrap();
    let with = |ui: &str| format!("{GOOD}[ui]\n{ui}\n");
    for (ui, key) in [
        ("accent_color = \"red;}body{display:none\"", "`ui.accent_color`"),
        ("logo_file = \"/nonexistent/logo.png\"", "`ui.logo_file`"),
        (&format!("templates_dir = {:?}", templates.display().to_string())[..], "`ui.templates_dir`"),
        ("colour = \"#fff\"", "colour"),
    ] {
        for command in [&["check-config"][..], &[]] {
            let (code, _, err) = portcullis(command, &with(ui));
            assert_ne!(code, 0, "{ui}: {command:?} started");
            assert!(err.contains(key), "{ui}: {command:?}: {err}");
        }
    }
    std::fs::write(templates.join("message.html"), "{% extends \"base.html\" %}{% block content %}<p>{{ message }}</p>{% endblock %}").unwrap();
    let ui = format!("templates_dir = {:?}\naccent_color = \"#2E7D32\"", templates.display().to_string());
    let (code, out, err) = portcullis_env(&["check-config"], &with(&ui), &[("PORTCULLIS_UI__TITLE", "Smith family")]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ui"]["title"], "Smith family");
    assert_eq!(v["ui"]["accent_color"], "#2e7d32");
}
