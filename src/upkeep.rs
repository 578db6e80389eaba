//! A session's upkeep ([`Upkeep`]), keeping it current while it is used:
//! idle timeout, "last seen", and renewing tokens and identity with the
//! refresh token.
//!
//! Called on the verify path after the one store read. Most verifies do
//! nothing here. A refresh happens when the access token nears its expiry
//! or `session.refresh_interval` has passed; only one instance refreshes a
//! given session at a time (a marker in the shared store), the others keep
//! answering from the session as they have it (their cache included) until
//! the refreshed one is visible to them, asking the store again only once
//! per `session.cache_ttl`. A refused refresh ends the session; an
//! unreachable provider leaves it as it is and is tried again later.
//!
//! The marker is given back as soon as the refreshed session is written:
//! whoever takes it next reads the session from the store itself (never
//! from a cache) and refreshes only if nobody did since its own copy was
//! read, so a rotated refresh token is never used twice.

use std::sync::Arc;
use std::time::Duration;

use crate::claims::{Claims, StoredClaims};
use crate::identity::{Identity, Mapper};
use crate::session::config::SessionConfig;
use crate::oidc::{Oidc, OidcError};
use crate::session::{Session, SessionStore, StoreError, StoreKey, ended, unix_now};

/// Longest one instance holds the right to refresh a session (it gives it
/// back once done); also the pause before trying again after the provider
/// could not be reached.
const REFRESH_CLAIM: Duration = Duration::from_secs(30);
/// How long a session whose refresh another instance holds is answered
/// from as it is, without asking the store, when there is no cache.
const WAIT_WITHOUT_CACHE: Duration = Duration::from_secs(1);
/// "Last seen" is written at most this often (or a tenth of the idle
/// timeout, when that is shorter).
const TOUCH_INTERVAL: Duration = Duration::from_secs(300);
/// Refresh this long before the access token expires (at most half its life).
const REFRESH_MARGIN: u64 = 60;

/// What a session's upkeep needs.
pub struct Upkeep<'a> {
    pub store: &'a Arc<dyn SessionStore>,
    pub oidc: &'a Oidc,
    pub mapper: &'a Mapper,
    /// Keep the claims (else sessions keep none).
    pub keep_claims: bool,
    pub graph: &'a crate::graph::Graph,
    pub config: &'a SessionConfig,
    pub waits: &'a Waits,
}

/// Sessions due for a refresh that another instance (or another request)
/// is doing: answered from as they are, with no store call, for a
/// `session.cache_ttl`, after which the refreshed session is read.
pub struct Waits(moka::sync::Cache<StoreKey, ()>);

impl Waits {
    pub fn new(config: &SessionConfig) -> Waits {
        Waits(
            moka::sync::Cache::builder()
                .max_capacity(config.memory_max_sessions)
                .time_to_live(config.cache_ttl.unwrap_or(WAIT_WITHOUT_CACHE))
                .build(),
        )
    }
}

impl Upkeep<'_> {
    /// The session to answer with, or `None` when it has ended.
    pub async fn check(&self, key: &StoreKey, session: Arc<Session>) -> Result<Option<Arc<Session>>, StoreError> {
        let now = unix_now();
        if let Some(idle) = self.config.idle_timeout {
            if session.last_seen.max(session.created_at) + idle.as_secs() <= now {
                self.store.delete(key).await?;
                crate::session::ended::idle(&session.identity);
                return Ok(None);
            }
        }
        if self.refresh_due(&session, now) && !self.waits.0.contains_key(key) {
            match self.store.claim(&claim_name(key), REFRESH_CLAIM).await {
                Ok(true) => return self.refresh(key, session).await,
                // Someone else refreshes: answer from the session as it is.
                Ok(false) => self.waits.0.insert(*key, ()),
                // The store could not answer, but the session was read (it
                // may be cached): answer from it, as the cache bound allows.
                Err(e) => {
                    tracing::debug!(error = %e, "session refresh postponed: store unavailable");
                    self.waits.0.insert(*key, ());
                }
            }
        }
        let touch = match self.config.idle_timeout {
            Some(idle) => TOUCH_INTERVAL.min(idle / 10),
            None => TOUCH_INTERVAL,
        };
        if now.saturating_sub(session.last_seen) >= touch.as_secs() {
            // Off the request's path: the answer does not wait for the write.
            let store = Arc::clone(self.store);
            let key = key.clone();
            let mut touched = (*session).clone();
            touched.last_seen = now;
            if let Some(ttl) = touched.remaining() {
                tokio::spawn(async move {
                    let _ = store.update(&key, Arc::new(touched), ttl).await;
                });
            }
        }
        Ok(Some(session))
    }

    fn refresh_due(&self, s: &Session, now: u64) -> bool {
        if s.refresh_token.is_none() {
            return false;
        }
        if let Some(expires) = s.access_expires_at {
            let margin = REFRESH_MARGIN.min(expires.saturating_sub(s.refreshed_at) / 2);
            if now + margin >= expires {
                return true;
            }
        }
        self.config.refresh_interval.is_some_and(|every| now >= s.refreshed_at + every.as_secs())
    }

    /// Who the person is to the provider (`iss`, `sub`, `sid`, ...), for a
    /// refresh that brought no new ID token: from the claims the session
    /// kept, or, when it kept none, from the provider's issuer, the
    /// identity's subject and the session's `sid`.
    fn protocol_claims(&self, session: &Session) -> Claims {
        let kept = crate::claims::protocol_claims(&session.claims.read());
        if kept.contains_key("sub") {
            return kept;
        }
        let mut claims = Claims::new();
        claims.insert("iss".into(), self.oidc.issuer().into());
        claims.insert("sub".into(), session.identity.subject().into());
        if let Some(sid) = &session.sid {
            claims.insert("sid".into(), sid.as_ref().into());
        }
        claims
    }

    async fn refresh(&self, key: &StoreKey, session: Arc<Session>) -> Result<Option<Arc<Session>>, StoreError> {
        // Another instance may have refreshed since our copy was read (which
        // may have come from a cache): ask the store itself.
        let current = match self.store.get_fresh(key).await {
            Ok(c) => c,
            Err(e) => {
                let _ = self.store.release(&claim_name(key)).await;
                self.waits.0.insert(*key, ());
                tracing::debug!(error = %e, "session refresh postponed: store unavailable");
                return Ok(Some(session));
            }
        };
        let Some(current) = current else {
            let _ = self.store.release(&claim_name(key)).await;
            return Ok(None);
        };
        if current.refreshed_at != session.refreshed_at {
            let _ = self.store.release(&claim_name(key)).await;
            return Ok(Some(current));
        }
        let refresh_token = session.refresh_token.clone().unwrap_or_default();
        let user = session.identity.user();
        let subject = session.identity.subject();
        let refreshed = match self.oidc.refresh(&refresh_token, subject).await {
            Ok(r) => r,
            Err(e @ (OidcError::Unreachable(_) | OidcError::NotReady(_))) => {
                // Keep the session; the claim makes the next try wait.
                tracing::warn!(error = %e, user = %user, "session refresh postponed: provider unreachable");
                crate::metrics::get().refresh("postponed");
                return Ok(Some(session));
            }
            Err(e) => {
                return self.end_refused(key, &session, |identity| ended::refresh_refused(identity, &format!("refresh refused: {e}"))).await;
            }
        };
        let (claims, identity) = if refreshed.id_claims.is_none() && refreshed.userinfo_claims.is_none() {
            (None, session.identity.clone())
        } else {
            // Merged exactly as at login; without a new ID token, the
            // session's protocol claims (`sub`, `iss`, ...) stand in for it.
            let id = refreshed.id_claims.clone().unwrap_or_else(|| self.protocol_claims(&session));
            // Group memberships are looked up again too (Graph's cache
            // applies), so a removal from a group takes effect here.
            let (claims, identity) = self
                .mapper
                .derive(self.graph, &id, refreshed.userinfo_claims.as_ref(), refreshed.access_claims.as_ref(), Some(&refreshed.access_token))
                .await;
            match identity {
                Ok(identity) => (Some(StoredClaims::keep(&claims, self.keep_claims)), crate::session::capped(identity)),
                Err(refusal) => {
                    let why = format!("no longer allowed: {refusal}");
                    return self.end_refused(key, &session, |identity| ended::no_longer_allowed(identity, &why)).await;
                }
            }
        };
        let now = unix_now();
        let updated = Session {
            identity,
            claims_partial: if claims.is_some() { !self.keep_claims } else { session.claims_partial },
            claims: claims.unwrap_or_else(|| session.claims.clone()),
            // Kept only by sessions whose ID token did not fit the logout
            // hint cookie; the others keep the login's (an expired ID token
            // is still a valid hint).
            id_token: session.id_token.as_ref().and(refreshed.id_token.map(Into::into)).or_else(|| session.id_token.clone()),
            // A rotated refresh token replaces the old one before anything
            // else uses it.
            refresh_token: refreshed.refresh_token.map(Into::into).or(Some(refresh_token)),
            access_expires_at: refreshed.expires_in.map(|d| now + d.as_secs()),
            sid: session.sid.clone(),
            created_at: session.created_at,
            expires_at: session.expires_at,
            last_seen: now,
            refreshed_at: now,
            token: None,
        };
        let Some(ttl) = updated.remaining() else { return Ok(None) };
        let reindex = updated.indexes() != session.indexes();
        let updated = Arc::new(updated);
        if reindex {
            self.store.put(key, Arc::clone(&updated), ttl).await?;
        } else if !self.store.update(key, Arc::clone(&updated), ttl).await? {
            // Ended (logout, revocation) while we refreshed.
            return Ok(None);
        }
        // Written: whoever claims next reads this session from the store and
        // sees it refreshed, so the claim can go (and `refresh_interval`
        // holds, however short). On an error above it stays until it expires.
        let _ = self.store.release(&claim_name(key)).await;
        tracing::info!(event = "session_refreshed", user = %updated.identity.user(), subject = %updated.identity.subject(), "session refreshed");
        crate::metrics::get().refresh("success");
        Ok(Some(updated))
    }
}

impl Upkeep<'_> {
    /// Ends a session whose refresh was refused (by the provider, or by the
    /// identity rules on the fresh claims).
    async fn end_refused(
        &self,
        key: &StoreKey,
        session: &Session,
        ended: impl FnOnce(&Identity),
    ) -> Result<Option<Arc<Session>>, StoreError> {
        self.store.delete(key).await?;
        let _ = self.store.release(&claim_name(key)).await;
        ended(&session.identity);
        crate::metrics::get().refresh("refused");
        Ok(None)
    }
}

fn claim_name(key: &StoreKey) -> String {
    format!("refresh:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::session::SessionId;
    use crate::session::memory::MemoryStore;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "public_url = \"https://auth.example.com\"\n[oidc]\nissuer = \"https://id.example.com\"\n\
             client_id = \"c\"\nclient_secret = \"s\"\n[session]\n{extra}"
        ))
        .unwrap()
    }

    fn session(last_seen: u64) -> Arc<Session> {
        let now = unix_now();
        Arc::new(Session {
            created_at: now - 7200,
            expires_at: now + 3600,
            last_seen,
            refreshed_at: now - 7200,
            ..crate::session::test_session("alice")
        })
    }

    #[tokio::test]
    async fn idle_sessions_end_and_active_ones_are_touched() {
        let config = config("idle_timeout = \"30m\"");
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(10));
        let oidc = Oidc::new(&config.oidc, &config.callback_url(), false);
        let mapper = Mapper::new(&config.identity, &config.role_map).unwrap();
        let graph = crate::graph::Graph::new(&config.graph, &config.oidc).unwrap();
        let waits = Waits::new(&config.session);
        let upkeep = Upkeep { store: &store, oidc: &oidc, mapper: &mapper, keep_claims: false, graph: &graph, config: &config.session, waits: &waits };
        let now = unix_now();

        let idle = SessionId::generate().store_key();
        store.put(&idle, session(now - 1900), Duration::from_secs(3600)).await.unwrap();
        assert!(upkeep.check(&idle, session(now - 1900)).await.unwrap().is_none());
        assert!(store.get(&idle).await.unwrap().is_none(), "an idle session is deleted");

        let active = SessionId::generate().store_key();
        store.put(&active, session(now - 600), Duration::from_secs(3600)).await.unwrap();
        assert!(upkeep.check(&active, session(now - 600)).await.unwrap().is_some());
        // Last seen more than a tenth of the idle timeout ago: written anew.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store.get(&active).await.unwrap().unwrap().last_seen >= now);
    }
}
