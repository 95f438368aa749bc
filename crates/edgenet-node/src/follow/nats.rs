//! Following the control plane at scale: the PoP watches the configuration's NATS JetStream
//! key-value bucket (through a local leaf node where there are many PoPs): the last value of
//! every key (a snapshot) when it has applied nothing, else the keys changed since the bucket
//! revision it applied. It applies once a backlog is drained, not once per key, and reports on
//! `edgenet.reports.POP` (the acknowledgement and the zones' states, and every
//! `REPORT_EVERY` the states again with the counters). Workers' components come from the
//! object store beside the bucket, by SHA-256.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use edgenet_protocol::nats::{parse_key, split_domain, KvValue, BUCKET, COMPONENTS};
use edgenet_protocol::report::{report_subject, REPORT_EVERY};
use edgenet_protocol::{Objects, Report};
use futures_util::StreamExt;

use super::{apply_and_save, Applier, FollowError, Reports};

/// Follows the bucket forever (the PoP's side), reconnecting with backoff.
pub async fn follow(
    url: String,
    pop: String,
    state_file: std::path::PathBuf,
    applier: Arc<dyn Applier>,
    current: Option<Objects>,
) {
    let mut reports = Reports::new(current.as_ref());
    let mut desired = current.unwrap_or_default();
    let mut backoff = Duration::from_millis(200);
    loop {
        let watched = watch_once(
            &url,
            &pop,
            &state_file,
            &*applier,
            &mut desired,
            &mut reports,
        );
        if let Err(e) = watched.await {
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
    reports: &mut Reports,
) -> Result<(), FollowError> {
    let nats = |e: &dyn std::fmt::Display| FollowError::Nats(e.to_string());
    let (server, domain) = split_domain(url);
    let client = async_nats::connect(server).await.map_err(|e| nats(&e))?;
    let js = match domain {
        Some(d) => jetstream::with_domain(client.clone(), d),
        None => jetstream::new(client.clone()),
    };
    let kv = js.get_key_value(BUCKET).await.map_err(|e| nats(&e))?;
    // Workers' components: fetched by hash before a version that runs them is applied.
    let components = js.get_object_store(COMPONENTS).await.ok();
    let components_dir = super::components_dir(state_file, pop);
    // From the next revision (the changes since), or the last value of every key (a snapshot).
    let mut watch = if desired.revision > 0 {
        kv.watch_all_from_revision(desired.revision + 1).await
    } else {
        kv.watch_with_history(">").await
    }
    .map_err(|e| nats(&e))?;
    tracing::info!(%url, revision = desired.revision, "following the configuration bucket");
    // Caught up at once when the bucket has nothing past what was applied; else once the
    // watch's backlog is drained.
    let last = kv
        .status()
        .await
        .map_or(u64::MAX, |s| s.info.state.last_sequence);
    if last <= desired.revision {
        applier.synced();
    }
    let subject = report_subject(pop);
    let send = |batch: Vec<Report>| {
        let (client, subject) = (client.clone(), subject.clone());
        async move {
            for r in batch {
                if let Ok(body) = serde_json::to_vec(&r) {
                    let _ = client.publish(subject.clone(), body.into()).await;
                }
            }
        }
    };
    send(reports.periodic(applier)).await;
    let mut last_report = tokio::time::Instant::now();
    let mut pending = false;
    let links_changed = applier.links_changed();
    loop {
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = tokio::time::Instant::now();
            send(reports.periodic(applier)).await;
        }
        // The watch itself sends nothing while idle; a closed connection ends it.
        let next = tokio::select! {
            n = tokio::time::timeout(REPORT_EVERY, watch.next()) => n,
            _ = super::links_changed(&links_changed) => {
                send(super::links_report(applier)).await;
                continue;
            }
        };
        let entry = match next {
            Err(_) => {
                if client.connection_state() != async_nats::connection::State::Connected {
                    return Err(FollowError::Nats("disconnected".into()));
                }
                continue;
            }
            Ok(None) => return Err(FollowError::Closed),
            Ok(Some(e)) => e.map_err(|e| nats(&e))?,
        };
        // Keys of kinds this version does not know are skipped.
        if let Some((kind, name)) = parse_key(&entry.key) {
            let value: Option<KvValue> = if entry.operation == kv::Operation::Put {
                serde_json::from_slice(&entry.value).ok()
            } else {
                None
            };
            let body = value.as_ref().and_then(|v| v.body.clone());
            desired.objects.set_json(kind, name, body);
            if let Some(v) = value {
                desired.version = desired.version.max(v.version);
            }
            pending = true;
        }
        desired.revision = entry.revision;
        // Apply once the backlog is drained, not once per key of a snapshot.
        if pending && entry.delta == 0 {
            pending = false;
            if let Some(store) = &components {
                super::fetch_components_with(&components_dir, desired, |sha256| async move {
                    use tokio::io::AsyncReadExt;
                    let mut object = store.get(&sha256).await.map_err(|e| e.to_string())?;
                    let mut body = Vec::new();
                    object
                        .read_to_end(&mut body)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(body)
                })
                .await;
            }
            let ack = apply_and_save(applier, desired, state_file);
            send(reports.outcome(desired, &ack, applier)).await;
        }
        if entry.delta == 0 {
            applier.synced();
        }
    }
}
