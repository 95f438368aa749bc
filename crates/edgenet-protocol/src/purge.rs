//! Purges for the whole network: what an account asks for with Cloudflare's
//! `POST /accounts/{a}/zones/{zone}/purge_cache` ([`PurgeSpec`]), checked against the zone
//! ([`validate_purge`]), and the object every PoP applies ([`PurgeProvision`]: the request with
//! the control plane's time of it, so that applying it again, late, or after a restart purges
//! exactly the objects stored before the call).

use edgenet_config::ZoneSection;
use serde::{Deserialize, Serialize};

use crate::validate::FieldProblem;

/// The most URLs, prefixes, tags or hosts one purge names.
pub const MAX_PURGE_ITEMS: usize = 500;

/// The longest URL, prefix, tag or host in a purge.
pub const MAX_PURGE_ITEM_LEN: usize = 2048;

/// What a purge names, in Cloudflare's shape: exactly one of the lists, or everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeSpec {
    /// URLs (`https://www.example.com/a.css?v=1`; the scheme may be left out). Every variant
    /// stored for a URL is purged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PurgeFile>,
    /// Every URL starting with one of these (`www.example.com/images/`, no scheme).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Every object whose `Cache-Tag` response header lists one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Everything stored for these hostnames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Everything the zone has stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge_everything: bool,
}

/// One URL of [`PurgeSpec::files`]: a string, or Cloudflare's `{"url", "headers"}` (the
/// headers name one variant there; here every variant of the URL is purged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PurgeFile {
    /// The URL.
    Url(String),
    /// The URL with the request headers of a variant.
    WithHeaders {
        /// The URL.
        url: String,
        /// Request headers (accepted; every variant is purged).
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
    },
}

impl PurgeFile {
    /// The URL.
    pub fn url(&self) -> &str {
        match self {
            PurgeFile::Url(u) | PurgeFile::WithHeaders { url: u, .. } => u,
        }
    }
}

/// A purge as every PoP applies it (named by its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeProvision {
    /// The zone.
    pub zone: String,
    /// When the control plane took it, in unix microseconds (rounded up): objects stored at
    /// or before it are purged.
    pub at_us: u64,
    /// What it names.
    #[serde(flatten)]
    pub spec: PurgeSpec,
}

/// What a purge names, once checked: one kind of list, or everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget<'a> {
    /// URLs as given (`[scheme://]host/path?query`).
    Urls(Vec<&'a str>),
    /// Prefixes (`host/path-prefix`), hosts as `host/`.
    Prefixes(Vec<String>),
    /// Cache tags.
    Tags(&'a [String]),
    /// Everything.
    Everything,
}

impl PurgeSpec {
    /// What it names. A spec that names nothing or several kinds (which
    /// [`validate_purge`] refuses) is taken for its first kind, or nothing.
    pub fn target(&self) -> Option<PurgeTarget<'_>> {
        if self.purge_everything {
            return Some(PurgeTarget::Everything);
        }
        if !self.files.is_empty() {
            return Some(PurgeTarget::Urls(
                self.files.iter().map(PurgeFile::url).collect(),
            ));
        }
        if !self.prefixes.is_empty() {
            return Some(PurgeTarget::Prefixes(self.prefixes.clone()));
        }
        if !self.tags.is_empty() {
            return Some(PurgeTarget::Tags(&self.tags));
        }
        if !self.hosts.is_empty() {
            let prefixes = self
                .hosts
                .iter()
                .map(|h| format!("{}/", h.trim()))
                .collect();
            return Some(PurgeTarget::Prefixes(prefixes));
        }
        None
    }
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: Some(field.into()),
        message: message.into(),
    }
}

/// The host of a URL or prefix (`[scheme://]host[:port][/...]`), lower case, without the port.
fn host_of(item: &str) -> Result<String, String> {
    let rest = match item.split_once("://") {
        Some((scheme, rest)) => {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(format!("the scheme {scheme:?} is not http or https"));
            }
            rest
        }
        None => item,
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.rfind(':') {
        Some(i) if !authority.starts_with('[') || authority[..i].ends_with(']') => &authority[..i],
        _ => authority,
    };
    if host.is_empty() {
        return Err("names no host".into());
    }
    Ok(host.to_ascii_lowercase())
}

/// Checks a purge body for `zone`: exactly one kind, at most [`MAX_PURGE_ITEMS`] items of at
/// most [`MAX_PURGE_ITEM_LEN`] bytes, no control characters, and every URL, prefix and host
/// one of the zone's hostnames. Errors name the field (`files[2]`).
pub fn validate_purge(
    body: &serde_json::Value,
    zone: &ZoneSection,
) -> Result<PurgeSpec, Vec<FieldProblem>> {
    let spec: PurgeSpec = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        vec![FieldProblem {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }]
    })?;
    let lists: [(&str, Vec<&str>); 4] = [
        ("files", spec.files.iter().map(PurgeFile::url).collect()),
        (
            "prefixes",
            spec.prefixes.iter().map(String::as_str).collect(),
        ),
        ("tags", spec.tags.iter().map(String::as_str).collect()),
        ("hosts", spec.hosts.iter().map(String::as_str).collect()),
    ];
    let named =
        lists.iter().filter(|(_, l)| !l.is_empty()).count() + usize::from(spec.purge_everything);
    if named != 1 {
        return Err(vec![FieldProblem {
            field: None,
            message: "give exactly one of files, prefixes, tags, hosts or purge_everything: true"
                .into(),
        }]);
    }
    let patterns: Vec<edgenet_config::HostPattern> = zone
        .hostnames
        .iter()
        .filter_map(|h| edgenet_config::parse_host_pattern(h).ok())
        .collect();
    let mut problems = Vec::new();
    for (field, items) in &lists {
        if items.len() > MAX_PURGE_ITEMS {
            problems.push(problem(
                *field,
                format!(
                    "{} items: at most {MAX_PURGE_ITEMS} in one purge",
                    items.len()
                ),
            ));
            continue;
        }
        for (i, item) in items.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if item.trim().is_empty() {
                problems.push(problem(at, "is empty"));
                continue;
            }
            if item.len() > MAX_PURGE_ITEM_LEN {
                problems.push(problem(at, format!("over {MAX_PURGE_ITEM_LEN} bytes")));
                continue;
            }
            if item.chars().any(char::is_control) {
                problems.push(problem(at, "has a control character"));
                continue;
            }
            if *field == "tags" {
                if item.contains(',') {
                    problems.push(problem(at, "a tag cannot contain ','"));
                }
                continue;
            }
            if *field == "hosts" && item.contains(['/', '?']) {
                problems.push(problem(at, format!("{item:?} is not a hostname")));
                continue;
            }
            if *field == "prefixes" && item.contains("://") {
                problems.push(problem(
                    at,
                    "a prefix has no scheme (\"www.example.com/images/\")",
                ));
                continue;
            }
            match host_of(item) {
                Err(reason) => problems.push(problem(at, format!("{item:?} {reason}"))),
                Ok(host) if !patterns.iter().any(|p| p.matches(&host)) => problems.push(problem(
                    at,
                    format!("{host:?} is not a hostname of zone {:?}", zone.name),
                )),
                Ok(_) => {}
            }
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zone() -> ZoneSection {
        serde_json::from_value(json!({
            "name": "shop",
            "hostnames": ["shop.test", "*.cdn.shop.test"],
            "origins": {"servers": [{"address": "127.0.0.1:1"}]}
        }))
        .unwrap()
    }

    fn fields(body: serde_json::Value) -> Vec<Option<String>> {
        validate_purge(&body, &zone())
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn each_kind_is_taken_and_hosts_become_prefixes() {
        let z = zone();
        let spec = validate_purge(
            &json!({"files": ["https://shop.test/a?b", {"url": "http://x.cdn.shop.test:8080/c", "headers": {"CF-Device-Type": "mobile"}}]}),
            &z,
        )
        .unwrap();
        assert_eq!(
            spec.target(),
            Some(PurgeTarget::Urls(vec![
                "https://shop.test/a?b",
                "http://x.cdn.shop.test:8080/c"
            ]))
        );
        let spec = validate_purge(&json!({"hosts": ["Shop.test"]}), &z).unwrap();
        assert_eq!(
            spec.target(),
            Some(PurgeTarget::Prefixes(vec!["Shop.test/".into()]))
        );
        let spec = validate_purge(&json!({"tags": ["a", "b"]}), &z).unwrap();
        assert!(matches!(spec.target(), Some(PurgeTarget::Tags(t)) if t.len() == 2));
        let spec = validate_purge(&json!({"purge_everything": true}), &z).unwrap();
        assert_eq!(spec.target(), Some(PurgeTarget::Everything));
        let spec = validate_purge(&json!({"prefixes": ["shop.test/img/"]}), &z).unwrap();
        assert_eq!(
            spec.target(),
            Some(PurgeTarget::Prefixes(vec!["shop.test/img/".into()]))
        );
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(fields(json!({})), vec![None], "nothing named");
        assert_eq!(
            fields(json!({"tags": ["a"], "purge_everything": true})),
            vec![None],
            "two kinds"
        );
        assert_eq!(fields(json!({"purge_everything": false})), vec![None]);
        assert_eq!(
            fields(json!({"files": ["https://shop.test/", "https://other.test/x"]})),
            vec![Some("files[1]".into())],
            "another zone's host"
        );
        assert_eq!(
            fields(json!({"files": ["ftp://shop.test/x"]})),
            vec![Some("files[0]".into())]
        );
        assert_eq!(
            fields(json!({"prefixes": ["https://shop.test/x"]})),
            vec![Some("prefixes[0]".into())]
        );
        assert_eq!(
            fields(json!({"hosts": ["shop.test/x"]})),
            vec![Some("hosts[0]".into())]
        );
        assert_eq!(
            fields(json!({"hosts": ["cdn.shop.test"]})),
            vec![Some("hosts[0]".into())],
            "the wildcard needs one more label"
        );
        assert_eq!(
            fields(json!({"tags": ["a,b", " "]})),
            vec![Some("tags[0]".into()), Some("tags[1]".into())]
        );
        assert_eq!(
            fields(json!({"tags": ["a\u{7}"]})),
            vec![Some("tags[0]".into())]
        );
        let many: Vec<String> = (0..=MAX_PURGE_ITEMS).map(|i| format!("t{i}")).collect();
        assert_eq!(fields(json!({"tags": many})), vec![Some("tags".into())]);
        assert_eq!(
            fields(json!({"everything": true})),
            vec![Some("everything".into())],
            "an unknown field"
        );
        assert_eq!(fields(json!({"files": [7]})), vec![Some("files[0]".into())]);
    }
}
