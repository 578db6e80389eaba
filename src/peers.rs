//! `trusted_proxies`: which peers may ask the verify endpoints.
//!
//! The verify endpoints believe the headers they are sent (the original
//! URL, method and host), so only the proxies should reach them. When
//! `trusted_proxies` is set, any other peer gets 403, and is logged once
//! (not on every request).
//!
//! This is a leaf: it imports nothing from the rest of portcullis.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

/// How many refused peers are remembered as already logged.
const LOGGED_PEERS: usize = 1024;

pub struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
    logged: Mutex<HashSet<IpAddr>>,
}

impl TrustedProxies {
    /// `nets` empty: every peer is admitted.
    pub fn new(nets: Vec<ipnet::IpNet>) -> TrustedProxies {
        TrustedProxies { nets, logged: Mutex::new(HashSet::new()) }
    }

    /// Whether `peer` may ask; logs a refused peer the first time.
    pub fn admits(&self, peer: IpAddr) -> bool {
        if self.nets.is_empty() {
            return true;
        }
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        if self.nets.iter().any(|n| n.contains(&peer)) {
            return true;
        }
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.len() < LOGGED_PEERS && logged.insert(peer) {
            tracing::warn!(
                event = "untrusted_peer",
                peer = %peer,
                "refused a verify request from {peer}, which is not in trusted_proxies (logged once per address)"
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_peers_are_admitted() {
        let t = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        for (peer, want) in [("10.1.2.3", true), ("::ffff:10.1.2.3", true), ("::1", true), ("11.0.0.1", false), ("127.0.0.1", false)] {
            assert_eq!(t.admits(peer.parse().unwrap()), want, "{peer}");
        }
        assert!(TrustedProxies::new(Vec::new()).admits("203.0.113.9".parse().unwrap()));
    }
}
