//! The objects a PoP follows: zones (the same schema as a PoP's `[[zones]]` table), PoP
//! records, PoP admin token hashes, the CNIs PoPs provision, accounts' tunnels and routes,
//! certificates (their private keys sealed to each PoP) and the ACME challenges PoPs answer,
//! kept by kind and name at a version.

use std::collections::BTreeMap;
use std::fmt;

use edgenet_config::ZoneSection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ObjectError;

/// The kinds of object the control plane stores and streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// What PoPs serve.
    Zone,
    /// Where PoPs are and how to reach them.
    Pop,
    /// An operator token with the `pop-admin` scope, as its hash: PoPs accept it on their
    /// admin listeners.
    PopToken,
    /// A CNI as the PoP that runs its site provisions it.
    Cni,
    /// An account's GRE tunnels and static routes, which every PoP runs (named by account).
    Magic,
    /// A certificate PoPs serve by SNI, its key sealed to each PoP (named by its id).
    Certificate,
    /// An ACME challenge every PoP answers (named by its token).
    Challenge,
    /// An account's worker script: its versions in use, routes, settings and secrets sealed
    /// to each PoP (named `ACCOUNT/SCRIPT`).
    Worker,
    /// A purge of a zone's cached objects on every PoP (named by its id), kept for a day.
    Purge,
}

impl Kind {
    /// Every kind, in the order a snapshot lists them.
    pub const ALL: [Kind; 9] = [
        Kind::Zone,
        Kind::Pop,
        Kind::PopToken,
        Kind::Cni,
        Kind::Magic,
        Kind::Certificate,
        Kind::Challenge,
        Kind::Worker,
        Kind::Purge,
    ];

    /// The kind's name in the store, the stream and the bucket keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::Pop => "pop",
            Kind::PopToken => "pop_token",
            Kind::Cni => "cni",
            Kind::Magic => "magic",
            Kind::Certificate => "certificate",
            Kind::Challenge => "challenge",
            Kind::Worker => "worker",
            Kind::Purge => "purge",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PoP's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PopRecord {
    /// Its name (as `edgenet pop --name`): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Latitude in degrees.
    pub latitude: f64,
    /// Longitude in degrees.
    pub longitude: f64,
    /// Where other PoPs reach it (`host:port`); the first is its backbone address.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `edge` (serves users) or `core` (an upper tier / relay only).
    #[serde(default = "default_role")]
    pub role: String,
}

/// A control-plane token PoPs accept for their admin calls: the SHA-256 of its secret (see
/// [`token_hash`]); the secret itself never leaves the API's answer that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopToken {
    /// `token_hash(secret)`.
    pub hash: String,
}

/// A CNI as a PoP provisions it: where (the PoP, the site, the device and the interface of
/// its port), for whom, and what (the spec, with the MD5 key the spec never serializes).
/// The control plane writes one whenever a CNI, or the site it is at, changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniProvision {
    /// The PoP that runs the site: the only one that acts on it.
    pub pop: String,
    /// The site's data center code.
    pub site: String,
    /// The device.
    pub device: String,
    /// The device's dataplane.
    pub dataplane: edgenet_interconnect::dataplane::Dataplane,
    /// The Linux interface carrying the port on the PoP's node; none for a circuit that rides
    /// a partner's or cloud's port.
    #[serde(default)]
    pub interface: Option<String>,
    /// The account.
    pub account: String,
    /// The interconnect's id.
    pub interconnect: String,
    /// The CNI (its `md5_key` is not serialized: see `md5_key`).
    pub spec: edgenet_interconnect::cni::CniSpec,
    /// The TCP MD5 key of its BGP session.
    #[serde(default)]
    pub md5_key: Option<String>,
}

/// One GRE tunnel as every PoP runs it: its id, the spec, and the MD5 key of its BGP session
/// (which the spec never serializes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelProvision {
    /// The tunnel's id.
    pub id: String,
    /// The tunnel.
    pub spec: edgenet_dataplane::tunnel::GreTunnelSpec,
    /// The TCP MD5 key of its BGP session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5_key: Option<String>,
}

/// An account's tunnels and static routes (next hops resolved to a tunnel or CNI), as every
/// PoP runs them. The control plane writes one whenever any of them changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagicProvision {
    /// The account.
    pub account: String,
    /// Its GRE tunnels, by id.
    #[serde(default)]
    pub tunnels: Vec<TunnelProvision>,
    /// Its static routes.
    #[serde(default)]
    pub routes: Vec<edgenet_dataplane::table::Route>,
    /// Its own prefixes (Magic Transit), which every PoP announces while it has a path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixProvision>,
    /// Its firewall rules and flood protections.
    #[serde(default, skip_serializing_if = "is_default")]
    pub firewall: edgenet_dataplane::firewall::Ruleset,
}

/// A customer prefix as PoPs run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixProvision {
    /// Its id.
    pub id: String,
    /// The prefix.
    pub spec: edgenet_dataplane::prefix::PrefixSpec,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CertificateSource {
    /// Uploaded by the account (Cloudflare's custom certificates): served before an edge
    /// certificate for the same name.
    Custom,
    /// Issued by the control plane for the zone's hostnames (ACME, or its local CA).
    Edge,
}

/// A certificate as PoPs serve it: the chain, the names it is served for, and its private key
/// sealed to each PoP's X25519 key (base64 of `edgenet-certs`' `to_pop` value), so the stream
/// and a NATS bucket never carry a plaintext key. A PoP is sent only its own sealed key (see
/// `StreamMessage::for_pop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateProvision {
    /// The zone it is for.
    pub zone: String,
    /// Custom (uploaded) or edge (issued).
    pub source: CertificateSource,
    /// The hostnames it is served for (names of the zone it covers; `*.x` for a wildcard).
    pub hosts: Vec<String>,
    /// The chain, PEM, leaf first.
    pub chain: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The leaf's validity end, Unix seconds.
    pub not_after: i64,
    /// Its private key sealed to each PoP, by PoP name.
    #[serde(default)]
    pub keys: BTreeMap<String, SealedKey>,
    /// A DER OCSP response to staple (base64), while it is fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<String>,
}

impl CertificateProvision {
    /// What a sealed key's context is (the associated data): the PoP and the certificate, so
    /// a value sealed for one opens for no other.
    pub fn seal_context(pop: &str, id: &str) -> String {
        format!("certificate {id} for {pop}")
    }
}

/// A private key sealed to one PoP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    /// The id of the PoP's public key it is sealed to ([`pop_key_id`]): a PoP whose key
    /// changed sees that this one is not for its present key.
    pub to: String,
    /// The sealed value, base64.
    pub sealed: String,
}

/// A PoP public key's id: its first 8 bytes in hex.
pub fn pop_key_id(public: &[u8; 32]) -> String {
    public[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// An ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChallengeType {
    /// `GET http://DOMAIN/.well-known/acme-challenge/TOKEN` (RFC 8555 section 8.3).
    #[serde(rename = "http-01")]
    Http01,
    /// A TLS handshake offering only `acme-tls/1` for DOMAIN (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// An ACME challenge every PoP answers while the CA validates (named by its token). Nothing
/// in it is secret: the key authorization is what the CA reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeProvision {
    /// The type.
    #[serde(rename = "type")]
    pub kind: ChallengeType,
    /// The domain being validated.
    pub domain: String,
    /// The token (the HTTP-01 path's last segment).
    pub token: String,
    /// `token.thumbprint`: the HTTP-01 body, whose SHA-256 the TLS-ALPN-01 certificate carries.
    pub key_authorization: String,
}

/// A worker script as PoPs run it: the versions its routes use (fetched by hash from the
/// control plane), its routes, settings, and secrets sealed to each PoP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerProvision {
    /// The account.
    pub account: String,
    /// The script's name.
    pub name: String,
    /// The components its routes run, by version number.
    pub versions: BTreeMap<u32, ComponentRef>,
    /// Its routes, each with the version it runs.
    #[serde(default)]
    pub routes: Vec<WorkerRouteProvision>,
    /// Environment variables (`wasi:cli/environment`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Secrets (environment variables too), each sealed to each PoP, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SealedSecret>,
    /// Hosts it may send requests to (served by zones of the PoP).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Limits per request.
    #[serde(default)]
    pub limits: edgenet_config::WorkerLimitsSection,
    /// KV namespaces it opens, by binding (`wasi:keyvalue/store.open(BINDING)`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kv_namespaces: BTreeMap<String, String>,
}

impl WorkerProvision {
    /// What a sealed secret's context is: the PoP, the script and the secret's name.
    pub fn seal_context(pop: &str, script: &str, secret: &str) -> String {
        format!("secret {secret} of worker {script} for {pop}")
    }
}

/// One secret of a worker, sealed to each PoP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// Changes whenever the secret is written (so a seal of an older value is never kept).
    pub revision: String,
    /// The value sealed to each PoP, by PoP name.
    #[serde(default)]
    pub pops: BTreeMap<String, SealedKey>,
}

/// A component by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    /// SHA-256 of the `.wasm`, hex (`GET /v1/workers/components/SHA256`).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One route of a worker: the pattern, the zone whose hostname it is, the version it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRouteProvision {
    /// `host/path` with a trailing `*` for any rest (a zone's `[[zones.workers]]` routes).
    pub pattern: String,
    /// The zone it belongs to.
    pub zone: String,
    /// The version it runs.
    pub version: u32,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// The SHA-256 of a token secret, in lower-case hex: what the control plane stores and PoPs
/// compare with.
pub fn token_hash(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn default_role() -> String {
    "edge".into()
}

/// An object's body as received: its value, or (when it does not decode into its type) the
/// JSON as it came and why, so it is saved and compared as received and the version that
/// carries it is refused by name.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<T> {
    /// The body decoded.
    Ok(T),
    /// The body did not decode.
    Invalid {
        /// The body as received.
        json: serde_json::Value,
        /// What the decoder said.
        reason: String,
    },
}

impl<T> Decoded<T> {
    /// The value, or why there is none.
    pub fn get(&self) -> Result<&T, &str> {
        match self {
            Decoded::Ok(t) => Ok(t),
            Decoded::Invalid { reason, .. } => Err(reason),
        }
    }
}

impl<T: DeserializeOwned> Decoded<T> {
    /// Decodes a JSON body.
    pub fn from_json(json: serde_json::Value) -> Decoded<T> {
        match T::deserialize(&json) {
            Ok(t) => Decoded::Ok(t),
            Err(e) => Decoded::Invalid {
                json,
                reason: e.to_string(),
            },
        }
    }
}

impl<T: Serialize> Serialize for Decoded<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Decoded::Ok(t) => t.serialize(s),
            Decoded::Invalid { json, .. } => json.serialize(s),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Decoded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Decoded::from_json)
    }
}

/// Every object, by kind and name. Kinds this version does not know are left out when read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectSet {
    /// Zones by name.
    #[serde(default)]
    pub zone: BTreeMap<String, Decoded<ZoneSection>>,
    /// PoP records by name.
    #[serde(default)]
    pub pop: BTreeMap<String, Decoded<PopRecord>>,
    /// Control-plane tokens for PoP admin calls, by token id.
    #[serde(default)]
    pub pop_token: BTreeMap<String, Decoded<PopToken>>,
    /// CNIs to provision, by CNI id.
    #[serde(default)]
    pub cni: BTreeMap<String, Decoded<CniProvision>>,
    /// Accounts' tunnels and routes, by account id.
    #[serde(default)]
    pub magic: BTreeMap<String, Decoded<MagicProvision>>,
    /// Certificates, by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificate: BTreeMap<String, Decoded<CertificateProvision>>,
    /// ACME challenges, by token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub challenge: BTreeMap<String, Decoded<ChallengeProvision>>,
    /// Worker scripts, by `ACCOUNT/SCRIPT`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub worker: BTreeMap<String, Decoded<WorkerProvision>>,
    /// Purges, by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub purge: BTreeMap<String, Decoded<crate::purge::PurgeProvision>>,
}

impl ObjectSet {
    /// Every zone, in name order; the first that did not decode is an error naming it.
    pub fn zones(&self) -> Result<Vec<ZoneSection>, ObjectError> {
        self.zone
            .iter()
            .map(|(name, z)| {
                z.get().cloned().map_err(|reason| ObjectError::Undecodable {
                    kind: Kind::Zone,
                    name: name.clone(),
                    reason: reason.to_string(),
                })
            })
            .collect()
    }

    /// The PoP records that decoded, in name order.
    pub fn pops(&self) -> impl Iterator<Item = &PopRecord> {
        self.pop.values().filter_map(|p| p.get().ok())
    }

    /// The hashes of the control-plane tokens PoPs accept for admin calls.
    pub fn pop_token_hashes(&self) -> impl Iterator<Item = &str> {
        self.pop_token
            .values()
            .filter_map(|t| t.get().ok())
            .map(|t| t.hash.as_str())
    }

    /// The CNIs PoP `pop` provisions, by id (those that decoded).
    pub fn cnis_of<'a>(
        &'a self,
        pop: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a CniProvision)> {
        self.cni
            .iter()
            .filter_map(|(id, c)| c.get().ok().map(|c| (id.as_str(), c)))
            .filter(move |(_, c)| c.pop == pop)
    }

    /// Every account's tunnels and routes (those that decoded), by account.
    pub fn magic(&self) -> impl Iterator<Item = &MagicProvision> {
        self.magic.values().filter_map(|m| m.get().ok())
    }

    /// The certificates that decoded, by id.
    pub fn certificates(&self) -> impl Iterator<Item = (&str, &CertificateProvision)> {
        self.certificate
            .iter()
            .filter_map(|(id, c)| c.get().ok().map(|c| (id.as_str(), c)))
    }

    /// The worker scripts that decoded.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerProvision> {
        self.worker.values().filter_map(|w| w.get().ok())
    }

    /// The ACME challenges that decoded.
    pub fn challenges(&self) -> impl Iterator<Item = &ChallengeProvision> {
        self.challenge.values().filter_map(|c| c.get().ok())
    }

    /// Sets (`Some`) or removes (`None`) one object from its JSON body.
    pub fn set_json(&mut self, kind: Kind, name: &str, body: Option<serde_json::Value>) {
        match kind {
            Kind::Zone => set(&mut self.zone, name, body.map(Decoded::from_json)),
            Kind::Pop => set(&mut self.pop, name, body.map(Decoded::from_json)),
            Kind::PopToken => set(&mut self.pop_token, name, body.map(Decoded::from_json)),
            Kind::Cni => set(&mut self.cni, name, body.map(Decoded::from_json)),
            Kind::Magic => set(&mut self.magic, name, body.map(Decoded::from_json)),
            Kind::Certificate => set(&mut self.certificate, name, body.map(Decoded::from_json)),
            Kind::Challenge => set(&mut self.challenge, name, body.map(Decoded::from_json)),
            Kind::Worker => set(&mut self.worker, name, body.map(Decoded::from_json)),
            Kind::Purge => set(&mut self.purge, name, body.map(Decoded::from_json)),
        }
    }

    /// The purges that decode, by id.
    pub fn purges(&self) -> impl Iterator<Item = (&str, &crate::purge::PurgeProvision)> {
        self.purge
            .iter()
            .filter_map(|(id, p)| p.get().ok().map(|p| (id.as_str(), p)))
    }

    /// Whether `other` holds the same objects as this, purges aside: a version that changed
    /// only purges needs nothing else rebuilt.
    pub fn same_but_purges(&self, other: &ObjectSet) -> bool {
        // Destructured, so that a new kind cannot be forgotten here.
        let ObjectSet {
            zone,
            pop,
            pop_token,
            cni,
            magic,
            certificate,
            challenge,
            worker,
            purge: _,
        } = self;
        *zone == other.zone
            && *pop == other.pop
            && *pop_token == other.pop_token
            && *cni == other.cni
            && *magic == other.magic
            && *certificate == other.certificate
            && *challenge == other.challenge
            && *worker == other.worker
    }
}

fn set<T>(map: &mut BTreeMap<String, T>, name: &str, value: Option<T>) {
    match value {
        Some(v) => {
            map.insert(name.to_string(), v);
        }
        None => {
            map.remove(name);
        }
    }
}

/// What a PoP holds from the control plane: the objects at a version (and, over NATS, the
/// bucket revision they came from). Also the shape of the PoP's last-known-good file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Objects {
    /// The version these objects are at.
    pub version: i64,
    /// The NATS bucket revision they came from (0 over HTTP).
    #[serde(default)]
    pub revision: u64,
    /// The objects.
    pub objects: ObjectSet,
}

impl Objects {
    /// Applies one stream message; true when it changed the objects (a snapshot or a delta),
    /// false for a ping.
    pub fn apply(&mut self, msg: crate::StreamMessage) -> bool {
        use crate::{ObjectChange, StreamMessage};
        match msg {
            StreamMessage::Snapshot { version, objects } => {
                self.version = version;
                self.objects = objects;
                self.revision = 0;
                true
            }
            StreamMessage::Delta {
                version, changes, ..
            } => {
                for c in changes {
                    match c.object {
                        ObjectChange::Zone { name, body } => {
                            set(&mut self.objects.zone, &name, body)
                        }
                        ObjectChange::Pop { name, body } => set(&mut self.objects.pop, &name, body),
                        ObjectChange::PopToken { name, body } => {
                            set(&mut self.objects.pop_token, &name, body)
                        }
                        ObjectChange::Cni { name, body } => set(&mut self.objects.cni, &name, body),
                        ObjectChange::Magic { name, body } => {
                            set(&mut self.objects.magic, &name, body)
                        }
                        ObjectChange::Certificate { name, body } => {
                            set(&mut self.objects.certificate, &name, body)
                        }
                        ObjectChange::Challenge { name, body } => {
                            set(&mut self.objects.challenge, &name, body)
                        }
                        ObjectChange::Worker { name, body } => {
                            set(&mut self.objects.worker, &name, body)
                        }
                        ObjectChange::Purge { name, body } => {
                            set(&mut self.objects.purge, &name, body)
                        }
                        // A kind this version does not know: nothing of ours changes.
                        ObjectChange::Other => {}
                    }
                }
                self.version = version;
                true
            }
            StreamMessage::Ping { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_that_does_not_decode_is_kept_with_its_reason() {
        let bad = json!({"name": "z", "hostnames": ["z.test"], "origins": {"servers": []}, "future_field": 1});
        let d: Decoded<ZoneSection> = serde_json::from_value(bad.clone()).unwrap();
        let Decoded::Invalid { json, reason } = &d else {
            panic!("decoded: {d:?}")
        };
        assert_eq!(json, &bad);
        assert!(reason.contains("future_field"), "{reason}");
        assert_eq!(serde_json::to_value(&d).unwrap(), bad, "saved as received");

        let mut set = ObjectSet::default();
        set.zone.insert("z".into(), d);
        let e = set.zones().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("zone \"z\" from the control plane: "),
            "{e}"
        );
    }

    #[test]
    fn the_last_known_good_file_keeps_its_shape() {
        // The shape PoPs wrote before the objects were typed.
        let file = json!({"version": 7, "revision": 3, "objects": {
            "zone": {"z": {"name": "z", "hostnames": ["z.test"], "origins": {"servers": [{"address": "127.0.0.1:1"}]}}},
            "pop": {"p1": {"name": "p1", "latitude": 1.0, "longitude": 2.0, "addresses": ["127.0.0.1:9"], "role": "edge"}},
            "interconnect": {"x": {}}
        }});
        let o: Objects = serde_json::from_value(file).unwrap();
        assert_eq!((o.version, o.revision), (7, 3));
        assert_eq!(o.objects.zones().unwrap()[0].name, "z");
        let pops: Vec<&PopRecord> = o.objects.pops().collect();
        assert_eq!(pops[0].addresses, ["127.0.0.1:9"]);
        let again: Objects = serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(again, o);
    }

    #[test]
    fn a_pop_finds_the_cnis_of_its_sites_with_their_keys() {
        let cni = |pop: &str| {
            json!({"pop": pop, "site": "gru-b", "device": "edge01", "dataplane": "v1",
                "interface": "cni0", "account": "a", "interconnect": "i",
                "spec": {"interconnect": "i", "customer_asn": 64700, "use_case": "peering"},
                "md5_key": "k"})
        };
        let mut objects = Objects::default();
        let change = |name: &str, body: Option<serde_json::Value>| {
            crate::Change::from_json(1, Kind::Cni, name.into(), body)
        };
        let delta = |changes| crate::StreamMessage::Delta {
            from: 0,
            version: 1,
            changes,
        };
        objects.apply(delta(vec![
            change("c1", Some(cni("pop-gru"))),
            change("c2", Some(cni("pop-mia"))),
        ]));
        let mine: Vec<(&str, &CniProvision)> = objects.objects.cnis_of("pop-gru").collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (
                mine[0].0,
                mine[0].1.md5_key.as_deref(),
                mine[0].1.interface.as_deref()
            ),
            ("c1", Some("k"), Some("cni0"))
        );
        let saved: Objects =
            serde_json::from_value(serde_json::to_value(&objects).unwrap()).unwrap();
        assert_eq!(saved, objects, "the key survives the last-known-good file");
        objects.apply(delta(vec![change("c1", None)]));
        assert_eq!(objects.objects.cnis_of("pop-gru").count(), 0);
    }
}
