//! Policy tests: bypass, deny, role-restricted paths, host wildcards.

use super::*;
use crate::identity::{Claims, IdentityParts};

/// Top-level keys (`default_policy`) must come before any table.
fn with_base(toml: &str) -> String {
    format!("public_url = \"https://auth.example.com\"\n{toml}\n{OIDC}")
}

const OIDC: &str = r#"
[oidc]
issuer = "https://id.example.com"
client_id = "portcullis"
client_secret = "s3cret"
"#;

const POLICY: &str = r#"
default_policy = "allow"

[[policy]]
host = "photos.example.com"
path = "/api/shared-link/*"
action = "bypass"

[[policy]]
host = "photos.example.com"
path = "/share"
methods = ["GET", "head"]
action = "bypass"

[[policy]]
host = "admin.example.com"
action = "allow"
roles = ["admin"]

[[policy]]
host = "*.internal.example.com"
action = "deny"

[[policy]]
host = "wiki.example.com"
path = "/admin"
action = "allow"
groups = ["Wiki-Admins", "/staff"]
email_domains = ["example.com"]

[[policy]]
host = "photos.example.com"
path = "/api/admin/*/delete"
action = "allow"
expr = 'request.method == "POST" && role == "admin" && "photos.manage" in roles'

[[policy]]
host = "files.example.com"
action = "allow"
users = ["alice"]
"#;

fn policy(toml: &str) -> Policy {
    crate::rules::Rules::new(crate::Config::from_toml_str(&with_base(toml)).unwrap()).unwrap().policy
}

/// The request as verify builds it from the original URL.
fn req(method: &str, url: &str) -> RequestView<'static> {
    crate::explain::request_info(url, method).unwrap_or_else(|e| panic!("{e}"))
}

/// The verdict for a signed-in person, as a verify decides it.
fn decide(p: &Policy, r: &RequestView, who: &Identity, claims: &StoredClaims) -> Verdict {
    p.decide(p.rule_for(r), r, Some((who, claims)), &mut Vec::new())
}

fn identity(user: &str, role: &str, groups: &[&str], email: &str) -> Identity {
    crate::identity::IdentityParts {
        user: user.into(),
        person: user.into(),
        role: role.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        email: Some(email.into()),
        person_email: Some(email.into()),
        subject: format!("sub-{user}"),
        ..Default::default()
    }
    .into()
}

#[test]
fn bypass_rules_need_no_login() {
    let p = policy(POLICY);
    let cases = [
        ("GET", "https://photos.example.com/api/shared-link/abc", true),
        ("POST", "https://photos.example.com/api/shared-link/abc/assets/1", true),
        ("GET", "https://PHOTOS.example.com/api/shared-link/x", true),
        ("GET", "https://photos.example.com/api/shared-link", false),
        ("GET", "https://photos.example.com/api/albums", false),
        ("GET", "https://other.example.com/api/shared-link/abc", false),
        ("GET", "https://photos.example.com/share", true),
        ("HEAD", "https://photos.example.com/share/x", true),
        ("POST", "https://photos.example.com/share", false),
        ("GET", "https://photos.example.com/shared", false),
        // Every reading must be inside a bypass.
        ("GET", "https://photos.example.com/api/shared-link%2Fabc", false),
        ("GET", "https://photos.example.com/api/shared-link;x/abc", false),
        ("GET", "https://photos.example.com/API/shared-link/abc", false),
        ("GET", "https://photos.example.com/share./x", false),
        // A method the proxy did not report is not one a rule lists.
        ("", "https://photos.example.com/share", false),
    ];
    for (method, url, want) in cases {
        let r = if method.is_empty() { RequestView { method: None, ..req("GET", url) } } else { req(method, url) };
        assert_eq!(matches!(p.matching_rule(&r), Some((_, Action::Bypass))), want, "{method} {url}");
    }
    // Traversal and encodings some app reads as another path are refused
    // before any rule is asked.
    for url in [
        "https://photos.example.com/api/shared-link/../albums",
        "https://photos.example.com/api/shared-link/%2e%2e/albums",
        "https://photos.example.com/api/shared-link/..%2falbums",
        "https://photos.example.com/api/shared-link/..;/albums",
        "https://photos.example.com/api/shared-link/x#/../../albums",
    ] {
        assert!(crate::explain::request_info(url, "GET").is_err(), "{url}");
    }
}

#[test]
fn a_protecting_prefix_with_a_slash_covers_the_bare_path_and_a_bypass_is_never_widened() {
    let p = policy(
        r#"
[[policy]]
path = "/public/"
action = "bypass"

[[policy]]
path = "/admin/"
action = "allow"
groups = ["admins"]

[[policy]]
path = "/private/"
action = "deny"
"#,
    );
    let bob = identity("bob", "user", &["family"], "bob@example.com");
    let claims = StoredClaims::default();
    for url in ["https://a.example.com/admin", "https://a.example.com/ADMIN", "https://a.example.com/admin;x"] {
        assert!(matches!(decide(&p, &req("GET", url), &bob, &claims), Verdict::Deny { rule: Some(1), .. }), "{url}");
    }
    assert!(matches!(decide(&p, &req("GET", "https://a.example.com/private"), &bob, &claims), Verdict::Deny { rule: Some(2), .. }));
    assert_eq!(p.matching_rule(&req("GET", "https://a.example.com/public/x")), Some((0, Action::Bypass)));
    assert_eq!(p.matching_rule(&req("GET", "https://a.example.com/public")), None);
    assert_eq!(p.matching_rule(&req("GET", "https://a.example.com/administrator")), None);
}

#[test]
fn rules_with_methods_protect_whatever_the_method() {
    let p = policy(
        r#"
[[policy]]
path = "/api/"
methods = ["DELETE", "m-search"]
action = "deny"

[[policy]]
path = "/api/"
methods = ["GET"]
action = "bypass"
"#,
    );
    let unreported = |url| RequestView { method: None, ..req("GET", url) };
    assert_eq!(p.matching_rule(&unreported("https://a.example.com/api/x")), Some((0, Action::Deny)));
    assert_eq!(p.matching_rule(&req("M-SEARCH", "https://a.example.com/api/x")), Some((0, Action::Deny)));
    assert_eq!(p.matching_rule(&req("VERSION-CONTROL", "https://a.example.com/api/x")), None);
    assert_eq!(p.matching_rule(&req("get", "https://a.example.com/api/x")), Some((1, Action::Bypass)));
}

#[test]
fn decisions_per_host_path_and_identity() {
    let p = policy(POLICY);
    let admin = identity("ada", "admin", &["admins"], "ada@example.com");
    let user = identity("bob", "user", &["wiki-admins"], "bob@example.com");
    let outsider = identity("eve", "user", &["wiki-admins"], "eve@elsewhere.example");
    let claims = Claims::new();
    let allow = |rule| Verdict::Allow { rule };
    let cases: Vec<(&str, &str, &Identity, Result<Verdict, &str>)> = vec![
        ("GET", "https://admin.example.com/", &admin, Ok(allow(Some(2)))),
        ("GET", "https://admin.example.com/settings", &user, Err("policy[2] requires one of the roles admin")),
        ("GET", "https://a.internal.example.com/", &admin, Err("policy[3] denies")),
        ("GET", "https://a.b.internal.example.com/x", &admin, Err("policy[3] denies")),
        ("GET", "https://internal.example.com/", &user, Ok(allow(None))),
        ("GET", "https://wiki.example.com/admin/pages", &user, Ok(allow(Some(4)))),
        ("GET", "https://wiki.example.com/admin", &outsider, Err("domains example.com")),
        ("GET", "https://wiki.example.com/admin", &admin, Err("groups wiki-admins, staff")),
        ("GET", "https://wiki.example.com//admin", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com/%61dmin", &admin, Err("policy[4]")),
        // A protecting rule covers every reading an app may serve.
        ("GET", "https://wiki.example.com/ADMIN/x", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com/Admin", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com/admin%2Fpages", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com/admin%5Cpages", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com/admin;jsessionid=1/x", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com/admin./x", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com/admin%20/x", &admin, Err("policy[4]")),
        ("GET", "https://WIKI.example.com./admin", &admin, Err("policy[4]")),
        ("GET", "https://wiki.example.com:8443/admin", &admin, Err("policy[4]")),
        ("POST", "https://a.internal.example.com./", &user, Err("policy[3] denies")),
        ("GET", "https://wiki.example.com/administrator", &admin, Ok(allow(None))),
        ("GET", "https://wiki.example.com/pages", &outsider, Ok(allow(None))),
        ("POST", "https://photos.example.com/api/admin/album/7/delete", &admin, Err("expression (policy[5].expr)")),
        ("GET", "https://files.example.com/", &admin, Err("one of the users alice")),
    ];
    for (method, url, who, want) in cases {
        let got = decide(&p, &req(method, url), who, &StoredClaims::new(&claims));
        match (&want, &got) {
            (Ok(d), _) => assert_eq!(&got, d, "{method} {url} as {}", who.user()),
            (Err(text), Verdict::Deny { reason, .. }) => {
                assert!(reason.contains(text), "{method} {url} as {}: {reason}", who.user())
            }
            (Err(_), _) => panic!("{method} {url} as {}: {got:?}", who.user()),
        }
    }
    let manager: Identity = IdentityParts { roles: vec!["Photos.Manage".into()], ..admin.to_parts() }.into();
    let r = req("POST", "https://photos.example.com/api/admin/album/7/delete");
    assert_eq!(decide(&p, &r, &manager, &StoredClaims::new(&claims)), Verdict::Allow { rule: Some(5) });
}

#[test]
fn users_and_emails_match_the_mapped_user_or_the_person() {
    let p = policy("[[policy]]\naction = \"allow\"\nusers = [\"Alice\"]\n[[policy]]\naction = \"deny\"");
    let family = identity("family", "user", &[], "family@example.com");
    let shared: Identity = IdentityParts { person: "alice".into(), ..family.to_parts() }.into();
    let r = req("GET", "https://x.example.com/");
    assert_eq!(decide(&p, &r, &shared, &StoredClaims::default()), Verdict::Allow { rule: Some(0) });
    let p = policy("[[policy]]\naction = \"allow\"\nemails = [\"alice@example.com\"]");
    let shared: Identity = IdentityParts { person_email: Some("alice@example.com".into()), ..shared.to_parts() }.into();
    assert_eq!(decide(&p, &r, &shared, &StoredClaims::default()), Verdict::Allow { rule: Some(0) });
}

#[test]
fn default_policy_deny() {
    let p = policy("default_policy = \"deny\"\n[[policy]]\nhost = \"open.example.com\"\naction = \"allow\"");
    let who = identity("u", "user", &[], "u@example.com");
    assert_eq!(decide(&p, &req("GET", "https://open.example.com/"), &who, &StoredClaims::default()), Verdict::Allow { rule: Some(0) });
    let d = decide(&p, &req("GET", "https://closed.example.com/"), &who, &StoredClaims::default());
    assert!(matches!(d, Verdict::Deny { rule: None, ref reason } if reason.contains("default_policy is deny")), "{d:?}");
}

#[test]
fn globs_and_prefixes() {
    let cases = [
        ("/api/*", "/api/x/y", true),
        ("/api/*", "/api", false),
        ("/*.png", "/a/b.png", true),
        ("/img/?.png", "/img/é.png", true),
        ("/img/?.png", "/img/ab.png", false),
        ("/a*b*c", "/aXXbYYc", true),
        ("/a*b*c", "/aXXbYY", false),
    ];
    for (pattern, path, want) in cases {
        assert_eq!(glob(pattern.as_bytes(), path.as_bytes(), false), want, "{pattern} {path}");
    }
    assert!(path_has_prefix("/admin/x", "/admin", false));
    assert!(path_has_prefix("/admin", "/admin", false));
    assert!(!path_has_prefix("/administrator", "/admin", false));
    assert!(path_has_prefix("/admin/x", "/admin/", false));
    assert_eq!(normalize_path("//a///%62%2Fc%7e"), "/a/b%2Fc~");
}

#[test]
fn start_up_errors_name_the_key() {
    let cases = [
        ("[[policy]]\nhost = \"https://x.example.com\"\naction = \"deny\"", "policy[0].host"),
        ("[[policy]]\nhost = \"x.*.com\"\naction = \"deny\"", "policy[0].host"),
        ("[[policy]]\nhost = \"x.example.com:8443\"\naction = \"deny\"", "policy[0].host"),
        ("[[policy]]\npath = \"admin\"\naction = \"deny\"", "policy[0].path"),
        ("[[policy]]\naction = \"deny\"\nmethods = [\"GE T\"]", "policy[0].methods[0]"),
        ("[[policy]]\naction = \"bypass\"\ngroups = [\"a\"]", "policy[0]"),
        ("[[policy]]\naction = \"allow\"\nexpr = \"reqest.host == 1\"", "policy[0].expr"),
        ("[[policy]]\naction = \"allow\"\nroles = [\" \"]", "policy[0].roles[0]"),
        ("[[policy]]\naction = \"maybe\"", "policy"),
    ];
    for (toml, key) in cases {
        let err = crate::Config::from_toml_str(&with_base(toml)).and_then(crate::rules::Rules::new).err().unwrap().to_string();
        assert!(err.contains(key), "{toml}\n=> {err}");
    }
}

#[test]
fn only_expressions_that_name_claims_make_sessions_keep_them() {
    assert!(!policy("[[policy]]\naction = \"allow\"\ngroups = [\"staff\"]").reads_claims());
    assert!(!policy("[[policy]]\naction = \"allow\"\nexpr = 'request.method == \"GET\" || role == \"admin\"'").reads_claims());
    assert!(policy("[[policy]]\naction = \"allow\"\nexpr = 'has(claims.department) && claims.department == \"photos\"'").reads_claims());
    assert!(policy("[[policy]]\naction = \"deny\"\n[[policy]]\naction = \"allow\"\nexpr = '\"x\" in claims'").reads_claims());
}
