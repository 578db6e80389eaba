//! Sessions: what a signed-in browser has, where it is kept, and the cookie
//! that points to it.
//!
//! A session ID is 256 random bits. The browser holds it sealed in a cookie
//! ([`cookie::Sealer`]); the store keys the session by a SHA-256 hash of the
//! ID ([`StoreKey`]), so a dump of the store yields no usable cookie. Two
//! stores implement [`SessionStore`]: [`memory::MemoryStore`] (the embedded
//! default) and [`redis::RedisStore`].

pub mod cached;
pub mod config;
pub mod cookie;
pub mod ended;
pub mod memory;
pub mod redis;
pub mod token;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::claims::StoredClaims;
use crate::identity::Identity;

/// A session's secret identifier: only ever in the sealed cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; 32]);

impl SessionId {
    pub fn generate() -> SessionId {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        SessionId(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<SessionId> {
        <[u8; 32]>::try_from(bytes).ok().map(SessionId)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key the store files this session under.
    pub fn store_key(&self) -> StoreKey {
        StoreKey(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// The hash of a session ID: safe to store and to log. Kept as its 32
/// bytes (no allocation); its text form, base64url, names it in Redis.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The text form (43 characters of base64url).
    pub fn text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Reads the text form back; `None` for anything else.
    pub fn from_text(text: &str) -> Option<StoreKey> {
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(32) => Some(StoreKey(bytes)),
            _ => None,
        }
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({self})")
    }
}

/// Bytes a held session costs besides its text: the struct, its `Arc`,
/// its key and the cache's own bookkeeping.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Session>() + 128;

/// How much the sessions held in this process may take: at most
/// `max_bytes` in all, each session weighed by its size but as at least
/// `max_bytes / max_sessions`, so that there are never more than
/// `max_sessions` either.
#[derive(Clone, Copy, Debug)]
pub struct MemoryBound {
    pub max_sessions: u64,
    pub max_bytes: u64,
}

impl MemoryBound {
    pub fn new(config: &config::SessionConfig) -> MemoryBound {
        MemoryBound { max_sessions: config.memory_max_sessions, max_bytes: config.memory_max_bytes }
    }

    /// A bound of `max_sessions` sessions of up to a MiB each.
    pub fn sessions(max_sessions: u64) -> MemoryBound {
        MemoryBound { max_sessions, max_bytes: max_sessions.saturating_mul(1 << 20) }
    }

    /// What `session` counts for against `max_bytes`.
    pub fn weigh(&self, session: &Session) -> u64 {
        session.weight().max(self.max_bytes / self.max_sessions.max(1)).max(1)
    }
}

/// A signed-in user's session.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub identity: Identity,
    /// The merged claims, for policy expressions evaluated per request;
    /// none when `claims_partial`.
    pub claims: StoredClaims,
    /// Made when no policy expression read claims (and `debug_explain`
    /// was off), so `claims` holds none (sessions stored by earlier
    /// versions: only `iss`, `sub` and `sid`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claims_partial: bool,
    /// The ID token, for the provider's logout, when it was too large for
    /// the browser's logout hint cookie (the usual place).
    pub id_token: Option<Box<str>>,
    pub refresh_token: Option<Box<str>>,
    /// When the access token expires (seconds since the epoch).
    pub access_expires_at: Option<u64>,
    /// The provider's session ID (`sid`), for back-channel logout.
    pub sid: Option<Box<str>>,
    pub created_at: u64,
    /// Absolute end of the session (seconds since the epoch).
    pub expires_at: u64,
    /// Last verify seen (seconds since the epoch), updated at most every
    /// few minutes; for `idle_timeout`.
    #[serde(default)]
    pub last_seen: u64,
    /// When tokens and identity were last renewed (the login counts).
    #[serde(default)]
    pub refreshed_at: u64,
    /// Set on a personal access token's record ([`token`]): the record is
    /// a token, not a browser's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Box<token::TokenInfo>>,
}

impl Session {
    /// The index entries under which this session can be found.
    pub fn indexes(&self) -> Vec<Index> {
        let mut out = vec![Index::User(self.identity.user().into()), Index::Subject(self.identity.subject().into())];
        if self.identity.person() != self.identity.user() {
            out.push(Index::User(self.identity.person().into()));
        }
        if let Some(sid) = &self.sid {
            out.push(Index::Sid(sid.to_string()));
        }
        out
    }

    /// Whether this session is found under `index` (one of [`Session::indexes`]).
    pub fn is_filed_under(&self, index: &Index) -> bool {
        match index {
            Index::User(u) => self.identity.user() == *u || self.identity.person() == *u,
            Index::Subject(s) => self.identity.subject() == *s,
            Index::Sid(sid) => self.sid.as_deref() == Some(sid.as_str()),
        }
    }

    /// About how many bytes this session takes in memory, with its entry
    /// in a store or cache: what `session.memory_max_bytes` counts.
    pub fn weight(&self) -> u64 {
        let text = |s: &Option<Box<str>>| s.as_ref().map_or(0, |s| s.len());
        (ENTRY_OVERHEAD
            + self.identity.heap_size()
            + self.claims.heap_size()
            + text(&self.id_token)
            + text(&self.refresh_token)
            + text(&self.sid)
            + self.token.as_ref().map_or(0, |t| t.heap_size())) as u64
    }

    /// Whether this record is a personal access token rather than a session.
    pub fn is_token(&self) -> bool {
        self.token.is_some()
    }

    /// Time left before the session ends, or `None` when it has ended.
    pub fn remaining(&self) -> Option<Duration> {
        let now = unix_now();
        (self.expires_at > now).then(|| Duration::from_secs(self.expires_at - now))
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("identity", &self.identity)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen", &self.last_seen)
            .finish_non_exhaustive()
    }
}

/// A bare session of `user` for unit tests: no tokens, never ending.
#[cfg(test)]
pub(crate) fn test_session(user: &str) -> Session {
    Session {
        identity: crate::identity::IdentityParts { user: user.into(), person: user.into(), ..Default::default() }.into(),
        claims: Default::default(),
        claims_partial: false,
        id_token: None,
        refresh_token: None,
        access_expires_at: None,
        sid: None,
        created_at: 0,
        expires_at: u64::MAX,
        last_seen: 0,
        refreshed_at: 0,
        token: None,
    }
}

/// Seconds since the Unix epoch.
pub use crate::clock::unix_now;

/// A store that could not answer. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session store timed out after {0:?}")]
    Timeout(Duration),
    #[error("stored session is unreadable: {0}")]
    Corrupt(String),
}

/// A way to find sessions other than by their ID: for logout everywhere
/// and the `sessions` command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Index {
    /// The mapped user name or the person's own user name.
    User(String),
    /// The provider's `sub`.
    Subject(String),
    /// The provider's session ID (`sid`).
    Sid(String),
}

impl Index {
    /// A stable text form, used as a key.
    pub fn key(&self) -> String {
        match self {
            Index::User(v) => format!("user:{v}"),
            Index::Subject(v) => format!("sub:{v}"),
            Index::Sid(v) => format!("sid:{v}"),
        }
    }
}

/// Where sessions live.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn get(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError>;
    /// As [`SessionStore::get`], but from the store itself, past any copy
    /// this process keeps: for decisions other instances may have made
    /// meanwhile (has the session been refreshed?).
    async fn get_fresh(&self, key: &StoreKey) -> Result<Option<Arc<Session>>, StoreError> {
        self.get(key).await
    }
    /// Stores `session` (and its index entries); it expires by itself
    /// after `ttl`.
    async fn put(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<(), StoreError>;
    /// Replaces a session only if it still exists, so a session ended
    /// meanwhile (logout, revocation) is never brought back. `false` when
    /// it was gone. Index entries are not touched: the identity it is filed
    /// under must be unchanged.
    async fn update(&self, key: &StoreKey, session: Arc<Session>, ttl: Duration) -> Result<bool, StoreError>;
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;
    /// The live sessions filed under `index`.
    async fn find(&self, index: &Index) -> Result<Vec<(StoreKey, Arc<Session>)>, StoreError>;
    /// Takes the marker `name` for `ttl` if nobody holds it; `true` when
    /// taken. Shared by every instance on the same store: used so that only
    /// one of them refreshes a session, and to refuse a replayed token ID.
    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Gives a claimed marker back before its time.
    async fn release(&self, name: &str) -> Result<(), StoreError>;
    /// Checks that the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Timeout on every Redis call.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens the store the configuration names.
/// The store `[session]` names.
pub fn open_store(config: &config::SessionConfig) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match config.store {
        config::StoreKind::Memory => Arc::new(memory::MemoryStore::bounded(MemoryBound::new(config))),
        config::StoreKind::Redis => {
            let redis: Arc<dyn SessionStore> = Arc::new(redis::RedisStore::new(&redis::RedisOptions {
                urls: config.redis_urls.iter().map(|s| s.expose().to_string()).collect(),
                ca_file: config.redis_ca_file.clone(),
                timeout: REDIS_TIMEOUT,
                index_ttl: config.ttl,
            })?);
            match config.cache_ttl {
                Some(ttl) => Arc::new(cached::CachedStore::bounded(redis, ttl, MemoryBound::new(config))),
                None => redis,
            }
        }
    })
}

/// What [`revoke`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoke {
    /// Sessions and personal access tokens.
    All,
    /// Sessions only.
    Sessions,
    /// Personal access tokens only.
    Tokens,
}

impl Revoke {
    fn covers(self, s: &Session) -> bool {
        match self {
            Revoke::All => true,
            Revoke::Sessions => !s.is_token(),
            Revoke::Tokens => s.is_token(),
        }
    }
}

/// Deletes what `what` names of everything filed under `index`; returns
/// how many sessions and how many tokens ended.
pub async fn revoke(store: &dyn SessionStore, index: &Index, what: Revoke) -> Result<(usize, usize), StoreError> {
    let (mut sessions, mut tokens) = (0, 0);
    for (key, s) in store.find(index).await? {
        if !what.covers(&s) {
            continue;
        }
        store.delete(&key).await?;
        if s.is_token() {
            tokens += 1;
        } else {
            sessions += 1;
        }
    }
    Ok((sessions, tokens))
}

/// Ends the oldest sessions of the person `subject` beyond `max`, never
/// `keep` (the one just made); returns those ended. The sessions are found
/// through the store's `sub` index (the memory store looks through all).
pub async fn end_oldest_beyond(
    store: &dyn SessionStore,
    subject: &str,
    keep: &StoreKey,
    max: usize,
) -> Result<Vec<Arc<Session>>, StoreError> {
    let mut found = store.find(&Index::Subject(subject.to_string())).await?;
    // Personal access tokens are not sessions: they do not count.
    found.retain(|(_, s)| !s.is_token());
    if found.len() <= max {
        return Ok(Vec::new());
    }
    // Oldest first, the kept one last.
    found.sort_by_key(|(key, session)| (key == keep, session.created_at));
    let excess = found.len() - max;
    let mut ended = Vec::with_capacity(excess);
    for (key, session) in found.into_iter().take(excess) {
        store.delete(&key).await?;
        ended.push(session);
    }
    Ok(ended)
}

/// `identity` with no text longer than a header carries
/// ([`crate::header_value::MAX_VALUE_LEN`]): a longer display name, email,
/// group or role is cut there (at a character boundary), so one account
/// with a huge claim cannot make its sessions huge. The user name and the
/// subject, which say who someone is, are kept whole.
pub fn capped(identity: Identity) -> Identity {
    let max = crate::header_value::MAX_VALUE_LEN;
    let long = |s: &str| s.len() > max;
    let needed = identity.name().is_some_and(long)
        || identity.email().is_some_and(long)
        || identity.person_email().is_some_and(long)
        || identity.groups().any(long)
        || identity.roles().any(long)
        || identity.header_groups().is_some_and(|mut g| g.any(long));
    if !needed {
        return identity;
    }
    let cut = |s: &mut String| {
        if s.len() > max {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
    };
    let mut p = identity.to_parts();
    p.name.iter_mut().chain(p.email.iter_mut()).chain(p.person_email.iter_mut()).for_each(cut);
    p.groups.iter_mut().chain(p.roles.iter_mut()).chain(p.header_groups.iter_mut().flatten()).for_each(cut);
    p.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_text_is_cut_at_the_header_limit_but_not_who_someone_is() {
        let max = crate::header_value::MAX_VALUE_LEN;
        let mut p = test_session("alice").identity.to_parts();
        p.name = Some("é".repeat(max));
        p.email = Some("a".repeat(max + 10));
        p.groups = vec!["short".into(), "g".repeat(max * 2)];
        p.subject = "s".repeat(max + 1);
        let cut = capped(p.into()).to_parts();
        let name = cut.name.unwrap();
        assert!(name.len() <= max && name.len() > max - 2 && name.chars().all(|c| c == 'é'));
        assert_eq!(cut.email.unwrap().len(), max);
        assert_eq!(cut.groups, vec!["short".to_string(), "g".repeat(max)]);
        assert_eq!(cut.subject.len(), max + 1, "the subject is kept whole");
        assert_eq!(cut.user, "alice");
    }
}
