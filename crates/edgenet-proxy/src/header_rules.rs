//! Header rules (set, add, remove), applied in order to a request or response head through
//! [`HeaderEdit`], so the rules (and the forwarding fields, `forwarding`) do not depend on the
//! HTTP engine's types: the adapter implements it for the engine's heads.

use edgenet_config::{HeaderAction, HeaderRule};
use http::{HeaderName, HeaderValue};

/// Reading and editing a request or response head.
pub trait HeaderEdit {
    /// Every value of `name`.
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a HeaderValue>;
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: &HeaderName, value: &HeaderValue);
    /// Appends `value` as another value of `name`.
    fn add(&mut self, name: &HeaderName, value: &HeaderValue);
    /// Removes every value of `name`.
    fn remove(&mut self, name: &HeaderName);
}

impl HeaderEdit for http::HeaderMap {
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a HeaderValue> {
        self.get_all(name).iter()
    }
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.insert(name.clone(), value.clone());
    }
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.append(name.clone(), value.clone());
    }
    fn remove(&mut self, name: &HeaderName) {
        http::HeaderMap::remove(self, name);
    }
}

/// Applies `rules` to `headers` in order.
pub fn apply_header_rules<H: HeaderEdit>(rules: &[HeaderRule], headers: &mut H) {
    for rule in rules {
        match (rule.action, &rule.value) {
            (HeaderAction::Set, Some(v)) => headers.set(&rule.name, v),
            (HeaderAction::Add, Some(v)) => headers.add(&rule.name, v),
            (HeaderAction::Remove, _) => headers.remove(&rule.name),
            // Validation guarantees set and add carry a value.
            (HeaderAction::Set | HeaderAction::Add, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn rule(action: HeaderAction, name: &str, value: Option<&str>) -> HeaderRule {
        HeaderRule {
            action,
            name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value: value.map(|v| HeaderValue::from_str(v).unwrap()),
        }
    }

    #[test]
    fn rules_apply_in_order() {
        let mut h = HeaderMap::new();
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.append("server", "origin".parse().unwrap());
        let rules = vec![
            rule(HeaderAction::Add, "x-a", Some("3")),
            rule(HeaderAction::Remove, "server", None),
            rule(HeaderAction::Set, "x-b", Some("b")),
            rule(HeaderAction::Set, "x-b", Some("c")),
            rule(HeaderAction::Add, "x-c", Some("c1")),
        ];
        apply_header_rules(&rules, &mut h);
        let a: Vec<_> = h
            .get_all("x-a")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(a, ["1", "2", "3"]);
        assert!(h.get("server").is_none());
        let b: Vec<_> = h.get_all("x-b").iter().collect();
        assert_eq!(b, ["c"]);
        assert_eq!(h.get("x-c").unwrap(), "c1");
    }

    #[test]
    fn set_replaces_all_values() {
        let mut h = HeaderMap::new();
        h.append("cache-control", "a".parse().unwrap());
        h.append("cache-control", "b".parse().unwrap());
        apply_header_rules(
            &[rule(HeaderAction::Set, "cache-control", Some("no-store"))],
            &mut h,
        );
        let all: Vec<_> = h.get_all("cache-control").iter().collect();
        assert_eq!(all, ["no-store"]);
    }
}
