//! Following the control plane over HTTP: `GET /v1/stream?pop=NAME&since=VERSION` (one
//! [`StreamMessage`] per line), each version applied and reported on the report channel
//! (`POST /v1/pops/NAME/reports`: the acknowledgement and the zones' states, every
//! [`REPORT_EVERY`] the states again with the counters and links, and the links at once when
//! one changes); reconnecting from the last version received.

use std::sync::Arc;
use std::time::Duration;

use edgenet_protocol::report::REPORT_EVERY;
use edgenet_protocol::{Objects, Report, StreamMessage, PING_EVERY};
use futures_util::StreamExt;

use super::{
    apply_and_save, ensure_backbone_certificate, http_client, Applier, FollowError, FollowOptions,
    Reports,
};

/// Follows the stream forever. `current` is what the node serves now (from the state file).
pub async fn follow(opts: FollowOptions, applier: Arc<dyn Applier>, current: Option<Objects>) {
    let client = http_client();
    let mut reports = Reports::new(current.as_ref());
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
        match run_once(&client, &opts, &*applier, &mut desired, &mut reports).await {
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
    reports: &mut Reports,
) -> Result<(), FollowError> {
    let base = opts.control.trim_end_matches('/');
    let url = format!(
        "{base}/v1/stream?pop={}&since={}",
        opts.pop, desired.version
    );
    let resp = client
        .get(&url)
        .bearer_auth(&opts.token)
        .send()
        .await
        .map_err(|e| FollowError::Connect(e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default().trim().to_string();
        return Err(FollowError::Status { status, body });
    }
    tracing::info!(control = %opts.control, since = desired.version, "following the control plane");
    let report_url = format!("{base}/v1/pops/{}/reports", opts.pop);
    let send = |batch: Vec<Report>| {
        let req = client
            .post(&report_url)
            .bearer_auth(&opts.token)
            .header("content-type", "application/x-ndjson")
            .body(Report::lines(&batch))
            .timeout(Duration::from_secs(5));
        async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = %r.status(), "the control plane refused a report"),
                Err(e) => tracing::warn!(error = %e, "could not send a report"),
            }
        }
    };
    // What the PoP runs, at once: a restarted control plane learns it.
    send(reports.periodic(applier)).await;
    let mut every =
        tokio::time::interval_at(tokio::time::Instant::now() + REPORT_EVERY, REPORT_EVERY);
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let links_changed = applier.links_changed();
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(PING_EVERY * 3, body.next()) => next,
            _ = every.tick() => {
                send(reports.periodic(applier)).await;
                continue;
            }
            _ = super::links_changed(&links_changed) => {
                send(super::links_report(applier)).await;
                continue;
            }
        };
        let chunk = match next {
            Err(_) => return Err(FollowError::Silent),
            Ok(None) => return Err(FollowError::Closed),
            Ok(Some(Err(e))) => return Err(FollowError::Read(e.to_string())),
            Ok(Some(Ok(c))) => c,
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let msg: StreamMessage = serde_json::from_slice(&line)?;
            // The control plane pings once it has sent what it had when the stream opened.
            let caught_up = matches!(msg, StreamMessage::Ping { .. });
            if !desired.apply(msg) {
                if caught_up {
                    applier.synced();
                }
                continue;
            }
            super::fetch_components(client, opts, desired).await;
            let ack = apply_and_save(applier, desired, &opts.state_file);
            send(reports.outcome(desired, &ack, applier)).await;
        }
    }
}
