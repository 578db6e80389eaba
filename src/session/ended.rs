//! A session ends: one function per way, each writing the audit line and
//! counting it in `portcullis_sessions_ended` (by `reason`) together.

use crate::identity::Identity;

/// Idle for longer than `session.idle_timeout`.
pub fn idle(identity: &Identity) {
    ended(identity, "idle timeout", "idle");
}

/// The provider refused the refresh (`why` says how).
pub fn refresh_refused(identity: &Identity, why: &str) {
    ended(identity, why, "refresh_refused");
}

/// The identity rules refuse the person on the refreshed claims (`why`).
pub fn no_longer_allowed(identity: &Identity, why: &str) {
    ended(identity, why, "no_longer_allowed");
}

/// A reload brought policy expressions reading claims the session did not keep.
pub fn reconfigured(identity: &Identity) {
    ended(identity, "the policy now reads claims this session did not keep", "reconfigured");
}

/// The oldest of a person's sessions beyond `session.max_sessions_per_user`.
pub fn too_many(identity: &Identity) {
    ended(identity, "too many sessions of one person", "too_many");
}

/// The user signed out.
pub fn logout(identity: &Identity) {
    tracing::info!(event = "logout", user = %identity.user(), subject = %identity.subject(), "logout");
    crate::metrics::get().session_ended("logout");
}

/// The provider ended it (back-channel logout).
pub fn backchannel(identity: &Identity) {
    tracing::info!(event = "backchannel_logout", user = %identity.user(), subject = %identity.subject(), "session ended by the identity provider");
    crate::metrics::get().session_ended("backchannel");
}

/// The provider ended it through the browser (front-channel logout).
pub fn frontchannel(identity: &Identity) {
    tracing::info!(event = "frontchannel_logout", user = %identity.user(), subject = %identity.subject(), "session ended by the identity provider (front-channel)");
    crate::metrics::get().session_ended("frontchannel");
}

/// The audit line `session_ended` with `reason`, and the metric's `label`.
fn ended(identity: &Identity, reason: &str, label: &'static str) {
    tracing::info!(event = "session_ended", reason, user = %identity.user(), subject = %identity.subject(), "session ended");
    crate::metrics::get().session_ended(label);
}
