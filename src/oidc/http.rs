//! The HTTP client portcullis asks the provider with (bounded answers),
//! and error descriptions that show no secret.

use super::*;

/// The HTTP client openidconnect uses: reqwest, reading at most
/// [`MAX_BODY`] bytes of any answer.
pub(super) struct LimitedHttp(pub(super) reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for LimitedHttp {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>,
    >;
    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(limited_call(&self.0, request))
    }
}

pub(super) async fn limited_call(
    client: &reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(describe_reqwest(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_limited(response).await.map_err(HttpError)?;
    let mut out = openidconnect::http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// A failed call to the provider; the text never holds a URL or secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

pub(super) async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe_reqwest(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("response larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(super) fn describe_reqwest(e: &reqwest::Error) -> String {
    // Never the URL: it may carry a query with secrets.
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "unreadable response".into()
    } else {
        "request failed".into()
    }
}

pub(super) fn describe_discovery<E: std::error::Error>(e: &openidconnect::DiscoveryError<E>) -> String {
    use openidconnect::DiscoveryError::*;
    match e {
        Request(inner) => format!("request failed: {inner}"),
        Response(status, _, msg) => format!("answered HTTP {status}: {msg}"),
        Parse(inner) => format!("invalid document: {inner}"),
        Validation(msg) => format!("invalid document: {msg}"),
        UrlParse(inner) => format!("bad URL: {inner}"),
        Other(msg) => msg.clone(),
        _ => "discovery failed".into(),
    }
}

pub(super) fn describe_token_error<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: RequestTokenError<RE, T>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(resp) => {
            // The provider's error code and description; never our secret.
            OidcError::Refused(format!("token endpoint: {resp}"))
        }
        RequestTokenError::Request(inner) => OidcError::Unreachable(format!("token endpoint: {inner}")),
        RequestTokenError::Parse(_, _) => OidcError::Invalid("token endpoint answered with an unreadable document".into()),
        RequestTokenError::Other(msg) => OidcError::Unreachable(format!("token endpoint: {msg}")),
    }
}

pub(super) fn describe_claims_error(e: ClaimsVerificationError) -> OidcError {
    let text = match &e {
        ClaimsVerificationError::Expired(m) => format!("the ID token has expired or was issued at a bad time: {m}"),
        ClaimsVerificationError::InvalidAudience(m) => format!("the ID token is not for this client: {m}"),
        ClaimsVerificationError::InvalidIssuer(m) => format!("the ID token's issuer is wrong: {m}"),
        ClaimsVerificationError::InvalidNonce(_) => "the ID token's nonce does not match this login".into(),
        ClaimsVerificationError::SignatureVerification(s) => format!("the ID token's signature is not valid: {s}"),
        other => format!("the ID token is not valid: {other}"),
    };
    OidcError::Invalid(text)
}
