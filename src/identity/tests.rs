//! Mapping tests over claims shaped like real providers' tokens.

use super::*;
use serde_json::{Value, json};

const BASE: &str = r#"
public_url = "https://auth.example.com"
[oidc]
issuer = "https://id.example.com"
client_id = "portcullis"
client_secret = "s3cret"
"#;

/// The family/guest/role example from the book (docs/src/identity.md).
const FAMILY: &str = r#"
[identity]
required_groups = ["family", "guests", "admins"]
default_role = "guest"

[[identity.rules]]
emails = ["alice@example.com", "bob@example.com", "carol@example.com"]
user = "family"
email = "family@example.com"

[[identity.rules]]
groups = ["guests"]
user = "guest"
role = "viewer"

[[identity.rules]]
expr = 'claims.email.endsWith("@contractor.example")'
user = "contractor"

[[role_map]]
group = "admins"
role = "admin"

[[role_map]]
app_role = "Photos.Manage"
role = "manager"
"#;

/// The configuration, with its rules compiled as the service does.
fn config(extra: &str) -> Result<crate::Config, ConfigError> {
    let config = crate::Config::from_toml_str(&format!("{BASE}\n{extra}"))?;
    Mapper::new(&config.identity, &config.role_map)?;
    Ok(config)
}

fn mapper(extra: &str) -> Mapper {
    let config = config(extra).unwrap();
    Mapper::new(&config.identity, &config.role_map).unwrap()
}

fn claims(v: Value) -> Claims {
    v.as_object().expect("claims object").clone()
}

/// What a case expects: the mapped user and role, or a refusal containing text.
enum Want {
    Mapped { user: &'static str, role: &'static str, groups: &'static [&'static str] },
    Refused(&'static str),
}

fn check(name: &str, m: &Mapper, c: &Claims, want: &Want) {
    let got = m.map(c);
    match (want, &got) {
        (Want::Mapped { user, role, groups }, Ok(id)) => {
            assert_eq!((id.user(), id.role()), (*user, *role), "{name}: {id:?}");
            assert_eq!(id.groups().collect::<Vec<_>>(), groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(), "{name}");
        }
        (Want::Refused(text), Err(r)) => assert!(r.reason.contains(text), "{name}: {}", r.reason),
        _ => panic!("{name}: got {got:?}"),
    }
}

#[test]
fn provider_shaped_claims() {
    let cases: Vec<(&str, &str, Value, Want)> = vec![
        (
            "authentik groups",
            r#"[identity]
required_groups = ["Family"]
[[role_map]]
group = "authentik Admins"
role = "admin""#,
            json!({"sub": "9f8e", "preferred_username": "alice", "email": "alice@example.com", "email_verified": true,
                   "groups": ["family", "authentik Admins"]}),
            Want::Mapped { user: "alice", role: "admin", groups: &["family", "authentik Admins"] },
        ),
        (
            "Keycloak realm and client roles, full-path groups",
            r#"[identity]
groups_claim = "groups"
roles_claim = ["realm_access.roles", "resource_access.photos.roles"]
required_groups = ["family"]
[[role_map]]
app_role = "manager"
role = "manager""#,
            json!({"sub": "c0ffee", "preferred_username": "bob", "groups": ["/family", "/family/kids"],
                   "realm_access": {"roles": ["offline_access", "uma_authorization"]},
                   "resource_access": {"photos": {"roles": ["Manager"]}, "account": {"roles": ["view-profile"]}}}),
            Want::Mapped { user: "bob", role: "manager", groups: &["/family", "/family/kids"] },
        ),
        (
            "Keycloak sub-group needs its full path by default",
            r#"[identity]
required_groups = ["kids"]"#,
            json!({"sub": "c0ffee", "preferred_username": "kid", "groups": ["/family/kids"]}),
            Want::Refused("not a member"),
        ),
        (
            "Keycloak sub-group by leaf name",
            r#"[identity]
group_paths = "leaf"
required_groups = ["Kids"]"#,
            json!({"sub": "c0ffee", "preferred_username": "kid", "groups": ["/family/kids"]}),
            Want::Mapped { user: "kid", role: "guest", groups: &["/family/kids"] },
        ),
        (
            "Entra GUID groups in another case, app roles, wids",
            r#"[identity]
required_groups = ["6f1c2d3a-aaaa-4bbb-8ccc-0123456789ab"]
[[role_map]]
directory_role = "62E90394-69F5-4237-9190-012177145E10"
role = "admin"
[[role_map]]
app_role = "photos.manage"
role = "manager""#,
            json!({"sub": "pairwise-xyz", "oid": "00000000-1111", "preferred_username": "carol@contoso.example", "name": "Carol",
                   "groups": ["6F1C2D3A-AAAA-4BBB-8CCC-0123456789AB"], "roles": ["Photos.Manage"],
                   "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"]}),
            Want::Mapped { user: "carol@contoso.example", role: "manager", groups: &["6F1C2D3A-AAAA-4BBB-8CCC-0123456789AB"] },
        ),
        (
            "Entra directory role maps through directory_role only",
            r#"[[role_map]]
directory_role = "62e90394-69f5-4237-9190-012177145e10"
role = "admin""#,
            json!({"sub": "p", "preferred_username": "dan", "wids": ["62e90394-69f5-4237-9190-012177145e10"]}),
            Want::Mapped { user: "dan", role: "admin", groups: &[] },
        ),
        (
            "Auth0 URL-keyed claims",
            r#"[identity]
username_claims = ["nickname", "sub"]
groups_claim = "https://example.com/groups"
roles_claim = "https://example.com/roles"
required_groups = ["family"]
[[role_map]]
app_role = "Admin"
role = "admin""#,
            json!({"sub": "auth0|123", "nickname": "dave", "email": "dave@example.com",
                   "https://example.com/groups": ["Family"], "https://example.com/roles": ["admin"]}),
            Want::Mapped { user: "dave", role: "admin", groups: &["Family"] },
        ),
        (
            "Zitadel role object as roles",
            r#"[identity]
roles_claim = "urn:zitadel:iam:org:project:roles"
[[role_map]]
app_role = "photo-viewer"
role = "viewer""#,
            json!({"sub": "2412", "preferred_username": "erin",
                   "urn:zitadel:iam:org:project:roles": {"photo-viewer": {"2411": "family.zitadel.cloud"}}}),
            Want::Mapped { user: "erin", role: "viewer", groups: &[] },
        ),
        (
            "Zitadel role object as groups",
            r#"[identity]
groups_claim = "urn:zitadel:iam:org:project:roles"
required_groups = ["family"]"#,
            json!({"sub": "2412", "preferred_username": "erin",
                   "urn:zitadel:iam:org:project:roles": {"family": {"2411": "x"}, "guests": {"2411": "x"}}}),
            Want::Mapped { user: "erin", role: "guest", groups: &["family", "guests"] },
        ),
        (
            "a single string group",
            r#"[identity]
required_groups = ["family"]"#,
            json!({"sub": "1", "preferred_username": "solo", "groups": "family"}),
            Want::Mapped { user: "solo", role: "guest", groups: &["family"] },
        ),
        (
            "Entra group overage (_claim_names)",
            r#"[identity]
required_groups = ["family"]"#,
            json!({"sub": "p", "preferred_username": "big@contoso.example",
                   "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}}),
            Want::Refused("group membership could not be resolved"),
        ),
        (
            "Entra group overage (hasgroups), even without required_groups",
            "",
            json!({"sub": "p", "preferred_username": "big@contoso.example", "hasgroups": true}),
            Want::Refused("group overage"),
        ),
        (
            "username falls back through username_claims to sub",
            "",
            json!({"sub": "only-sub"}),
            Want::Mapped { user: "only-sub", role: "guest", groups: &[] },
        ),
        ("no sub", "", json!({"preferred_username": "x"}), Want::Refused("no `sub`")),
    ];
    for (name, extra, c, want) in cases {
        check(name, &mapper(extra), &claims(c), &want);
    }
}

#[test]
fn authelia_groups_only_in_userinfo_are_merged() {
    let m = mapper("[identity]\nrequired_groups = [\"family\"]");
    let id = claims(json!({"sub": "a1b2", "amr": ["pwd"], "iss": "https://auth.example.com"}));
    let userinfo = claims(json!({"sub": "a1b2", "preferred_username": "frank", "email": "frank@example.com",
                                  "email_verified": true, "groups": ["family", "dev"]}));
    check("ID token alone", &m, &id, &Want::Refused("not a member"));
    let merged = m.collect_claims(&id, Some(&userinfo), None);
    let idn = m.map(&merged).unwrap().to_parts();
    assert_eq!((idn.user.as_str(), idn.email.as_deref()), ("frank", Some("frank@example.com")));
    assert_eq!(idn.groups, ["family", "dev"]);
}

#[test]
fn access_token_claims_fill_in_and_order_is_configurable() {
    // The access token's claims, as oidc hands them over once the token verified.
    let at = claims(json!({"sub": "other", "preferred_username": "from-at", "realm_access": {"roles": ["photo-admin"]}}));
    let id = claims(json!({"sub": "kc-1", "preferred_username": "gina"}));
    let toml = "[identity]\nroles_claim = \"realm_access.roles\"\n[[role_map]]\napp_role = \"photo-admin\"\nrole = \"admin\"";
    let m = mapper(toml);
    let got = m.map(&m.collect_claims(&id, None, Some(&at))).unwrap().to_parts();
    assert_eq!((got.user.as_str(), got.role.as_str(), got.subject.as_str()), ("gina", "admin", "kc-1"));

    let m = mapper(
        "[identity]\nroles_claim = \"realm_access.roles\"\nclaim_sources = [\"access_token\", \"id_token\"]\n[[role_map]]\napp_role = \"photo-admin\"\nrole = \"admin\"",
    );
    let got = m.map(&m.collect_claims(&id, None, Some(&at))).unwrap().to_parts();
    assert_eq!(got.user, "from-at", "access token first: its user name wins");
    assert_eq!(got.subject, "kc-1", "sub always comes from the ID token");

    let m = mapper("[identity]\nroles_claim = \"realm_access.roles\"\nclaim_sources = [\"id_token\", \"userinfo\"]");
    let got = m.map(&m.collect_claims(&id, None, Some(&at))).unwrap().to_parts();
    assert!(got.roles.is_empty(), "access token not listed: not read");
}

#[test]
fn the_family_example() {
    let m = mapper(FAMILY);
    let person = |user: &str, email: &str, groups: Value| {
        claims(json!({"sub": format!("sub-{user}"), "preferred_username": user, "email": email,
                      "email_verified": true, "name": user.to_uppercase(), "groups": groups}))
    };
    for who in ["alice", "bob", "carol"] {
        let id = m.map(&person(who, &format!("{who}@example.com"), json!(["family"]))).unwrap().to_parts();
        assert_eq!(id.user, "family", "{who}");
        assert_eq!(id.email.as_deref(), Some("family@example.com"));
        assert_eq!(id.person, who, "the person stays on record");
        assert_eq!(id.person_email.as_deref(), Some(format!("{who}@example.com").as_str()));
        assert_eq!(id.subject, format!("sub-{who}"));
        assert_eq!(id.role, "guest", "default_role");
    }
    // Email addresses compare case-insensitively.
    assert_eq!(m.map(&person("alice", "Alice@Example.COM", json!(["family"]))).unwrap().to_parts().user, "family");

    let guest = m.map(&person("gus", "gus@elsewhere.example", json!(["Guests"]))).unwrap().to_parts();
    assert_eq!((guest.user.as_str(), guest.role.as_str()), ("guest", "viewer"));
    assert_eq!(guest.email.as_deref(), Some("gus@elsewhere.example"));

    let admin = m.map(&person("ada", "ada@example.com", json!(["admins"]))).unwrap().to_parts();
    assert_eq!((admin.user.as_str(), admin.role.as_str()), ("ada", "admin"));

    let contractor = m.map(&person("pat", "pat@contractor.example", json!(["family"]))).unwrap().to_parts();
    assert_eq!(contractor.user, "contractor");

    let outsider = m.map(&person("mallory", "alice@example.com", json!(["strangers"]))).unwrap_err();
    assert!(outsider.reason.contains("not a member of any group"), "{outsider}");

    let e = m.explain(&person("bob", "bob@example.com", json!(["family", "admins"])));
    assert_eq!((e.rule, e.role_from), (Some(0), Some(RoleFrom::RoleMap(0))));
    let e = m.explain(&person("gus", "gus@x.example", json!(["guests"])));
    assert_eq!((e.rule, e.role_from), (Some(1), Some(RoleFrom::Rule(1))));
}

#[test]
fn rule_criteria_are_all_of_across_any_of_within() {
    let m = mapper(
        r#"
[[identity.rules]]
groups = ["staff", "family"]
email_domains = ["@example.com"]
user = "insider"
add_groups = ["insiders"]

[[identity.rules]]
users = ["Zed"]
user = "zed-shared"
name = "Shared Zed"
role = "none"
"#,
    );
    let c = |email: &str, groups: Value| {
        claims(json!({"sub": "s", "preferred_username": "u", "email": email, "email_verified": true, "groups": groups}))
    };
    let got = m.map(&c("u@example.com", json!(["family"]))).unwrap().to_parts();
    assert_eq!(got.user, "insider");
    assert_eq!(got.groups, ["family", "insiders"], "add_groups appends");
    assert_eq!(m.map(&c("u@other.example", json!(["family"]))).unwrap().to_parts().user, "u", "domain must match too");
    assert_eq!(m.map(&c("u@sub.example.com", json!(["staff"]))).unwrap().to_parts().user, "u", "no subdomains");
    assert_eq!(m.map(&c("u@example.com", json!(["other"]))).unwrap().to_parts().user, "u", "group must match too");

    let zed = claims(json!({"sub": "z", "preferred_username": "zed"}));
    assert!(m.map(&zed).unwrap_err().reason.contains("role `none`"));
}

#[test]
fn namespaces_never_mix() {
    let m = mapper(
        r#"
[identity]
required_groups = ["admins"]
[[role_map]]
group = "62e90394-69f5-4237-9190-012177145e10"
role = "admin"
"#,
    );
    // An app role or a directory role named like a group is not a group.
    let c = claims(json!({"sub": "s", "preferred_username": "u", "roles": ["admins"], "wids": ["admins"]}));
    assert!(m.map(&c).unwrap_err().reason.contains("not a member"));
    let c = claims(json!({"sub": "s", "preferred_username": "u", "groups": ["admins"],
                          "wids": ["62e90394-69f5-4237-9190-012177145e10"]}));
    assert_eq!(m.map(&c).unwrap().to_parts().role, "guest", "a wids value never satisfies a group entry");
}

#[test]
fn role_none_and_default_role() {
    let m = mapper("[identity]\ndefault_role = \"none\"\n[[role_map]]\ngroup = \"family\"\nrole = \"user\"");
    let c = |g: Value| claims(json!({"sub": "s", "preferred_username": "u", "groups": g}));
    assert_eq!(m.map(&c(json!(["family"]))).unwrap().to_parts().role, "user");
    let r = m.map(&c(json!(["other"]))).unwrap_err();
    assert!(r.reason.contains("no role"), "{r}");
}

#[test]
fn unverified_email_never_matches_or_is_sent() {
    let m = mapper(FAMILY);
    let c = claims(json!({"sub": "s", "preferred_username": "mallory", "email": "alice@example.com",
                          "email_verified": false, "groups": ["family"]}));
    let e = m.explain(&c);
    let id = e.result.unwrap().to_parts();
    assert_eq!(id.user, "mallory", "an unverified email must not map onto the family account");
    assert_eq!(id.email, None);
    assert!(e.notes.iter().any(|n| n.contains("email_verified")), "{:?}", e.notes);

    let m = mapper(&FAMILY.replace("[identity]\n", "[identity]\nallow_unverified_email = true\n"));
    assert_eq!(m.map(&c).unwrap().to_parts().user, "family");
}

#[test]
fn an_email_is_identity_only_when_the_provider_says_it_is_verified() {
    // A provider that sends no preferred_username, and lets anyone sign up
    // with any address: the default username_claims reach `email`.
    let rules = r#"
[[identity.rules]]
users = ["boss@example.com"]
user = "boss"
role = "admin"

[[identity.rules]]
email_domains = ["example.com"]
user = "staff"
"#;
    let boss = |verified: Option<Value>| {
        let mut c = json!({"sub": "auth0|stranger", "email": "boss@example.com", "name": "Boss"});
        if let Some(v) = verified {
            c["email_verified"] = v;
        }
        claims(c)
    };
    let m = mapper(rules);
    for verified in [None, Some(json!(false)), Some(json!("false")), Some(json!(null)), Some(json!(1))] {
        let e = m.explain(&boss(verified.clone()));
        let id = e.result.unwrap().to_parts();
        assert_eq!(id.user, "auth0|stranger", "{verified:?}: the user name falls back to sub");
        assert_eq!(id.person, "auth0|stranger");
        assert_eq!((id.email, id.person_email, id.role.as_str()), (None, None, "guest"), "{verified:?}: no rule matched");
        assert_eq!(e.rule, None, "{verified:?}");
        assert!(e.notes.iter().any(|n| n.contains("the email is ignored")), "{verified:?}: {:?}", e.notes);
    }
    for verified in [json!(true), json!("true")] {
        let id = m.map(&boss(Some(verified))).unwrap().to_parts();
        assert_eq!((id.user.as_str(), id.person.as_str(), id.role.as_str()), ("boss", "boss@example.com", "admin"));
    }

    // trust_unverified_email: a missing claim counts as verified, `false` does not.
    let m = mapper(&format!("[identity]\ntrust_unverified_email = true\n{rules}"));
    assert_eq!(m.map(&boss(None)).unwrap().to_parts().user, "boss");
    assert_eq!(m.map(&boss(Some(json!(false)))).unwrap().to_parts().user, "auth0|stranger");
    // allow_unverified_email: both.
    let m = mapper(&format!("[identity]\nallow_unverified_email = true\n{rules}"));
    assert_eq!(m.map(&boss(None)).unwrap().to_parts().user, "boss");
    assert_eq!(m.map(&boss(Some(json!(false)))).unwrap().to_parts().user, "boss");

    // Another claim first: the email is not the user name, yet still
    // matched only when verified.
    let m = mapper(&format!("[identity]\nusername_claims = [\"nickname\", \"sub\"]\n{rules}"));
    let mut c = boss(None);
    c.insert("nickname".into(), json!("stranger"));
    let id = m.map(&c).unwrap().to_parts();
    assert_eq!((id.user.as_str(), id.email.as_deref()), ("stranger", None));
}

#[test]
fn a_user_name_that_nfkc_changes_is_refused() {
    let m = mapper("[[identity.rules]]\nusers = [\"kids\"]\nuser = \"kids-shared\"\nrole = \"viewer\"");
    let kelvin = claims(json!({"sub": "s1", "preferred_username": "\u{212A}ids"}));
    let r = m.map(&kelvin).unwrap_err();
    assert!(r.reason.contains("Kelvin sign"), "{r}");
    for name in ["\u{FF4B}ids", "k\u{131}ds\u{FB01}", "Jo\u{308}rg"] {
        let c = claims(json!({"sub": "s1", "preferred_username": name}));
        assert!(m.map(&c).is_err(), "{name:?}");
    }
    // The real name matches, in any ASCII case; other scripts are not folded.
    let c = |name: &str| claims(json!({"sub": "s2", "preferred_username": name}));
    assert_eq!(m.map(&c("KIDS")).unwrap().to_parts().user, "kids-shared");
    assert_eq!(m.map(&c("J\u{F6}rg")).unwrap().to_parts().user, "J\u{F6}rg");
    // A group named with a compatibility form still compares as its letters.
    let m = mapper("[[role_map]]\ngroup = \"kids\"\nrole = \"viewer\"");
    let c = claims(json!({"sub": "s3", "preferred_username": "kim", "groups": ["\u{212A}IDS"]}));
    assert_eq!(m.map(&c).unwrap().to_parts().role, "viewer");
    // A rule cannot map anyone onto such a name either.
    let err = match config("[[identity.rules]]\nusers = [\"a\"]\nuser = \"\u{212A}ids\"") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(err.contains("identity.rules[0].user") && err.contains("NFKC"), "{err}");
}

#[test]
fn expression_errors_count_as_no_match_and_are_noted() {
    let m = mapper(FAMILY);
    // No email claim: `claims.email` is missing, so rule 2 cannot evaluate.
    let c = claims(json!({"sub": "s", "preferred_username": "nomail", "groups": ["family"]}));
    let e = m.explain(&c);
    assert_eq!(e.result.unwrap().to_parts().user, "nomail");
    assert_eq!(e.rule, None);
    assert!(e.notes.iter().any(|n| n.contains("identity.rules[2].expr") && n.contains("no match")), "{:?}", e.notes);
}

#[test]
fn claim_values_cannot_inject_headers() {
    use crate::headers::IdentityHeaders;
    let m = mapper("");
    let c = claims(json!({"sub": "s", "preferred_username": "eve", "email": "eve@example.com",
                          "name": "Eve\r\nRemote-User: admin", "groups": ["ok", "admins\r\nX-Evil: 1"]}));
    let e = m.explain(&c);
    let id = e.result.unwrap().to_parts();
    assert_eq!(id.groups, ["ok"], "a group with control characters is dropped");
    assert!(e.notes.iter().any(|n| n.contains("groups is ignored")));
    let mut headers = hyper::header::HeaderMap::new();
    IdentityHeaders::new(&crate::headers::HeaderNames::default()).unwrap().write(&id.into(), &mut headers);
    assert_eq!(headers["remote-user"], "eve");
    assert_eq!(headers["remote-name"], "Eve  Remote-User: admin");
    assert!(headers.get("x-evil").is_none());
    assert_eq!(headers.get_all("remote-user").iter().count(), 1);

    // A user name or email the header would alter could impersonate someone.
    for bad in ["admin\r\n", " admin", "admin\u{0}"] {
        let c = claims(json!({"sub": "s", "preferred_username": bad}));
        assert!(m.map(&c).unwrap_err().reason.contains("cannot be passed on safely"), "{bad:?}");
    }
    let c = claims(json!({"sub": "s", "preferred_username": "u", "email": "alice@example.com\n"}));
    assert_eq!(m.map(&c).unwrap().to_parts().email, None);
}

#[test]
fn start_up_errors_name_the_key() {
    let cases = [
        ("[[identity.rules]]\nuser = \"x\"", "identity.rules[0]", "matches nothing"),
        (
            "[[identity.rules]]\nusers = [\"a\"]\nuser = \"x\"\n[[identity.rules]]\nusers = [\"b\"]\nuser = \"y\"\n[[identity.rules]]\nexpr = \"claims.email.endsWith(\"\nuser = \"z\"",
            "identity.rules[2].expr",
            "not a valid CEL expression",
        ),
        ("[[identity.rules]]\nexpr = \"grups.size() > 0\"\nuser = \"z\"", "identity.rules[0].expr", "unknown name `grups`"),
        ("[[identity.rules]]\nusers = [\"a\"]\nuser = \"\"", "identity.rules[0].user", "is empty"),
        ("[[role_map]]\ngroup = \"a\"\napp_role = \"b\"\nrole = \"x\"", "role_map[0]", "exactly one"),
        ("[[role_map]]\nrole = \"x\"", "role_map[0]", "exactly one"),
        ("[identity]\nclaim_sources = [\"id_token\", \"id_token\"]", "identity.claim_sources", "twice"),
        ("[identity]\nclaim_sources = [\"cookies\"]", "claim_sources", "cookies"),
        ("[identity]\nusername_claims = []", "identity.username_claims", "at least one"),
        ("[identity]\ngroup_paths = \"middle\"", "group_paths", "middle"),
        ("[identity]\nrequired_groups = [\"\"]", "identity.required_groups[0]", "is empty"),
    ];
    for (toml, key, reason) in cases {
        let err = config(toml).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(reason), "{toml}\n=> {err}");
    }
}

#[test]
fn merge_claims_unites_groups() {
    let a = claims(json!({"sub": "1", "groups": ["a"]}));
    let b = claims(json!({"sub": "2", "groups": ["b"], "email": "e"}));
    let m = merge_claims(&[&a, &b]);
    assert_eq!(m["groups"], json!(["a", "b"]));
    assert_eq!((m["sub"].as_str(), m["email"].as_str()), (Some("1"), Some("e")));
}

#[test]
fn identities_from_older_sessions_still_load() {
    let old = r#"{"user":"u","email":null,"name":null,"groups":[],"roles":[],"role":"guest","subject":"s","person":"u"}"#;
    let id: Identity = serde_json::from_str(old).unwrap();
    assert_eq!(id.person_email(), None);
}

#[test]
fn an_identity_mapped_earlier_is_checked_against_the_rules_now() {
    // Mapped when only `family` had to be a member ...
    let then = mapper("[identity]\nrequired_groups = [\"family\"]");
    let kid = then.map(&claims(json!({"sub": "k1", "preferred_username": "kim", "groups": ["Family", "kids"]}))).unwrap();
    assert_eq!(then.admits(&kid), Ok(()));
    // ... still let in when the required groups are written differently ...
    assert_eq!(mapper("[identity]\nrequired_groups = [\"FAMILY\", \"admins\"]").admits(&kid), Ok(()));
    // ... but no longer once her groups are not among them, or her role is `none`.
    let refusal = mapper("[identity]\nrequired_groups = [\"admins\"]").admits(&kid).unwrap_err();
    assert!(refusal.reason.contains("required_groups"), "{refusal}");
    let none = IdentityParts { role: ROLE_NONE.into(), ..kid.to_parts() }.into();
    assert!(then.admits(&none).is_err());
}

#[test]
fn ten_thousand_rules_one_per_person() {
    let rules: String = (0..10_000).map(|i| format!("[[identity.rules]]\nusers = [\"user-{i}\"]\nuser = \"shared-{i}\"\n\n")).collect();
    let m = mapper(&rules);
    let e = m.explain(&claims(json!({"sub": "s", "preferred_username": "User-9999"})));
    assert_eq!((e.rule, e.result.unwrap().user()), (Some(9999), "shared-9999"));
    let e = m.explain(&claims(json!({"sub": "s", "preferred_username": "user-10000"})));
    let id = e.result.unwrap();
    assert_eq!((e.rule, id.user(), id.role()), (None, "user-10000", "guest"));
}

#[test]
fn rules_found_by_name_keep_rule_order_and_every_list() {
    let m = mapper(
        r#"
[[identity.rules]]
users = ["alice"]
groups = ["admins"]
user = "alice-admin"

[[identity.rules]]
email_domains = ["example.com"]
groups = ["staff"]
user = "staff"

[[identity.rules]]
emails = ["Alice@Example.com"]
user = "alice-by-email"

[[identity.rules]]
users = ["ALICE", "alice"]
user = "alice-plain"
"#,
    );
    let user = |name: &str, email: Option<&str>, groups: &[&str]| {
        let mut c = json!({"sub": "s", "preferred_username": name, "groups": groups});
        if let Some(e) = email {
            c["email"] = json!(e);
            c["email_verified"] = json!(true);
        }
        m.map(&claims(c)).unwrap().user().to_string()
    };
    // Rule 0 names alice but wants admins too.
    assert_eq!(user("alice", None, &["admins"]), "alice-admin");
    assert_eq!(user("alice", None, &[]), "alice-plain");
    assert_eq!(user("Alice", None, &["staff"]), "alice-plain");
    // Rule 1, for everyone at example.com in staff, is written before the
    // rules that name her by email and by user name.
    assert_eq!(user("alice", Some("alice@example.com"), &["staff"]), "staff");
    assert_eq!(user("alice", Some("ALICE@example.com"), &[]), "alice-by-email");
    assert_eq!(user("al", Some("alice@EXAMPLE.com"), &[]), "alice-by-email");
    assert_eq!(user("alice", Some("alice@example.org"), &["admins"]), "alice-admin");
    // A user name that looks like a listed email is not that email.
    assert_eq!(user("alice@example.com", None, &[]), "alice@example.com");
}
