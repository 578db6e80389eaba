//! portcullis: single sign-on in front of self-hosted apps.
//!
//! NGINX (`auth_request`), Caddy (`forward_auth`) and Traefik (ForwardAuth)
//! ask portcullis, for every request, who the user is and whether they may
//! in. portcullis owns the OpenID Connect login and keeps sessions in memory
//! or Redis. Data flows one way: request → [`session`] → [`identity`] →
//! [`policy`] → [`headers`]; [`explain`] shows that
//! flow for given claims without anyone logging in.

// Tests set environment variables, which is unsafe in edition 2024.
#![cfg_attr(not(test), forbid(unsafe_code))]

// Public: what the binary, the tests, the benchmarks and the fuzz targets
// use. The rest is the crate's own.

mod assertion;
pub mod claims;
mod clock;
pub mod config;
pub mod credentials;
mod criteria;
mod deadline;
pub mod explain;
mod expr;
pub mod graph;
mod header_value;
pub mod headers;
pub mod identity;
mod metrics;
pub mod names;
pub mod oidc;
mod peers;
pub mod policy;
pub mod redirect;
pub mod request;
pub mod rules;
pub mod server;
pub mod session;
mod settings;
pub mod ui;
mod upkeep;
pub mod view;

pub use config::Config;
