//! Certificates: custom ones an account uploads, and edge ones the control plane has issued
//! for each zone's hostnames (by ACME, [`acme`], or by its local CA), kept as records of kind
//! `certificate` whose private key is sealed at rest under the control plane's own key
//! ([`SealingKey`], a file outside the database). Each is streamed to every PoP as a
//! `certificate` object whose key is sealed again to each PoP's X25519 key ([`publish`]), so
//! neither the stream nor a NATS bucket holds a plaintext key. PoPs register their keys on the
//! report channel ([`observe_keys`]); a new or changed key gets every certificate sealed to it.
//!
//! [`run`] keeps the edge certificates: one per zone for the hostnames an issuer can validate
//! (a wildcard needs DNS-01, which needs a DNS provider: those are upload only), issued when
//! missing or when the zone's names change, renewed after two thirds of their life (or when the
//! CA's renewal information says), retried with backoff after a failure that the certificate
//! shows; a zone's certificates go with it. It also keeps each certificate's OCSP staple fresh
//! where its issuer runs a responder ([`ocsp`]).

pub mod acme;
pub mod ocsp;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use edgenet_certs::seal::SealingKey;
use edgenet_protocol::{pop_key_id, CertificateProvision, CertificateSource, Kind, SealedKey};
use serde::{Deserialize, Serialize};

use crate::api::records::{parse, to_value};
use crate::api::{lock, unix_ms, App};
use crate::store::{Owner, Record, RecordKind, StoreError, Write, WriteOptions};

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How long the local CA's certificates last.
pub const LOCAL_DAYS: i64 = 90;
/// The first retry after a failed issuance; each failure doubles it, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// Who issues edge certificates.
pub enum Issuer {
    /// The control plane's local CA (`edgenet up`): at once, for any name, IP addresses too.
    Local(Box<crate::ca::Ca>),
    /// An ACME CA.
    Acme(acme::Acme),
}

impl Issuer {
    /// Why this issuer cannot issue for `host`, if it cannot (the local CA validates nothing,
    /// so it issues for any name).
    pub fn refuses(&self, host: &str) -> Option<&'static str> {
        match self {
            Issuer::Local(_) => None,
            Issuer::Acme(_) if host.starts_with("*.") => Some(
                "a wildcard needs DNS-01 validation, which needs a DNS provider: upload a \
                 certificate for it (custom_certificates)",
            ),
            Issuer::Acme(_) if host.parse::<std::net::IpAddr>().is_ok() => {
                Some("an IP address: ACME CAs here issue for DNS names only")
            }
            Issuer::Acme(_) if !host.contains('.') => {
                Some("a name without a dot is not a public DNS name an ACME CA validates")
            }
            Issuer::Acme(_) => None,
        }
    }

    /// What the certificate packs say of the issuer.
    pub fn describe(&self) -> String {
        match self {
            Issuer::Local(_) => "local CA (edgenet control --local-ca)".into(),
            Issuer::Acme(a) => format!("ACME {}", a.directory()),
        }
    }
}

/// The control plane's certificate state: the key sealing private keys at rest, the issuer of
/// edge certificates (if any), the edge issuances in flight, and a wake-up for [`run`].
pub struct Certificates {
    /// Seals and opens private keys at rest.
    pub sealing: SealingKey,
    /// Who issues edge certificates; none: custom certificates only.
    pub issuer: Option<Issuer>,
    /// Record ids being issued now (`ocsp:ID`: a staple being fetched).
    in_flight: Mutex<HashSet<String>>,
    /// Wakes [`run`] (a zone or a PoP key changed, an issuance ended).
    pub wake: tokio::sync::Notify,
}

impl Certificates {
    /// The state with this sealing key and issuer.
    pub fn new(sealing: SealingKey, issuer: Option<Issuer>) -> Certificates {
        Certificates {
            sealing,
            issuer,
            in_flight: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        }
    }
}

/// Reads the sealing key from `path` (64 hex digits), or makes one there (mode 0600) the first
/// time.
pub fn load_or_create_sealing_key(path: &Path) -> anyhow::Result<SealingKey> {
    let hex_error = || {
        anyhow::anyhow!(
            "{}: not 64 hex digits (the key sealing certificates' private keys)",
            path.display()
        )
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex_decode(text.trim()).ok_or_else(hex_error)?;
            SealingKey::new(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = SealingKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            crate::write_private(path, hex.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "made the key that seals certificates' private keys");
            SealingKey::new(&bytes).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A certificate's state, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Served.
    Active,
    /// Being issued for the first time.
    Pending,
    /// Served, and a replacement is being issued.
    Renewing,
    /// The last issuance failed (see `failure`); a served certificate, if any, still is.
    Failed,
}

/// What is served: the chain, its key sealed at rest, and what the checks read of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Material {
    /// PEM, leaf first.
    pub chain: String,
    /// The private key (PEM) sealed at rest, base64.
    pub key: String,
    /// The names it is served for.
    pub hosts: Vec<String>,
    /// The leaf's DNS names.
    pub names: Vec<String>,
    /// The leaf's issuer.
    pub issuer: String,
    /// The leaf's serial, hex.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// `ecdsa-p256`, `rsa-2048`, ...
    pub key_type: String,
    /// SHA-256 of the leaf, hex.
    pub sha256: String,
}

impl Material {
    /// Material from a checked chain and its key, sealed for record `id`.
    pub fn new(
        certs: &Certificates,
        id: &str,
        chain: &str,
        key_pem: &str,
        hosts: Vec<String>,
        c: &edgenet_certs::Checked,
    ) -> Result<Material, StoreError> {
        let sealed = certs
            .sealing
            .seal(key_pem.as_bytes(), id)
            .map_err(|e| StoreError::Refused(format!("sealing the private key: {e}")))?;
        Ok(Material {
            chain: chain.to_string(),
            key: B64.encode(sealed),
            hosts,
            names: c.names.clone(),
            issuer: c.issuer.clone(),
            serial: c.serial.clone(),
            not_before: c.not_before,
            not_after: c.not_after,
            key_type: c.key_type.to_string(),
            sha256: c.sha256.clone(),
        })
    }

    /// The private key, opened.
    fn open_key(&self, certs: &Certificates, id: &str) -> Result<Vec<u8>, String> {
        let sealed = B64
            .decode(&self.key)
            .map_err(|_| "the stored key is not base64".to_string())?;
        certs
            .sealing
            .open(&sealed, id)
            .map_err(|e| format!("the stored key does not open: {e}"))
    }

    /// When it should be renewed: after two thirds of its life.
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// A DER OCSP response to staple, and when it goes stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Staple {
    /// The response, base64 DER.
    pub der: String,
    /// Unix seconds: its thisUpdate.
    pub this_update: i64,
    /// Unix seconds: its nextUpdate (none: fetch again after a day).
    pub next_update: Option<i64>,
    /// The certificate's serial it is for.
    pub serial: String,
}

impl Staple {
    /// When to fetch a new one: halfway to its nextUpdate (a day after thisUpdate without one).
    pub fn refresh_at(&self) -> i64 {
        let end = self.next_update.unwrap_or(self.this_update + 2 * 86_400);
        self.this_update + (end - self.this_update) / 2
    }
}

/// A certificate record's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCertificate {
    /// The zone.
    pub zone: String,
    /// Custom or edge.
    pub source: CertificateSource,
    /// What is served; none until a first edge certificate is issued.
    #[serde(default)]
    pub current: Option<Material>,
    /// The state.
    pub state: State,
    /// Why the last issuance failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// Failed attempts in a row.
    #[serde(default)]
    pub attempts: u32,
    /// Unix milliseconds: not before then (backoff).
    #[serde(default)]
    pub next_attempt_ms: i64,
    /// Unix seconds: renew from then on, as the CA's renewal information says.
    #[serde(default)]
    pub renew_from: Option<i64>,
    /// The staple.
    #[serde(default)]
    pub ocsp: Option<Staple>,
    /// Why the last OCSP fetch failed.
    #[serde(default)]
    pub ocsp_failure: Option<String>,
    /// Failed OCSP fetches in a row.
    #[serde(default)]
    pub ocsp_attempts: u32,
    /// Unix milliseconds: no OCSP fetch before then (after a failure).
    #[serde(default)]
    pub ocsp_next_attempt_ms: i64,
    /// Unix milliseconds of the last change of `current`.
    pub modified_ms: i64,
}

impl StoredCertificate {
    /// A certificate of `zone` from `source` serving `current` (none yet: pending).
    pub fn new(
        zone: &str,
        source: CertificateSource,
        current: Option<Material>,
        now_ms: i64,
    ) -> StoredCertificate {
        StoredCertificate {
            zone: zone.to_string(),
            source,
            state: if current.is_some() {
                State::Active
            } else {
                State::Pending
            },
            current,
            failure: None,
            attempts: 0,
            next_attempt_ms: 0,
            renew_from: None,
            ocsp: None,
            ocsp_failure: None,
            ocsp_attempts: 0,
            ocsp_next_attempt_ms: 0,
            modified_ms: now_ms,
        }
    }

    /// When it should be renewed, Unix seconds (none before it has anything).
    pub fn renew_at(&self) -> Option<i64> {
        let m = self.current.as_ref()?;
        Some(self.renew_from.unwrap_or(i64::MAX).min(m.renew_at()))
    }
}

/// The id of a zone's edge certificate.
pub fn edge_id(zone: &str) -> String {
    format!("edge-{zone}")
}

/// Stores a certificate record as `owner` (created or replaced) and streams it.
pub async fn save(
    app: &App,
    id: &str,
    owner: Owner<'_>,
    body: &StoredCertificate,
) -> Result<Record, StoreError> {
    let value = to_value(body);
    let r = app
        .store
        .write_record(
            RecordKind::Certificate,
            id,
            owner,
            WriteOptions::new(Write::Upsert, unix_ms()),
            &|_, _| Ok((value.clone(), vec![])),
        )
        .await?;
    publish(app, &r).await?;
    Ok(r)
}

/// Deletes a certificate record and its stream object.
pub async fn delete(app: &App, r: &Record) -> Result<(), StoreError> {
    app.store
        .delete_record(RecordKind::Certificate, &r.id, r.owner(), None)
        .await?;
    if app
        .store
        .get(Kind::Certificate, &r.id, r.owner())
        .await?
        .is_some()
    {
        app.put(Kind::Certificate, &r.id, None, false, None, r.owner())
            .await?;
    }
    tracing::info!(id = %r.id, "certificate deleted");
    Ok(())
}

/// Every PoP's registered certificates key, by PoP (registered PoPs only).
pub(crate) async fn pop_keys(app: &App) -> Result<BTreeMap<String, [u8; 32]>, StoreError> {
    let pops = app.store.all(Kind::Pop).await?;
    let keys = app
        .store
        .records(RecordKind::PopKey, Owner::Operator)
        .await?;
    Ok(keys
        .iter()
        .filter(|r| pops.contains_key(&r.id))
        .filter_map(|r| {
            let k: PopKeyRecord = parse(r).ok()?;
            Some((r.id.clone(), k.public()?))
        })
        .collect())
}

/// A PoP's registered X25519 key, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PopKeyRecord {
    /// Base64 of the 32 bytes.
    certificates: String,
}

impl PopKeyRecord {
    fn public(&self) -> Option<[u8; 32]> {
        B64.decode(&self.certificates).ok()?.try_into().ok()
    }
}

/// Streams certificate record `r`: its chain and names, and its key sealed to every PoP
/// with a registered key (a PoP's existing seal is kept while its key is the same, so an
/// unchanged certificate makes no new version). Without anything to serve, its object goes.
pub async fn publish(app: &App, r: &Record) -> Result<(), StoreError> {
    let Some(certs) = app.certs.get() else {
        return Ok(());
    };
    let c: StoredCertificate = parse(r)?;
    let before = app.store.get(Kind::Certificate, &r.id, r.owner()).await?;
    let Some(m) = &c.current else {
        if before.is_some() {
            app.put(Kind::Certificate, &r.id, None, false, None, r.owner())
                .await?;
        }
        return Ok(());
    };
    let old: Option<CertificateProvision> = before
        .as_ref()
        .and_then(|b| serde_json::from_value(b.body.clone()).ok());
    let same = old
        .as_ref()
        .filter(|o| o.serial == m.serial && o.chain == m.chain);
    let keys = seal_to_pops(
        &pop_keys(app).await?,
        |pop| same.and_then(|o| o.keys.get(pop)),
        || m.open_key(certs, &r.id).map_err(StoreError::Refused),
        |pop| CertificateProvision::seal_context(pop, &r.id),
    )?;
    let provision = CertificateProvision {
        zone: c.zone.clone(),
        source: c.source,
        hosts: m.hosts.clone(),
        chain: m.chain.clone(),
        serial: m.serial.clone(),
        not_after: m.not_after,
        keys,
        ocsp: c
            .ocsp
            .as_ref()
            .filter(|s| s.serial == m.serial)
            .map(|s| s.der.clone()),
    };
    if old.as_ref() == Some(&provision) {
        return Ok(());
    }
    let body = to_value(&provision);
    let version = app
        .put(
            Kind::Certificate,
            &r.id,
            Some(&body),
            before.is_none(),
            None,
            r.owner(),
        )
        .await?;
    tracing::info!(id = %r.id, zone = %c.zone, serial = %m.serial, pops = provision.keys.len(), version, "certificate streamed");
    Ok(())
}

/// `plaintext` sealed to each PoP of `keys`, for each PoP's `context`: the seal `kept` gives for
/// a PoP is kept while it is to the PoP's present key (so an unchanged object makes no
/// version); `plaintext` is opened only when some PoP needs a new seal.
pub(crate) fn seal_to_pops<'a>(
    keys: &BTreeMap<String, [u8; 32]>,
    kept: impl Fn(&str) -> Option<&'a SealedKey>,
    plaintext: impl FnOnce() -> Result<Vec<u8>, StoreError>,
    context: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, SealedKey>, StoreError> {
    let mut out = BTreeMap::new();
    let mut plaintext = Some(plaintext);
    let mut plain: Option<Vec<u8>> = None;
    for (pop, public) in keys {
        let to = pop_key_id(public);
        if let Some(k) = kept(pop).filter(|k| k.to == to) {
            out.insert(pop.clone(), k.clone());
            continue;
        }
        if plain.is_none() {
            let open = plaintext.take().expect("opened once");
            plain = Some(open()?);
        }
        let sealed = edgenet_certs::to_pop::seal_to(
            public,
            plain.as_deref().unwrap_or_default(),
            &context(pop),
        )
        .map_err(|e| StoreError::Refused(format!("sealing to PoP {pop}: {e}")))?;
        out.insert(
            pop.clone(),
            SealedKey {
                to,
                sealed: B64.encode(sealed),
            },
        );
    }
    Ok(out)
}

/// Records a PoP's registered key; a new or changed one gets every certificate sealed to it.
pub async fn observe_keys(app: &App, pop: &str, certificates: &str) -> Result<(), StoreError> {
    let record = PopKeyRecord {
        certificates: certificates.to_string(),
    };
    if record.public().is_none() {
        tracing::warn!(%pop, "a PoP registered a certificates key that is not 32 bytes of base64: ignored");
        return Ok(());
    }
    let had = app
        .store
        .record(RecordKind::PopKey, pop, Owner::Operator)
        .await?;
    if had.as_ref().and_then(|r| parse::<PopKeyRecord>(r).ok()) == Some(record.clone()) {
        return Ok(());
    }
    crate::api::records::put_plain(
        app,
        RecordKind::PopKey,
        pop,
        Owner::Operator,
        WriteOptions::new(Write::Upsert, unix_ms()),
        to_value(&record),
    )
    .await?;
    tracing::info!(%pop, "PoP registered its key: sealing every certificate and secret to it");
    for r in app
        .store
        .records(RecordKind::Certificate, Owner::Operator)
        .await?
    {
        if let Err(e) = publish(app, &r).await {
            tracing::error!(id = %r.id, error = %e, "cannot stream a certificate");
        }
    }
    for r in app
        .store
        .records(RecordKind::WorkerScript, Owner::Operator)
        .await?
    {
        let (Some(account), Ok(s)) = (&r.account, parse::<crate::workers::StoredScript>(&r)) else {
            continue;
        };
        if s.secrets.is_empty() {
            continue;
        }
        if let Err(e) = crate::workers::publish(app, account, &s.name).await {
            tracing::error!(id = %r.id, error = %e, "cannot stream a worker");
        }
    }
    Ok(())
}

/// The zones' exact hostnames an issuer can validate, and those it cannot with why.
pub fn issuable(
    issuer: &Issuer,
    zone: &edgenet_config::ZoneSection,
) -> (Vec<String>, Vec<(String, &'static str)>) {
    let mut ok = BTreeSet::new();
    let mut refused = Vec::new();
    for h in &zone.hostnames {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        match issuer.refuses(&h) {
            Some(why) => refused.push((h, why)),
            None => {
                ok.insert(h);
            }
        }
    }
    (ok.into_iter().collect(), refused)
}

/// The backoff after `attempts` failures in a row.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Keeps the edge certificates and staples until the process ends: a pass at start, at each
/// new version (a zone changed), when woken, and when the next renewal or retry falls due.
pub fn run(app: Arc<App>) {
    tokio::spawn(async move {
        let Some(certs) = app.certs.get() else {
            return;
        };
        // Challenges of orders a previous run left unfinished: no order is in flight yet.
        match app.store.all(Kind::Challenge).await {
            Ok(left) => {
                for token in left.keys() {
                    let gone = app
                        .put(Kind::Challenge, token, None, false, None, Owner::Operator)
                        .await;
                    if let Err(e) = gone {
                        tracing::warn!(%token, error = %e, "cannot withdraw a stale ACME challenge");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the ACME challenges"),
        }
        let mut versions = app.version.subscribe();
        loop {
            let next = match reconcile(&app).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "certificates: a pass failed; again in 10 s");
                    unix_ms() + 10_000
                }
            };
            let wait = Duration::from_millis((next - unix_ms()).clamp(50, 3_600_000) as u64);
            tokio::select! {
                r = versions.changed() => if r.is_err() { return },
                _ = certs.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

/// One pass: the certificates of deleted zones go; each zone's edge certificate is issued,
/// reissued or renewed when due; staples are refreshed. Returns when the next pass is due
/// (Unix milliseconds).
async fn reconcile(app: &Arc<App>) -> Result<i64, StoreError> {
    let certs = app.certs.get().expect("run checks");
    let now_ms = unix_ms();
    let mut next = now_ms + 3_600_000;
    let zones = app.store.all(Kind::Zone).await?;
    let records = app
        .store
        .records(RecordKind::Certificate, Owner::Operator)
        .await?;
    let mut edge_of: BTreeMap<String, Record> = BTreeMap::new();
    for r in records {
        let Ok(c) = parse::<StoredCertificate>(&r) else {
            continue;
        };
        if !zones.contains_key(&c.zone) {
            delete(app, &r).await?;
            continue;
        }
        if let Some(at) = ocsp::due(&c) {
            if at <= now_ms {
                ocsp::refresh(app.clone(), r.clone());
            } else {
                next = next.min(at);
            }
        }
        if c.source == CertificateSource::Edge {
            edge_of.insert(c.zone.clone(), r);
        }
    }
    let Some(issuer) = &certs.issuer else {
        return Ok(next);
    };
    for (name, z) in &zones {
        let Ok(zone) = serde_json::from_value::<edgenet_config::ZoneSection>(z.body.clone()) else {
            continue;
        };
        let (wanted, _) = issuable(issuer, &zone);
        let owner = z.account.as_deref().map_or(Owner::Operator, Owner::Account);
        let existing = edge_of.get(name);
        if wanted.is_empty() {
            if let Some(r) = existing {
                delete(app, r).await?;
            }
            continue;
        }
        let stored = existing.and_then(|r| parse::<StoredCertificate>(r).ok());
        let due = match &stored {
            None => Some(now_ms),
            Some(c) => {
                let names_changed = c.current.as_ref().is_none_or(|m| m.hosts != wanted);
                let renew = c.renew_at().map_or(i64::MAX, |s| s.saturating_mul(1000));
                let at = if names_changed { now_ms } else { renew };
                Some(at.max(c.next_attempt_ms))
            }
        };
        match due {
            Some(at) if at <= now_ms => {
                let id = edge_id(name);
                if !lock(&certs.in_flight).insert(id.clone()) {
                    continue;
                }
                let body = stored.unwrap_or_else(|| {
                    StoredCertificate::new(name, CertificateSource::Edge, None, now_ms)
                });
                issue(app.clone(), issuer, id, owner.account(), body, wanted).await;
            }
            Some(at) => next = next.min(at),
            None => {}
        }
    }
    Ok(next)
}

/// Issues (or renews) edge certificate `id` for `hosts`: at once with the local CA; in a task
/// of its own with ACME, which waits on the CA and the PoPs.
async fn issue(
    app: Arc<App>,
    issuer: &Issuer,
    id: String,
    account: Option<String>,
    mut body: StoredCertificate,
    hosts: Vec<String>,
) {
    body.state = if body.current.is_some() {
        State::Renewing
    } else {
        State::Pending
    };
    match issuer {
        Issuer::Local(ca) => {
            let outcome = ca
                .issue(&hosts, LOCAL_DAYS)
                .map(|(chain, key)| (chain, key, None));
            finish(&app, &id, account, body, hosts, outcome).await;
        }
        Issuer::Acme(acme) => {
            let owner = account.as_deref().map_or(Owner::Operator, Owner::Account);
            if let Err(e) = save(&app, &id, owner, &body).await {
                tracing::error!(%id, error = %e, "cannot store a certificate's state");
            }
            let acme = acme.clone();
            tokio::spawn(async move {
                let outcome = acme.order(&app, &id, &hosts).await;
                finish(&app, &id, account, body, hosts, outcome).await;
            });
        }
    }
}

/// Stores an issuance's outcome: the new material (checked as an upload is), or the failure
/// with the next attempt's time; then lets [`run`] look again.
async fn finish(
    app: &Arc<App>,
    id: &str,
    account: Option<String>,
    mut body: StoredCertificate,
    hosts: Vec<String>,
    outcome: Result<(String, String, Option<i64>), String>,
) {
    let certs = app.certs.get().expect("issuing needs the certificates");
    let owner = account.as_deref().map_or(Owner::Operator, Owner::Account);
    let now = unix_ms();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let checked = outcome.and_then(|(chain, key, renew_from)| {
        let c = edgenet_certs::check(&chain, &key, &host_refs, now / 1000).map_err(|p| {
            let why: Vec<String> = p.iter().map(|p| p.to_string()).collect();
            format!(
                "the issued certificate fails its checks: {}",
                why.join("; ")
            )
        })?;
        let m =
            Material::new(certs, id, &chain, &key, hosts.clone(), &c).map_err(|e| e.to_string())?;
        Ok((m, renew_from))
    });
    match checked {
        Ok((m, renew_from)) => {
            tracing::info!(%id, zone = %body.zone, serial = %m.serial, issuer = %m.issuer, hosts = ?m.hosts, "edge certificate issued");
            body.current = Some(m);
            body.state = State::Active;
            body.failure = None;
            body.attempts = 0;
            body.next_attempt_ms = 0;
            body.renew_from = renew_from;
            body.modified_ms = now;
            body.ocsp = None;
            body.ocsp_failure = None;
            body.ocsp_attempts = 0;
            body.ocsp_next_attempt_ms = 0;
        }
        Err(why) => {
            body.attempts += 1;
            let wait = backoff(body.attempts);
            tracing::warn!(%id, zone = %body.zone, attempts = body.attempts, retry_in = ?wait, error = %why, "edge certificate not issued");
            body.state = State::Failed;
            body.failure = Some(why);
            body.next_attempt_ms = now + wait.as_millis() as i64;
        }
    }
    if let Err(e) = save(app, id, owner, &body).await {
        tracing::error!(%id, error = %e, "cannot store an issued certificate");
    }
    lock(&certs.in_flight).remove(id);
    certs.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_six_hours() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(4), Duration::from_secs(480));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn a_sealing_key_file_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("edgenet-sealing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("certificates.key");
        let made = load_or_create_sealing_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = made.seal(b"key", "r1").unwrap();
        let again = load_or_create_sealing_key(&path).unwrap();
        assert_eq!(again.open(&sealed, "r1").unwrap(), b"key");
        std::fs::write(&path, "zz").unwrap();
        let err = load_or_create_sealing_key(&path).err().unwrap().to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
