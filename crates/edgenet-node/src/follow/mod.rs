//! The PoP's side of the control plane: follow its configuration stream (over HTTP, [`http`],
//! or a NATS JetStream bucket at scale, [`nats`]), apply each version whole through the node
//! ([`Applier`]), report it on the report channel (the acknowledgement, each zone's state,
//! periodic counters, and the interconnects' links at once when they change: [`Reports`]), keep the last applied version on disk (the
//! last-known-good file a restart serves from, [`pop`]), and get the PoP's backbone
//! certificate from the control plane's CA. Beside it, the PoP's copy of the edge key-value
//! store follows a stream of its own ([`kv`]).
//!
//! A follower keeps the *desired* objects (every change received, applied or not) apart from
//! what was applied: a refused version stays refused until a later change fixes it, and the
//! node keeps serving the last good one meanwhile.

pub mod http;
pub mod kv;
pub mod nats;
pub mod pop;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edgenet_protocol::{
    Ack, CertificateRequest, Counters, Envelope, Issued, LinkState, ObjectError, ObjectReport,
    ObjectState, Objects, Report, ReportedKind,
};

/// Why a version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// An object did not decode.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The configuration it makes did not validate or cannot be taken without a restart:
    /// every reason.
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>),
}

/// Why following broke off (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The control plane could not be reached.
    #[error("connect: {0}")]
    Connect(String),
    /// It answered with an error status.
    #[error("{status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// Reading the stream failed.
    #[error("read: {0}")]
    Read(String),
    /// A line that is not a stream message.
    #[error("a stream line that is not a message: {0}")]
    Decode(#[from] serde_json::Error),
    /// Nothing came for three ping intervals.
    #[error("no message within three ping intervals")]
    Silent,
    /// The control plane ended the stream.
    #[error("the control plane closed the stream")]
    Closed,
    /// NATS or its JetStream failed.
    #[error("NATS: {0}")]
    Nats(String),
}

/// What the node does with a version: apply it whole, or refuse it (and keep what it had).
pub trait Applier: Send + Sync + 'static {
    /// Applies the objects.
    fn apply(&self, objects: &Objects) -> Result<(), ApplyError>;

    /// The follower has caught up: everything the control plane had when it connected is
    /// applied.
    fn synced(&self) {}

    /// The PoP's X25519 public key for sealed certificate keys (base64), to register.
    fn keys(&self) -> Option<String> {
        None
    }

    /// The states of objects other than zones after the last version (the certificates).
    fn object_states(&self) -> Vec<ObjectReport> {
        Vec::new()
    }

    /// The node's counters, for the report channel.
    fn counters(&self) -> Counters {
        Counters::default()
    }

    /// The interconnects' links and sessions, when the node carries any.
    fn links(&self) -> Vec<LinkState> {
        Vec::new()
    }

    /// Every tunnel's state, when the node runs tunnels.
    fn tunnels(&self) -> Option<Vec<edgenet_protocol::TunnelState>> {
        None
    }

    /// Every customer prefix's state and every firewall rule's counters, when the node runs
    /// tunnels.
    fn magic(
        &self,
    ) -> Option<(
        Vec<edgenet_protocol::PrefixState>,
        Vec<edgenet_protocol::RuleState>,
    )> {
        None
    }

    /// Woken when a link, a tunnel or a session changed: its report goes at once.
    fn links_changed(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// The links, tunnels and Magic Transit reports, when there is something to say (tunnels and
/// prefixes always, when the node runs them: the lists are complete, so an empty one says
/// they are gone).
pub fn links_report(applier: &dyn Applier) -> Vec<Report> {
    let links = applier.links();
    let mut out: Vec<Report> = (!links.is_empty())
        .then(|| Report::Links {
            at_ms: crate::unix_ms(std::time::SystemTime::now()),
            links,
        })
        .into_iter()
        .collect();
    out.extend(applier.tunnels().map(|tunnels| Report::Tunnels {
        at_ms: crate::unix_ms(std::time::SystemTime::now()),
        tunnels,
    }));
    out.extend(applier.magic().map(|(prefixes, rules)| Report::Magic {
        at_ms: crate::unix_ms(std::time::SystemTime::now()),
        prefixes,
        rules,
    }));
    out
}

/// Waits until `changed` wakes (for ever when there is none).
pub async fn links_changed(changed: &Option<Arc<tokio::sync::Notify>>) {
    match changed {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// What a follower reports: the objects it last applied (what runs), and the state of each
/// zone after each version.
#[derive(Debug, Default)]
pub struct Reports {
    /// The objects running now.
    pub applied: Objects,
    /// The zones' states after the last version.
    pub zones: Vec<ObjectReport>,
}

impl Reports {
    /// Starts from what the node runs (its last-known-good objects).
    pub fn new(running: Option<&Objects>) -> Reports {
        let mut r = Reports::default();
        if let Some(o) = running {
            r.applied = o.clone();
            r.zones = zone_states(o, &r.applied, None);
        }
        r
    }

    /// Takes a version's outcome: the acknowledgement and every zone's and certificate's
    /// state, to send.
    pub fn outcome(&mut self, desired: &Objects, ack: &Ack, applier: &dyn Applier) -> Vec<Report> {
        if ack.ok {
            self.applied = desired.clone();
        }
        let refused = (!ack.ok).then(|| ack.error.clone().unwrap_or_default());
        self.zones = zone_states(desired, &self.applied, refused);
        vec![Report::Ack(ack.clone()), self.objects(applier)]
    }

    /// The zones' and the applier's other objects' states as a report (every one the PoP
    /// runs).
    pub fn objects(&self, applier: &dyn Applier) -> Report {
        let mut objects = self.zones.clone();
        objects.extend(applier.object_states());
        Report::Objects {
            at_ms: crate::unix_ms(std::time::SystemTime::now()),
            objects,
            complete: true,
        }
    }

    /// The periodic report: the PoP's keys, the objects' states again, the counters and the
    /// links.
    pub fn periodic(&self, applier: &dyn Applier) -> Vec<Report> {
        let mut r: Vec<Report> = applier
            .keys()
            .map(|certificates| Report::Keys { certificates })
            .into_iter()
            .collect();
        r.extend([
            self.objects(applier),
            Report::Counters {
                at_ms: crate::unix_ms(std::time::SystemTime::now()),
                counters: applier.counters(),
            },
        ]);
        r.extend(links_report(applier));
        r
    }
}

/// Each zone's state: applied at the running version when it runs as desired; refused at the
/// desired version (with why) when the desired version was refused and changed it. A zone the
/// refused version deleted still runs.
fn zone_states(desired: &Objects, applied: &Objects, refused: Option<String>) -> Vec<ObjectReport> {
    let running = |name: &String| ObjectReport {
        kind: ReportedKind::Zone,
        name: name.clone(),
        state: ObjectState::Applied,
        version: applied.version,
        detail: None,
    };
    let Some(error) = refused else {
        return desired.objects.zone.keys().map(running).collect();
    };
    let mut names: Vec<&String> = desired.objects.zone.keys().collect();
    names.extend(applied.objects.zone.keys());
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let (want, have) = (
                desired.objects.zone.get(name),
                applied.objects.zone.get(name),
            );
            if want == have || want.is_none() {
                running(name)
            } else {
                ObjectReport {
                    kind: ReportedKind::Zone,
                    name: name.clone(),
                    state: ObjectState::Refused,
                    version: desired.version,
                    detail: Some(error.clone()),
                }
            }
        })
        .collect()
}

/// Where to follow from.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The control plane's base URL (`http://127.0.0.1:7070`), or `nats://host:port` (with
    /// `?domain=hub` through a leaf node) to watch its bucket.
    pub control: String,
    /// A token with the `pop` scope (HTTP only).
    pub token: String,
    /// This PoP's registered name.
    pub pop: String,
    /// The last-known-good file.
    pub state_file: PathBuf,
}

/// The last applied objects saved by a previous run, if any.
pub fn load_state(path: &Path) -> Option<Objects> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable last-known-good file");
            None
        }
    }
}

/// Writes the applied objects (temporary file, then rename: never half a file), readable by
/// the PoP's user only: it holds the certificates' keys (sealed to the PoP) and CNIs' MD5 keys.
pub fn save_state(path: &Path, objects: &Objects) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(objects)?;
    crate::tls::write_file(path, &bytes, 0o600)
}

/// Applies the desired objects; on success saves them as the last-known-good. Returns the
/// acknowledgement to send.
pub fn apply_and_save(applier: &dyn Applier, desired: &Objects, state_file: &Path) -> Ack {
    let started = std::time::Instant::now();
    match applier.apply(desired) {
        Ok(()) => {
            if let Err(e) = save_state(state_file, desired) {
                tracing::error!(path = %state_file.display(), error = %e, "cannot save the last-known-good configuration");
            }
            tracing::info!(version = desired.version, took = ?started.elapsed(), "applied configuration from the control plane");
            Ack {
                version: desired.version,
                ok: true,
                error: None,
            }
        }
        Err(e) => {
            tracing::error!(version = desired.version, error = %e, "refused configuration from the control plane; serving the previous one");
            Ack {
                version: desired.version,
                ok: false,
                error: Some(e.to_string()),
            }
        }
    }
}

/// The files of a PoP's backbone identity, beside its last-known-good file.
pub fn backbone_files(state_file: &Path, pop: &str) -> edgenet_proxy::backbone::BackboneFiles {
    let dir = state_file.parent().unwrap_or(Path::new("."));
    edgenet_proxy::backbone::BackboneFiles {
        key: dir.join(format!("{pop}.backbone.key")),
        cert: dir.join(format!("{pop}.backbone.pem")),
        ca: dir.join(format!("{pop}.backbone-ca.pem")),
    }
}

/// The PoP's key pair for the certificates' private keys sealed to it
/// ([`edgenet_certs::to_pop`]): read from `NAME.certs.key` beside its last-known-good file
/// (the secret in hex, mode 0600), or made and written there the first time, so the keys it
/// was sent still open after a restart.
pub fn certificates_key(
    state_file: &Path,
    pop: &str,
) -> anyhow::Result<edgenet_certs::to_pop::PopKey> {
    let dir = state_file.parent().unwrap_or(Path::new("."));
    let path = dir.join(format!("{pop}.certs.key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            let bytes: Option<[u8; 32]> = (text.len() == 64)
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .flatten()
                .and_then(|v| v.try_into().ok());
            let secret = bytes.ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: not 64 hex digits (the PoP's certificates key)",
                    path.display()
                )
            })?;
            Ok(edgenet_certs::to_pop::PopKey::from_secret(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = edgenet_certs::to_pop::PopKey::generate()
                .map_err(|e| anyhow::anyhow!("the PoP's certificates key: {e}"))?;
            let hex: String = key.secret().iter().map(|b| format!("{b:02x}")).collect();
            crate::tls::write_file(&path, hex.as_bytes(), 0o600)?;
            tracing::info!(path = %path.display(), "made the PoP's certificates key");
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// Where a PoP keeps the worker components it fetched (`NAME.components/SHA256.wasm`, beside
/// its last-known-good file, so a restart with the control plane down still has them).
pub fn components_dir(state_file: &Path, pop: &str) -> PathBuf {
    beside(state_file, &format!("{pop}.components"))
}

/// The PoP's copy of the edge key-value store, beside its state file.
pub fn kv_file(state_file: &Path, pop: &str) -> PathBuf {
    beside(state_file, &format!("{pop}.kv.redb"))
}

/// `name` in the state file's directory.
fn beside(state_file: &Path, name: &str) -> PathBuf {
    state_file.parent().unwrap_or(Path::new(".")).join(name)
}

/// The file of component `sha256` in `dir`.
pub fn component_file(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}.wasm"))
}

/// Fetches every component the workers of `objects` run that is not on disk yet, from
/// `GET /v1/workers/components/SHA256`, and keeps it once its SHA-256 is the one asked for.
/// What cannot be fetched now is said in the log and tried again at the next version.
pub async fn fetch_components(client: &reqwest::Client, opts: &FollowOptions, objects: &Objects) {
    let dir = components_dir(&opts.state_file, &opts.pop);
    let base = opts.control.trim_end_matches('/');
    fetch_components_with(&dir, objects, |sha256| async move {
        let resp = client
            .get(format!("{base}/v1/workers/components/{sha256}"))
            .bearer_auth(&opts.token)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{}", resp.status()));
        }
        Ok(resp.bytes().await.map_err(|e| e.to_string())?.to_vec())
    })
    .await
}

/// Fetches each component the workers of `objects` run that is not in `dir` yet with `fetch`
/// (its bytes, by SHA-256), and keeps it once its SHA-256 is the one asked for. What cannot be
/// fetched now is said in the log and tried again at the next version.
pub async fn fetch_components_with<F, Fut>(dir: &Path, objects: &Objects, fetch: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, String>>,
{
    use sha2::Digest;
    let wanted: std::collections::BTreeSet<&str> = objects
        .objects
        .workers()
        .flat_map(|w| w.versions.values().map(|c| c.sha256.as_str()))
        .collect();
    for sha256 in wanted {
        let file = component_file(dir, sha256);
        if file.exists() {
            continue;
        }
        let started = std::time::Instant::now();
        let got = async {
            let body = fetch(sha256.to_string()).await?;
            let digest: String = sha2::Sha256::digest(&body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if digest != sha256 {
                return Err(format!("the body's SHA-256 is {digest}"));
            }
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            crate::tls::write_file(&file, &body, 0o644).map_err(|e| e.to_string())?;
            Ok(body.len())
        };
        match got.await {
            Ok(size) => {
                tracing::info!(%sha256, size, took = ?started.elapsed(), "worker component fetched")
            }
            Err(e) => tracing::warn!(%sha256, error = %e, "cannot fetch a worker component"),
        }
    }
}

/// Makes sure the PoP has a backbone certificate signed by the control plane's CA: a new key
/// (kept on the PoP, mode 0600) and a CSR sent to `POST /v1/pops/NAME/certificate`.
pub async fn ensure_backbone_certificate(
    client: &reqwest::Client,
    opts: &FollowOptions,
) -> Result<(), String> {
    let files = backbone_files(&opts.state_file, &opts.pop);
    if files.key.exists() && files.cert.exists() && files.ca.exists() {
        return Ok(());
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(vec![edgenet_config::pop_dns_name(&opts.pop)])
        .map_err(|e| e.to_string())?;
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    let url = format!(
        "{}/v1/pops/{}/certificate",
        opts.control.trim_end_matches('/'),
        opts.pop
    );
    let body = CertificateRequest {
        csr: csr.pem().map_err(|e| e.to_string())?,
    };
    let resp = client
        .post(&url)
        .bearer_auth(&opts.token)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
    let issued = serde_json::from_str::<Envelope<Issued>>(&text)
        .ok()
        .and_then(|e| e.result);
    let Some(issued) = issued else {
        return Err(format!("{url}: {status}: {text}"));
    };
    crate::tls::write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| e.to_string())?;
    std::fs::write(&files.cert, issued.certificate)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    std::fs::write(&files.ca, issued.ca).map_err(|e| format!("{}: {e}", files.ca.display()))?;
    tracing::info!(cert = %files.cert.display(), "backbone certificate issued by the control plane");
    Ok(())
}

/// An HTTP client for the control plane.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .expect("an HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificates_key_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("edgenet-certs-key-{}", std::process::id()));
        let state = dir.join("state.json");
        let made = certificates_key(&state, "pop-a").unwrap();
        let path = dir.join("pop-a.certs.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = certificates_key(&state, "pop-a").unwrap();
        assert_eq!(again.public(), made.public());
        std::fs::write(&path, "not hex").unwrap();
        let err = certificates_key(&state, "pop-a").unwrap_err().to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    use std::sync::Mutex;

    struct Recording {
        refuse: bool,
        seen: Mutex<Vec<i64>>,
    }

    impl Applier for Recording {
        fn apply(&self, objects: &Objects) -> Result<(), ApplyError> {
            self.seen.lock().unwrap().push(objects.version);
            if self.refuse {
                return Err(ApplyError::Refused(vec![
                    "a: bad".into(),
                    "b: worse".into(),
                ]));
            }
            Ok(())
        }
    }

    #[test]
    fn an_applied_version_is_saved_and_a_refused_one_is_not() {
        let dir = std::env::temp_dir().join(format!("edgenet-lkg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pop.control-state.json");
        let objects = Objects {
            version: 4,
            ..Objects::default()
        };
        let ok = Recording {
            refuse: false,
            seen: Mutex::new(Vec::new()),
        };
        assert_eq!(
            apply_and_save(&ok, &objects, &file),
            Ack {
                version: 4,
                ok: true,
                error: None
            }
        );
        assert_eq!(load_state(&file).unwrap().version, 4);

        let refusing = Recording {
            refuse: true,
            seen: Mutex::new(Vec::new()),
        };
        let later = Objects {
            version: 5,
            ..Objects::default()
        };
        let ack = apply_and_save(&refusing, &later, &file);
        assert_eq!(ack.error.as_deref(), Some("a: bad; b: worse"));
        assert!(!ack.ok);
        assert_eq!(
            load_state(&file).unwrap().version,
            4,
            "the last good one stays"
        );
        assert_eq!(*refusing.seen.lock().unwrap(), [5]);

        std::fs::write(&file, b"{not json").unwrap();
        assert_eq!(load_state(&file), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn objects(version: i64, zones: &[(&str, &str)]) -> Objects {
        let mut o = Objects {
            version,
            ..Objects::default()
        };
        for (name, origin) in zones {
            let body = serde_json::json!({"name": name, "hostnames": [format!("{name}.test")],
                "origins": {"servers": [{"address": origin}]}});
            o.objects
                .set_json(edgenet_protocol::Kind::Zone, name, Some(body));
        }
        o
    }

    #[test]
    fn zones_are_reported_applied_or_refused_by_what_changed() {
        let mut r = Reports::new(Some(&objects(3, &[("a", "127.0.0.1:1")])));
        assert_eq!(r.zones[0].state, ObjectState::Applied);
        assert_eq!(r.zones[0].version, 3);
        let v4 = objects(4, &[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]);
        let ok = Ack {
            version: 4,
            ok: true,
            error: None,
        };
        let none = Recording {
            refuse: false,
            seen: Mutex::new(Vec::new()),
        };
        let sent = r.outcome(&v4, &ok, &none);
        assert_eq!(sent[0], Report::Ack(ok));
        let states: Vec<(&str, ObjectState, i64)> = r
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.state, z.version))
            .collect();
        assert_eq!(
            states,
            [
                ("a", ObjectState::Applied, 4),
                ("b", ObjectState::Applied, 4)
            ]
        );
        // Version 5 changes b (refused) and deletes a: a still runs, b runs its version 4.
        let v5 = objects(5, &[("b", "nope")]);
        let refused = Ack {
            version: 5,
            ok: false,
            error: Some("zones[0].origins: bad".into()),
        };
        r.outcome(&v5, &refused, &none);
        let states: Vec<(&str, ObjectState, i64, Option<&str>)> = r
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.state, z.version, z.detail.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                ("a", ObjectState::Applied, 4, None),
                ("b", ObjectState::Refused, 5, Some("zones[0].origins: bad"))
            ]
        );
        assert_eq!(r.applied.version, 4, "what runs is still version 4");
    }

    #[test]
    fn identity_files_sit_beside_the_state_file() {
        let f = backbone_files(Path::new("/var/lib/edgenet/p1.control-state.json"), "p1");
        assert_eq!(f.key, Path::new("/var/lib/edgenet/p1.backbone.key"));
        assert_eq!(f.cert, Path::new("/var/lib/edgenet/p1.backbone.pem"));
        assert_eq!(f.ca, Path::new("/var/lib/edgenet/p1.backbone-ca.pem"));
    }
}
