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

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher, RandomState};
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

/// A credential as the request carries it (not checked yet), borrowed
/// from the request's headers where it can be: a provider token is
/// looked up in the cache of verified tokens without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Meant as a personal access token (it may not have a token's form).
    Personal(Cow<'a, str>),
    /// Begins as a JWT does (`eyJ`): perhaps the provider's access token.
    /// Its whole form is checked, by [`is_jwt`], only when it is not
    /// already in the cache of verified tokens.
    Provider(&'a str),
}

/// The credential on a request and the header it came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub credential: Credential<'a>,
    pub carrier: Carrier,
}

impl Found<'_> {
    /// The credential's text.
    pub fn text(&self) -> &str {
        match &self.credential {
            Credential::Personal(t) => t,
            Credential::Provider(t) => t,
        }
    }

    /// The SHA-256 of the credential: how the store and the failure limit
    /// know it without keeping it.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.text().as_bytes()).into()
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
pub fn find<'a>(presented: &Presented<'a>, config: &ApiConfig) -> Option<Found<'a>> {
    if config.token_header.is_some() {
        if let Some(value) = presented.token_header {
            let text = value.to_str().unwrap_or("").trim();
            let credential = if config.bearer_tokens && !token::looks_like(text) && text.starts_with(JWT_START) {
                Credential::Provider(text)
            } else {
                // Whatever it holds was meant as a token: refused if not one.
                Credential::Personal(Cow::Borrowed(text))
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
fn from_authorization<'a>(value: &'a str, config: &ApiConfig) -> Option<Credential<'a>> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if config.personal_tokens && token::looks_like(rest) {
            return Some(Credential::Personal(Cow::Borrowed(rest)));
        }
        if config.bearer_tokens && rest.starts_with(JWT_START) {
            return Some(Credential::Provider(rest));
        }
    } else if scheme.eq_ignore_ascii_case("basic") && config.personal_tokens {
        // Any user name; the password is the token.
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let (_, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        if token::looks_like(password) {
            return Some(Credential::Personal(Cow::Owned(password.to_string())));
        }
    }
    None
}

/// How every JWT begins: `{"` in base64url.
const JWT_START: &str = "eyJ";

/// Whether `text` has a signed JWT's form (three base64url parts): asked
/// of a provider token not in the cache of verified tokens (one that is
/// had this form when it verified).
pub fn is_jwt(text: &str) -> bool {
    let mut dots = 0;
    text.starts_with("eyJ")
        && text.bytes().all(|b| {
            dots += usize::from(b == b'.');
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
        })
        && dots == 2
}

/// A provider token that [`find`] took for one on its first bytes but
/// that has not a JWT's form, once it is known not to be in the cache of
/// verified tokens: in the token header, it was meant as a personal token
/// (and is refused as one); in `Authorization`, it is the app's own.
pub fn not_a_jwt(found: Found<'_>) -> Option<Found<'_>> {
    match found.credential {
        Credential::Provider(text) if !is_jwt(text) => (found.carrier == Carrier::TokenHeader)
            .then_some(Found { credential: Credential::Personal(Cow::Borrowed(text)), carrier: found.carrier }),
        _ => Some(found),
    }
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
    /// Until when it is answered from the cache (seconds since the epoch):
    /// when it expires, or an hour after it verified if sooner.
    pub good_until: u64,
}

/// Provider tokens that verified, by their text, until they expire or
/// for an hour at most: a repeated bearer request costs no signature
/// check. Emptied when the rules are reloaded, so a token is mapped with
/// the rules in force.
///
/// Keyed by the token's text, compared in full: only the very token that
/// verified is answered from here. Its hash for the table is taken of its
/// last bytes only ([`TailHash`]), so a hit costs one short hash and one
/// comparison, not a digest of the whole token.
pub struct BearerCache(quick_cache::sync::Cache<Box<str>, Arc<Verified>, quick_cache::UnitWeighter, TailHash>);

/// Most verified provider tokens kept at once.
const BEARER_CACHE_ENTRIES: usize = 10_000;
/// The longest a verified token is kept before it is verified and mapped again.
pub const BEARER_CACHE_TTL: u64 = 3600;

impl Default for BearerCache {
    fn default() -> Self {
        BearerCache(quick_cache::sync::Cache::with(
            BEARER_CACHE_ENTRIES,
            BEARER_CACHE_ENTRIES as u64,
            quick_cache::UnitWeighter,
            TailHash::default(),
            Default::default(),
        ))
    }
}

impl BearerCache {
    /// The verified token `text`, while it has not expired.
    pub fn get(&self, text: &str) -> Option<Arc<Verified>> {
        let hit = self.0.get(text).filter(|v| v.good_until > crate::clock::unix_now());
        crate::metrics::get().bearer_cache(hit.is_some());
        hit
    }

    pub fn insert(&self, text: &str, verified: Arc<Verified>) {
        self.0.insert(text.into(), verified);
    }

    pub fn clear(&self) {
        self.0.clear();
    }
}

/// The cache's hash of a token: SipHash with this process's random keys
/// (as std's maps), of the token's length and its last 32 bytes, the end
/// of its signature. Two tokens that share those still hash alike and
/// are told apart by comparing them; with secret keys, nobody can make
/// tokens that hash alike on purpose.
#[derive(Clone, Default)]
pub struct TailHash(RandomState);

/// How many of a token's last bytes are hashed.
const TAIL: usize = 32;

impl BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub struct TailHasher(std::hash::DefaultHasher);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0.write(&bytes[bytes.len().saturating_sub(TAIL)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
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
    fn find<'a>(headers: &'a HeaderMap, config: &ApiConfig) -> Option<Found<'a>> {
        let presented = Presented {
            token_header: config.token_header.as_ref().and_then(|name| headers.get(name.as_str())),
            authorization: headers.get(AUTHORIZATION),
            proxy_authorization: headers.get(PROXY_AUTHORIZATION),
        };
        super::find(&presented, config).and_then(not_a_jwt)
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
        let personal = |carrier| Some(Found { credential: Credential::Personal(t.as_str().into()), carrier });
        assert_eq!(find(&headers(&[("authorization", &format!("Bearer {t}"))]), &c), personal(Carrier::Authorization));
        assert_eq!(find(&headers(&[("authorization", &format!("bearer  {t} "))]), &c), personal(Carrier::Authorization));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{t}"));
        assert_eq!(find(&headers(&[("authorization", &format!("Basic {basic}"))]), &c), personal(Carrier::Authorization));
        assert_eq!(find(&headers(&[("x-portcullis-token", &t)]), &c), personal(Carrier::TokenHeader));
        // Anything in the token header was meant as a token, even what
        // begins as a JWT does when bearer tokens are on.
        assert_eq!(
            find(&headers(&[("x-portcullis-token", "guess")]), &c).map(|f| f.credential),
            Some(Credential::Personal("guess".into()))
        );
        let c = config("token_header = \"X-Portcullis-Token\"\nbearer_tokens = true\naudiences = [\"api\"]");
        assert_eq!(
            find(&headers(&[("x-portcullis-token", "eyJ.guess!")]), &c).map(|f| f.credential),
            Some(Credential::Personal("eyJ.guess!".into()))
        );
    }

    #[test]
    fn the_apps_own_authorization_is_left_alone() {
        let c = config("bearer_tokens = true\naudiences = [\"api\"]");
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:her-webdav-password");
        for value in [format!("Basic {basic}"), "Bearer opaque-app-token".into(), "Digest x=1".into(), "Bearer".into(), "Bearer eyJ.its-own.token!".into()] {
            assert_eq!(find(&headers(&[("authorization", &value)]), &c), None, "{value}");
        }
        // Without bearer_tokens, a JWT is the app's too.
        assert_eq!(find(&headers(&[("authorization", &format!("Bearer {JWT}"))]), &config("")), None);
        let proxy = headers(&[("proxy-authorization", &format!("Bearer {JWT}"))]);
        let found = find(&proxy, &c).unwrap();
        assert_eq!((found.credential, found.carrier), (Credential::Provider(JWT), Carrier::ProxyAuthorization));
        assert!(names_issuer(JWT, "https://id.example.com"));
        assert!(!names_issuer(JWT, "https://id.example.com/"));
    }

    #[test]
    fn the_cache_answers_only_the_very_token_that_verified() {
        let cache = BearerCache::default();
        let verified = Verified { identity: crate::session::test_session("alice").identity, claims: Default::default(), good_until: u64::MAX };
        cache.insert(JWT, Arc::new(verified));
        assert!(cache.get(JWT).is_some());
        // The same length and the same last bytes (the signature): the
        // same hash, told apart by the comparison.
        let altered = JWT.replacen("eyJpc3Mi", "eyJpc3Nj", 1);
        assert_eq!((altered.len(), &altered[altered.len() - TAIL..]), (JWT.len(), &JWT[JWT.len() - TAIL..]));
        let h = TailHash::default();
        assert_eq!(h.hash_one(JWT), h.hash_one(altered.as_str()));
        assert!(cache.get(&altered).is_none());
        assert!(cache.get(&JWT[..JWT.len() - 1]).is_none());
        // An expired entry is not answered.
        cache.insert("eyJx.eyJ5.old", Arc::new(Verified { identity: crate::session::test_session("bob").identity, claims: Default::default(), good_until: 1 }));
        assert!(cache.get("eyJx.eyJ5.old").is_none());
        cache.clear();
        assert!(cache.get(JWT).is_none());
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
