//! Records: sites, partners, interconnects, CNIs, account settings, maintenance events,
//! notification subscriptions and webhook deliveries, tunnels, routes, prefixes, firewall
//! rules, certificates and PoP keys, each a JSON body with its own
//! version (the ETag), owned by an account or the operator. They are not part of the
//! configuration stream (the next layer provisions PoPs from them).
//!
//! What must never be given twice, a port or a point-to-point address, is a claim: a row of
//! `cni_claims` whose primary key is the thing claimed (`slot:gru-b/edge01/et-0/0/1`,
//! `v4:192.0.2.0/31`). [`Store::write_record`] computes a record and its claims from the claims
//! of every other record inside the transaction that writes them, so two concurrent creates
//! cannot take the same one: on SQLite the transactions run one at a time; on PostgreSQL the
//! second insert of a claim fails as a duplicate key and the write is computed again. A record
//! is updated only at the version the write read, so two concurrent updates of one record
//! (two link reports) run one after the other instead of one losing the other.

use std::collections::BTreeSet;

use serde::Serialize;
use sqlx::Row;

use super::{Owner, Store, StoreError};

/// The kinds of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A site (the operator's).
    Site,
    /// A connectivity partner the operator added.
    Partner,
    /// An interconnect (an account's).
    Interconnect,
    /// A CNI (an account's).
    Cni,
    /// An account's interconnect settings; the operator's pools under id `operator`.
    Settings,
    /// A maintenance event (the operator's).
    Maintenance,
    /// A notification subscription (an account's).
    Subscription,
    /// A webhook delivery of a notice (its subscription's account's).
    Delivery,
    /// A GRE tunnel (an account's).
    GreTunnel,
    /// A static route of an account's routing table.
    MagicRoute,
    /// What each PoP last reported of a tunnel (by the tunnel's id).
    TunnelStatus,
    /// A Letter of Agency for announcing an account's prefixes.
    LoaDocument,
    /// A customer prefix (Magic Transit).
    Prefix,
    /// An account's firewall rules and protections (id `ruleset`).
    Firewall,
    /// A certificate, custom or edge (its zone's account's; the operator's for its zones).
    Certificate,
    /// A PoP's registered public keys (by PoP name, the operator's).
    PopKey,
    /// A worker script of an account (id `ACCOUNT/NAME`): its versions, settings, secrets.
    WorkerScript,
    /// A route binding a pattern to a worker script (an account's).
    WorkerRoute,
    /// A KV namespace (an account's).
    KvNamespace,
}

impl RecordKind {
    /// Its name in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Site => "site",
            RecordKind::Partner => "partner",
            RecordKind::Interconnect => "interconnect",
            RecordKind::Cni => "cni",
            RecordKind::Settings => "settings",
            RecordKind::Maintenance => "maintenance",
            RecordKind::Subscription => "subscription",
            RecordKind::Delivery => "delivery",
            RecordKind::GreTunnel => "gre_tunnel",
            RecordKind::MagicRoute => "magic_route",
            RecordKind::TunnelStatus => "tunnel_status",
            RecordKind::LoaDocument => "loa_document",
            RecordKind::Prefix => "prefix",
            RecordKind::Firewall => "firewall",
            RecordKind::Certificate => "certificate",
            RecordKind::PopKey => "pop_key",
            RecordKind::WorkerScript => "worker_script",
            RecordKind::WorkerRoute => "worker_route",
            RecordKind::KvNamespace => "kv_namespace",
        }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// The account that owns it (`None`: the operator's).
    pub account: Option<String>,
    /// Its body.
    pub body: serde_json::Value,
    /// Its version: 1 when created, one more at each write.
    pub version: i64,
    /// Unix milliseconds of its creation.
    pub created_ms: i64,
}

impl Record {
    /// Whose it is, as a query's owner.
    pub fn owner(&self) -> Owner<'_> {
        self.account
            .as_deref()
            .map_or(Owner::Operator, Owner::Account)
    }
}

/// How a write treats an existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A new record: refused when the id exists.
    Create,
    /// An existing record the owner sees, at this version when given.
    Replace(Option<i64>),
    /// Created or replaced.
    Upsert,
}

/// How a write is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Create, replace or either.
    pub write: Write,
    /// Unix milliseconds, a new record's creation time.
    pub now_ms: i64,
    /// Compute and check everything, then store nothing (`validate_only`).
    pub dry_run: bool,
}

impl WriteOptions {
    /// A write at `now_ms` that is stored.
    pub fn new(write: Write, now_ms: i64) -> WriteOptions {
        WriteOptions {
            write,
            now_ms,
            dry_run: false,
        }
    }
}

/// What a write computes from the record before it (if any) and every other record's claims:
/// the new body and the claims it holds, or why not.
pub type Compute<'a> = dyn Fn(Option<&Record>, &BTreeSet<String>) -> Result<(serde_json::Value, Vec<String>), StoreError>
    + Send
    + Sync
    + 'a;

/// How often a write is computed again after losing a claim to a concurrent one.
const CLAIM_RETRIES: usize = 16;

pub(super) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS cni_records (kind TEXT NOT NULL, id TEXT NOT NULL, account TEXT, \
     body TEXT NOT NULL, version BIGINT NOT NULL, created_ms BIGINT NOT NULL, PRIMARY KEY (kind, id))",
    "CREATE TABLE IF NOT EXISTS cni_claims (claim TEXT PRIMARY KEY, owner TEXT NOT NULL)",
];

fn owner_key(kind: RecordKind, id: &str) -> String {
    format!("{}/{id}", kind.as_str())
}

fn record(r: &sqlx::any::AnyRow) -> Result<Record, StoreError> {
    let body: String = r.try_get(2)?;
    Ok(Record {
        id: r.try_get(0)?,
        account: r.try_get(1)?,
        body: serde_json::from_str(&body).unwrap_or_default(),
        version: r.try_get(3)?,
        created_ms: r.try_get(4)?,
    })
}

fn unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d))
        if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

impl Store {
    /// Every record of a kind that `owner` sees, by id.
    pub async fn records(
        &self,
        kind: RecordKind,
        owner: Owner<'_>,
    ) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account, body, version, created_ms FROM cni_records WHERE kind = $1 \
             ORDER BY id",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        let all = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        Ok(all
            .into_iter()
            .filter(|r| owner.sees(r.account.as_deref()))
            .collect())
    }

    /// One record, if `owner` sees it.
    pub async fn record(
        &self,
        kind: RecordKind,
        id: &str,
        owner: Owner<'_>,
    ) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account, body, version, created_ms FROM cni_records \
             WHERE kind = $1 AND id = $2",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let found = row.as_ref().map(record).transpose()?;
        Ok(found.filter(|r| owner.sees(r.account.as_deref())))
    }

    /// Every claim held.
    pub async fn claims(&self) -> Result<BTreeSet<String>, StoreError> {
        let rows = sqlx::query("SELECT claim FROM cni_claims")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// Writes a record as `owner` (a new one belongs to it), its body and claims computed by
    /// `compute` inside the transaction (see the module's documentation). Returns what was
    /// stored.
    pub async fn write_record(
        &self,
        kind: RecordKind,
        id: &str,
        owner: Owner<'_>,
        options: WriteOptions,
        compute: &Compute<'_>,
    ) -> Result<Record, StoreError> {
        for _ in 0..CLAIM_RETRIES {
            match self
                .try_write_record(kind, id, owner, options, compute)
                .await
            {
                Ok(Some(stored)) => return Ok(stored),
                Ok(None) => {
                    tracing::debug!(kind = kind.as_str(), %id, "the record changed under a concurrent write: computing again");
                }
                Err(e) if unique_violation(&e) => {
                    tracing::debug!(kind = kind.as_str(), %id, "a concurrent write took a claim first: computing again");
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Busy(format!(
            "{} {id:?}: concurrent writes kept winning",
            kind.as_str()
        )))
    }

    async fn try_write_record(
        &self,
        kind: RecordKind,
        id: &str,
        owner: Owner<'_>,
        options: WriteOptions,
        compute: &Compute<'_>,
    ) -> Result<Option<Record>, StoreError> {
        let WriteOptions {
            write,
            now_ms,
            dry_run,
        } = options;
        let key = owner_key(kind, id);
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, account, body, version, created_ms FROM cni_records \
             WHERE kind = $1 AND id = $2",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let before = row.as_ref().map(record).transpose()?;
        let visible = before.as_ref().filter(|r| owner.sees(r.account.as_deref()));
        match (write, &before, visible) {
            (Write::Create, Some(_), _) => return Err(StoreError::Exists(id.to_string())),
            (Write::Replace(_), _, None) | (Write::Upsert, Some(_), None) => {
                return Err(StoreError::NotFound(id.to_string()))
            }
            (Write::Replace(Some(expected)), _, Some(r)) if r.version != expected => {
                return Err(StoreError::Conflict {
                    expected,
                    actual: r.version,
                })
            }
            _ => {}
        }
        let rows = sqlx::query("SELECT claim FROM cni_claims WHERE owner <> $1")
            .bind(&key)
            .fetch_all(&mut *tx)
            .await?;
        let taken = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<BTreeSet<String>, _>>()?;
        let (body, claims) = compute(visible, &taken)?;
        sqlx::query("DELETE FROM cni_claims WHERE owner = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        for claim in &claims {
            sqlx::query("INSERT INTO cni_claims (claim, owner) VALUES ($1, $2)")
                .bind(claim)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
        }
        let text = body.to_string();
        let stored = match &before {
            Some(r) => {
                // Only over the version read: a concurrent write in between (PostgreSQL runs
                // them at once) makes this one compute again instead of losing that one.
                let updated = sqlx::query(
                    "UPDATE cni_records SET body = $1, version = $2 \
                     WHERE kind = $3 AND id = $4 AND version = $5",
                )
                .bind(&text)
                .bind(r.version + 1)
                .bind(kind.as_str())
                .bind(id)
                .bind(r.version)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Ok(None);
                }
                Record {
                    body,
                    version: r.version + 1,
                    ..r.clone()
                }
            }
            None => {
                let account = owner.account();
                sqlx::query(
                    "INSERT INTO cni_records (kind, id, account, body, version, created_ms) \
                     VALUES ($1, $2, $3, $4, 1, $5)",
                )
                .bind(kind.as_str())
                .bind(id)
                .bind(account.clone())
                .bind(&text)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                Record {
                    id: id.to_string(),
                    account,
                    body,
                    version: 1,
                    created_ms: now_ms,
                }
            }
        };
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(Some(stored))
    }

    /// Deletes a record `owner` sees (at this version when given) and frees its claims.
    pub async fn delete_record(
        &self,
        kind: RecordKind,
        id: &str,
        owner: Owner<'_>,
        if_match: Option<i64>,
    ) -> Result<Record, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, account, body, version, created_ms FROM cni_records \
             WHERE kind = $1 AND id = $2",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let found = row
            .as_ref()
            .map(record)
            .transpose()?
            .filter(|r| owner.sees(r.account.as_deref()))
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        if let Some(expected) = if_match.filter(|v| *v != found.version) {
            return Err(StoreError::Conflict {
                expected,
                actual: found.version,
            });
        }
        sqlx::query("DELETE FROM cni_claims WHERE owner = $1")
            .bind(owner_key(kind, id))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM cni_records WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Takes the lowest free `n:K` claim.
    fn lowest(
        _: Option<&Record>,
        taken: &BTreeSet<String>,
    ) -> Result<(serde_json::Value, Vec<String>), StoreError> {
        let n = (0..).find(|n| !taken.contains(&format!("n:{n}"))).unwrap();
        Ok((json!({"n": n}), vec![format!("n:{n}")]))
    }

    #[tokio::test]
    async fn concurrent_creates_never_share_a_claim_and_deletes_free_theirs() {
        let s = crate::store::tests::memory().await;
        let writes = (0..24).map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.write_record(
                    RecordKind::Cni,
                    &format!("c{i:02}"),
                    Owner::Account("a"),
                    WriteOptions::new(Write::Create, 5),
                    &lowest,
                )
                .await
                .unwrap()
            })
        });
        let mut ns = BTreeSet::new();
        for w in writes {
            let r = w.await.unwrap();
            assert!(
                ns.insert(r.body["n"].as_i64().unwrap()),
                "{r:?} shares a claim"
            );
            assert_eq!((r.version, r.created_ms), (1, 5));
        }
        assert_eq!(ns, (0..24).collect());
        s.delete_record(RecordKind::Cni, "c03", Owner::Account("a"), None)
            .await
            .unwrap();
        let again = s
            .write_record(
                RecordKind::Cni,
                "new",
                Owner::Account("a"),
                WriteOptions::new(Write::Create, 6),
                &lowest,
            )
            .await
            .unwrap();
        assert_eq!(again.body["n"], 3, "the freed claim is taken again");
    }

    #[tokio::test]
    async fn records_are_versioned_and_seen_only_by_their_owner() {
        let s = crate::store::tests::memory().await;
        let body = |_: Option<&Record>, _: &BTreeSet<String>| Ok((json!({"x": 1}), vec![]));
        s.write_record(
            RecordKind::Interconnect,
            "i1",
            Owner::Account("a"),
            WriteOptions::new(Write::Create, 1),
            &body,
        )
        .await
        .unwrap();
        assert!(matches!(
            s.write_record(
                RecordKind::Interconnect,
                "i1",
                Owner::Account("b"),
                WriteOptions::new(Write::Replace(None), 2),
                &body
            )
            .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.write_record(
                RecordKind::Interconnect,
                "i1",
                Owner::Account("a"),
                WriteOptions::new(Write::Replace(Some(7)), 2),
                &body
            )
            .await,
            Err(StoreError::Conflict {
                expected: 7,
                actual: 1
            })
        ));
        let r = s
            .write_record(
                RecordKind::Interconnect,
                "i1",
                Owner::Account("a"),
                WriteOptions::new(Write::Replace(Some(1)), 2),
                &body,
            )
            .await
            .unwrap();
        assert_eq!((r.version, r.created_ms), (2, 1));
        assert!(s
            .records(RecordKind::Interconnect, Owner::Account("b"))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.records(RecordKind::Interconnect, Owner::Operator)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(s
            .record(RecordKind::Interconnect, "i1", Owner::Account("b"))
            .await
            .unwrap()
            .is_none());
        assert!(matches!(
            s.delete_record(RecordKind::Interconnect, "i1", Owner::Account("b"), None)
                .await,
            Err(StoreError::NotFound(_))
        ));
    }
}
