//! The control plane's state in SQL: zones, PoPs, API tokens, the change log and what each PoP
//! applied. The same queries run on SQLite (embedded default) and PostgreSQL through sqlx's
//! `Any` driver; the schema uses only types and statements both have.
//!
//! Every accepted change takes the next global version inside one transaction that also
//! writes the object and appends to the change log, so a PoP that follows the log from any
//! version sees every change exactly once, in order.

use std::collections::BTreeMap;

use edgenet_protocol::{Change, Kind};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

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
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// `read`, `write`, `admin`, `pop`.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created: i64,
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
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await?;
        }
        let exists = sqlx::query("SELECT value FROM counters WHERE name = 'version'")
            .fetch_optional(&pool)
            .await?;
        if exists.is_none() {
            sqlx::query("INSERT INTO counters (name, value) VALUES ('version', 0)")
                .execute(&pool)
                .await?;
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

    /// Objects of a kind in name order, from after `cursor`, at most `limit`.
    pub async fn list(
        &self,
        kind: Kind,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Stored>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, body, version FROM objects WHERE kind = $1 AND name > $2 \
             ORDER BY name LIMIT $3",
        )
        .bind(kind.as_str())
        .bind(cursor.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Every object of a kind, by name.
    pub async fn all(&self, kind: Kind) -> Result<BTreeMap<String, Stored>, StoreError> {
        let rows = sqlx::query("SELECT name, body, version FROM objects WHERE kind = $1")
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| stored(r).map(|s| (s.name.clone(), s)))
            .collect()
    }

    /// One object.
    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<Stored>, StoreError> {
        let row =
            sqlx::query("SELECT name, body, version FROM objects WHERE kind = $1 AND name = $2")
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(stored).transpose()
    }

    /// Creates, replaces or deletes (`body: None`) an object as one new version.
    /// `create` refuses an existing name; `if_match` refuses when the stored version differs.
    /// Returns the new version.
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        body: Option<&serde_json::Value>,
        create: bool,
        if_match: Option<i64>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let current: Option<i64> =
            sqlx::query("SELECT version FROM objects WHERE kind = $1 AND name = $2")
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        match (current, create, body) {
            (Some(_), true, _) => return Err(StoreError::Exists(name.to_string())),
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
                    "INSERT INTO objects (kind, name, body, version) VALUES ($1, $2, $3, $4)",
                )
                .bind(kind.as_str())
                .bind(name)
                .bind(t)
                .bind(version)
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
            "INSERT INTO tokens (id, name, hash, scopes, created) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(hash)
        .bind(info.scopes.join(","))
        .bind(info.created)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row = sqlx::query("SELECT id, name, scopes, created FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_info).transpose()
    }

    /// Every token.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query("SELECT id, name, scopes, created FROM tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_info).collect()
    }

    /// Deletes a token; false when there was none.
    pub async fn delete_token(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
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
    })
}
