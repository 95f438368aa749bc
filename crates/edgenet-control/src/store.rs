//! The control plane's state in SQL: accounts, zones, PoPs, API tokens, the change log and
//! what each PoP applied. An object or token with an account belongs to it; one without is the
//! operator's. The same queries run on SQLite (embedded default) and PostgreSQL through sqlx's
//! `Any` driver; the schema uses only types and statements both have.
//!
//! Every accepted change takes the next global version inside one transaction that also
//! writes the object and appends to the change log, so a PoP that follows the log from any
//! version sees every change exactly once, in order.

mod kv;
mod records;

use std::collections::BTreeMap;

use edgenet_protocol::{Change, Kind};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

pub use kv::KvEntry;
pub use records::{Compute, Record, RecordKind, Write, WriteOptions};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The object was changed since the ETag the caller holds.
    #[error("the object changed since version {expected} (now {actual})")]
    Conflict {
        /// The version the caller expected.
        expected: i64,
        /// The version stored.
        actual: i64,
    },
    /// An object with that name exists already.
    #[error("{0:?} exists already")]
    Exists(String),
    /// No object with that name.
    #[error("{0:?} does not exist")]
    NotFound(String),
    /// An account still owns this object.
    #[error("the account still owns {0}: delete it first")]
    Owns(String),
    /// What was to be written is invalid: each field and why.
    #[error("invalid: {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<edgenet_interconnect::Problem>),
    /// The write is refused in the object's present state (a workflow step out of order, a
    /// slot taken).
    #[error("{0}")]
    Refused(String),
    /// Concurrent writes kept winning a claim.
    #[error("{0}")]
    Busy(String),
}

/// A stored object with its version (the ETag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The name.
    pub name: String,
    /// The body as the API accepted it.
    pub body: serde_json::Value,
    /// The global version of its last change.
    pub version: i64,
    /// The account that owns it (`None`: the operator's).
    #[serde(default)]
    pub account: Option<String>,
}

/// Whose objects a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The operator's view: every object, and new objects without an account.
    Operator,
    /// One account's: its own objects only; others' do not exist.
    Account(&'a str),
}

impl Owner<'_> {
    /// The account, as a new object's owner column.
    pub fn account(self) -> Option<String> {
        match self {
            Owner::Operator => None,
            Owner::Account(a) => Some(a.to_string()),
        }
    }

    /// Whether an object owned by `account` is visible.
    pub fn sees(self, account: Option<&str>) -> bool {
        match self {
            Owner::Operator => true,
            Owner::Account(a) => account == Some(a),
        }
    }
}

/// An account: it owns zones and tokens (and, later, interconnects, tunnels, routes and
/// certificates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    /// Its id (32 hex digits), in its routes: `/v1/accounts/ID/...`.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Unix seconds.
    pub created: i64,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// `read`, `write`, `admin`, `pop`, `pop-admin`.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// The account it acts for (`None`: the operator's, which sees every account).
    #[serde(default)]
    pub account: Option<String>,
    /// The connectivity partner a `partner` token acts for: it submits and follows that
    /// partner's requests and reaches nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
}

/// What a PoP last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PopStatus {
    /// The PoP's name.
    pub name: String,
    /// The last version it applied.
    pub applied: i64,
    /// Unix milliseconds of its last message.
    pub last_seen_ms: i64,
    /// The error of the last version it refused, if the last version was refused.
    pub last_error: Option<String>,
}

/// The store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, \
     version BIGINT NOT NULL, PRIMARY KEY (kind, name))",
    "CREATE TABLE IF NOT EXISTS changes (version BIGINT PRIMARY KEY, kind TEXT NOT NULL, \
     name TEXT NOT NULL, body TEXT)",
    "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, \
     hash TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL, created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pop_status (name TEXT PRIMARY KEY, applied BIGINT NOT NULL, \
     last_seen_ms BIGINT NOT NULL, last_error TEXT)",
    "CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL, \
     created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS object_reports (pop TEXT NOT NULL, kind TEXT NOT NULL, \
     name TEXT NOT NULL, body TEXT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (pop, kind, name))",
    // Worker components by content: `BYTEA` is PostgreSQL's binary type; SQLite keeps a blob
    // as a blob whatever the column's declared type.
    "CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, size BIGINT NOT NULL, \
     created_ms BIGINT NOT NULL, body BYTEA NOT NULL)",
];

/// Columns added after a table's first release: `(table, column, type)`, added to a database
/// that lacks them.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("objects", "account", "TEXT"),
    ("tokens", "account", "TEXT"),
    ("tokens", "partner", "TEXT"),
];

impl Store {
    /// Opens (and creates) the database at `url`: `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            // SQLite has one writer; more connections only wait on its lock.
            .max_connections(if sqlite { 1 } else { 8 })
            .connect(&url)
            .await?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&pool)
                .await?;
        }
        for stmt in SCHEMA.iter().chain(records::SCHEMA).chain(kv::SCHEMA) {
            sqlx::query(stmt).execute(&pool).await?;
        }
        for (table, column, ty) in ADDED_COLUMNS {
            // Both databases answer a query of a missing column with an error.
            let present = sqlx::query(&format!("SELECT {column} FROM {table} LIMIT 0"))
                .fetch_all(&pool)
                .await
                .is_ok();
            if !present {
                sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .execute(&pool)
                    .await?;
            }
        }
        for counter in ["version", "kv", "kv_pruned"] {
            let exists = sqlx::query("SELECT value FROM counters WHERE name = $1")
                .bind(counter)
                .fetch_optional(&pool)
                .await?;
            if exists.is_none() {
                sqlx::query("INSERT INTO counters (name, value) VALUES ($1, 0)")
                    .bind(counter)
                    .execute(&pool)
                    .await?;
            }
        }
        Ok(Store { pool })
    }

    /// The current global version.
    pub async fn version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'version'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Objects of a kind that `owner` sees, in name order, from after `cursor`, at most
    /// `limit`.
    pub async fn list(
        &self,
        kind: Kind,
        owner: Owner<'_>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Stored>, StoreError> {
        let rows = match owner {
            Owner::Operator => sqlx::query(
                "SELECT name, body, version, account FROM objects WHERE kind = $1 AND name > $2 \
                 ORDER BY name LIMIT $3",
            )
            .bind(kind.as_str())
            .bind(cursor.unwrap_or(""))
            .bind(limit),
            Owner::Account(a) => sqlx::query(
                "SELECT name, body, version, account FROM objects WHERE kind = $1 AND name > $2 \
                 AND account = $4 ORDER BY name LIMIT $3",
            )
            .bind(kind.as_str())
            .bind(cursor.unwrap_or(""))
            .bind(limit)
            .bind(a),
        }
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Every object of a kind, by name.
    pub async fn all(&self, kind: Kind) -> Result<BTreeMap<String, Stored>, StoreError> {
        let rows = sqlx::query("SELECT name, body, version, account FROM objects WHERE kind = $1")
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| stored(r).map(|s| (s.name.clone(), s)))
            .collect()
    }

    /// One object, if `owner` sees it.
    pub async fn get(
        &self,
        kind: Kind,
        name: &str,
        owner: Owner<'_>,
    ) -> Result<Option<Stored>, StoreError> {
        let row = sqlx::query(
            "SELECT name, body, version, account FROM objects WHERE kind = $1 AND name = $2",
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let found = row.as_ref().map(stored).transpose()?;
        Ok(found.filter(|s| owner.sees(s.account.as_deref())))
    }

    /// Creates, replaces or deletes (`body: None`) an object as one new version, as `owner`
    /// (a new object belongs to it; an object it does not see does not exist for it).
    /// `create` refuses an existing name (names are global, as domain names are); `if_match`
    /// refuses when the stored version differs. Returns the new version.
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        body: Option<&serde_json::Value>,
        create: bool,
        if_match: Option<i64>,
        owner: Owner<'_>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT version, account FROM objects WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let (current, account): (Option<i64>, Option<String>) = match &row {
            Some(r) => (Some(r.try_get(0)?), r.try_get(1)?),
            None => (None, None),
        };
        let visible = current.filter(|_| owner.sees(account.as_deref()));
        match (current, create, body) {
            (Some(_), true, _) => return Err(StoreError::Exists(name.to_string())),
            _ if !create && visible.is_none() => {
                return Err(StoreError::NotFound(name.to_string()))
            }
            (None, false, _) | (None, _, None) => {
                return Err(StoreError::NotFound(name.to_string()))
            }
            _ => {}
        }
        if let (Some(expected), Some(actual)) = (if_match, current) {
            if expected != actual {
                return Err(StoreError::Conflict { expected, actual });
            }
        }
        let version: i64 = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'version' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let text = body.map(|b| b.to_string());
        sqlx::query("INSERT INTO changes (version, kind, name, body) VALUES ($1, $2, $3, $4)")
            .bind(version)
            .bind(kind.as_str())
            .bind(name)
            .bind(text.clone())
            .execute(&mut *tx)
            .await?;
        match text {
            Some(t) if current.is_some() => {
                sqlx::query(
                    "UPDATE objects SET body = $1, version = $2 WHERE kind = $3 AND name = $4",
                )
                .bind(t)
                .bind(version)
                .bind(kind.as_str())
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            Some(t) => {
                sqlx::query(
                    "INSERT INTO objects (kind, name, body, version, account) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(kind.as_str())
                .bind(name)
                .bind(t)
                .bind(version)
                .bind(owner.account())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM objects WHERE kind = $1 AND name = $2")
                    .bind(kind.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(version)
    }

    /// Changes after `since`, in order, at most `limit`, as the stream sends them.
    pub async fn changes_since(&self, since: i64, limit: i64) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, kind, name, body FROM changes WHERE version > $1 \
             ORDER BY version LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get(1)?;
            let body: Option<String> = r.try_get(3)?;
            // Only this version's kinds are ever written.
            let Some(kind) = Kind::from_name(&kind) else {
                continue;
            };
            changes.push(Change::from_json(
                r.try_get(0)?,
                kind,
                r.try_get(2)?,
                body.map(|b| serde_json::from_str(&b).unwrap_or_default()),
            ));
        }
        Ok(changes)
    }

    /// Stores a token's hash and scopes.
    pub async fn add_token(&self, info: &TokenInfo, hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, name, hash, scopes, created, account, partner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(hash)
        .bind(info.scopes.join(","))
        .bind(info.created)
        .bind(info.account.clone())
        .bind(info.partner.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, scopes, created, account, partner FROM tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_info).transpose()
    }

    /// The tokens `owner` sees: the operator every token, an account its own.
    pub async fn tokens(&self, owner: Owner<'_>) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created, account, partner FROM tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let all = rows.iter().map(token_info);
        all.filter(|t| {
            t.as_ref()
                .map_or(true, |t| owner.sees(t.account.as_deref()))
        })
        .collect()
    }

    /// Deletes a token `owner` sees; false when there was none.
    pub async fn delete_token(&self, id: &str, owner: Owner<'_>) -> Result<bool, StoreError> {
        let r = match owner {
            Owner::Operator => sqlx::query("DELETE FROM tokens WHERE id = $1").bind(id),
            Owner::Account(a) => sqlx::query("DELETE FROM tokens WHERE id = $1 AND account = $2")
                .bind(id)
                .bind(a),
        }
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Stores `body` under its SHA-256 (hex), once: storing the same bytes again is a no-op.
    /// Returns the hash.
    pub async fn put_blob(&self, body: &[u8], now_ms: i64) -> Result<String, StoreError> {
        let sha256: String = ring::digest::digest(&ring::digest::SHA256, body)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let have = sqlx::query("SELECT size FROM blobs WHERE sha256 = $1")
            .bind(&sha256)
            .fetch_optional(&self.pool)
            .await?;
        if have.is_none() {
            let inserted = sqlx::query(
                "INSERT INTO blobs (sha256, size, created_ms, body) VALUES ($1, $2, $3, $4)",
            )
            .bind(&sha256)
            .bind(body.len() as i64)
            .bind(now_ms)
            .bind(body.to_vec())
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => {}
                // Two uploads of the same bytes at once: the other one stored them.
                Err(sqlx::Error::Database(d))
                    if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(sha256)
    }

    /// The bytes stored under `sha256`, if any.
    pub async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT body FROM blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Deletes the blobs no name in `used` refers to; returns how many went.
    pub async fn prune_blobs(
        &self,
        used: &std::collections::BTreeSet<String>,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query("SELECT sha256 FROM blobs")
            .fetch_all(&self.pool)
            .await?;
        let mut gone = 0;
        for r in rows {
            let sha: String = r.try_get(0)?;
            if !used.contains(&sha) {
                sqlx::query("DELETE FROM blobs WHERE sha256 = $1")
                    .bind(&sha)
                    .execute(&self.pool)
                    .await?;
                gone += 1;
            }
        }
        Ok(gone)
    }

    /// Records a PoP's latest state of an object (replacing the one before).
    pub async fn set_object_report(
        &self,
        pop: &str,
        report: &edgenet_protocol::ObjectReport,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let kind = kind_name(report.kind);
        let body = serde_json::to_string(report).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM object_reports WHERE pop = $1 AND kind = $2 AND name = $3")
            .bind(pop)
            .bind(&kind)
            .bind(&report.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO object_reports (pop, kind, name, body, at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(pop)
        .bind(&kind)
        .bind(&report.name)
        .bind(body)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a PoP's state of an object it no longer runs.
    pub async fn delete_object_report(
        &self,
        pop: &str,
        kind: edgenet_protocol::ReportedKind,
        name: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM object_reports WHERE pop = $1 AND kind = $2 AND name = $3")
            .bind(pop)
            .bind(kind_name(kind))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every PoP's latest state of every object: (PoP, report, Unix milliseconds).
    pub async fn object_reports(
        &self,
    ) -> Result<Vec<(String, edgenet_protocol::ObjectReport, i64)>, StoreError> {
        let rows = sqlx::query("SELECT pop, body, at_ms FROM object_reports")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let body: String = r.try_get(1)?;
            // A report this version cannot read (a newer one's) is left out.
            if let Ok(report) = serde_json::from_str(&body) {
                out.push((r.try_get(0)?, report, r.try_get(2)?));
            }
        }
        Ok(out)
    }

    /// Creates an account.
    pub async fn add_account(&self, a: &Account) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO accounts (id, name, created) VALUES ($1, $2, $3)")
            .bind(&a.id)
            .bind(&a.name)
            .bind(a.created)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every account, by id.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created FROM accounts ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account).collect()
    }

    /// One account.
    pub async fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT id, name, created FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account).transpose()
    }

    /// Deletes an account with its tokens, interconnect settings and webhook deliveries;
    /// refused while it owns objects, interconnects, CNIs or subscriptions (they would lose
    /// their owner). False when there was none.
    pub async fn delete_account(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let owned = sqlx::query("SELECT kind, name FROM objects WHERE account = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let owned = match owned {
            Some(r) => Some(r),
            None => {
                // Its settings and delivery records go with it; its interconnects, CNIs and
                // subscriptions must be deleted first.
                sqlx::query(
                    "SELECT kind, id FROM cni_records WHERE account = $1 \
                     AND kind NOT IN ('settings', 'delivery') LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        if let Some(r) = owned {
            let (kind, name): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            return Err(StoreError::Owns(format!("{kind} {name:?}")));
        }
        sqlx::query("DELETE FROM tokens WHERE account = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM cni_records WHERE account = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records what a PoP reported.
    pub async fn set_pop_status(&self, s: &PopStatus) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM pop_status WHERE name = $1")
            .bind(&s.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pop_status (name, applied, last_seen_ms, last_error) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&s.name)
        .bind(s.applied)
        .bind(s.last_seen_ms)
        .bind(s.last_error.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every PoP's last report.
    pub async fn pop_statuses(&self) -> Result<BTreeMap<String, PopStatus>, StoreError> {
        let rows = sqlx::query("SELECT name, applied, last_seen_ms, last_error FROM pop_status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let s = PopStatus {
                    name: r.try_get(0)?,
                    applied: r.try_get(1)?,
                    last_seen_ms: r.try_get(2)?,
                    last_error: r.try_get(3)?,
                };
                Ok((s.name.clone(), s))
            })
            .collect()
    }
}

fn stored(r: &sqlx::any::AnyRow) -> Result<Stored, StoreError> {
    let body: String = r.try_get(1)?;
    Ok(Stored {
        name: r.try_get(0)?,
        body: serde_json::from_str(&body).unwrap_or_default(),
        version: r.try_get(2)?,
        account: r.try_get(3)?,
    })
}

fn kind_name(kind: edgenet_protocol::ReportedKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn account(r: &sqlx::any::AnyRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        created: r.try_get(2)?,
    })
}

fn token_info(r: &sqlx::any::AnyRow) -> Result<TokenInfo, StoreError> {
    let scopes: String = r.try_get(2)?;
    Ok(TokenInfo {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        created: r.try_get(3)?,
        account: r.try_get(4)?,
        partner: r.try_get(5)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use edgenet_protocol::{Decoded, ObjectChange};
    use serde_json::json;

    /// A store in an in-memory SQLite database (one connection: the database lives as long as
    /// it does).
    pub(crate) async fn memory() -> Store {
        Store::open("sqlite::memory:").await.unwrap()
    }

    /// A zone body that validates.
    pub(crate) fn zone(name: &str) -> serde_json::Value {
        json!({"name": name, "hostnames": [format!("{name}.test")],
            "origins": {"servers": [{"address": "127.0.0.1:8000"}]}})
    }

    #[tokio::test]
    async fn blobs_are_kept_once_by_content_and_pruned_when_unused() {
        let s = memory().await;
        let body = b"\0asm\x0d\0\x01\0 component bytes".to_vec();
        let a = s.put_blob(&body, 1).await.unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(
            s.put_blob(&body, 2).await.unwrap(),
            a,
            "the same bytes, the same name"
        );
        assert_eq!(s.blob(&a).await.unwrap().as_deref(), Some(&body[..]));
        let b = s.put_blob(b"other", 3).await.unwrap();
        let used: std::collections::BTreeSet<String> = [a.clone()].into();
        assert_eq!(s.prune_blobs(&used).await.unwrap(), 1);
        assert!(s.blob(&b).await.unwrap().is_none());
        assert!(s.blob(&a).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn every_write_is_one_version_in_order() {
        let s = memory().await;
        assert_eq!(s.version().await.unwrap(), 0);
        let v1 = s
            .put(
                Kind::Zone,
                "a",
                Some(&zone("a")),
                true,
                None,
                Owner::Operator,
            )
            .await
            .unwrap();
        let v2 = s
            .put(
                Kind::Pop,
                "p1",
                Some(&json!({"name": "p1"})),
                true,
                None,
                Owner::Operator,
            )
            .await
            .unwrap();
        let v3 = s
            .put(
                Kind::Zone,
                "a",
                Some(&zone("a")),
                false,
                Some(v1),
                Owner::Operator,
            )
            .await
            .unwrap();
        let v4 = s
            .put(Kind::Zone, "a", None, false, None, Owner::Operator)
            .await
            .unwrap();
        assert_eq!((v1, v2, v3, v4), (1, 2, 3, 4));
        assert_eq!(s.version().await.unwrap(), 4);
        assert_eq!(
            s.get(Kind::Zone, "a", Owner::Operator).await.unwrap(),
            None,
            "deleted"
        );
        assert_eq!(
            s.get(Kind::Pop, "p1", Owner::Operator)
                .await
                .unwrap()
                .unwrap()
                .version,
            2
        );

        let changes = s.changes_since(1, 10).await.unwrap();
        let versions: Vec<i64> = changes.iter().map(|c| c.version).collect();
        assert_eq!(versions, [2, 3, 4]);
        assert!(
            matches!(&changes[1].object, ObjectChange::Zone { name, body: Some(Decoded::Ok(z)) } if name == "a" && z.hostnames == ["a.test"])
        );
        assert_eq!(
            changes[2].object,
            ObjectChange::Zone {
                name: "a".into(),
                body: None
            }
        );
        assert!(
            matches!(
                &changes[0].object,
                ObjectChange::Pop {
                    body: Some(Decoded::Invalid { .. }),
                    ..
                }
            ),
            "a PoP record without its fields does not decode"
        );
        assert_eq!(
            s.changes_since(0, 2).await.unwrap().len(),
            2,
            "the limit holds"
        );
    }

    #[tokio::test]
    async fn creates_conflicts_and_missing_objects_are_refused_and_change_nothing() {
        let s = memory().await;
        let v = s
            .put(
                Kind::Zone,
                "a",
                Some(&zone("a")),
                true,
                None,
                Owner::Operator,
            )
            .await
            .unwrap();
        assert!(matches!(
            s.put(Kind::Zone, "a", Some(&zone("a")), true, None, Owner::Operator).await,
            Err(StoreError::Exists(n)) if n == "a"
        ));
        assert!(matches!(
            s.put(Kind::Zone, "a", Some(&zone("a")), false, Some(v + 7), Owner::Operator).await,
            Err(StoreError::Conflict { expected, actual }) if expected == v + 7 && actual == v
        ));
        assert!(matches!(
            s.put(
                Kind::Zone,
                "b",
                Some(&zone("b")),
                false,
                None,
                Owner::Operator
            )
            .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.put(Kind::Zone, "b", None, false, None, Owner::Operator)
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.version().await.unwrap(), v, "no version was taken");
        assert_eq!(s.changes_since(0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn lists_page_by_name_per_kind() {
        let s = memory().await;
        for n in ["c", "a", "b"] {
            s.put(Kind::Zone, n, Some(&zone(n)), true, None, Owner::Operator)
                .await
                .unwrap();
        }
        s.put(
            Kind::Pop,
            "a",
            Some(&json!({})),
            true,
            None,
            Owner::Operator,
        )
        .await
        .unwrap();
        let page = s.list(Kind::Zone, Owner::Operator, None, 2).await.unwrap();
        let names: Vec<&str> = page.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let next = s
            .list(Kind::Zone, Owner::Operator, Some("b"), 2)
            .await
            .unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].name, "c");
        assert_eq!(s.all(Kind::Zone).await.unwrap().len(), 3);
        assert_eq!(s.all(Kind::Pop).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn tokens_are_found_by_hash_and_pop_reports_replace_each_other() {
        let s = memory().await;
        let t = TokenInfo {
            id: "t1".into(),
            name: "ops".into(),
            scopes: vec!["read".into(), "write".into()],
            created: 1,
            account: None,
            partner: None,
        };
        s.add_token(&t, "hash1").await.unwrap();
        assert_eq!(s.token_by_hash("hash1").await.unwrap(), Some(t.clone()));
        assert_eq!(s.token_by_hash("other").await.unwrap(), None);
        assert_eq!(s.tokens(Owner::Operator).await.unwrap(), [t]);
        assert!(s.delete_token("t1", Owner::Operator).await.unwrap());
        assert!(!s.delete_token("t1", Owner::Operator).await.unwrap());

        let mut status = PopStatus {
            name: "p1".into(),
            applied: 3,
            last_seen_ms: 10,
            last_error: None,
        };
        s.set_pop_status(&status).await.unwrap();
        status.applied = 4;
        status.last_error = Some("version 5: bad".into());
        s.set_pop_status(&status).await.unwrap();
        let all = s.pop_statuses().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all["p1"], status);
    }
}
