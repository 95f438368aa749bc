//! The configuration stream: `GET /v1/stream?pop=NAME&since=VERSION` answers with one JSON
//! [`StreamMessage`] per line (a snapshot or the changes since `since`, then each new version,
//! and a ping every [`PING_EVERY`]); a PoP reports each version it applied or refused with an
//! [`Ack`] (`POST /v1/pops/NAME/ack`, or on NATS).

use std::time::Duration;

use edgenet_config::ZoneSection;
use serde::{Deserialize, Serialize};

use crate::objects::{
    CertificateProvision, ChallengeProvision, CniProvision, Decoded, Kind, MagicProvision,
    ObjectSet, PopRecord, PopToken, WorkerProvision,
};

/// How often an idle stream sends a ping; a follower that hears nothing for three of these
/// takes the stream for dead.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamMessage {
    /// Everything, as of `version`.
    Snapshot {
        /// The version the objects are at (or newer: changes are idempotent).
        version: i64,
        /// Kind to name to body.
        objects: ObjectSet,
    },
    /// The changes from `from` (exclusive) to `version` (inclusive).
    Delta {
        /// The version the receiver had.
        from: i64,
        /// The version after these changes.
        version: i64,
        /// The changes, in order.
        changes: Vec<Change>,
    },
    /// Nothing new; the current version.
    Ping {
        /// The current version.
        version: i64,
    },
}

impl StreamMessage {
    /// The message as PoP `pop` gets it: the MD5 key of a CNI another PoP runs is left out
    /// (every PoP learns which CNIs are not its own, so one that moves away is dropped, but a
    /// session's secret reaches only the PoP that runs it), and so are the certificate keys
    /// sealed to other PoPs, and workers' secrets sealed to other PoPs.
    pub fn for_pop(mut self, pop: &str) -> StreamMessage {
        let redact = |c: &mut Decoded<CniProvision>| {
            if let Decoded::Ok(c) = c {
                if c.pop != pop {
                    c.md5_key = None;
                }
            }
        };
        let own_key = |c: &mut Decoded<CertificateProvision>| {
            if let Decoded::Ok(c) = c {
                c.keys.retain(|p, _| p == pop);
            }
        };
        let own_secrets = |w: &mut Decoded<WorkerProvision>| {
            if let Decoded::Ok(w) = w {
                for sealed in w.secrets.values_mut() {
                    sealed.pops.retain(|p, _| p == pop);
                }
            }
        };
        match &mut self {
            StreamMessage::Snapshot { objects, .. } => {
                objects.cni.values_mut().for_each(redact);
                objects.certificate.values_mut().for_each(own_key);
                objects.worker.values_mut().for_each(own_secrets);
            }
            StreamMessage::Delta { changes, .. } => {
                for c in changes {
                    match &mut c.object {
                        ObjectChange::Cni { body: Some(b), .. } => redact(b),
                        ObjectChange::Certificate { body: Some(b), .. } => own_key(b),
                        ObjectChange::Worker { body: Some(b), .. } => own_secrets(b),
                        _ => {}
                    }
                }
            }
            StreamMessage::Ping { .. } => {}
        }
        self
    }

    /// The version the receiver is at once it has taken this message.
    pub fn version(&self) -> i64 {
        match self {
            StreamMessage::Snapshot { version, .. }
            | StreamMessage::Delta { version, .. }
            | StreamMessage::Ping { version } => *version,
        }
    }
}

/// One entry of the change log: an object created or replaced (a body) or deleted (none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The global version this change made.
    pub version: i64,
    /// What changed (`kind`, `name` and `body` on the wire).
    #[serde(flatten)]
    pub object: ObjectChange,
}

/// The object a change is about, by kind.
// A change is read once and applied; boxing the zone would not save anything worth a pointer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectChange {
    /// A zone.
    Zone {
        /// Its name.
        name: String,
        /// Its new body, or none when it was deleted.
        body: Option<Decoded<ZoneSection>>,
    },
    /// A PoP record.
    Pop {
        /// Its name.
        name: String,
        /// Its new body, or none when it was deleted.
        body: Option<Decoded<PopRecord>>,
    },
    /// A control-plane token for PoP admin calls.
    PopToken {
        /// The token's id.
        name: String,
        /// Its hash, or none when it was revoked.
        body: Option<Decoded<PopToken>>,
    },
    /// A CNI to provision.
    Cni {
        /// The CNI's id.
        name: String,
        /// What to provision, or none when it was deleted.
        body: Option<Decoded<CniProvision>>,
    },
    /// An account's tunnels and routes.
    Magic {
        /// The account's id.
        name: String,
        /// Its tunnels and routes, or none when it has none left.
        body: Option<Decoded<MagicProvision>>,
    },
    /// A certificate.
    Certificate {
        /// Its id.
        name: String,
        /// The certificate, or none when it was deleted.
        body: Option<Decoded<CertificateProvision>>,
    },
    /// An ACME challenge.
    Challenge {
        /// Its token.
        name: String,
        /// The challenge, or none when the CA is done with it.
        body: Option<Decoded<ChallengeProvision>>,
    },
    /// A worker script.
    Worker {
        /// `ACCOUNT/SCRIPT`.
        name: String,
        /// The script, or none when it was deleted.
        body: Option<Decoded<WorkerProvision>>,
    },
    /// A purge.
    Purge {
        /// Its id.
        name: String,
        /// The purge, or none when it was pruned.
        body: Option<Decoded<crate::purge::PurgeProvision>>,
    },
    /// A kind this version does not know (from a newer control plane): skipped.
    #[serde(other)]
    Other,
}

impl Change {
    /// A change from the store's view of it: the kind, the name and the JSON body.
    pub fn from_json(
        version: i64,
        kind: Kind,
        name: String,
        body: Option<serde_json::Value>,
    ) -> Change {
        let object = match kind {
            Kind::Zone => ObjectChange::Zone {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::Pop => ObjectChange::Pop {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::PopToken => ObjectChange::PopToken {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::Cni => ObjectChange::Cni {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::Magic => ObjectChange::Magic {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::Certificate => ObjectChange::Certificate {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::Challenge => ObjectChange::Challenge {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::Worker => ObjectChange::Worker {
                name,
                body: body.map(Decoded::from_json),
            },
            Kind::Purge => ObjectChange::Purge {
                name,
                body: body.map(Decoded::from_json),
            },
        };
        Change { version, object }
    }
}

/// A PoP's report on one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ack {
    /// The version.
    pub version: i64,
    /// Applied (true) or refused (false).
    pub ok: bool,
    /// Why it was refused.
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Objects;
    use serde_json::json;

    #[test]
    fn a_cnis_key_reaches_only_the_pop_that_runs_it() {
        let cni = |pop: &str| {
            json!({"pop": pop, "site": "gru-b", "device": "edge01", "dataplane": "v1",
                "interface": "cni0", "account": "a", "interconnect": "i", "md5_key": "secret",
                "spec": {"interconnect": "i", "customer_asn": 64700, "use_case": "peering"}})
        };
        let delta: StreamMessage = serde_json::from_value(json!({"type": "delta", "from": 1,
            "version": 3, "changes": [
                {"version": 2, "kind": "cni", "name": "mine", "body": cni("p1")},
                {"version": 3, "kind": "cni", "name": "theirs", "body": cni("p2")}]}))
        .unwrap();
        let keys = |m: &StreamMessage| -> Vec<Option<String>> {
            let StreamMessage::Delta { changes, .. } = m else {
                panic!()
            };
            changes
                .iter()
                .map(|c| match &c.object {
                    ObjectChange::Cni { body: Some(b), .. } => b.get().unwrap().md5_key.clone(),
                    _ => panic!(),
                })
                .collect()
        };
        assert_eq!(
            keys(&delta.clone().for_pop("p1")),
            [Some("secret".into()), None]
        );
        assert_eq!(keys(&delta.for_pop("p3")), [None, None]);
        let mut objects = ObjectSet::default();
        objects.set_json(Kind::Cni, "theirs", Some(cni("p2")));
        let snap = StreamMessage::Snapshot {
            version: 3,
            objects,
        }
        .for_pop("p1");
        let StreamMessage::Snapshot { objects, .. } = snap else {
            panic!()
        };
        let c = objects.cni["theirs"].get().unwrap();
        assert_eq!(
            (c.pop.as_str(), c.md5_key.as_deref()),
            ("p2", None),
            "known, without its key"
        );
    }

    #[test]
    fn lines_round_trip_in_the_wire_shape() {
        let zone = json!({"name": "z", "hostnames": ["z.test"], "origins": {"servers": [{"address": "127.0.0.1:1"}]}});
        let line = json!({"type": "delta", "from": 1, "version": 3, "changes": [
            {"version": 2, "kind": "zone", "name": "z", "body": zone},
            {"version": 3, "kind": "pop", "name": "p", "body": null},
        ]});
        let m: StreamMessage = serde_json::from_value(line).unwrap();
        let StreamMessage::Delta { changes, .. } = &m else {
            panic!("{m:?}")
        };
        assert!(
            matches!(&changes[0].object, ObjectChange::Zone { name, body: Some(Decoded::Ok(z)) } if name == "z" && z.hostnames == ["z.test"])
        );
        assert_eq!(
            changes[1].object,
            ObjectChange::Pop {
                name: "p".into(),
                body: None
            }
        );
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(
            back["changes"][1],
            json!({"version": 3, "kind": "pop", "name": "p", "body": null})
        );
        assert_eq!(back["changes"][0]["kind"], "zone");
        assert_eq!(m.version(), 3);
    }

    #[test]
    fn a_delta_applies_in_order_and_unknown_kinds_are_skipped() {
        let mut o = Objects::default();
        let zone = |rule: &str| {
            json!({"name": "z", "hostnames": ["z.test"],
            "origins": {"servers": [{"address": "127.0.0.1:1"}]},
            "response_headers": [{"action": "set", "name": "x-rule", "value": rule}]})
        };
        let line = json!({"type": "delta", "from": 0, "version": 4, "changes": [
            {"version": 1, "kind": "zone", "name": "z", "body": zone("a")},
            {"version": 2, "kind": "interconnect", "name": "x", "body": {"anything": true}},
            {"version": 3, "kind": "zone", "name": "y", "body": zone("b")},
            {"version": 4, "kind": "zone", "name": "y", "body": null},
        ]});
        assert!(o.apply(serde_json::from_value(line).unwrap()));
        assert_eq!(o.version, 4);
        assert_eq!(o.objects.zone.keys().collect::<Vec<_>>(), ["z"]);
        assert!(
            !o.apply(StreamMessage::Ping { version: 4 }),
            "a ping changes nothing"
        );

        let snapshot = StreamMessage::Snapshot {
            version: 9,
            objects: ObjectSet::default(),
        };
        o.revision = 5;
        assert!(o.apply(snapshot));
        assert_eq!((o.version, o.revision, o.objects.zone.len()), (9, 0, 0));
    }
}
