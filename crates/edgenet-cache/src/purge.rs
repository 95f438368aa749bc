//! Purges: by URL, URL prefix, cache tag, or everything in a zone.
//!
//! A purge records a rule with the time it was made; a stored object created at or before a
//! rule that matches it is never served again (the hit becomes a miss and the refetch replaces
//! it). Like Varnish's bans, this makes a purge take effect at once on every tier, whatever the
//! object's variants, without walking storage. Memory stays bounded: past `max_rules` rules in a
//! zone, the oldest rules fold into the zone-wide purge time, which only ever purges more.
//!
//! Rules only ever move forward: recording a purge again, or an older one after a newer one,
//! changes nothing, so the network's purges (each with the control plane's time) can be applied
//! in any order and any number of times. Where the disk tier keeps objects across restarts,
//! the rules are kept beside them ([`Purges::save`], [`Purges::load`]) so a purged object does
//! not come back. A *fence* ([`Purges::fence`]) counts every object stored before a time as
//! purged: a PoP that follows a control plane raises it at start and lowers it once it has
//! applied the purges it missed while it was away.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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
    /// Unix microseconds: objects stored at or before it count as purged (0: no fence).
    fence_us: AtomicU64,
    /// Rules changed since the last [`Purges::save`].
    dirty: AtomicBool,
}

/// The rules as [`Purges::save`] writes them: times in unix microseconds.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SavedZone {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    everything: Option<u64>,
    #[serde(default)]
    urls: BTreeMap<String, u64>,
    #[serde(default)]
    prefixes: Vec<(String, u64)>,
    #[serde(default)]
    tags: BTreeMap<String, u64>,
}

/// Unix microseconds of `t` (0 before the epoch).
fn to_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().min(u64::MAX as u128) as u64)
}

fn from_us(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

/// `slot` moved forward to `t` (never back).
fn forward(slot: &mut SystemTime, t: SystemTime) {
    *slot = (*slot).max(t);
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
            fence_us: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        }
    }

    /// Records a purge made at `at`: objects stored at or before it are purged. A rule already
    /// as new stays as it is. Returns how many rules it names.
    pub fn purge(&self, zone: &str, request: &PurgeRequest, at: SystemTime) -> usize {
        let mut zones = self.zones.write();
        let rules = zones.entry(zone.to_string()).or_default();
        if rules.everything.is_some_and(|e| e >= at) {
            // A zone-wide purge at least as new covers it.
            return request_len(request);
        }
        match request {
            PurgeRequest::Urls(urls) => {
                for u in urls {
                    forward(rules.urls.entry(normalize_url(u)).or_insert(at), at);
                }
            }
            PurgeRequest::Prefixes(prefixes) => {
                for p in prefixes {
                    let p = normalize_prefix(p);
                    match rules.prefixes.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, t)) => forward(t, at),
                        None => rules.prefixes.push((p, at)),
                    }
                }
            }
            PurgeRequest::Tags(tags) => {
                for t in tags {
                    forward(rules.tags.entry(t.trim().to_string()).or_insert(at), at);
                }
            }
            PurgeRequest::Everything => {
                rules.everything = Some(at);
                // What the zone-wide time covers is dropped; newer rules stay.
                rules.urls.retain(|_, t| *t > at);
                rules.tags.retain(|_, t| *t > at);
                rules.prefixes.retain(|(_, t)| *t > at);
            }
        }
        rules.bound(self.max_rules);
        self.dirty.store(true, Ordering::Release);
        request_len(request)
    }

    /// Counts every object stored at or before `before` as purged, until
    /// [`Purges::lift_fence`].
    pub fn fence(&self, before: SystemTime) {
        self.fence_us.store(to_us(before).max(1), Ordering::Release);
    }

    /// Lowers the fence: stored objects are judged by the rules alone again.
    pub fn lift_fence(&self) {
        self.fence_us.store(0, Ordering::Release);
    }

    /// Whether a fence is up.
    pub fn fenced(&self) -> bool {
        self.fence_us.load(Ordering::Acquire) != 0
    }

    /// Writes the rules to `path` (a temporary file, then a rename) when they changed since
    /// the last save. Returns whether it wrote.
    pub fn save(&self, path: &Path) -> std::io::Result<bool> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let saved: BTreeMap<String, SavedZone> = self
            .zones
            .read()
            .iter()
            .map(|(zone, r)| {
                let z = SavedZone {
                    everything: r.everything.map(to_us),
                    urls: r.urls.iter().map(|(u, t)| (u.clone(), to_us(*t))).collect(),
                    prefixes: r
                        .prefixes
                        .iter()
                        .map(|(p, t)| (p.clone(), to_us(*t)))
                        .collect(),
                    tags: r.tags.iter().map(|(g, t)| (g.clone(), to_us(*t))).collect(),
                };
                (zone.clone(), z)
            })
            .collect();
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, path)
            });
        if written.is_err() {
            // Try again at the next save.
            self.dirty.store(true, Ordering::Release);
        }
        written.map(|()| true)
    }

    /// Adds the rules a previous [`Purges::save`] wrote to `path` (none when there is no
    /// file). Returns how many rules it read.
    pub fn load(&self, path: &Path) -> std::io::Result<usize> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let saved: BTreeMap<String, SavedZone> = serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let mut read = 0;
        for (zone, z) in saved {
            if let Some(e) = z.everything {
                read += self.purge(&zone, &PurgeRequest::Everything, from_us(e));
            }
            for (url, t) in z.urls {
                read += self.purge(&zone, &PurgeRequest::Urls(vec![url]), from_us(t));
            }
            for (prefix, t) in z.prefixes {
                read += self.purge(&zone, &PurgeRequest::Prefixes(vec![prefix]), from_us(t));
            }
            for (tag, t) in z.tags {
                read += self.purge(&zone, &PurgeRequest::Tags(vec![tag]), from_us(t));
            }
        }
        Ok(read)
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
        let fence = self.fence_us.load(Ordering::Acquire);
        if fence != 0 && to_us(created) <= fence {
            return true;
        }
        let zones = self.zones.read();
        let Some(rules) = zones.get(zone) else {
            return false;
        };
        rules.purged(url, tags, created)
    }
}

/// How many rules a request names.
fn request_len(request: &PurgeRequest) -> usize {
    match request {
        PurgeRequest::Urls(l) | PurgeRequest::Prefixes(l) | PurgeRequest::Tags(l) => l.len(),
        PurgeRequest::Everything => 1,
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
    fn rules_only_move_forward_whatever_the_order() {
        let p = Purges::new(100);
        let url = || PurgeRequest::Urls(vec!["a.test/x".into()]);
        p.purge("z", &url(), t(20));
        // An older purge of the same URL, or the same one again, changes nothing.
        p.purge("z", &url(), t(10));
        p.purge("z", &url(), t(20));
        assert!(p.is_purged("z", "a.test/x", none(), t(15)));
        assert!(p.is_purged("z", "a.test/x", none(), t(20)));
        // An older zone-wide purge does not undo a newer URL purge.
        p.purge("z", &PurgeRequest::Everything, t(5));
        assert!(p.is_purged("z", "a.test/x", none(), t(19)));
        assert!(p.is_purged("z", "a.test/y", none(), t(5)));
        assert!(!p.is_purged("z", "a.test/y", none(), t(6)));
        // A newer zone-wide purge covers the URL rule.
        p.purge("z", &PurgeRequest::Everything, t(30));
        assert!(p.is_purged("z", "a.test/x", none(), t(25)));
        assert_eq!(
            p.zones.read()["z"].count(),
            0,
            "folded into the zone-wide time"
        );
        p.purge("z", &url(), t(25));
        assert_eq!(p.zones.read()["z"].count(), 0, "covered already");
        let pre = PurgeRequest::Prefixes(vec!["a.test/img/".into()]);
        p.purge("z", &pre, t(50));
        p.purge("z", &pre, t(40));
        assert!(p.is_purged("z", "a.test/img/1", none(), t(45)));
        p.purge("z", &PurgeRequest::Tags(vec!["t".into()]), t(60));
        p.purge("z", &PurgeRequest::Tags(vec!["t".into()]), t(55));
        assert!(p.is_purged("z", "a.test/p", split_tags("t"), t(58)));
    }

    #[test]
    fn a_fence_purges_everything_stored_before_it_until_lifted() {
        let p = Purges::new(100);
        p.fence(t(10));
        assert!(p.fenced());
        assert!(p.is_purged("any", "a.test/x", none(), t(9)));
        assert!(
            !p.is_purged("any", "a.test/x", none(), t(11)),
            "stored since"
        );
        p.lift_fence();
        assert!(!p.fenced());
        assert!(!p.is_purged("any", "a.test/x", none(), t(9)));
    }

    #[test]
    fn saved_rules_load_back_and_a_save_without_change_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("edgenet-purges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("purges.json");
        let p = Purges::new(100);
        p.purge("z", &PurgeRequest::Urls(vec!["a.test/x".into()]), t(10));
        p.purge(
            "z",
            &PurgeRequest::Prefixes(vec!["a.test/img/".into()]),
            t(11),
        );
        p.purge("z", &PurgeRequest::Tags(vec!["t".into()]), t(12));
        p.purge("y", &PurgeRequest::Everything, t(13));
        assert!(p.save(&file).unwrap());
        assert!(!p.save(&file).unwrap(), "nothing changed");
        let q = Purges::new(100);
        assert_eq!(q.load(&file).unwrap(), 4);
        assert!(q.is_purged("z", "a.test/x", none(), t(10)));
        assert!(!q.is_purged("z", "a.test/x", none(), t(11)));
        assert!(q.is_purged("z", "a.test/img/a", none(), t(11)));
        assert!(q.is_purged("z", "a.test/p", split_tags("t"), t(12)));
        assert!(q.is_purged("y", "b.test/", none(), t(13)));
        assert_eq!(Purges::new(1).load(&dir.join("none.json")).unwrap(), 0);
        std::fs::write(&file, b"{not json").unwrap();
        let e = q.load(&file).unwrap_err().to_string();
        assert!(e.contains("purges.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls_normalize_scheme_host_case_and_port() {
        assert_eq!(normalize_url("https://A.Test:8443/P?q"), "a.test/P?q");
        assert_eq!(normalize_url("a.test"), "a.test/");
        assert_eq!(normalize_url("http://[::1]:80/x"), "[::1]/x");
    }
}
