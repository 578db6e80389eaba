//! Microsoft Graph: group memberships and group names for Entra ID logins.
//!
//! Entra ID puts group object IDs (GUIDs) into tokens, and none at all once
//! a user is in more than 200 groups: the token then carries an overage
//! marker (`_claim_names.groups` pointing into `_claim_sources`, or
//! `hasgroups: true`) instead of the `groups` claim. This module turns such
//! a login into the user's real groups, with names:
//!
//! * [`crate::claims::group_overage`] tells, from the claims alone, whether
//!   the token's groups are incomplete.
//! * [`Graph::resolve`] reads the user's memberships from
//!   `transitiveMemberOf` (on overage, or on every login with
//!   `trigger = "always"`), unites them with the token's `groups` claim,
//!   and resolves GUIDs that arrived without a name through `$batch`.
//!   Memberships and names are cached for `cache_ttl`.
//! * Which token calls Graph depends on `[graph] mode`: the user's own
//!   access token (`delegated`), an app token from the client credentials
//!   grant (`client_credentials`, cached until shortly before it expires),
//!   or a token from the On-Behalf-Of exchange (`obo`, cached per user the
//!   same way, for at most 10,000 users).
//!
//! A failed lookup is never a grant: [`Graph::resolve`] returns a
//! [`GraphError`] that says what went wrong (and, for permission problems,
//! which permission is missing) and logs one line about it; the caller then
//! decides, usually by continuing with [`Graph::token_groups`] and refusing
//! the login when required groups are configured but
//! [`Resolved::membership_known`] is false. Neither errors nor logs ever
//! contain a token or a secret.
//!
//! The concerns live apart: `config` (the `[graph]` table, tenants),
//! `groups` (the result types and how groups compare), `error` (what a
//! failure means and what to do about it), `token` (tokens for the three
//! modes and their caches), `http` (requests with retry, paging and
//! `$batch`). This file holds the client and what it answers.

mod config;
mod error;
mod groups;
mod http;
mod token;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use serde_json::Value;
use url::Url;

use crate::claims::{self, Claims};
use crate::oidc::config::OidcConfig;
use crate::settings::ConfigError;

pub use config::{GraphConfig, GroupsHeader, Mode, Trigger, tenant_from_issuer};
pub use error::GraphError;
pub use groups::{Group, Resolved, is_guid};

use config::{base_url, directory_id};
use error::shorten;
use groups::{group_key, merge};
use token::{AppToken, Credential, OBO_CACHE_USERS, Token, UntilRefresh};

/// Where Entra ID puts group IDs in its tokens (whatever `identity.groups_claim` says).
const GROUPS_CLAIM: &str = "groups";

/// Microsoft Graph as portcullis sees it; cheap to share behind an `Arc`.
pub struct Graph {
    enabled: bool,
    mode: Mode,
    trigger: Trigger,
    client_id: String,
    credential: Credential,
    timeout: Duration,
    token_url: Option<Url>,
    /// `client_credentials`: the directory ID every login's `tid` must be.
    directory_id: Option<String>,
    graph_url: Url,
    scope: String,
    resolve_names: bool,
    security_groups_only: bool,
    groups_header: GroupsHeader,
    http: reqwest::Client,
    app_token: tokio::sync::Mutex<Option<AppToken>>,
    /// `obo`: user key → the user's Graph token, until shortly before it
    /// expires (bounded; not affected by `cache_ttl`).
    obo_tokens: Cache<String, AppToken>,
    /// User key → memberships (groups only, with names).
    memberships: Option<Cache<String, std::sync::Arc<Vec<Group>>>>,
    /// Lower-case group ID → display name (`None`: Graph does not know it).
    names: Option<Cache<String, Option<String>>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("enabled", &self.enabled)
            .field("mode", &self.mode)
            .field("graph_url", &self.graph_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Where in the lookup we are, for the timeout message.
struct Stage(Mutex<&'static str>);

impl Stage {
    fn set(&self, what: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }
    fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Graph {
    /// Builds the client from the validated configuration.
    pub fn new(g: &GraphConfig, oidc: &OidcConfig) -> Result<Graph, ConfigError> {
        let graph_url = base_url("graph.graph_url", &g.graph_url, true)?;
        let authority = base_url("graph.authority", &g.authority, true)?;
        let token_url = match &g.tenant {
            Some(tenant) => {
                let mut u = authority.clone();
                u.path_segments_mut()
                    .map_err(|_| ConfigError::invalid("graph.authority", "cannot be a base URL"))?
                    .pop_if_empty()
                    .extend([tenant.as_str(), "oauth2", "v2.0", "token"]);
                Some(u)
            }
            None => None,
        };
        let scope = format!("{}/.default", graph_url.as_str().trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(g.timeout.0)
            .connect_timeout(g.timeout.0.min(Duration::from_secs(5)))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::invalid("graph", format!("cannot build the HTTP client: {e}")))?;
        let ttl = g.cache_ttl.0;
        let (memberships, names) = if ttl.is_zero() {
            (None, None)
        } else {
            (
                Some(Cache::builder().max_capacity(10_000).time_to_live(ttl).build()),
                Some(Cache::builder().max_capacity(100_000).time_to_live(ttl).build()),
            )
        };
        Ok(Graph {
            enabled: g.enabled,
            mode: g.mode,
            trigger: g.trigger,
            client_id: g.client_id.clone().unwrap_or_else(|| oidc.client_id.clone()),
            credential: match (&g.client_secret, &oidc.client_key) {
                (Some(secret), _) if !secret.is_empty() => Credential::Secret(secret.clone()),
                (_, Some(key)) => Credential::Key(key.clone()),
                _ => Credential::Secret(oidc.client_secret.clone()),
            },
            timeout: g.timeout.0,
            token_url,
            directory_id: if g.mode == Mode::ClientCredentials {
                directory_id(g.tenant.as_deref(), &oidc.issuer)
            } else {
                None
            },
            graph_url,
            scope,
            resolve_names: g.resolve_names,
            security_groups_only: g.security_groups_only,
            groups_header: g.groups_header,
            http,
            app_token: tokio::sync::Mutex::new(None),
            obo_tokens: Cache::builder().max_capacity(OBO_CACHE_USERS).expire_after(UntilRefresh).build(),
            memberships,
            names,
        })
    }

    /// Whether `[graph] enabled = true`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The configured `groups_header`.
    pub fn groups_header(&self) -> GroupsHeader {
        self.groups_header
    }

    /// Puts the user's groups as Graph knows them into `claims` (the
    /// `groups` claim then holds IDs and names, so rules may use either),
    /// before identity mapping. The overage markers are removed when the
    /// membership is now known, or when no group is required to sign in (a
    /// failed lookup then leaves the token's groups); otherwise they stay,
    /// and the mapping refuses the login saying why. Returns the values for
    /// the groups header, or `None` when Graph is not enabled.
    pub async fn enrich(
        &self,
        claims: &mut Claims,
        access_token: Option<&str>,
        groups_required: bool,
    ) -> Option<Vec<String>> {
        if !self.enabled {
            return None;
        }
        let resolved = match self.resolve(claims, access_token).await {
            Ok(r) => r,
            // Another directory's groups mean nothing here, and a name such
            // a token carries may be anyone's choosing: no groups at all.
            Err(GraphError::ForeignTenant { .. }) => {
                Resolved { groups: Vec::new(), overage: claims::group_overage(claims, &[]), from_graph: false }
            }
            Err(_) => self.token_groups(claims),
        };
        claims.insert(GROUPS_CLAIM.into(), Value::Array(resolved.match_values().into_iter().map(Value::String).collect()));
        if resolved.membership_known() || !groups_required {
            claims.remove("_claim_names");
            claims.remove("_claim_sources");
            claims.remove("hasgroups");
        }
        Some(resolved.header_values(self.groups_header))
    }

    /// The token's own groups, with names from the cache where known; no
    /// network. The fallback when [`Graph::resolve`] fails.
    pub fn token_groups(&self, claims: &Claims) -> Resolved {
        let mut groups = Vec::new();
        let mut seen = HashSet::new();
        for id in claims::values(claims::lookup(claims, GROUPS_CLAIM)).into_iter().filter(|id| !id.is_empty()) {
            if seen.insert(group_key(&id)) {
                let name = self.cached_name(&id).flatten();
                groups.push(Group { id, name });
            }
        }
        Resolved { groups, overage: claims::group_overage(claims, &[]), from_graph: false }
    }

    /// Looks the user's groups up as configured: memberships from Graph on
    /// overage (or always), united with the token's groups, GUIDs resolved
    /// to names. Without `enabled`, the token's groups. Takes at most
    /// `graph.timeout`; logs one line when it fails.
    pub async fn resolve(
        &self,
        claims: &Claims,
        access_token: Option<&str>,
    ) -> Result<Resolved, GraphError> {
        if !self.enabled {
            return Ok(self.token_groups(claims));
        }
        let stage = Stage(Mutex::new("starting the lookup"));
        let deadline = Instant::now() + self.timeout;
        let result = match tokio::time::timeout(self.timeout, self.lookup(claims, access_token, deadline, &stage)).await
        {
            Ok(result) => result,
            Err(_) => Err(GraphError::Timeout { timeout: self.timeout, during: stage.get().to_string() }),
        };
        if self.mode == Mode::Obo && matches!(result, Err(GraphError::Unauthorized { .. })) {
            // Graph refused the user's On-Behalf-Of token: exchange anew next time.
            if let Ok(key) = self.user_key(claims) {
                self.obo_tokens.invalidate(&key);
            }
        }
        let oid = claims::text(claims, "oid").unwrap_or_default();
        crate::metrics::get().graph(match &result {
            Ok(_) => "success",
            Err(e) if e.is_timeout() => "timeout",
            Err(_) => "error",
        });
        match &result {
            Ok(r) => tracing::debug!(
                oid = %oid,
                groups = r.groups.len(),
                overage = r.overage,
                from_graph = r.from_graph,
                "graph: groups resolved"
            ),
            Err(e) => tracing::warn!(oid = %oid, mode = self.mode.as_str(), "{e}"),
        }
        result
    }

    async fn lookup(
        &self,
        claims: &Claims,
        access_token: Option<&str>,
        deadline: Instant,
        stage: &Stage,
    ) -> Result<Resolved, GraphError> {
        self.check_tenant(claims)?;
        let mut resolved = self.token_groups(claims);
        let mut bearer: Option<Token> = None;

        if resolved.overage || self.trigger == Trigger::Always {
            let key = self.user_key(claims)?;
            let cached = self.memberships.as_ref().and_then(|c| c.get(&key));
            crate::metrics::get().cache("graph_memberships", cached.is_some());
            let members = match cached {
                Some(hit) => hit,
                None => {
                    let token = self.bearer(&mut bearer, claims, access_token, deadline, stage).await?;
                    let list = std::sync::Arc::new(self.fetch_memberships(claims, &token, deadline, stage).await?);
                    if let Some(cache) = &self.memberships {
                        cache.insert(key, list.clone());
                    }
                    list
                }
            };
            for g in members.iter() {
                if let Some(names) = &self.names {
                    names.insert(group_key(&g.id), g.name.clone());
                }
            }
            merge(&mut resolved.groups, &members);
            resolved.from_graph = true;
        }

        if self.resolve_names {
            let mut missing = Vec::new();
            for g in resolved.groups.iter_mut().filter(|g| g.name.is_none() && is_guid(&g.id)) {
                let cached = self.cached_name(&g.id);
                crate::metrics::get().cache("graph_names", cached.is_some());
                match cached {
                    Some(name) => g.name = name,
                    None => missing.push(g.id.clone()),
                }
            }
            if !missing.is_empty() {
                let token = self.bearer(&mut bearer, claims, access_token, deadline, stage).await?;
                let found = self.fetch_names(&missing, &token, deadline, stage).await?;
                for g in resolved.groups.iter_mut() {
                    if let Some(name) = found.get(&group_key(&g.id)) {
                        g.name = name.clone();
                    }
                }
            }
        }
        Ok(resolved)
    }

    /// `client_credentials` reads any user of the directory by `oid`: the
    /// login must come from that directory, or its `oid` names nobody there.
    fn check_tenant(&self, claims: &Claims) -> Result<(), GraphError> {
        let Some(expected) = &self.directory_id else { return Ok(()) };
        match claims::text(claims, "tid") {
            Some(tid) if tid.eq_ignore_ascii_case(expected) => Ok(()),
            tid => Err(GraphError::ForeignTenant {
                tid: tid.map(|t| shorten(&t.escape_default().to_string())),
                expected: expected.clone(),
            }),
        }
    }

    fn cached_name(&self, id: &str) -> Option<Option<String>> {
        self.names.as_ref()?.get(&group_key(id))
    }

    /// Memberships are cached per user: `oid` (with `tid`), else `sub`.
    fn user_key(&self, claims: &Claims) -> Result<String, GraphError> {
        let tid = claims::text(claims, "tid").unwrap_or_default();
        if let Some(oid) = claims::text(claims, "oid").filter(|o| !o.is_empty()) {
            return Ok(format!("oid:{tid}:{}", oid.to_ascii_lowercase()));
        }
        if self.mode == Mode::ClientCredentials {
            return Err(GraphError::MissingClaim {
                claim: "oid",
                purpose: "look the user up with an app token (request the `profile` scope)",
            });
        }
        match claims::text(claims, "sub").filter(|s| !s.is_empty()) {
            Some(sub) => Ok(format!("sub:{tid}:{sub}")),
            None => Err(GraphError::MissingClaim { claim: "sub", purpose: "tell whose memberships are cached" }),
        }
    }

}
