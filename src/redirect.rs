//! Return URLs: where a browser may be sent after login or logout.
//!
//! Only http(s) URLs whose host is in `allowed_redirect_domains` pass.
//! Relative paths are resolved against the original host. The checks are
//! strict on purpose: anything a browser might read differently from the
//! WHATWG parse done here (backslashes, control characters, encoded CR/LF,
//! scheme-relative `//host`, credentials in the authority) is refused.

use url::Url;

/// Longest return URL accepted (it travels in the login cookie, which
/// browsers keep only under 4 KiB).
pub const MAX_LEN: usize = 2048;

/// Why a return URL was refused. The text is safe to show the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid return URL: {0}")]
pub struct RedirectError(pub &'static str);

/// The allowed hosts, as configured.
#[derive(Clone, Debug)]
pub struct Redirects {
    allowed: Vec<String>,
}

impl Redirects {
    /// `allowed` holds host names (`app.example.com`) and `.suffix` domains
    /// (`.example.com`: the domain itself and every subdomain), lower-case.
    pub fn new(allowed: Vec<String>) -> Redirects {
        Redirects { allowed }
    }

    /// True when `host` (lower-case, no port) may be redirected to.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allowed.iter().any(|entry| match entry.strip_prefix('.') {
            Some(domain) => {
                host == domain
                    || (host.len() > domain.len() + 1
                        && host.ends_with(domain)
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
            }
            None => host == entry,
        })
    }

    /// Validates `rd`; a relative path is resolved against `base` (the
    /// original request's scheme and host). Returns the URL to redirect to.
    pub fn validate(&self, rd: &str, base: Option<&Url>) -> Result<Url, RedirectError> {
        if rd.is_empty() {
            return Err(RedirectError("empty"));
        }
        if rd.len() > MAX_LEN {
            return Err(RedirectError("too long"));
        }
        if rd.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
            return Err(RedirectError("contains a control character, white space or a backslash"));
        }
        let lower = rd.to_ascii_lowercase();
        if ["%0d", "%0a", "%00", "%09", "%5c"].iter().any(|bad| lower.contains(bad)) {
            return Err(RedirectError("contains an encoded control character or backslash"));
        }
        let url = if rd.starts_with('/') {
            if rd.starts_with("//") {
                return Err(RedirectError("scheme-relative URLs are not accepted"));
            }
            let base = base.ok_or(RedirectError("a relative URL needs the original host"))?;
            base.join(rd).map_err(|_| RedirectError("does not parse"))?
        } else if lower.starts_with("https://") || lower.starts_with("http://") {
            Url::parse(rd).map_err(|_| RedirectError("does not parse"))?
        } else {
            return Err(RedirectError("must be an http(s) URL or a path starting with /"));
        };
        self.check_url(&url)?;
        // Percent-encoding can triple a URL's length (`<` → `%3C`): bound
        // what is kept and sent, not only what came in, or the login cookie
        // carrying it grows past what browsers keep and the login fails.
        if url.as_str().len() > MAX_LEN {
            return Err(RedirectError("too long"));
        }
        Ok(url)
    }

    /// Checks an already-parsed absolute URL.
    pub fn check_url(&self, url: &Url) -> Result<(), RedirectError> {
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(RedirectError("must be an http(s) URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectError("must not contain a user name or password"));
        }
        let host = url.host_str().ok_or(RedirectError("has no host"))?;
        if !self.host_allowed(&host.to_ascii_lowercase()) {
            return Err(RedirectError("host is not in allowed_redirect_domains"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redirects {
        Redirects::new(vec!["example.com".into(), ".apps.example.org".into()])
    }

    fn base() -> Url {
        Url::parse("https://example.com/").unwrap()
    }

    #[test]
    fn accepts_allowed_hosts_and_paths() {
        let r = r();
        for ok in [
            "https://example.com/",
            "https://EXAMPLE.com/photos?x=1#top",
            "http://example.com:8443/a",
            "https://apps.example.org/",
            "https://photos.apps.example.org/album/1",
            "/album/1?x=%20y",
        ] {
            r.validate(ok, Some(&base())).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert_eq!(r.validate("/a?b=c", Some(&base())).unwrap().as_str(), "https://example.com/a?b=c");
    }

    #[test]
    fn refuses_open_redirect_tricks() {
        let r = r();
        for bad in [
            "//evil.com",
            "//evil.com/path",
            "/\\evil.com",
            "/\\/evil.com",
            "\\\\evil.com",
            "https://example.com.evil.com/",
            "https://evil.com@example.com/",
            "https://example.com@evil.com/",
            "https://user:pw@example.com/",
            "javascript:alert(1)",
            "JavaScript://example.com/%0aalert(1)",
            "data:text/html,hi",
            "https:evil.com",
            "https:/evil.com",
            "/%0d%0aSet-Cookie:x=y",
            "/a\r\nSet-Cookie: x=y",
            "https://example.com/\n",
            " https://example.com/",
            "https://evil.com/",
            "https://notexample.com/",
            "https://evilapps.example.org/",
            "ftp://example.com/",
            "https://example.com%2f@evil.com/",
            "/%5cevil.com",
            "",
        ] {
            assert!(r.validate(bad, Some(&base())).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn length_is_bounded_after_percent_encoding() {
        let r = r();
        let path = format!("/{}", "<".repeat(MAX_LEN / 2));
        assert!(path.len() <= MAX_LEN);
        assert_eq!(r.validate(&path, Some(&base())), Err(RedirectError("too long")));
        let fits = format!("/{}", "<".repeat((MAX_LEN - "https://example.com/".len()) / 3));
        assert!(r.validate(&fits, Some(&base())).unwrap().as_str().len() <= MAX_LEN);
    }

    #[test]
    fn relative_needs_an_allowed_base() {
        let r = r();
        assert!(r.validate("/a", None).is_err());
        let evil = Url::parse("https://evil.com/").unwrap();
        assert!(r.validate("/a", Some(&evil)).is_err());
    }
}
