//! Sealing and opening cookie values with the configured keys.
//!
//! A sealed value is `base64url(version || nonce || AES-256-GCM(payload))`.
//! The first key seals; every configured key is tried when opening, so keys
//! can be rotated by adding the new one first. The purpose (session or login
//! attempt) is bound as associated data: a value sealed for one purpose never
//! opens as the other. Anything that does not open is simply "no cookie".

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Longest sealed value accepted; browsers keep cookies under 4 KiB anyway.
pub const MAX_SEALED_LEN: usize = 4096;

/// What a sealed value is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Session,
    Login,
    /// The ID token for the provider's logout (`id_token_hint`).
    LogoutHint,
    /// The RP-Initiated Logout `state`: where to return after sign-out.
    SignOut,
    /// The token that confirms a sign-out (`POST /oauth2/logout`).
    LogoutConfirm,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"portcullis session v1",
            Purpose::Login => b"portcullis login v1",
            Purpose::LogoutHint => b"portcullis logout hint v1",
            Purpose::SignOut => b"portcullis sign-out state v1",
            Purpose::LogoutConfirm => b"portcullis logout confirm v1",
        }
    }
}

/// Seals and opens cookie values.
#[derive(Clone)]
pub struct Sealer {
    ciphers: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.ciphers.len())
    }
}

/// A value that opened, and whether it was sealed with an older key (and so
/// should be sealed again with the current one).
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub payload: Vec<u8>,
    pub stale_key: bool,
}

impl Sealer {
    /// `keys` must not be empty; the first one seals.
    pub fn new(keys: &[[u8; 32]]) -> Sealer {
        assert!(!keys.is_empty(), "at least one cookie key");
        Sealer { ciphers: keys.iter().map(|k| Aes256Gcm::new(k.into())).collect() }
    }

    pub fn seal(&self, purpose: Purpose, payload: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let sealed = self.ciphers[0]
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: payload, aad: purpose.aad() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        raw.push(VERSION);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Opens a sealed value; `None` for anything malformed, tampered with,
    /// sealed for another purpose or with an unknown key.
    pub fn open(&self, purpose: Purpose, value: &str) -> Option<Opened> {
        if value.is_empty() || value.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(value.trim()).ok()?;
        if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != VERSION {
            return None;
        }
        // Opened in place, in the decoded buffer: one allocation in all. A
        // key that does not fit leaves the buffer as it was.
        let (head, rest) = raw.split_at_mut(1 + NONCE_LEN);
        let (sealed, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = Nonce::from_slice(&head[1..]);
        let i = self.ciphers.iter().position(|cipher| {
            cipher.decrypt_in_place_detached(nonce, purpose.aad(), sealed, Tag::from_slice(tag)).is_ok()
        })?;
        raw.truncate(raw.len() - TAG_LEN);
        raw.drain(..1 + NONCE_LEN);
        Some(Opened { payload: raw, stale_key: i > 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_purpose_binding() {
        let s = Sealer::new(&[[7u8; 32]]);
        let v = s.seal(Purpose::Session, b"hello");
        assert_eq!(s.open(Purpose::Session, &v).unwrap().payload, b"hello");
        assert!(s.open(Purpose::Login, &v).is_none());
    }

    #[test]
    fn tampered_truncated_and_garbage_values_do_not_open() {
        let s = Sealer::new(&[[7u8; 32]]);
        let v = s.seal(Purpose::Session, b"hello");
        let mut bytes = v.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(s.open(Purpose::Session, std::str::from_utf8(&bytes).unwrap()).is_none());
        assert!(s.open(Purpose::Session, &v[..v.len() - 4]).is_none());
        for junk in ["", "x", "!!!!", "AAAA", &"A".repeat(MAX_SEALED_LEN + 1)] {
            assert!(s.open(Purpose::Session, junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn rotation_accepts_old_keys_and_flags_them() {
        let old = Sealer::new(&[[1u8; 32]]);
        let v = old.seal(Purpose::Session, b"id");
        let rotated = Sealer::new(&[[2u8; 32], [1u8; 32]]);
        let opened = rotated.open(Purpose::Session, &v).unwrap();
        assert_eq!(opened.payload, b"id");
        assert!(opened.stale_key);
        let fresh = rotated.seal(Purpose::Session, b"id");
        assert!(!rotated.open(Purpose::Session, &fresh).unwrap().stale_key);
        let removed = Sealer::new(&[[2u8; 32]]);
        assert!(removed.open(Purpose::Session, &v).is_none());
    }
}
