//! The PoP's side of the configuration stream: connect, apply each version atomically through
//! the node's [`Applier`], acknowledge or refuse it, keep the last applied version on disk, and
//! reconnect (with backoff) from the last version received when the stream breaks.
//!
//! The follower keeps the *desired* objects (every change received, applied or not) apart from
//! what was applied: a refused version stays refused until a later change fixes it, and the
//! node keeps serving the last good one meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stream::{Ack, StreamMessage, PING_EVERY};

/// Kind to name to body, at a version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Objects {
    /// The version these objects are at.
    pub version: i64,
    /// The NATS bucket revision they came from (0 over HTTP).
    #[serde(default)]
    pub revision: u64,
    /// Kind (`zone`, `pop`) to name to body.
    pub objects: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Objects {
    /// The bodies of one kind, in name order.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.objects
            .get(kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn apply(&mut self, msg: StreamMessage) -> bool {
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
                    let kind = self.objects.entry(c.kind).or_default();
                    match c.body {
                        Some(b) => {
                            kind.insert(c.name, b);
                        }
                        None => {
                            kind.remove(&c.name);
                        }
                    }
                }
                self.version = version;
                true
            }
            StreamMessage::Ping { .. } => false,
        }
    }
}

/// What the node does with a version: apply it whole, or refuse it with the reason (and keep
/// what it had).
pub trait Applier: Send + Sync + 'static {
    /// Applies the objects.
    fn apply(&self, objects: &Objects) -> Result<(), String>;
}

/// Where to follow from.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The control plane's base URL (`http://127.0.0.1:7070`).
    pub control: String,
    /// A token with the `pop` scope.
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

/// Writes the applied objects (temporary file, then rename: never half a file).
pub fn save_state(path: &Path, objects: &Objects) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(objects).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
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
                error: Some(e),
            }
        }
    }
}

/// The files of a PoP's backbone identity, beside its last-known-good file: key, certificate,
/// and the CA that signed it.
pub fn backbone_files(state_file: &Path, pop: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = state_file.parent().unwrap_or(Path::new("."));
    (
        dir.join(format!("{pop}.backbone.key")),
        dir.join(format!("{pop}.backbone.pem")),
        dir.join(format!("{pop}.backbone-ca.pem")),
    )
}

/// Makes sure the PoP has a backbone certificate signed by the control plane's CA: a new key
/// (kept on the PoP, mode 0600) and a CSR sent to `POST /v1/pops/NAME/certificate`.
pub async fn ensure_backbone_certificate(
    client: &reqwest::Client,
    opts: &FollowOptions,
) -> Result<(), String> {
    let (key_path, cert_path, ca_path) = backbone_files(&opts.state_file, &opts.pop);
    if key_path.exists() && cert_path.exists() && ca_path.exists() {
        return Ok(());
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(vec![crate::ca::pop_dns_name(&opts.pop)])
        .map_err(|e| e.to_string())?;
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    let url = format!(
        "{}/v1/pops/{}/certificate",
        opts.control.trim_end_matches('/'),
        opts.pop
    );
    let resp = client
        .post(&url)
        .bearer_auth(&opts.token)
        .json(&serde_json::json!({"csr": csr.pem().map_err(|e| e.to_string())?}))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
    let (Some(cert), Some(ca)) = (
        v["result"]["certificate"].as_str(),
        v["result"]["ca"].as_str(),
    ) else {
        return Err(format!("{url}: {status}: {v}"));
    };
    crate::write_private(&key_path, key.serialize_pem().as_bytes())
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    std::fs::write(&cert_path, cert).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    std::fs::write(&ca_path, ca).map_err(|e| format!("{}: {e}", ca_path.display()))?;
    tracing::info!(cert = %cert_path.display(), "backbone certificate issued by the control plane");
    Ok(())
}

/// An HTTP client for the control plane.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .expect("an HTTP client")
}

/// Follows the stream forever. `current` is what the node serves now (from the state file).
pub async fn follow(opts: FollowOptions, applier: Arc<dyn Applier>, current: Option<Objects>) {
    let client = http_client();
    let mut desired = current.unwrap_or_default();
    let mut backoff = Duration::from_millis(200);
    let mut have_certificate = false;
    loop {
        if !have_certificate {
            match ensure_backbone_certificate(&client, &opts).await {
                Ok(()) => have_certificate = true,
                Err(e) => tracing::warn!(error = %e, "no backbone certificate yet"),
            }
        }
        match run_once(&client, &opts, &*applier, &mut desired).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(control = %opts.control, error = %e, retry_in = ?backoff, "control plane stream");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn run_once(
    client: &reqwest::Client,
    opts: &FollowOptions,
    applier: &dyn Applier,
    desired: &mut Objects,
) -> Result<(), String> {
    let url = format!(
        "{}/v1/stream?pop={}&since={}",
        opts.control.trim_end_matches('/'),
        opts.pop,
        desired.version
    );
    let resp = client
        .get(&url)
        .bearer_auth(&opts.token)
        .send()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("{status}: {}", body.trim()));
    }
    tracing::info!(control = %opts.control, since = desired.version, "following the control plane");
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(PING_EVERY * 3, body.next()).await {
            Err(_) => return Err("no message within three ping intervals".into()),
            Ok(None) => return Err("the control plane closed the stream".into()),
            Ok(Some(Err(e))) => return Err(format!("read: {e}")),
            Ok(Some(Ok(c))) => c,
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let msg: StreamMessage = serde_json::from_slice(&line)
                .map_err(|e| format!("a stream line that is not a message: {e}"))?;
            if !desired.apply(msg) {
                continue;
            }
            let ack = apply_and_save(applier, desired, &opts.state_file);
            let ack_url = format!(
                "{}/v1/pops/{}/ack",
                opts.control.trim_end_matches('/'),
                opts.pop
            );
            if let Err(e) = client
                .post(&ack_url)
                .bearer_auth(&opts.token)
                .json(&ack)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                tracing::warn!(error = %e, "could not acknowledge a version");
            }
        }
    }
}
