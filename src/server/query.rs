//! What a request's query asks: its parameters, and the return URL (`rd`)
//! that sign-in and sign-out send the browser back to.

use hyper::Request;
use hyper::body::Incoming;
use url::Url;

use super::App;
use crate::request::request_base;

pub(super) fn param<B>(req: &Request<B>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Validates the `rd` parameter; without one, the original host's root, or
/// `public_url` when that host is not allowed.
pub(super) fn return_url<B>(app: &App, req: &Request<B>) -> Result<Url, String> {
    let base = request_base(req.headers(), app.config.public_url.scheme());
    match param(req, "rd") {
        Some(rd) => app.redirects.validate(&rd, base.as_ref()).map_err(|e| e.to_string()),
        None => Ok(base
            .filter(|b| app.redirects.check_url(b).is_ok())
            .unwrap_or_else(|| app.config.endpoint_url("/"))),
    }
}

/// Largest request body read (a form; a back-channel logout).
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// The fields of a posted form (`application/x-www-form-urlencoded`), or
/// why it could not be read. A body that trickles in for longer than
/// `header_timeout` is refused too.
pub(super) async fn form(app: &App, body: Incoming) -> Result<Vec<(String, String)>, &'static str> {
    use http_body_util::{BodyExt as _, Limited};
    let read = tokio::time::timeout(app.config.header_timeout, Limited::new(body, MAX_REQUEST_BODY).collect());
    let body = match read.await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return Err("the request body is unreadable or too large"),
        Err(_) => return Err("the request body did not arrive within header_timeout"),
    };
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}
