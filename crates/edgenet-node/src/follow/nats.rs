//! Distribution at scale over NATS JetStream: the control plane mirrors every object into a
//! key-value bucket (`kind.name` → `{version, body}`, a `null` body for a deletion) and PoPs
//! watch the bucket, through NATS leaf nodes where there are many. A PoP resumes from the last
//! bucket revision it applied (the changes since), or watches everything (a snapshot) when it
//! has none. Acknowledgements come back on `edgenet.acks.POP`.
//!
//! The bucket keeps one revision per key, so "the changes since revision r" are exactly the
//! keys whose latest value is newer than r: resuming never replays history that no longer
//! matters.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::App;
use crate::follow::{self, Applier, Objects};
use crate::store::{Change, KINDS};
use crate::stream::Ack;

/// The key-value bucket.
pub const BUCKET: &str = "edgenet_config";
/// Acknowledgements: `edgenet.acks.POP`.
pub const ACKS: &str = "edgenet.acks";

/// A bucket value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KvValue {
    version: i64,
    body: Option<Value>,
}

/// The control plane's side: writes changes into the bucket.
pub struct Publisher {
    kv: kv::Store,
    client: async_nats::Client,
}

impl Publisher {
    /// Connects and creates (or updates) the bucket.
    pub async fn connect(url: &str) -> anyhow::Result<Publisher> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("--distribution {url}: {e}"))?;
        let js = jetstream::new(client.clone());
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.into(),
                    description: "edgenet configuration: kind.name -> {version, body}".into(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("JetStream bucket {BUCKET}: {e}"))?,
        };
        Ok(Publisher { kv, client })
    }

    /// Writes one change.
    pub async fn publish(&self, c: &Change) -> anyhow::Result<()> {
        let v = serde_json::to_vec(&KvValue {
            version: c.version,
            body: c.body.clone(),
        })?;
        self.kv
            .put(format!("{}.{}", c.kind, c.name), v.into())
            .await
            .map_err(|e| anyhow::anyhow!("JetStream put: {e}"))?;
        Ok(())
    }

    /// Brings the bucket up to the store (after a start, or an outage of NATS): objects whose
    /// bucket value is older are written, keys of deleted objects get a deletion.
    pub async fn sync(&self, app: &App) -> anyhow::Result<usize> {
        let mut written = 0;
        let mut present = std::collections::HashSet::new();
        for kind in KINDS {
            for (name, s) in app.store.all(kind).await? {
                let key = format!("{kind}.{name}");
                present.insert(key.clone());
                let current = self
                    .kv
                    .get(&key)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<KvValue>(&b).ok());
                if current.is_none_or(|c| c.version < s.version) {
                    self.publish(&Change {
                        version: s.version,
                        kind: kind.to_string(),
                        name,
                        body: Some(s.body),
                    })
                    .await?;
                    written += 1;
                }
            }
        }
        let version = app.store.version().await?;
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| anyhow::anyhow!("JetStream keys: {e}"))?;
        while let Some(Ok(key)) = keys.next().await {
            if present.contains(&key) {
                continue;
            }
            let Some((kind, name)) = key.split_once('.') else {
                continue;
            };
            let gone = self
                .kv
                .get(&key)
                .await
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<KvValue>(&b).ok())
                .is_some_and(|v| v.body.is_some());
            if gone {
                self.publish(&Change {
                    version,
                    kind: kind.into(),
                    name: name.into(),
                    body: None,
                })
                .await?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Records the acknowledgements PoPs publish.
    pub fn listen_for_acks(&self, app: Arc<App>) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut sub = match client.subscribe(format!("{ACKS}.*")).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot subscribe to PoP acknowledgements");
                    return;
                }
            };
            while let Some(msg) = sub.next().await {
                let Some(pop) = msg.subject.as_str().strip_prefix(&format!("{ACKS}.")) else {
                    continue;
                };
                match serde_json::from_slice::<Ack>(&msg.payload) {
                    Ok(ack) => {
                        if let Err(e) = crate::stream::record_ack(&app, pop, ack).await {
                            tracing::warn!(%pop, error = %e, "recording an acknowledgement");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%pop, error = %e, "an acknowledgement that is not JSON")
                    }
                }
            }
        });
    }
}

/// `nats://host:port?domain=hub` → the server URL and the JetStream domain. A PoP that follows
/// through a leaf node names the hub's JetStream domain, since its own leaf has no JetStream.
pub fn split_domain(url: &str) -> (&str, Option<&str>) {
    match url.split_once("?domain=") {
        Some((server, domain)) if !domain.is_empty() => (server, Some(domain)),
        _ => (url, None),
    }
}

/// Follows the bucket forever (the PoP's side), reconnecting with backoff.
pub async fn follow_nats(
    url: String,
    pop: String,
    state_file: std::path::PathBuf,
    applier: Arc<dyn Applier>,
    current: Option<Objects>,
) {
    let mut desired = current.unwrap_or_default();
    let mut backoff = Duration::from_millis(200);
    loop {
        if let Err(e) = watch_once(&url, &pop, &state_file, &*applier, &mut desired).await {
            tracing::warn!(%url, error = %e, retry_in = ?backoff, "NATS configuration watch");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            backoff = Duration::from_millis(200);
        }
    }
}

async fn watch_once(
    url: &str,
    pop: &str,
    state_file: &std::path::Path,
    applier: &dyn Applier,
    desired: &mut Objects,
) -> anyhow::Result<()> {
    let (server, domain) = split_domain(url);
    let client = async_nats::connect(server).await?;
    let js = match domain {
        Some(d) => jetstream::with_domain(client.clone(), d),
        None => jetstream::new(client.clone()),
    };
    let kv = js.get_key_value(BUCKET).await?;
    // From the next revision (the changes since), or the last value of every key (a snapshot).
    let mut watch = if desired.revision > 0 {
        kv.watch_all_from_revision(desired.revision + 1).await?
    } else {
        kv.watch_with_history(">").await?
    };
    tracing::info!(%url, revision = desired.revision, "following the configuration bucket");
    let mut pending = false;
    loop {
        // The watch itself sends nothing while idle; a closed connection ends it.
        let entry = match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
            Err(_) => {
                if client.connection_state() != async_nats::connection::State::Connected {
                    anyhow::bail!("disconnected from NATS");
                }
                continue;
            }
            Ok(None) => anyhow::bail!("the watch ended"),
            Ok(Some(e)) => e?,
        };
        if let Some((kind, name)) = entry.key.split_once('.') {
            let value: Option<KvValue> = if entry.operation == kv::Operation::Put {
                serde_json::from_slice(&entry.value).ok()
            } else {
                None
            };
            let objects = desired.objects.entry(kind.to_string()).or_default();
            match value.as_ref().and_then(|v| v.body.clone()) {
                Some(b) => {
                    objects.insert(name.to_string(), b);
                }
                None => {
                    objects.remove(name);
                }
            }
            if let Some(v) = value {
                desired.version = desired.version.max(v.version);
            }
            pending = true;
        }
        desired.revision = entry.revision;
        // Apply once the backlog is drained, not once per key of a snapshot.
        if pending && entry.delta == 0 {
            pending = false;
            let ack = follow::apply_and_save(applier, desired, state_file);
            let _ = client
                .publish(format!("{ACKS}.{pop}"), serde_json::to_vec(&ack)?.into())
                .await;
        }
    }
}
