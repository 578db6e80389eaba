//! Credentials other than a browser's session cookie, for apps and devices
//! that cannot sign in with a browser (`[api]`):
//!
//! - the provider's own JWT access tokens (`Authorization: Bearer`, or
//!   `Proxy-Authorization`), verified against its keys by
//!   [`crate::oidc`] and then kept in a [`BearerCache`] until they expire;
//! - personal access tokens ([`crate::session::token`]) as
//!   `Authorization: Bearer pcat_…`, as the password of HTTP Basic, or in
//!   a header of their own (`api.token_header`);
//! - a limit on refused credentials per client address ([`Failures`]).
//!
//! [`find`] reads which credential a request carries. An `Authorization`
//! that is none of these (the app's own Basic login, its own bearer
//! tokens) is not portcullis's: it is left to the app.

pub mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};

pub use config::{ApiConfig, RawApi};
use crate::claims::StoredClaims;
use crate::identity::Identity;
use crate::session::token;

/// The header a credential came in; its name is what the proxy removes
/// before the request goes on to the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    Authorization,
    ProxyAuthorization,
    /// `api.token_header`.
    TokenHeader,
}

/// A credential as the request carries it (not checked yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Meant as a personal access token (it may not have a token's form).
    Personal(String),
    /// A JWT, perhaps the provider's access token.
    Provider(String),
}

/// The credential on a request and the header it came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub credential: Credential,
    pub carrier: Carrier,
}

impl Found {
    /// The SHA-256 of the credential: how caches and the failure limit
    /// know it without keeping it.
    pub fn hash(&self) -> [u8; 32] {
        let text = match &self.credential {
            Credential::Personal(t) | Credential::Provider(t) => t,
        };
        Sha256::digest(text.as_bytes()).into()
    }

    /// `personal` or `bearer`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self.credential {
            Credential::Personal(_) => "personal",
            Credential::Provider(_) => "bearer",
        }
    }
}

/// The headers a credential may come in, as a request carries them (the
/// first value of each; verify has them from its one pass over the
/// request's headers).
#[derive(Clone, Copy, Debug, Default)]
pub struct Presented<'a> {
    /// `api.token_header`'s, when one is set.
    pub token_header: Option<&'a HeaderValue>,
    pub authorization: Option<&'a HeaderValue>,
    pub proxy_authorization: Option<&'a HeaderValue>,
}

/// The credential a request presents to portcullis, if any: the token
/// header first, then `Authorization`, then `Proxy-Authorization`.
pub fn find(presented: &Presented, config: &ApiConfig) -> Option<Found> {
    if config.token_header.is_some() {
        if let Some(value) = presented.token_header {
            let text = value.to_str().unwrap_or("").trim();
            let credential = if config.bearer_tokens && !token::looks_like(text) && is_jwt(text) {
                Credential::Provider(text.to_string())
            } else {
                // Whatever it holds was meant as a token: refused if not one.
                Credential::Personal(text.to_string())
            };
            return Some(Found { credential, carrier: Carrier::TokenHeader });
        }
    }
    [(presented.authorization, Carrier::Authorization), (presented.proxy_authorization, Carrier::ProxyAuthorization)]
        .into_iter()
        .find_map(|(value, carrier)| {
            let value = value?.to_str().ok()?;
            Some(Found { credential: from_authorization(value, config)?, carrier })
        })
}

/// A credential in an `Authorization` value, when it is portcullis's.
fn from_authorization(value: &str, config: &ApiConfig) -> Option<Credential> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if config.personal_tokens && token::looks_like(rest) {
            return Some(Credential::Personal(rest.to_string()));
        }
        if config.bearer_tokens && is_jwt(rest) {
            return Some(Credential::Provider(rest.to_string()));
        }
    } else if scheme.eq_ignore_ascii_case("basic") && config.personal_tokens {
        // Any user name; the password is the token.
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let (_, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        if token::looks_like(password) {
            return Some(Credential::Personal(password.to_string()));
        }
    }
    None
}

/// Whether `text` has a signed JWT's form (three base64url parts).
fn is_jwt(text: &str) -> bool {
    // On every request with a provider token: one pass over its bytes.
    let mut dots = 0;
    text.starts_with("eyJ")
        && text.bytes().all(|b| {
            dots += usize::from(b == b'.');
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
        })
        && dots == 2
}

/// Whether the JWT `text` says it is from `issuer` (not verified: whether
/// it is portcullis's to check at all, or some other issuer's token meant
/// for the app).
pub fn names_issuer(text: &str, issuer: &str) -> bool {
    crate::claims::access_token_claims(text)
        .is_some_and(|claims| claims.get("iss").and_then(|v| v.as_str()) == Some(issuer))
}

/// A provider token that verified, mapped to an identity.
pub struct Verified {
    pub identity: Identity,
    pub claims: StoredClaims,
    /// When the token expires (seconds since the epoch).
    pub expires_at: u64,
}

/// Provider tokens that verified, by hash, until they expire: a repeated
/// bearer request costs no signature check. Emptied when the rules are
/// reloaded, so a token is mapped with the rules in force.
pub struct BearerCache(moka::sync::Cache<[u8; 32], Arc<Verified>>);

/// Most verified provider tokens kept at once.
const BEARER_CACHE_ENTRIES: u64 = 10_000;

impl Default for BearerCache {
    fn default() -> Self {
        BearerCache(moka::sync::Cache::builder().max_capacity(BEARER_CACHE_ENTRIES).time_to_live(Duration::from_secs(3600)).build())
    }
}

impl BearerCache {
    /// The verified token of this hash, while it has not expired.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<Verified>> {
        let hit = self.0.get(hash).filter(|v| v.expires_at > crate::clock::unix_now());
        crate::metrics::get().bearer_cache(hit.is_some());
        hit
    }

    pub fn insert(&self, hash: [u8; 32], verified: Arc<Verified>) {
        self.0.insert(hash, verified);
    }

    pub fn clear(&self) {
        self.0.invalidate_all();
    }
}

/// How long one window of the failure limit lasts.
const WINDOW: Duration = Duration::from_secs(60);
/// The same refused credential from the same address counts once in this
/// time: NGINX asks twice for one request (`/auth/nginx`, then
/// `/auth/forward` for the answer), and a client may retry at once.
const REPEAT: Duration = Duration::from_secs(5);

/// Refused credentials per client address, in windows of a minute.
pub struct Failures {
    max: u32,
    windows: moka::sync::Cache<String, Arc<(Instant, AtomicU32)>>,
    recent: moka::sync::Cache<(String, [u8; 32]), ()>,
}

impl Failures {
    /// At most `max` refusals a minute per address (0: no limit).
    pub fn new(max: u32) -> Failures {
        Failures {
            max,
            windows: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(WINDOW).build(),
            recent: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(REPEAT).build(),
        }
    }

    /// `Some(seconds to wait)` when `client` has had too many credentials
    /// refused this minute.
    pub fn blocked(&self, client: &str) -> Option<u64> {
        if self.max == 0 {
            return None;
        }
        let window = self.windows.get(client)?;
        let elapsed = window.0.elapsed();
        (window.1.load(Ordering::Relaxed) >= self.max && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    /// Whether `client` was refused the credential of `hash` a moment ago
    /// (so it need not be checked, nor counted, again).
    pub fn just_refused(&self, client: &str, hash: &[u8; 32]) -> bool {
        self.recent.contains_key(&(client.to_string(), *hash))
    }

    /// Counts a refusal of the credential of `hash` from `client`.
    pub fn refused(&self, client: &str, hash: &[u8; 32]) {
        self.recent.insert((client.to_string(), *hash), ());
        if self.max == 0 {
            return;
        }
        let window = self.windows.get_with(client.to_string(), || Arc::new((Instant::now(), AtomicU32::new(0))));
        window.1.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{AUTHORIZATION, HeaderMap, PROXY_AUTHORIZATION};

    /// [`super::find`] on a request's headers.
    fn find(headers: &HeaderMap, config: &ApiConfig) -> Option<Found> {
        let presented = Presented {
            token_header: config.token_header.as_ref().and_then(|name| headers.get(name.as_str())),
            authorization: headers.get(AUTHORIZATION),
            proxy_authorization: headers.get(PROXY_AUTHORIZATION),
        };
        super::find(&presented, config)
    }

    fn config(toml: &str) -> ApiConfig {
        config::validate(figment::Figment::from(<figment::providers::Toml as figment::providers::Format>::string(toml)).extract().unwrap()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIn0.c2ln";

    #[test]
    fn personal_tokens_in_bearer_basic_and_their_own_header() {
        let (t, _) = token::generate();
        let c = config("token_header = \"X-Portcullis-Token\"");
        let personal = |carrier| Some(Found { credential: Credential::Personal(t.clone()), carrier });
        assert_eq!(find(&headers(&[("authorization", &format!("Bearer {t}"))]), &c), personal(Carrier::Authorization));
        assert_eq!(find(&headers(&[("authorization", &format!("bearer  {t} "))]), &c), personal(Carrier::Authorization));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{t}"));
        assert_eq!(find(&headers(&[("authorization", &format!("Basic {basic}"))]), &c), personal(Carrier::Authorization));
        assert_eq!(find(&headers(&[("x-portcullis-token", &t)]), &c), personal(Carrier::TokenHeader));
        // Anything in the token header was meant as a token.
        assert_eq!(
            find(&headers(&[("x-portcullis-token", "guess")]), &c).map(|f| f.credential),
            Some(Credential::Personal("guess".into()))
        );
    }

    #[test]
    fn the_apps_own_authorization_is_left_alone() {
        let c = config("bearer_tokens = true\naudiences = [\"api\"]");
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:her-webdav-password");
        for value in [format!("Basic {basic}"), "Bearer opaque-app-token".into(), "Digest x=1".into(), "Bearer".into()] {
            assert_eq!(find(&headers(&[("authorization", &value)]), &c), None, "{value}");
        }
        // Without bearer_tokens, a JWT is the app's too.
        assert_eq!(find(&headers(&[("authorization", &format!("Bearer {JWT}"))]), &config("")), None);
        let found = find(&headers(&[("proxy-authorization", &format!("Bearer {JWT}"))]), &c).unwrap();
        assert_eq!((found.credential, found.carrier), (Credential::Provider(JWT.into()), Carrier::ProxyAuthorization));
        assert!(names_issuer(JWT, "https://id.example.com"));
        assert!(!names_issuer(JWT, "https://id.example.com/"));
    }

    #[test]
    fn too_many_refusals_block_an_address_for_the_rest_of_the_minute() {
        let f = Failures::new(3);
        for i in 0u8..3 {
            assert_eq!(f.blocked("10.0.0.1"), None);
            f.refused("10.0.0.1", &[i; 32]);
        }
        let wait = f.blocked("10.0.0.1").expect("blocked");
        assert!((55..=60).contains(&wait), "{wait}");
        assert_eq!(f.blocked("10.0.0.2"), None, "another address is not");
        // The same credential again at once counts once.
        let g = Failures::new(2);
        g.refused("10.0.0.1", &[7; 32]);
        assert!(g.just_refused("10.0.0.1", &[7; 32]));
        assert!(!g.just_refused("10.0.0.2", &[7; 32]));
    }
}
