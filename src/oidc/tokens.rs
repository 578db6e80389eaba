//! Tokens other than the login's ID token: back-channel logout tokens and
//! JWT access tokens, checked against the provider's keys.

use super::*;

/// Why a provider access token brought as a bearer credential is not
/// accepted. The text never holds the token.
#[derive(Debug, Clone)]
pub enum BearerError {
    /// The provider or its keys cannot be reached: nothing can be decided.
    Unavailable(String),
    /// Not a valid token for these apps; the first part is a short reason
    /// for metrics (`invalid`, `expired`, `audience`).
    Invalid(&'static str, String),
    /// Valid, but without a scope `api.required_scopes` asks for.
    Scope(String),
}

impl Oidc {
    /// Checks a back-channel logout token (OpenID Connect Back-Channel Logout
    /// 1.0, section 2.6) and returns whom it logs out. Replay of `jti` is
    /// checked by the caller, which owns the shared store.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, OidcError> {
        let provider = self.provider()?;
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(OidcError::Invalid("the logout token is not a signed JWT".into()));
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(head)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| OidcError::Invalid("the logout token's header is unreadable".into()))?;
        if let Some(typ) = header.get("typ").and_then(|t| t.as_str()) {
            if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("jwt") {
                return Err(OidcError::Invalid(format!("the logout token has type {typ}")));
            }
        }
        let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header["alg"].clone())
            .ok()
            .filter(|a| asymmetric_algs().contains(a))
            .ok_or_else(|| OidcError::Invalid("the logout token's algorithm is not accepted".into()))?;
        let kid = header.get("kid").and_then(|k| k.as_str()).map(str::to_string);
        let signature = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| OidcError::Invalid("the logout token's signature is not base64url".into()))?;
        let signing_input = &token[..head.len() + 1 + body.len()];
        self.verify_signature(&provider, &alg, kid.as_deref(), signing_input, &signature)
            .await?
            .map_err(|e| OidcError::Invalid(format!("the logout token's signature is not valid: {e}")))?;

        let claims = decode_payload(token)?;
        if claims.get("iss").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
            return Err(OidcError::Invalid("the logout token's issuer is wrong".into()));
        }
        let aud_ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => *a == self.client_id,
            Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(self.client_id.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(OidcError::Invalid("the logout token is not for this client".into()));
        }
        let now = unix_now();
        let leeway = self.leeway.as_secs();
        let iat = claims
            .get("iat")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| OidcError::Invalid("the logout token has no iat".into()))?;
        if iat > now + leeway || iat + LOGOUT_TOKEN_MAX_AGE.as_secs() + leeway < now {
            return Err(OidcError::Invalid("the logout token's iat is out of range".into()));
        }
        if let Some(exp) = claims.get("exp") {
            if exp.as_u64().is_none_or(|exp| exp + leeway <= now) {
                return Err(OidcError::Invalid("the logout token has expired".into()));
            }
        }
        if claims.contains_key("nonce") {
            return Err(OidcError::Invalid("a logout token must not carry a nonce".into()));
        }
        let event_ok = claims
            .get("events")
            .and_then(|e| e.as_object())
            .and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"))
            .is_some_and(|v| v.is_object());
        if !event_ok {
            return Err(OidcError::Invalid("the logout token has no back-channel logout event".into()));
        }
        let jti = claims
            .get("jti")
            .and_then(|v| v.as_str())
            .filter(|j| !j.is_empty())
            .ok_or_else(|| OidcError::Invalid("the logout token has no jti".into()))?
            .to_string();
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_string);
        let (sub, sid) = (text("sub"), text("sid"));
        if sub.is_none() && sid.is_none() {
            return Err(OidcError::Invalid("the logout token names neither sub nor sid".into()));
        }
        Ok(LogoutClaims { sub, sid, jti })
    }

    /// Checks a JWS signature with the provider's keys (the one `kid`
    /// names, or each when it names none), fetching the JWKS again once
    /// when no key matches. The outer error is a failed JWKS fetch.
    pub(super) async fn verify_signature(
        &self,
        provider: &Provider,
        alg: &CoreJwsSigningAlgorithm,
        kid: Option<&str>,
        signing_input: &str,
        signature: &[u8],
    ) -> Result<Result<(), SignatureVerificationError>, OidcError> {
        let check = |jwks: &CoreJsonWebKeySet| -> Result<(), SignatureVerificationError> {
            let mut candidates = jwks.keys().iter().filter(|k| match (kid, k.key_id()) {
                (Some(want), Some(have)) => **have == *want,
                (Some(_), None) => false,
                (None, _) => true,
            });
            let mut last = SignatureVerificationError::NoMatchingKey;
            for key in candidates.by_ref() {
                match key.verify_signature(alg, signing_input.as_bytes(), signature) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        let first = { check(&provider.jwks.load_full()) };
        match first {
            Err(SignatureVerificationError::NoMatchingKey) if self.refetch_jwks(provider).await? => {
                Ok(check(&provider.jwks.load_full()))
            }
            other => Ok(other),
        }
    }

    /// The access token's claims for `identity.claim_sources`: only when it
    /// is a JWT signed with one of the provider's keys (an asymmetric
    /// algorithm; never `none` or a shared secret), whose `iss` is the
    /// configured issuer and which has not expired. Anyone can write a JWT
    /// with `groups: ["admins"]`, and the token endpoint's TLS says nothing
    /// about how the token itself was made. An opaque token has no claims;
    /// any other token is left out with a log line that says why.
    pub(super) async fn access_token_claims(&self, provider: &Provider, token: &str) -> Option<Claims> {
        if !self.read_access_token {
            return None;
        }
        let header = crate::claims::jwt_header(token)?;
        match self.check_access_token(provider, token, &header).await {
            Ok(claims) => Some(claims),
            Err(why) => {
                let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
                if serde_json::from_value::<CoreJwsSigningAlgorithm>(header["alg"].clone())
                    .is_ok_and(|a| asymmetric_algs().contains(&a))
                {
                    tracing::info!(event = "access_token_claims_ignored", alg, "the access token's claims are not merged: {why}");
                } else {
                    tracing::warn!(event = "access_token_claims_ignored", alg, "the access token's claims are not merged: {why}");
                }
                None
            }
        }
    }

    pub(super) async fn check_access_token(&self, provider: &Provider, token: &str, header: &Claims) -> Result<Claims, String> {
        self.checked_access_token(provider, token, header).await.map_err(|e| match e {
            BearerError::Unavailable(why) => format!("the provider's keys could not be fetched: {why}"),
            BearerError::Invalid(_, why) | BearerError::Scope(why) => why,
        })
    }

    /// An access token's signature (the provider's keys, an asymmetric
    /// algorithm, the key refetched once for an unknown `kid`), `iss`,
    /// `exp` and `nbf`: the checks every access token gets.
    async fn checked_access_token(&self, provider: &Provider, token: &str, header: &Claims) -> Result<Claims, BearerError> {
        let invalid = |why: &str| BearerError::Invalid("invalid", why.to_string());
        let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header.get("alg").cloned().unwrap_or_default())
            .ok()
            .filter(|a| asymmetric_algs().contains(a))
            .ok_or_else(|| invalid("its algorithm is not one the provider signs with (an asymmetric one: never `none` or a shared secret)"))?;
        let (signing_input, sig) = token.rsplit_once('.').ok_or_else(|| invalid("it is not a JWT"))?;
        let signature = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid("its signature is not base64url"))?;
        let kid = header.get("kid").and_then(|k| k.as_str());
        self.verify_signature(provider, &alg, kid, signing_input, &signature)
            .await
            .map_err(|e| BearerError::Unavailable(e.to_string()))?
            .map_err(|e| BearerError::Invalid("invalid", format!("its signature does not verify with the provider's keys ({e})")))?;
        let claims = decode_payload(token).map_err(|e| BearerError::Invalid("invalid", e.to_string()))?;
        if claims.get("iss").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
            return Err(BearerError::Invalid("invalid", format!("its issuer is not {}", self.issuer)));
        }
        let now = unix_now();
        let leeway = self.leeway.as_secs();
        match claims.get("exp").and_then(|v| v.as_f64()) {
            None => return Err(invalid("it has no exp")),
            Some(exp) if exp + (leeway as f64) <= now as f64 => return Err(BearerError::Invalid("expired", "it has expired".into())),
            Some(_) => {}
        }
        if let Some(nbf) = claims.get("nbf")
            && nbf.as_f64().is_none_or(|nbf| nbf > (now + leeway) as f64)
        {
            return Err(invalid("it is not valid yet (nbf)"));
        }
        Ok(claims)
    }

    /// Checks a provider access token brought as a bearer credential
    /// (`[api] bearer_tokens`): as every access token (signature, `iss`,
    /// `exp`, `nbf`), with an algorithm the provider's discovery lists in
    /// `id_token_signing_alg_values_supported`; its `aud` must name one of `audiences` and its
    /// scopes (`scope`, or Entra's `scp`) include every one of `scopes`.
    /// Returns its claims.
    pub async fn verify_bearer(&self, token: &str, audiences: &[String], scopes: &[String]) -> Result<Claims, BearerError> {
        let provider = self.provider().map_err(|e| BearerError::Unavailable(e.to_string()))?;
        let header = crate::claims::jwt_header(token).ok_or_else(|| BearerError::Invalid("invalid", "it is not a JWT".into()))?;
        let advertised = serde_json::from_value::<CoreJwsSigningAlgorithm>(header.get("alg").cloned().unwrap_or_default())
            .is_ok_and(|alg| provider.signing_algs.contains(&alg));
        if !advertised {
            return Err(BearerError::Invalid("invalid", "its algorithm is not one the provider says it signs with".into()));
        }
        let claims = self.checked_access_token(&provider, token, &header).await?;
        let aud_ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => audiences.contains(a),
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(|a| a.as_str()).any(|a| audiences.iter().any(|w| w == a)),
            _ => false,
        };
        if !aud_ok {
            return Err(BearerError::Invalid("audience", "its audience (aud) is not one of api.audiences".into()));
        }
        let granted: Vec<&str> = ["scope", "scp"]
            .iter()
            .filter_map(|name| claims.get(*name))
            .flat_map(|v| match v {
                serde_json::Value::String(s) => s.split_whitespace().collect::<Vec<_>>(),
                serde_json::Value::Array(list) => list.iter().filter_map(|s| s.as_str()).collect(),
                _ => Vec::new(),
            })
            .collect();
        if let Some(missing) = scopes.iter().find(|s| !granted.contains(&s.as_str())) {
            return Err(BearerError::Scope(format!("it lacks the scope {missing}")));
        }
        Ok(claims)
    }

}

pub(super) fn check_claims_size(id_claims: &Claims, userinfo: Option<&Claims>) -> Result<(), OidcError> {
    let size = |c: &Claims| serde_json::to_vec(c).map(|v| v.len()).unwrap_or(usize::MAX);
    let total = size(id_claims).saturating_add(userinfo.map(size).unwrap_or(0));
    if total > MAX_CLAIMS {
        return Err(OidcError::Invalid(format!(
            "the identity provider sent {} KiB of claims; portcullis accepts at most {} KiB (is a groups claim listing thousands of groups?)",
            total / 1024,
            MAX_CLAIMS / 1024
        )));
    }
    Ok(())
}

pub(super) fn asymmetric_algs() -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm::*;
    vec![
        RsaSsaPkcs1V15Sha256,
        RsaSsaPkcs1V15Sha384,
        RsaSsaPkcs1V15Sha512,
        RsaSsaPssSha256,
        RsaSsaPssSha384,
        RsaSsaPssSha512,
        EcdsaP256Sha256,
        EcdsaP384Sha384,
        EdDsa,
    ]
}

/// The payload of a JWT as JSON. Only call on a token whose signature was
/// verified, or to read claims that are verified elsewhere.
pub fn decode_payload(jwt: &str) -> Result<Claims, OidcError> {
    let payload = jwt.split('.').nth(1).ok_or_else(|| OidcError::Invalid("not a JWT".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| OidcError::Invalid("JWT payload is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| OidcError::Invalid("JWT payload is not a JSON object".into()))
}

