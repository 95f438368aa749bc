//! Purges: by URL, URL prefix, cache tag, or everything in a zone.
//!
//! A purge records a rule with the time it was made; a stored object created at or before a
//! rule that matches it is never served again (the hit becomes a miss and the refetch replaces
//! it). Like Varnish's bans, this makes a purge take effect at once on every tier, whatever the
//! object's variants, without walking storage. Memory stays bounded: past `max_rules` rules in a
//! zone, the oldest rules fold into the zone-wide purge time, which only ever purges more.

use std::collections::HashMap;
use std::time::SystemTime;

use parking_lot::RwLock;

/// What to purge in a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeRequest {
    /// These URLs (`host/path?query`; a scheme, if given, is ignored).
    Urls(Vec<String>),
    /// Every URL starting with one of these (`host/path-prefix`).
    Prefixes(Vec<String>),
    /// Every object whose `Cache-Tag` response header lists one of these tags.
    Tags(Vec<String>),
    /// Everything the zone has stored.
    Everything,
}

#[derive(Default)]
struct ZoneRules {
    /// Objects created at or before this are purged.
    everything: Option<SystemTime>,
    urls: HashMap<String, SystemTime>,
    prefixes: Vec<(String, SystemTime)>,
    tags: HashMap<String, SystemTime>,
}

impl ZoneRules {
    fn count(&self) -> usize {
        self.urls.len() + self.prefixes.len() + self.tags.len()
    }

    fn purged<'a>(
        &self,
        url: &str,
        mut tags: impl Iterator<Item = &'a str>,
        created: SystemTime,
    ) -> bool {
        let after = |t: &SystemTime| created <= *t;
        self.everything.as_ref().is_some_and(after)
            || self.urls.get(url).is_some_and(after)
            || self
                .prefixes
                .iter()
                .any(|(p, t)| url.starts_with(p.as_str()) && after(t))
            || (!self.tags.is_empty() && tags.any(|tag| self.tags.get(tag).is_some_and(after)))
    }

    /// Folds the oldest rules into `everything` until at most `max` remain.
    fn bound(&mut self, max: usize) {
        while self.count() > max {
            let oldest = self
                .urls
                .values()
                .chain(self.tags.values())
                .chain(self.prefixes.iter().map(|(_, t)| t))
                .min()
                .copied();
            let Some(oldest) = oldest else { return };
            self.everything = Some(self.everything.map_or(oldest, |e| e.max(oldest)));
            self.urls.retain(|_, t| *t > oldest);
            self.tags.retain(|_, t| *t > oldest);
            self.prefixes.retain(|(_, t)| *t > oldest);
        }
    }
}

/// The purge rules of every zone on this node.
pub struct Purges {
    zones: RwLock<HashMap<String, ZoneRules>>,
    max_rules: usize,
}

/// `host/path?query` from a URL with or without a scheme; the host in lower case.
pub fn normalize_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let host = host_key(host);
    format!("{host}{path}")
}

/// The host without a port, lower case.
fn host_key(host: &str) -> String {
    let bare = match host.rfind(':') {
        Some(i) if !host.starts_with('[') || host[..i].ends_with(']') => &host[..i],
        _ => host,
    };
    bare.to_ascii_lowercase()
}

impl Purges {
    /// Rules are bounded to `max_rules` per zone.
    pub fn new(max_rules: usize) -> Purges {
        Purges {
            zones: RwLock::new(HashMap::new()),
            max_rules: max_rules.max(1),
        }
    }

    /// Records a purge made at `now`. Returns how many rules it added.
    pub fn purge(&self, zone: &str, request: &PurgeRequest, now: SystemTime) -> usize {
        let mut zones = self.zones.write();
        let rules = zones.entry(zone.to_string()).or_default();
        let added = match request {
            PurgeRequest::Urls(urls) => {
                for u in urls {
                    rules.urls.insert(normalize_url(u), now);
                }
                urls.len()
            }
            PurgeRequest::Prefixes(prefixes) => {
                for p in prefixes {
                    let p = normalize_prefix(p);
                    rules.prefixes.retain(|(q, _)| *q != p);
                    rules.prefixes.push((p, now));
                }
                prefixes.len()
            }
            PurgeRequest::Tags(tags) => {
                for t in tags {
                    rules.tags.insert(t.trim().to_string(), now);
                }
                tags.len()
            }
            PurgeRequest::Everything => {
                *rules = ZoneRules {
                    everything: Some(now),
                    ..ZoneRules::default()
                };
                1
            }
        };
        rules.bound(self.max_rules);
        added
    }

    /// Whether an object of `zone` stored at `created` for `url` (`host/path?query`) with the
    /// `Cache-Tag` values `tags` has been purged since.
    pub fn is_purged<'a>(
        &self,
        zone: &str,
        url: &str,
        tags: impl Iterator<Item = &'a str>,
        created: SystemTime,
    ) -> bool {
        let zones = self.zones.read();
        let Some(rules) = zones.get(zone) else {
            return false;
        };
        rules.purged(url, tags, created)
    }
}

/// A prefix without its scheme, the host in lower case, the path kept as given.
fn normalize_prefix(prefix: &str) -> String {
    let rest = prefix.split_once("://").map_or(prefix, |(_, rest)| rest);
    match rest.find('/') {
        Some(i) => format!("{}{}", host_key(&rest[..i]), &rest[i..]),
        None => host_key(rest),
    }
}

/// The tags of a `Cache-Tag` header value (comma-separated, as Cloudflare's).
pub fn split_tags(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn none() -> std::iter::Empty<&'static str> {
        std::iter::empty()
    }

    #[test]
    fn a_url_purge_hits_objects_stored_before_it_only() {
        let p = Purges::new(100);
        p.purge(
            "z",
            &PurgeRequest::Urls(vec!["https://A.test/x?q=1".into()]),
            t(10),
        );
        assert!(p.is_purged("z", "a.test/x?q=1", none(), t(5)));
        assert!(p.is_purged("z", "a.test/x?q=1", none(), t(10)));
        assert!(
            !p.is_purged("z", "a.test/x?q=1", none(), t(11)),
            "refetched after"
        );
        assert!(!p.is_purged("z", "a.test/x", none(), t(5)), "another URL");
        assert!(
            !p.is_purged("other", "a.test/x?q=1", none(), t(5)),
            "another zone"
        );
    }

    #[test]
    fn prefix_tag_and_everything() {
        let p = Purges::new(100);
        p.purge(
            "z",
            &PurgeRequest::Prefixes(vec!["a.test/img/".into()]),
            t(10),
        );
        assert!(p.is_purged("z", "a.test/img/1.png", none(), t(5)));
        assert!(!p.is_purged("z", "a.test/css/1.css", none(), t(5)));
        p.purge("z", &PurgeRequest::Tags(vec!["product-7".into()]), t(20));
        let tags = split_tags("home, product-7");
        assert!(p.is_purged("z", "a.test/p", tags, t(15)));
        assert!(!p.is_purged("z", "a.test/p", split_tags("home"), t(15)));
        p.purge("z", &PurgeRequest::Everything, t(30));
        assert!(p.is_purged("z", "a.test/anything", none(), t(29)));
        assert!(!p.is_purged("z", "a.test/anything", none(), t(31)));
    }

    #[test]
    fn rules_stay_bounded_and_folding_only_purges_more() {
        let p = Purges::new(3);
        for i in 0..10 {
            p.purge("z", &PurgeRequest::Urls(vec![format!("a.test/{i}")]), t(i));
        }
        assert!(p.zones.read()["z"].count() <= 3);
        // Every purged URL is still purged for objects stored before its purge.
        for i in 0..10 {
            assert!(
                p.is_purged("z", &format!("a.test/{i}"), none(), t(i)),
                "{i}"
            );
        }
    }

    #[test]
    fn urls_normalize_scheme_host_case_and_port() {
        assert_eq!(normalize_url("https://A.Test:8443/P?q"), "a.test/P?q");
        assert_eq!(normalize_url("a.test"), "a.test/");
        assert_eq!(normalize_url("http://[::1]:80/x"), "[::1]/x");
    }
}
