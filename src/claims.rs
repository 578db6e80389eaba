//! Reading claims: where a value lives, what shape it has, and merging the
//! provider's sources into one view.
//!
//! A claim path is a top-level key (`groups`, `https://example.com/groups`,
//! `urn:zitadel:iam:org:project:roles`) or a dotted path into nested objects
//! (`realm_access.roles`, `resource_access.my-client.roles`). Keys that
//! themselves contain dots are found too: at each level the longest key that
//! exists wins. A list claim may be an array, a single string, or an object
//! whose keys are the values (Zitadel's role object).
//!
//! The ID token's signature is verified, and so is an access token's before
//! its claims are read ([`crate::oidc`]). Userinfo comes straight from the
//! provider over TLS, asked with our access token, so its claims are
//! trusted as the provider's answer. The protocol claims (`sub`, `iss`,
//! `aud`, `exp`, ...) are always taken from the ID token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Claims as JSON: the merged view of every source the provider gave us.
pub type Claims = Map<String, Value>;

/// Claims kept with a session: their JSON text, read back only when an
/// expression or an explanation asks (most verifies never do), so a
/// session holds one string rather than a tree of maps; or nothing, when
/// nothing reads them. Stored in Redis as the JSON object itself (`null`
/// for nothing).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredClaims(Option<Box<serde_json::value::RawValue>>);

impl StoredClaims {
    pub fn new(claims: &Claims) -> StoredClaims {
        // A map with string keys always serializes; an error keeps nothing.
        StoredClaims(serde_json::value::to_raw_value(claims).ok())
    }

    /// What a session keeps: all of `claims` when `all`, else nothing.
    /// Who the person is to the provider (`iss`, `sub`, `sid`: what a
    /// refresh without a new ID token stands on) is known without them:
    /// the provider's issuer, the identity's subject, the session's `sid`.
    pub fn keep(claims: &Claims, all: bool) -> StoredClaims {
        if all { StoredClaims::new(claims) } else { StoredClaims(None) }
    }

    /// Bytes these claims hold on the heap (to weigh a cached session).
    pub fn heap_size(&self) -> usize {
        self.0.as_ref().map_or(0, |raw| raw.get().len())
    }

    /// The claims; none kept, or an unreadable text (never written by
    /// portcullis), reads as no claims, so expressions that need one fail
    /// closed.
    pub fn read(&self) -> Claims {
        self.0.as_ref().and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default()
    }
}

/// Claims that describe the token, not the person: only the verified ID
/// token may supply them.
const PROTOCOL_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "azp", "exp", "iat", "nbf", "nonce", "sid", "auth_time", "at_hash", "c_hash", "jti"];

/// Where claims come from, in the order `identity.claim_sources` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimSource {
    IdToken,
    Userinfo,
    /// Read only when the access token is a JWT that verifies against the
    /// provider's keys, with the provider's issuer, and has not expired.
    AccessToken,
}

/// One or more claim paths: written as a string or a list of strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPaths(pub Vec<String>);

impl ClaimPaths {
    pub fn one(path: &str) -> ClaimPaths {
        ClaimPaths(vec![path.to_string()])
    }
}

impl<'de> Deserialize<'de> for ClaimPaths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        match OneOrMany::deserialize(d) {
            Ok(OneOrMany::One(s)) => Ok(ClaimPaths(vec![s])),
            Ok(OneOrMany::Many(v)) => Ok(ClaimPaths(v)),
            Err(_) => Err(serde::de::Error::custom("expected a claim path or a list of claim paths")),
        }
    }
}

impl Serialize for ClaimPaths {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

/// The value at `path`, if any.
pub fn lookup<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    // Longest existing key first, so `a.b.c` prefers key `a.b` over `a`.
    for (i, _) in path.match_indices('.').collect::<Vec<_>>().into_iter().rev() {
        if let Some(Value::Object(inner)) = claims.get(&path[..i])
            && let Some(v) = lookup(inner, &path[i + 1..])
        {
            return Some(v);
        }
    }
    None
}

/// A scalar claim as text: a string, or a number written out.
pub fn text(claims: &Claims, path: &str) -> Option<String> {
    match lookup(claims, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A list claim's values: array items, a single string, or an object's keys.
pub fn values(value: Option<&Value>) -> Vec<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(v) => scalar(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Merges sources in order: a later source fills what an earlier one lacks,
/// nested objects are merged key by key, and the list claims at `unite`
/// paths are united across all sources.
pub fn merge(sources: &[&Claims], unite: &[&str]) -> Claims {
    let mut out = Claims::new();
    for source in sources {
        merge_into(&mut out, source, "", unite);
    }
    out
}

fn merge_into(out: &mut Claims, source: &Claims, prefix: &str, unite: &[&str]) {
    for (key, value) in source {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match out.get_mut(key) {
            None => {
                out.insert(key.clone(), value.clone());
            }
            Some(Value::Object(existing)) if value.is_object() => {
                if let Value::Object(more) = value {
                    merge_into(existing, more, &path, unite);
                }
            }
            Some(existing) if unite.contains(&path.as_str()) => {
                let mut items = match std::mem::take(existing) {
                    Value::Array(a) => a,
                    Value::Null => Vec::new(),
                    other => vec![other],
                };
                let more = match value {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                for item in more {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                *existing = Value::Array(items);
            }
            Some(_) => {}
        }
    }
}

/// Merges the sources in the configured order; protocol claims come from
/// the ID token only.
pub fn merge_sources(order: &[ClaimSource], id_token: &Claims, others: &[(ClaimSource, &Claims)], unite: &[&str]) -> Claims {
    let mut list: Vec<&Claims> = Vec::new();
    for source in order {
        if *source == ClaimSource::IdToken {
            list.push(id_token);
        } else {
            list.extend(others.iter().filter(|(s, _)| s == source).map(|(_, c)| *c));
        }
    }
    let mut merged = merge(&list, unite);
    for key in PROTOCOL_CLAIMS {
        match id_token.get(*key) {
            Some(v) => merged.insert((*key).to_string(), v.clone()),
            None => merged.remove(*key),
        };
    }
    merged
}

/// Only the protocol claims of `claims` (`sub`, `iss`, `aud`, ...).
pub fn protocol_claims(claims: &Claims) -> Claims {
    claims.iter().filter(|(k, _)| PROTOCOL_CLAIMS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The header of a JWS in compact form (`header.payload.sig` with a JSON
/// header naming an `alg`); `None` for an opaque token or a JWE.
pub fn jwt_header(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (header, _payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header = decode_part(header)?;
    header.get("alg")?.as_str()?;
    Some(header)
}

/// The payload of an access token when it is a JWT; `None` for an opaque
/// token. The signature is NOT checked: only for `portcullis explain`,
/// which reads what an administrator hands it. A login merges the claims
/// only after [`crate::oidc`] verified the token.
pub fn access_token_claims(token: &str) -> Option<Claims> {
    jwt_header(token)?;
    decode_part(token.split('.').nth(1)?)
}

fn decode_part(part: &str) -> Option<Claims> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// True when the token says groups were left out because there are too
/// many (Entra ID's group overage): Entra then puts `_claim_names.groups`
/// (pointing into `_claim_sources`, whose deprecated Azure AD Graph URL is
/// never called) or `hasgroups: true` in place of the `groups` claim. A
/// `_claim_names` entry for one of `groups_paths` counts too, and so does
/// an entry of any value: a token that says its groups live elsewhere is
/// read as incomplete. The one reading of overage, for identity mapping
/// and for [`crate::graph`].
pub fn group_overage(claims: &Claims, groups_paths: &[String]) -> bool {
    let named = match claims.get("_claim_names") {
        Some(Value::Object(names)) => names.contains_key("groups") || groups_paths.iter().any(|p| names.contains_key(p)),
        _ => false,
    };
    let has_groups = matches!(claims.get("hasgroups"), Some(Value::Bool(true)))
        || matches!(claims.get("hasgroups"), Some(Value::String(s)) if s.eq_ignore_ascii_case("true"));
    named || has_groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn paths_reach_nested_and_url_keys() {
        let c = obj(json!({
            "groups": ["a"],
            "realm_access": {"roles": ["r1"]},
            "resource_access": {"my.client": {"roles": ["c1"]}},
            "https://example.com/groups": ["u1"],
            "https://example.com": {"nested": "no"},
        }));
        let cases = [
            ("groups", json!(["a"])),
            ("realm_access.roles", json!(["r1"])),
            ("resource_access.my.client.roles", json!(["c1"])),
            ("https://example.com/groups", json!(["u1"])),
        ];
        for (path, want) in cases {
            assert_eq!(lookup(&c, path), Some(&want), "{path}");
        }
        assert_eq!(lookup(&c, "realm_access.missing"), None);
        assert_eq!(lookup(&c, "groups.0"), None);
    }

    #[test]
    fn list_values_have_three_shapes() {
        let cases = [
            (json!(["a", "b", 7, {"x": 1}]), vec!["a", "b", "7"]),
            (json!("solo"), vec!["solo"]),
            (json!({"admin": {"123": "org"}, "viewer": {}}), vec!["admin", "viewer"]),
            (json!(true), vec![]),
        ];
        for (value, want) in cases {
            assert_eq!(values(Some(&value)), want, "{value}");
        }
        assert!(values(None).is_empty());
    }

    #[test]
    fn merge_fills_gaps_and_unites_list_claims() {
        let id = obj(json!({"sub": "1", "name": "Id", "groups": ["a"], "realm_access": {"roles": ["r1"]}}));
        let ui = obj(json!({"sub": "1", "name": "Userinfo", "email": "e@x", "groups": ["b", "a"], "realm_access": {"roles": ["r2"], "x": 1}}));
        let m = merge(&[&id, &ui], &["groups", "realm_access.roles"]);
        assert_eq!(m["name"], "Id");
        assert_eq!(m["email"], "e@x");
        assert_eq!(m["groups"], json!(["a", "b"]));
        assert_eq!(m["realm_access"], json!({"roles": ["r1", "r2"], "x": 1}));
        // Without `unite`, the first source's list is kept.
        assert_eq!(merge(&[&id, &ui], &[])["groups"], json!(["a"]));
    }

    #[test]
    fn protocol_claims_come_only_from_the_id_token() {
        let id = obj(json!({"sub": "person", "aud": "portcullis", "name": "Id"}));
        let at = obj(json!({"sub": "other", "aud": "api", "scp": "x", "sid": "s"}));
        let order = [ClaimSource::AccessToken, ClaimSource::IdToken];
        let m = merge_sources(&order, &id, &[(ClaimSource::AccessToken, &at)], &[]);
        assert_eq!(m["sub"], "person");
        assert_eq!(m["aud"], "portcullis");
        assert_eq!(m["scp"], "x");
        assert!(!m.contains_key("sid"));
        // A source missing from `order` is not read.
        let m = merge_sources(&[ClaimSource::IdToken], &id, &[(ClaimSource::AccessToken, &at)], &[]);
        assert!(!m.contains_key("scp"));
        assert_eq!(protocol_claims(&at), obj(json!({"sub": "other", "aud": "api", "sid": "s"})));
    }

    #[test]
    fn access_token_is_read_only_when_it_is_a_jwt() {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let jwt = format!("{}.{}.sig", enc(json!({"alg": "RS256"})), enc(json!({"roles": ["x"]})));
        assert_eq!(access_token_claims(&jwt).unwrap()["roles"], json!(["x"]));
        for opaque in ["opaque-token", "a.b", "a.b.c", &format!("{}.{}.s", enc(json!({"typ": "x"})), enc(json!({})))] {
            assert!(access_token_claims(opaque).is_none(), "{opaque}");
        }
        let jwe = format!("{}.{}.c.d.e", enc(json!({"alg": "RSA-OAEP"})), enc(json!({})));
        assert!(access_token_claims(&jwe).is_none());
    }

    #[test]
    fn overage_markers_are_detected() {
        let groups = vec!["groups".to_string()];
        let cases = [
            (json!({"_claim_names": {"groups": "src1"}}), true),
            (json!({"hasgroups": true}), true),
            (json!({"hasgroups": "true"}), true),
            (json!({"_claim_names": {"other": "src1"}}), false),
            (json!({"groups": ["a"]}), false),
        ];
        for (claims, want) in cases {
            assert_eq!(group_overage(&obj(claims.clone()), &groups), want, "{claims}");
        }
    }

    #[test]
    fn entra_overage_shapes_are_detected() {
        let overage = |v: Value| group_overage(&obj(v), &[]);
        // The JWT shape Entra documents for overage: a pointer, no `groups`.
        assert!(overage(json!({
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/t/users/u/getMemberObjects"}}
        })));
        assert!(overage(json!({"hasgroups": true})));
        assert!(!overage(json!({"hasgroups": false, "groups": ["a"]})));
        assert!(!overage(json!({"groups": ["0b6f6a4e-3c1d-4f43-9a4b-4e1f0a2c9d11"]})));
        // Another distributed claim is not a groups overage.
        assert!(!overage(json!({
            "_claim_names": {"address": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://example.com/address"}}
        })));
    }
}
