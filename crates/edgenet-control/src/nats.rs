//! Distribution at scale over NATS JetStream, the control plane's side: every object is
//! mirrored into a key-value bucket (`kind.name` → `{version, body}`, a `null` body for a
//! deletion; `edgenet_protocol::nats`), which PoPs watch through NATS leaf nodes where there
//! are many (`edgenet-node`'s follower), and their reports on `edgenet.reports.POP` (and the
//! acknowledgements of older PoPs on `edgenet.acks.POP`) are recorded like those sent over
//! HTTP. Workers' components go into an object store by SHA-256 before the worker object that
//! runs them, so a PoP following the bucket fetches them from NATS too.
//!
//! The bucket keeps one revision per key, so "the changes since revision r" are exactly the
//! keys whose latest value is newer than r: resuming never replays history that no longer
//! matters.

use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use edgenet_protocol::nats::{key, parse_key, KvValue, ACKS, BUCKET, COMPONENTS};
use edgenet_protocol::report::REPORTS;
use edgenet_protocol::{Ack, Kind, Report, WorkerProvision};
use futures_util::StreamExt;
use serde_json::Value;

use crate::api::App;
use crate::store::Store;

/// The control plane's side: writes changes into the bucket, and workers' components into
/// the object store.
pub struct Publisher {
    kv: kv::Store,
    components: jetstream::object_store::ObjectStore,
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
        let components = match js.get_object_store(COMPONENTS).await {
            Ok(o) => o,
            Err(_) => js
                .create_object_store(jetstream::object_store::Config {
                    bucket: COMPONENTS.into(),
                    description: Some("edgenet workers' components by SHA-256".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("JetStream object store {COMPONENTS}: {e}"))?,
        };
        Ok(Publisher {
            kv,
            components,
            client,
        })
    }

    /// Writes the components a worker object runs into the object store, unless there: a PoP
    /// that sees the object fetches them from there. Returns how many were written.
    pub async fn put_components(&self, store: &Store, body: &Value) -> anyhow::Result<usize> {
        let w: WorkerProvision = serde_json::from_value(body.clone())
            .map_err(|e| anyhow::anyhow!("a worker object: {e}"))?;
        let mut written = 0;
        for c in w.versions.values() {
            if self.components.info(&c.sha256).await.is_ok() {
                continue;
            }
            let blob = store
                .blob(&c.sha256)
                .await?
                .ok_or_else(|| anyhow::anyhow!("component {} is not in the store", c.sha256))?;
            self.components
                .put(c.sha256.as_str(), &mut blob.as_slice())
                .await
                .map_err(|e| anyhow::anyhow!("JetStream object {}: {e}", c.sha256))?;
            written += 1;
        }
        Ok(written)
    }

    /// Writes one change: the object's new body at `version`, or `None` for its deletion.
    pub async fn publish(
        &self,
        kind: Kind,
        name: &str,
        version: i64,
        body: Option<&Value>,
    ) -> anyhow::Result<()> {
        let v = serde_json::to_vec(&KvValue {
            version,
            body: body.cloned(),
        })?;
        self.kv
            .put(key(kind, name), v.into())
            .await
            .map_err(|e| anyhow::anyhow!("JetStream put: {e}"))?;
        Ok(())
    }

    /// Brings the bucket up to the store (after a start, or an outage of NATS): objects whose
    /// bucket value is older are written, keys of deleted objects get a deletion.
    pub async fn sync(&self, app: &App) -> anyhow::Result<usize> {
        let mut written = 0;
        let mut present = std::collections::HashSet::new();
        for kind in Kind::ALL {
            for (name, s) in app.store.all(kind).await? {
                let key = key(kind, &name);
                present.insert(key.clone());
                let current = self
                    .kv
                    .get(&key)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<KvValue>(&b).ok());
                if kind == Kind::Worker {
                    written += self.put_components(&app.store, &s.body).await?;
                }
                if current.is_none_or(|c| c.version < s.version) {
                    self.publish(kind, &name, s.version, Some(&s.body)).await?;
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
            let Some((kind, name)) = parse_key(&key) else {
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
                self.publish(kind, name, version, None).await?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Records the acknowledgements older PoPs publish (newer ones send them as reports).
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

    /// Records the reports PoPs publish on `edgenet.reports.POP`.
    pub fn listen_for_reports(&self, app: Arc<App>) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut sub = match client.subscribe(format!("{REPORTS}.*")).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot subscribe to PoP reports");
                    return;
                }
            };
            let prefix = format!("{REPORTS}.");
            while let Some(msg) = sub.next().await {
                let Some(pop) = msg.subject.as_str().strip_prefix(&prefix) else {
                    continue;
                };
                match serde_json::from_slice::<Report>(&msg.payload) {
                    Ok(r) => {
                        if let Err(e) = crate::reports::record(&app, pop, r).await {
                            tracing::warn!(%pop, error = %e, "recording a report");
                        }
                    }
                    Err(e) => tracing::warn!(%pop, error = %e, "a report that is not one"),
                }
            }
        });
    }
}
