//! The NATS JetStream layout of the configuration at scale: one key-value bucket where each
//! object is the key `kind.name` with a [`KvValue`] (its version and body, a `null` body for a
//! deletion), an object store of the workers' components by SHA-256 ([`COMPONENTS`]), and
//! acknowledgements published on `edgenet.acks.POP`.

use serde::{Deserialize, Serialize};

use crate::objects::Kind;

/// The key-value bucket.
pub const BUCKET: &str = "edgenet_config";
/// The object store of workers' components: each named by its SHA-256 (hex), written before
/// the worker object that runs it.
pub const COMPONENTS: &str = "edgenet_components";
/// Acknowledgements: `edgenet.acks.POP`, an [`crate::Ack`] as JSON.
pub const ACKS: &str = "edgenet.acks";

/// A bucket value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvValue {
    /// The global version of the object's last change.
    pub version: i64,
    /// Its body, or `None` once deleted.
    pub body: Option<serde_json::Value>,
}

/// The bucket key of an object.
pub fn key(kind: Kind, name: &str) -> String {
    format!("{kind}.{name}")
}

/// The kind and name of a bucket key (`None` for a key of a kind this version does not know).
pub fn parse_key(key: &str) -> Option<(Kind, &str)> {
    let (kind, name) = key.split_once('.')?;
    Some((Kind::from_name(kind)?, name))
}

/// The subject a PoP acknowledges on.
pub fn ack_subject(pop: &str) -> String {
    format!("{ACKS}.{pop}")
}

/// `nats://host:port?domain=hub` → the server URL and the JetStream domain. A PoP that follows
/// through a leaf node names the hub's JetStream domain, since its own leaf has no JetStream.
pub fn split_domain(url: &str) -> (&str, Option<&str>) {
    match url.split_once("?domain=") {
        Some((server, domain)) if !domain.is_empty() => (server, Some(domain)),
        _ => (url, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_domains() {
        assert_eq!(key(Kind::Zone, "shop.v2"), "zone.shop.v2");
        assert_eq!(parse_key("zone.shop.v2"), Some((Kind::Zone, "shop.v2")));
        assert_eq!(parse_key("pop.p1"), Some((Kind::Pop, "p1")));
        assert_eq!(parse_key("tunnel.t"), None);
        assert_eq!(parse_key("nodot"), None);
        assert_eq!(ack_subject("p1"), "edgenet.acks.p1");
        assert_eq!(
            split_domain("nats://leaf:4222?domain=hub"),
            ("nats://leaf:4222", Some("hub"))
        );
        assert_eq!(split_domain("nats://hub:4222"), ("nats://hub:4222", None));
        assert_eq!(split_domain("nats://x?domain="), ("nats://x?domain=", None));
    }
}
