//! OCSP staples, fetched by the control plane (PoPs never call a responder): for each
//! certificate whose issuer names a responder, a response is fetched at once, checked
//! (`edgenet_certs::ocsp::check`), stored with the certificate and streamed, then fetched again
//! halfway to its nextUpdate. A failed fetch is shown on the certificate and retried after
//! 10 s, doubling to an hour; a staple that went stale is not streamed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use super::{save, Staple, StoredCertificate, B64};
use crate::api::records::parse;
use crate::api::{lock, unix_ms, App};
use crate::store::{Record, RecordKind};

/// The first retry after a failed fetch.
const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between failed fetches.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// How long a responder has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// When the certificate's staple should be fetched (Unix milliseconds), if its issuer runs a
/// responder.
pub fn due(c: &StoredCertificate) -> Option<i64> {
    let m = c.current.as_ref()?;
    edgenet_certs::ocsp::responder(&m.chain)?;
    let fresh = c
        .ocsp
        .as_ref()
        .filter(|s| s.serial == m.serial)
        .map(|s| s.refresh_at() * 1000);
    Some(fresh.unwrap_or(0).max(c.ocsp_next_attempt_ms))
}

/// Fetches record `r`'s staple in a task of its own (one at a time per certificate).
pub fn refresh(app: Arc<App>, r: Record) {
    let Some(certs) = app.certs.get() else {
        return;
    };
    let key = format!("ocsp:{}", r.id);
    if !lock(&certs.in_flight).insert(key.clone()) {
        return;
    }
    tokio::spawn(async move {
        let outcome = fetch(&r).await;
        if let Err(e) = store(&app, &r.id, outcome).await {
            tracing::error!(id = %r.id, error = %e, "cannot store a certificate's OCSP state");
        }
        if let Some(certs) = app.certs.get() {
            lock(&certs.in_flight).remove(&key);
            certs.wake.notify_one();
        }
    });
}

/// The staple for `r`'s certificate, or why not.
async fn fetch(r: &Record) -> Result<Staple, String> {
    let c: StoredCertificate = parse(r).map_err(|e| e.to_string())?;
    let m = c.current.ok_or("nothing is served")?;
    let url = edgenet_certs::ocsp::responder(&m.chain).ok_or("no responder")?;
    let request = edgenet_certs::ocsp::request(&m.chain)?;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .post(&url)
        .header("content-type", "application/ocsp-request")
        .body(request)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url}: {status}"));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{url}: {}", chain(&e)))?;
    let fresh = edgenet_certs::ocsp::check(&body, &m.chain, unix_ms() / 1000)
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(Staple {
        der: B64.encode(&body),
        this_update: fresh.this_update,
        next_update: fresh.next_update,
        serial: m.serial,
    })
}

/// An error with its causes (reqwest's own says only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Stores a fetch's outcome on the certificate (if it still serves the same serial) and
/// streams it.
async fn store(
    app: &App,
    id: &str,
    outcome: Result<Staple, String>,
) -> Result<(), crate::store::StoreError> {
    let Some(r) = app
        .store
        .record(RecordKind::Certificate, id, crate::store::Owner::Operator)
        .await?
    else {
        return Ok(());
    };
    let mut c: StoredCertificate = parse(&r)?;
    let serial = c.current.as_ref().map(|m| m.serial.clone());
    match outcome {
        Ok(staple) if Some(&staple.serial) == serial.as_ref() => {
            tracing::info!(%id, this_update = staple.this_update, next_update = ?staple.next_update, "OCSP staple fetched");
            c.ocsp = Some(staple);
            c.ocsp_failure = None;
            c.ocsp_attempts = 0;
            c.ocsp_next_attempt_ms = 0;
        }
        // Renewed meanwhile: the next pass fetches for the new one.
        Ok(_) => return Ok(()),
        Err(why) => {
            c.ocsp_attempts += 1;
            let factor = 1u32 << c.ocsp_attempts.saturating_sub(1).min(16);
            let wait = FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY);
            tracing::warn!(%id, error = %why, retry_in = ?wait, "no OCSP staple");
            c.ocsp_failure = Some(why);
            c.ocsp_next_attempt_ms = unix_ms() + wait.as_millis() as i64;
        }
    }
    save(app, id, r.owner(), &c).await.map(|_| ())
}
