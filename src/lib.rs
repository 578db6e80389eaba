//! portcullis: single sign-on in front of self-hosted apps.
//!
//! NGINX (`auth_request`), Caddy (`forward_auth`) and Traefik (ForwardAuth)
//! ask portcullis, for every request, who the user is and whether they may
//! in. portcullis owns the OpenID Connect login and keeps sessions in memory
//! or Redis. Data flows one way: request → [`session`] → [`identity`] →
//! [`policy`] → [`headers`].

pub mod config;
pub mod graph;
pub mod headers;
pub mod identity;
pub mod oidc;
pub mod policy;
pub mod redirect;
pub mod server;
pub mod session;

pub use config::Config;
