//! The session a request's cookie names: opened, and read from the store
//! once. Verify, logout and userinfo start here.

use std::sync::Arc;

use hyper::header::HeaderMap;

use super::App;
use crate::request::cookies;
use crate::session::cookie::Purpose;
use crate::session::{Session, SessionId, StoreError, StoreKey};

/// A session found through the request's cookie.
pub(super) struct Loaded {
    pub id: SessionId,
    /// The store's key for it (hashed once per request).
    pub key: StoreKey,
    pub session: Arc<Session>,
    /// The cookie was sealed with an older key.
    pub stale_key: bool,
}

/// Most distinct session cookie values tried for one request: a browser
/// may send two (say, one for the host and an older one for the parent
/// domain); more only cost store reads.
const MAX_SESSION_CANDIDATES: usize = 2;

/// The signed-in session, if the cookie opens and the store knows it.
pub(super) async fn load(app: &App, headers: &HeaderMap) -> Result<Option<Loaded>, StoreError> {
    let mut tried: [Option<&str>; MAX_SESSION_CANDIDATES] = [None; MAX_SESSION_CANDIDATES];
    for value in cookies(headers, &app.config.session.cookie_name) {
        if tried.contains(&Some(value)) {
            continue;
        }
        let Some(slot) = tried.iter_mut().find(|t| t.is_none()) else { break };
        *slot = Some(value);
        let Some(opened) = app.sealer.open(Purpose::Session, value) else { continue };
        let Some(id) = SessionId::from_bytes(&opened.payload) else { continue };
        let key = id.store_key();
        if let Some(session) = app.store.get(&key).await? {
            // A personal access token's record is never a browser's session.
            if session.remaining().is_some() && !session.is_token() {
                return Ok(Some(Loaded { id, key, session, stale_key: opened.stale_key }));
            }
        }
    }
    Ok(None)
}
