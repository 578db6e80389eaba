//! `portcullis explain` and `check-config` on the shipped identity example,
//! run as the real binary: exit codes and what the administrator reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/identity.toml");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn portcullis(args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .env("IMMICH_GUEST_KEY", "guest-key-must-not-show")
        .output()
        .expect("run portcullis");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn claims_file(dir: &Path, name: &str, claims: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, claims.to_string()).unwrap();
    path
}

fn person(user: &str, email: &str, groups: &[&str]) -> Value {
    json!({"sub": format!("sub-{user}"), "preferred_username": user, "email": email,
           "email_verified": true, "name": user, "groups": groups})
}

fn explain(claims: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["explain", "--config", EXAMPLE, "--claims", claims.to_str().unwrap()];
    args.extend_from_slice(extra);
    portcullis(&args)
}

#[test]
fn a_family_member_arrives_as_the_shared_user() {
    let dir = tempfile::tempdir().unwrap();
    for who in ["alice", "bob", "carol"] {
        let f = claims_file(dir.path(), "c.json", &person(who, &format!("{who}@example.com"), &["family"]));
        let r = explain(&f, &["--url", "https://photos.example.com/album/1"]);
        assert_eq!(r.code, 0, "{who}: {}{}", r.stdout, r.stderr);
        let out = &r.stdout;
        assert!(out.contains("user      family  (identity.rules[0] matched)"), "{out}");
        assert!(out.contains(&format!("person    {who}\n")), "{out}");
        assert!(out.contains("Remote-User: family\n"), "{out}");
        assert!(out.contains("Remote-Email: family@example.com\n"), "{out}");
        assert!(out.contains(&format!("Remote-Subject: {who}\n")), "{out}");
        assert!(out.contains("x-api-key: ******** (secret from file /run/secrets/immich-family-key)"), "{out}");
        assert!(out.contains("decision  allow: no policy rule matches; default_policy = allow"), "{out}");
    }
}

#[test]
fn a_guest_is_a_viewer_with_the_guest_key_masked() {
    let dir = tempfile::tempdir().unwrap();
    let f = claims_file(dir.path(), "guest.json", &person("gus", "gus@elsewhere.example", &["guests"]));
    let r = explain(&f, &["--url", "https://photos.example.com/", "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["identity"]["user"], "guest");
    assert_eq!(v["identity"]["role"], "viewer");
    assert_eq!(v["identity_rule"]["key"], "identity.rules[1]");
    assert_eq!(v["role_from"], "identity.rules[1]");
    assert_eq!(v["headers"]["Remote-Role"], "viewer");
    assert_eq!(v["headers"]["x-api-key"], "******** (secret from env IMMICH_GUEST_KEY)");
    assert!(!r.stdout.contains("guest-key-must-not-show"));
}

#[test]
fn a_role_restricted_host_denies_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = claims_file(dir.path(), "guest.json", &person("gus", "gus@elsewhere.example", &["guests"]));
    let r = explain(&f, &["--url", "https://admin.example.com/settings"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(r#"policy    policy[1] matched (allow): {"host":"admin.example.com","action":"allow","roles":["admin"]}"#), "{}", r.stdout);
    assert!(r.stdout.contains("decision  deny: policy[1] requires one of the roles admin (the user's role is viewer)"), "{}", r.stdout);
    assert!(!r.stdout.contains("headers"), "no headers on a deny: {}", r.stdout);

    let f = claims_file(dir.path(), "admin.json", &person("ada", "ada@example.com", &["admins"]));
    let r = explain(&f, &["--url", "https://admin.example.com/settings"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("role      admin  (role_map[0])"), "{}", r.stdout);
    assert!(r.stdout.contains("decision  allow: policy[1] allows it"), "{}", r.stdout);

    let r = explain(&f, &["--url", "https://photos.example.com/admin/users", "--method", "post"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("request   POST photos.example.com/admin/users"), "{}", r.stdout);
    assert!(r.stdout.contains("decision  deny: policy[2] denies this request"), "{}", r.stdout);

    // The readings it judged are shown: an app that decodes %2F serves
    // /admin/users, so the rule for /admin applies.
    let r = explain(&f, &["--url", "https://Photos.Example.com./admin%2Fusers", "--method", "post"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("request   POST photos.example.com/admin%2Fusers\npath      /admin%2Fusers\ndecoded   /admin/users\n"), "{}", r.stdout);
    assert!(r.stdout.contains("decision  deny: policy[2] denies this request"), "{}", r.stdout);
}

#[test]
fn a_bypass_needs_no_identity() {
    let dir = tempfile::tempdir().unwrap();
    let f = claims_file(dir.path(), "stranger.json", &person("sam", "sam@x.example", &["strangers"]));
    let r = explain(&f, &["--url", "https://photos.example.com/api/shared-link/abc"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("decision  allow: policy[0] is a bypass"), "{}", r.stdout);
    assert!(!r.stdout.contains("Remote-User"), "{}", r.stdout);
}

#[test]
fn someone_outside_required_groups_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = claims_file(dir.path(), "stranger.json", &person("sam", "sam@x.example", &["strangers"]));
    let r = explain(&f, &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("refused   you are not a member of any group allowed to sign in here"), "{}", r.stdout);
    assert!(r.stdout.contains("decision  deny: sign-in refused"), "{}", r.stdout);

    let overage = json!({"sub": "p", "preferred_username": "big", "_claim_names": {"groups": "src1"}});
    let f = claims_file(dir.path(), "overage.json", &overage);
    let r = explain(&f, &["--json"]);
    assert_eq!(r.code, 1);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["refused"].as_str().unwrap().contains("group membership could not be resolved"), "{v}");
    assert_eq!(v["identity"], Value::Null);
}

#[test]
fn claim_sources_are_merged_as_at_login() {
    // Authelia: the ID token is thin, the groups are only in userinfo.
    let dir = tempfile::tempdir().unwrap();
    let sources = json!({
        "id_token": {"sub": "a1", "iss": "https://auth.example.com"},
        "userinfo": {"sub": "a1", "preferred_username": "carol", "email": "carol@example.com", "email_verified": true,
                     "groups": ["family"]},
    });
    let f = claims_file(dir.path(), "sources.json", &sources);
    let r = explain(&f, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("user      family"), "{}", r.stdout);
}

#[test]
fn bad_input_exits_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = claims_file(dir.path(), "ok.json", &person("alice", "alice@example.com", &["family"]));
    let not_object = claims_file(dir.path(), "list.json", &json!(["a"]));
    std::fs::write(dir.path().join("broken.json"), "{\"sub\": ").unwrap();
    let broken = dir.path().join("broken.json");
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(
        &bad_config,
        std::fs::read_to_string(EXAMPLE).unwrap().replace("claims.email.endsWith(\"@contractor.example\")", "claims.email.endsWith("),
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--claims", "/nonexistent/claims.json"], "cannot read claims file"),
        (vec!["--claims", not_object.to_str().unwrap()], "must be a JSON object"),
        (vec!["--claims", broken.to_str().unwrap()], "not valid JSON"),
        (vec!["--claims", good.to_str().unwrap(), "--url", "photos.example.com/x"], "not an absolute URL"),
        (vec!["--claims", good.to_str().unwrap(), "--url", "ftp://x.example.com/"], "must be an http(s) URL"),
        (vec!["--claims", good.to_str().unwrap(), "--url", "https://x.example.com/public/..%2fadmin"], "would be refused with 400 Bad Request: the request path holds a dot segment"),
        (vec!["--claims", good.to_str().unwrap(), "--url", "https://x.example.com/", "--method", "G E T"], "not an HTTP method"),
    ];
    for (args, want) in cases {
        let mut all = vec!["explain", "--config", EXAMPLE];
        all.extend(args.iter());
        let r = portcullis(&all);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
    let r = portcullis(&["explain", "--config", bad_config.to_str().unwrap(), "--claims", good.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("identity.rules[2].expr") && r.stderr.contains("not a valid CEL expression"), "{}", r.stderr);
    let r = portcullis(&["explain", "--config", EXAMPLE]);
    assert_eq!(r.code, 2, "a missing --claims is a usage error");
}

#[test]
fn the_identity_example_passes_check_config() {
    let r = portcullis(&["check-config", "--config", EXAMPLE]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["identity"]["rules"][0]["user"], "family");
    assert_eq!(v["identity"]["rules"][1]["role"], "viewer");
    assert_eq!(v["role_map"][1]["app_role"], "Photos.Manage");
    assert_eq!(v["policy"][0]["action"], "bypass");
    assert_eq!(v["default_policy"], "allow");
    assert_eq!(v["upstream_headers"]["family"]["x-api-key"]["file"], "/run/secrets/immich-family-key");
    assert!(!r.stdout.contains("replace-me"), "the client secret is redacted");
}
