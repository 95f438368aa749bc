//! Following the control plane over HTTP: `GET /v1/stream?pop=NAME&since=VERSION` (one
//! [`StreamMessage`] per line), each version applied and acknowledged with
//! `POST /v1/pops/NAME/ack`; reconnecting from the last version received.

use std::sync::Arc;
use std::time::Duration;

use edgenet_protocol::{Objects, StreamMessage, PING_EVERY};
use futures_util::StreamExt;

use super::{
    apply_and_save, ensure_backbone_certificate, http_client, Applier, FollowError, FollowOptions,
};

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
    let ack_url = format!("{base}/v1/pops/{}/ack", opts.pop);
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(PING_EVERY * 3, body.next()).await {
            Err(_) => return Err(FollowError::Silent),
            Ok(None) => return Err(FollowError::Closed),
            Ok(Some(Err(e))) => return Err(FollowError::Read(e.to_string())),
            Ok(Some(Ok(c))) => c,
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let msg: StreamMessage = serde_json::from_slice(&line)?;
            if !desired.apply(msg) {
                continue;
            }
            let ack = apply_and_save(applier, desired, &opts.state_file);
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
