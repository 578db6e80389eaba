//! Talking to Graph: requests that wait out throttling within the
//! lookup's deadline, `transitiveMemberOf` page by page, group names
//! through `$batch`, and Graph's failures told apart.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, RETRY_AFTER};
use serde_json::{Value, json};
use url::Url;

use crate::claims::{self, Claims};

use super::error::{forbidden_hint, shorten, unauthorized_hint};
use super::groups::group_key;
use super::token::Token;
use super::{Graph, GraphError, Group, Mode, Stage};

/// `@odata.type` of the directory objects kept from `transitiveMemberOf`.
const GROUP_TYPE: &str = "#microsoft.graph.group";
/// Most sub-requests Graph accepts in one `$batch`.
const BATCH_SIZE: usize = 20;
/// Largest page size `transitiveMemberOf` allows.
const PAGE_SIZE: u32 = 999;
/// Guard against a `@odata.nextLink` loop (999 × 200 memberships is plenty).
const MAX_PAGES: usize = 200;
/// Largest response body read from Graph or the token endpoint.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How often one request is retried after 429/503 before giving up.
const MAX_RETRIES: u32 = 5;
/// Wait after a 429 that names no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Graph {
    /// `transitiveMemberOf`, every page, groups only.
    pub(super) async fn fetch_memberships(
        &self,
        claims: &Claims,
        token: &Token,
        deadline: Instant,
        stage: &Stage,
    ) -> Result<Vec<Group>, GraphError> {
        const DURING: &str = "reading transitiveMemberOf";
        stage.set("reading transitiveMemberOf from Microsoft Graph");
        let mut url = self.graph_path(&["v1.0"]);
        {
            let mut segments = url.path_segments_mut().expect("validated base URL");
            match self.mode {
                Mode::ClientCredentials => {
                    let oid = claims::text(claims, "oid").unwrap_or_default();
                    segments.extend(["users", oid.as_str(), "transitiveMemberOf"]);
                }
                Mode::Delegated | Mode::Obo => {
                    segments.extend(["me", "transitiveMemberOf"]);
                }
            }
        }
        let select = if self.security_groups_only { "id,displayName,securityEnabled" } else { "id,displayName" };
        url.set_query(Some(&format!("$select={select}&$top={PAGE_SIZE}")));

        let mut groups = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let page = self.call_json(&url, token, None, DURING, deadline).await?;
            let items = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| GraphError::Invalid { during: DURING, reason: "the page has no `value` list".into() })?;
            for item in items {
                if item.get("@odata.type").and_then(Value::as_str) != Some(GROUP_TYPE) {
                    continue;
                }
                if self.security_groups_only && item.get("securityEnabled") != Some(&Value::Bool(true)) {
                    continue;
                }
                let Some(id) = item.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) else { continue };
                let name = item.get("displayName").and_then(Value::as_str).filter(|s| !s.is_empty());
                if seen.insert(group_key(id)) {
                    groups.push(Group { id: id.to_string(), name: name.map(str::to_string) });
                }
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                None => return Ok(groups),
                Some(next) => url = self.same_origin(next, DURING)?,
            }
        }
        Err(GraphError::Invalid { during: DURING, reason: format!("more than {MAX_PAGES} pages") })
    }

    /// Names for group IDs through `$batch`, 20 at a time. IDs Graph does
    /// not know (404: deleted, or not visible) map to `None`.
    pub(super) async fn fetch_names(
        &self,
        ids: &[String],
        token: &Token,
        deadline: Instant,
        stage: &Stage,
    ) -> Result<HashMap<String, Option<String>>, GraphError> {
        const DURING: &str = "resolving group names";
        stage.set("resolving group names through Microsoft Graph $batch");
        let url = self.graph_path(&["v1.0", "$batch"]);
        let mut out = HashMap::new();
        for chunk in ids.chunks(BATCH_SIZE) {
            let mut pending: Vec<&String> = chunk.iter().collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let requests: Vec<Value> = pending
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        json!({"id": i.to_string(), "method": "GET", "url": format!("/groups/{id}?$select=id,displayName")})
                    })
                    .collect();
                let body = json!({ "requests": requests });
                let answer = self.call_json(&url, token, Some(&body), DURING, deadline).await?;
                let responses = answer.get("responses").and_then(Value::as_array).ok_or_else(|| {
                    GraphError::Invalid { during: DURING, reason: "the $batch answer has no `responses`".into() }
                })?;
                let mut retry = Vec::new();
                let mut wait = Duration::ZERO;
                let mut retry_status = 429;
                let mut answered = HashSet::new();
                for r in responses {
                    let Some(index) = r.get("id").and_then(Value::as_str).and_then(|i| i.parse::<usize>().ok()) else {
                        continue;
                    };
                    let Some(id) = pending.get(index).copied() else { continue };
                    answered.insert(index);
                    let status = r.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
                    let body = r.get("body").cloned().unwrap_or(Value::Null);
                    match status {
                        200 => {
                            let name = body.get("displayName").and_then(Value::as_str).filter(|s| !s.is_empty());
                            out.insert(group_key(id), name.map(str::to_string));
                        }
                        404 => {
                            out.insert(group_key(id), None);
                        }
                        429 | 503 => {
                            let after = r
                                .get("headers")
                                .and_then(|h| h.as_object())
                                .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after")))
                                .and_then(|(_, v)| v.as_str().and_then(|s| s.trim().parse::<u64>().ok()).or(v.as_u64()))
                                .map(Duration::from_secs)
                                .unwrap_or(DEFAULT_RETRY_AFTER);
                            wait = wait.max(after);
                            retry_status = status;
                            retry.push(id);
                        }
                        _ => return Err(self.graph_error(status, &body, DURING).await),
                    }
                }
                if answered.len() != pending.len() {
                    return Err(GraphError::Invalid {
                        during: DURING,
                        reason: "the $batch answer left requests unanswered".into(),
                    });
                }
                if !retry.is_empty() {
                    attempt += 1;
                    self.wait_retry(retry_status, wait, attempt, deadline, DURING).await?;
                }
                pending = retry;
            }
        }
        if let Some(cache) = &self.names {
            for (id, name) in &out {
                cache.insert(id.clone(), name.clone());
            }
        }
        Ok(out)
    }

    pub(super) fn graph_path(&self, segments: &[&str]) -> Url {
        let mut url = self.graph_url.clone();
        url.path_segments_mut().expect("validated base URL").pop_if_empty().extend(segments);
        url
    }

    /// A `@odata.nextLink`, followed only on `graph_url`'s origin so the
    /// token is never sent elsewhere.
    fn same_origin(&self, next: &str, during: &'static str) -> Result<Url, GraphError> {
        let url = Url::parse(next)
            .map_err(|_| GraphError::Invalid { during, reason: "the @odata.nextLink is not a URL".into() })?;
        if url.origin() != self.graph_url.origin() {
            return Err(GraphError::Invalid {
                during,
                reason: format!(
                    "the @odata.nextLink points to {} instead of graph_url; not sending the token there",
                    url.host_str().unwrap_or("?")
                ),
            });
        }
        Ok(url)
    }

    /// GETs `url`, or POSTs `body` to it as JSON, with the token; the
    /// answer's JSON, or Graph's failure told apart.
    async fn call_json(
        &self,
        url: &Url,
        token: &Token,
        body: Option<&Value>,
        during: &'static str,
        deadline: Instant,
    ) -> Result<Value, GraphError> {
        let response = self
            .send(during, deadline, || {
                let request = match body {
                    Some(body) => self.http.post(url.clone()).json(body),
                    None => self.http.get(url.clone()),
                };
                request.bearer_auth(&token.0).header(ACCEPT, "application/json")
            })
            .await?;
        let status = response.status();
        if status.is_success() {
            return read_json(response, during).await;
        }
        let body = read_json(response, during).await.unwrap_or(Value::Null);
        Err(self.graph_error(status.as_u16(), &body, during).await)
    }

    /// Tells Graph's failures apart by status and `error.code`.
    async fn graph_error(&self, status: u16, body: &Value, during: &'static str) -> GraphError {
        let error = body.get("error");
        let code = error.and_then(|e| e.get("code")).and_then(Value::as_str).unwrap_or("").to_string();
        let message = error.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("");
        let code_or = |fallback: &str| if code.is_empty() { fallback.to_string() } else { shorten(&code) };
        match status {
            401 => {
                self.forget_app_token().await;
                GraphError::Unauthorized { during, code: code_or("Unauthorized"), hint: unauthorized_hint(self.mode) }
            }
            403 => GraphError::Forbidden { during, code: code_or("Forbidden"), hint: forbidden_hint(self.mode) },
            _ => GraphError::Status {
                status,
                code: code_or(StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")),
                during,
                detail: if message.is_empty() { String::new() } else { format!(": {}", shorten(message)) },
            },
        }
    }

    /// Sends a request, waiting out 429 (and 503 with `Retry-After`) as
    /// long as the deadline allows.
    pub(super) async fn send(
        &self,
        during: &'static str,
        deadline: Instant,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GraphError> {
        let mut attempt = 0;
        loop {
            let response = build().send().await.map_err(|e| self.transport_error(e, during))?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some());
            if !retryable {
                return Ok(response);
            }
            attempt += 1;
            let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER * 2u32.pow(attempt.min(4) - 1));
            self.wait_retry(status.as_u16(), wait, attempt, deadline, during).await?;
        }
    }

    /// Waits `wait` before retrying, unless that would overrun the deadline.
    async fn wait_retry(
        &self,
        status: u16,
        wait: Duration,
        attempt: u32,
        deadline: Instant,
        during: &'static str,
    ) -> Result<(), GraphError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if attempt > MAX_RETRIES {
            return Err(GraphError::Timeout {
                timeout: self.timeout,
                during: format!("{during}: still throttled (HTTP {status}) after {MAX_RETRIES} retries"),
            });
        }
        if wait >= left {
            return Err(GraphError::Timeout {
                timeout: self.timeout,
                during: format!(
                    "{during}: throttled (HTTP {status}) with Retry-After {}, beyond the lookup's timeout",
                    humantime::format_duration(wait)
                ),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn transport_error(&self, e: reqwest::Error, during: &'static str) -> GraphError {
        let host = e.url().and_then(|u| u.host_str()).unwrap_or("?").to_string();
        if e.is_timeout() {
            return GraphError::Timeout { timeout: self.timeout, during: during.to_string() };
        }
        // reqwest's own text is terse ("error sending request"); the
        // sources say why (connection refused, TLS, DNS).
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        GraphError::Unreachable { host, during, reason: shorten(&reason) }
    }
}

/// `Retry-After` in seconds (Graph sends seconds, never a date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

pub(super) async fn read_json(response: reqwest::Response, during: &'static str) -> Result<Value, GraphError> {
    if response.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(GraphError::Invalid { during, reason: "the answer is too large".into() });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| GraphError::Invalid { during, reason: shorten(&e.without_url().to_string()) })?;
    if bytes.len() > MAX_BODY {
        return Err(GraphError::Invalid { during, reason: "the answer is too large".into() });
    }
    serde_json::from_slice(&bytes).map_err(|e| GraphError::Invalid { during, reason: format!("not JSON ({e})") })
}
