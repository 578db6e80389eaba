//! The policy's rules filed by host and first path segment, so that a
//! request is compared with the few rules that could match it, not with
//! every rule: the cost of a verify does not grow with the number of rules.
//!
//! The index only narrows: every rule that matches a request is among its
//! candidates (some candidates do not match), and each candidate is then
//! judged in full, as a scan would judge it. Of the candidates that match,
//! the one written first wins, wherever the index filed it, so the first
//! match in file order decides, exactly as with a scan.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{HostPattern, PathPattern, Rule};

/// Rules under one host key, by position (ascending in each list).
#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Rules that may match any path: no path, the prefix `/`, or a glob.
    any: Vec<usize>,
    /// Prefix rules by their first path segment, in ASCII lower case
    /// (`/Admin/x` under `admin`): a path they match, in any letter case,
    /// has that first segment.
    by_segment: HashMap<Box<str>, Vec<usize>>,
}

impl Bucket {
    fn add(&mut self, i: usize, path: Option<&PathPattern>) {
        match path.and_then(|p| match p {
            PathPattern::Prefix(prefix) if prefix != "/" => first_segment(prefix),
            _ => None,
        }) {
            Some(segment) => self.by_segment.entry(segment.to_ascii_lowercase().into()).or_default().push(i),
            None => self.any.push(i),
        }
    }
}

/// Where each rule is filed.
#[derive(Clone, Debug, Default)]
pub(super) struct Index {
    /// Rules for one exact host.
    exact: HashMap<Box<str>, Bucket>,
    /// `*.example.com` rules under `example.com`.
    suffix: HashMap<Box<str>, Bucket>,
    /// Rules without a host.
    anywhere: Bucket,
}

impl Index {
    pub(super) fn new(rules: &[Rule]) -> Index {
        let mut index = Index::default();
        for (i, r) in rules.iter().enumerate() {
            let bucket = match &r.host {
                None => &mut index.anywhere,
                Some(HostPattern::Exact(h)) => index.exact.entry(h.as_str().into()).or_default(),
                Some(HostPattern::Suffix(s)) => index.suffix.entry(s.trim_start_matches('.').into()).or_default(),
            };
            bucket.add(i, r.path.as_ref());
        }
        index
    }

    /// The position of the first rule (in file order) among those filed
    /// for `host` and `paths` (the request's readings of its path) for
    /// which `matches` holds.
    pub(super) fn first_match<'p>(
        &self,
        host: &str,
        paths: impl Iterator<Item = &'p str>,
        mut matches: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        // The first segment of each reading, in lower case (a path that
        // does not start with `/` has none: no prefix rule matches it).
        let mut segments: [Option<Cow<str>>; 2] = [None, None];
        for (slot, path) in segments.iter_mut().zip(paths) {
            *slot = first_segment(path).map(|s| {
                if s.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(s.to_ascii_lowercase()) } else { Cow::Borrowed(s) }
            });
        }
        if segments[1] == segments[0] {
            segments[1] = None;
        }
        let mut best = usize::MAX;
        let mut search = |bucket: &Bucket| {
            first_in(&bucket.any, &mut best, &mut matches);
            if !bucket.by_segment.is_empty() {
                for segment in segments.iter().flatten() {
                    if let Some(list) = bucket.by_segment.get(segment.as_ref()) {
                        first_in(list, &mut best, &mut matches);
                    }
                }
            }
        };
        if let Some(bucket) = self.exact.get(host) {
            search(bucket);
        }
        if !self.suffix.is_empty() {
            // `*.example.com` matches a host ending in `.example.com` with
            // something before it: look up what follows each dot but a
            // leading one.
            for (at, _) in host.match_indices('.').filter(|(at, _)| *at > 0) {
                if let Some(bucket) = self.suffix.get(&host[at + 1..]) {
                    search(bucket);
                }
            }
        }
        search(&self.anywhere);
        (best != usize::MAX).then_some(best)
    }
}

/// Lowers `best` to the first rule of `list` before it that matches.
fn first_in(list: &[usize], best: &mut usize, matches: &mut impl FnMut(usize) -> bool) {
    for &i in list {
        if i >= *best {
            return;
        }
        if matches(i) {
            *best = i;
            return;
        }
    }
}

/// `admin` for `/admin`, `/admin/` and `/admin/x`; `None` without a
/// leading `/`.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    Some(rest.split('/').next().unwrap_or(rest))
}
