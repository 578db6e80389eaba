//! The verify endpoints, `/auth/nginx` and `/auth/forward`: the proxy asks,
//! for every request, whether it may pass and as whom.
//!
//! One way through, each phase once and in order: the request view (and a
//! policy bypass) → who is asking: a credential the request carries
//! ([`super::credential`]), else the session (one store read, then its
//! upkeep) → their identity → the policy decision → the identity headers.

use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::credential::Holder;
use super::respond::{self, Body, Failure, Step, redirect, text};
use super::session::Loaded;
use super::{App, Rules, cookies};
use crate::claims::StoredClaims;
use crate::credentials::{Carrier, Presented};
use crate::identity::Identity;
use crate::metrics::{Endpoint, Outcome};
use crate::policy::Verdict;
use crate::request::{Flavor, Original, Reported, client_ip, original_method, original_url, wants_html};
use crate::view::RequestView;

pub(super) async fn verify(app: &App, req: &Request<Incoming>, flavor: Flavor, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let (response, outcome) = match pipeline(app, req, flavor, peer).await {
        Ok(answered) => answered,
        Err(failure) => {
            let outcome = respond::outcome(&failure);
            let failure = match failure {
                // NGINX's auth_request takes only 2xx, 401 and 403; its
                // 401 asks /auth/forward for the answer, which is the 429.
                Failure::TooManyFailures(_) if flavor == Flavor::Nginx => Failure::CredentialRefused,
                failure => failure,
            };
            (respond::failure(app, req.headers(), failure), outcome)
        }
    };
    let endpoint = match flavor {
        Flavor::Nginx => Endpoint::Nginx,
        Flavor::Forward => Endpoint::Forward,
    };
    crate::metrics::get().verify(endpoint, outcome, started.elapsed());
    response
}

/// The answer and its outcome for the metrics.
async fn pipeline(
    app: &App,
    req: &Request<Incoming>,
    flavor: Flavor,
    peer: SocketAddr,
) -> Result<(Response<Body>, Outcome), Failure> {
    // 1. The request view; a bypassed path needs nothing more.
    if !app.trusted.admits(peer.ip()) {
        return Err(Failure::UntrustedPeer);
    }
    let reported = Reported::read(req.headers());
    let original = original_url(&reported, flavor, app.config.public_url.scheme()).map_err(Failure::bad_request)?;
    let view = request_view(&reported, flavor, &original)?;
    let rules = app.rules.load();
    let matched = rules.policy.rule_for(&view);
    let mut notes = Vec::new();
    if let Verdict::Bypass { .. } = rules.policy.decide(matched, &view, None, &mut notes) {
        return Ok((text(StatusCode::OK, ""), Outcome::Bypass));
    }
    // 2. Who is asking: the credential the request carries, else the
    // session, kept current.
    let presented = Presented {
        token_header: app.config.api.token_header.as_ref().and_then(|name| req.headers().get(name.as_str())),
        authorization: reported.authorization,
        proxy_authorization: reported.proxy_authorization,
    };
    let who = match super::credential::check(app, &rules, req, &presented, peer, &view.host).await? {
        Some((holder, carrier)) => Who::Credential(holder, carrier),
        None => match session(app, &rules, req).await? {
            Some(loaded) => Who::Session(loaded),
            None => return Ok((signed_out(app, req, flavor, &original), Outcome::Unauthenticated)),
        },
    };
    // 3. Their identity: as mapped at sign-in or the last refresh, when
    // the token was made, or when the provider's token was verified.
    let (identity, claims) = who.identity();
    // 4. The policy decision.
    let verdict = rules.policy.decide(matched, &view, Some((identity, claims)), &mut notes);
    for note in notes {
        tracing::warn!(event = "policy_note", user = %identity.user(), "{note}");
    }
    if let Verdict::Deny { reason, .. } = verdict {
        tracing::info!(
            event = "access_denied",
            user = %identity.user(),
            subject = %identity.subject(),
            client_ip = %client_ip(req.headers(), peer),
            host = %view.host,
            path = %view.path,
            reason = %reason,
            "access denied"
        );
        return Err(Failure::Denied);
    }
    // 5. The identity headers.
    let mut response = text(StatusCode::OK, "");
    // Room for the identity headers and Cache-Control at once.
    response.headers_mut().reserve(8);
    rules.headers.write(identity, response.headers_mut());
    rules.upstream.write(identity.user(), response.headers_mut());
    match &who {
        Who::Session(loaded) if loaded.stale_key => {
            // Sealed with an older key: seal it again with the current one.
            cookies::add(&mut response, &cookies::session(app, &loaded.id));
        }
        Who::Credential(_, carrier) if !app.config.api.forward_credentials => {
            // The proxy removes the credential before the app sees it.
            let name = match carrier {
                Carrier::Authorization => HeaderValue::from_static("authorization"),
                Carrier::ProxyAuthorization => HeaderValue::from_static("proxy-authorization"),
                Carrier::TokenHeader => app.token_header_value(),
            };
            response.headers_mut().insert(CREDENTIAL_USED, name);
        }
        _ => {}
    }
    Ok((response, Outcome::Allow))
}

/// The header that tells the proxy which request header held the
/// credential portcullis used, for it to remove.
const CREDENTIAL_USED: header::HeaderName = header::HeaderName::from_static("x-portcullis-credential");

/// Who a verify found: a browser's session or a credential's holder.
enum Who {
    Session(Loaded),
    Credential(Holder, Carrier),
}

impl Who {
    fn identity(&self) -> (&Identity, &StoredClaims) {
        match self {
            Who::Session(loaded) => (&loaded.session.identity, &loaded.session.claims),
            Who::Credential(holder, _) => (holder.identity(), holder.claims()),
        }
    }
}

/// Phase 1: the original request as policy judges it.
fn request_view<'o>(reported: &Reported<'o>, flavor: Flavor, original: &'o Original) -> Result<RequestView<'o>, Failure> {
    original_method(reported, flavor)
        .and_then(|method| Ok(RequestView { method, ..original.view()? }))
        .map_err(Failure::bad_request)
}

/// Phase 2: the signed-in session, after its upkeep (idle timeout,
/// refresh), or `None` when there is none or it has ended. Fails closed
/// when the store cannot answer (it logs the outage once).
async fn session(app: &App, rules: &Rules, req: &Request<Incoming>) -> Result<Option<Loaded>, Failure> {
    let unavailable = |_| Failure::Unavailable(Step::Verify);
    let Some(loaded) = super::session::load(app, req.headers()).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let Some(session) = app.upkeep(rules).check(&loaded.key, loaded.session).await.map_err(unavailable)? else {
        return Ok(None);
    };
    if session.claims_partial && rules.policy.reads_claims() {
        // Made before a reload brought expressions that read claims, which
        // this session did not keep: a new sign-in brings them.
        app.store.delete(&loaded.key).await.map_err(unavailable)?;
        crate::session::ended::reconfigured(&session.identity);
        return Ok(None);
    }
    Ok(Some(Loaded { session, ..loaded }))
}

/// Not signed in: browsers behind Caddy or Traefik go to sign in, the rest
/// get a 401 (NGINX turns it into its own redirect).
fn signed_out(app: &App, req: &Request<Incoming>, flavor: Flavor, original: &Original) -> Response<Body> {
    if flavor == Flavor::Forward && wants_html(req.headers()) {
        let original = match original.url() {
            Ok(url) => url,
            Err(reason) => return respond::failure(app, req.headers(), Failure::bad_request(reason)),
        };
        let mut start = app.config.endpoint_url("/oauth2/start");
        start.query_pairs_mut().append_pair("rd", original.as_str());
        return redirect(start.as_str());
    }
    let mut r = text(StatusCode::UNAUTHORIZED, "not signed in\n");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Cookie realm=\"portcullis\""));
    r
}
