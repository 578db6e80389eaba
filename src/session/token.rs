//! Personal access tokens (app passwords): what a person makes on
//! `/oauth2/tokens` for an app or device that cannot sign in with a
//! browser (a phone app, a WebDAV or CalDAV client, a script).
//!
//! A token is `pcat_` and 256 random bits in base64url. The store keeps
//! only its SHA-256 hash, as the key of a [`Session`] record that carries
//! [`TokenInfo`]: the person's identity as it was when the token was made,
//! filed under the same index as their sessions, so `sessions revoke`
//! finds both and the cached layer ([`super::cached`]) serves both.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreKey;

/// What every personal token starts with: recognisable in a header, a
/// password field or a secret scanner.
pub const PREFIX: &str = "pcat_";
/// Characters of a whole token: the prefix and 32 bytes of base64url.
pub const LEN: usize = PREFIX.len() + 43;
/// Longest name a token may have (characters).
pub const MAX_NAME: usize = 64;
/// Most hosts a token may be limited to.
pub const MAX_HOSTS: usize = 16;
/// How long a token "without expiry" is kept: as good as never.
pub const NEVER: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86400);

/// A token record's own fields (the rest is the [`super::Session`] it sits in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// What the person called it ("Immich on my phone").
    pub name: String,
    /// The hosts it is good for (lower case); empty: every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Made without an expiry (its record lives [`NEVER`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_expiry: bool,
}

impl TokenInfo {
    /// Whether the token may be used for requests to `host`.
    pub fn good_for(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn heap_size(&self) -> usize {
        self.name.len() + self.hosts.iter().map(|h| h.len() + 24).sum::<usize>()
    }
}

/// A new token's text (shown once) and the key its record is stored under.
pub fn generate() -> (String, StoreKey) {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let mut text = String::with_capacity(LEN);
    text.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
    let key = key(&text, Sha256::digest(text.as_bytes()).into()).expect("a generated token has the token's form");
    (text, key)
}

/// Whether `text` is meant as a personal token (it has the prefix),
/// whatever the rest.
pub fn looks_like(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// The store key of the token `text`, given `sha256`, the SHA-256 of the
/// whole text (a verify has it already); `None` when the text does not
/// have a token's form. The hash is of the whole text, so it never equals
/// the key of a session (the hash of 32 raw bytes).
pub fn key(text: &str, sha256: [u8; 32]) -> Option<StoreKey> {
    let rest = text.strip_prefix(PREFIX)?;
    if text.len() != LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    debug_assert_eq!(sha256, <[u8; 32]>::from(Sha256::digest(text.as_bytes())));
    Some(StoreKey(sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::key`] with the text's own hash, as a verify computes it.
    fn key(text: &str) -> Option<StoreKey> {
        super::key(text, Sha256::digest(text.as_bytes()).into())
    }

    #[test]
    fn tokens_are_recognisable_random_and_keyed_by_their_hash() {
        let (a, ka) = generate();
        let (b, kb) = generate();
        assert!(a.starts_with("pcat_") && a.len() == LEN, "{a}");
        assert_ne!(a, b);
        assert_ne!(ka, kb);
        assert_eq!(key(&a), Some(ka));
        // One character off, too short, too long, not base64url: no key.
        let mut off = a.clone().into_bytes();
        off[10] = if off[10] == b'A' { b'B' } else { b'A' };
        assert_ne!(key(std::str::from_utf8(&off).unwrap()), Some(ka));
        for bad in [&a[..LEN - 1], &format!("{a}x"), &format!("pcat_{}", "+".repeat(43)), "pcat_", "bearer"] {
            assert_eq!(key(bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts_limit_where_a_token_is_good() {
        let any = TokenInfo { name: "x".into(), hosts: vec![], no_expiry: false };
        assert!(any.good_for("photos.example.com"));
        let one = TokenInfo { hosts: vec!["photos.example.com".into()], ..any };
        assert!(one.good_for("Photos.Example.com"));
        assert!(!one.good_for("files.example.com"));
    }
}
