//! The edge key-value store's authoritative copy: `kv_values (namespace, key, value, expires_ms,
//! written_ms, seq)`. Every write (a put, or a delete kept as a tombstone without a value)
//! takes the next `kv` sequence number, so PoPs follow the changes in order from any number
//! (`changes_since`) as they follow configuration versions, but on a sequence of their own: KV
//! writes never make configuration versions. The last write wins (the order of the sequence).
//! Expired values read as absent; [`Store::kv_prune`] drops them and old tombstones.

use sqlx::Row;

use edgenet_interconnect::Problem;

use super::{Store, StoreError};

pub(super) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kv_values (namespace TEXT NOT NULL, key TEXT NOT NULL, \
     value BYTEA, expires_ms BIGINT, written_ms BIGINT NOT NULL, seq BIGINT NOT NULL, \
     PRIMARY KEY (namespace, key))",
    "CREATE INDEX IF NOT EXISTS kv_values_seq ON kv_values (seq)",
];

/// One value (or the tombstone of a deleted one) as stored and streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The namespace's id.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The value; none: deleted.
    pub value: Option<Vec<u8>>,
    /// Unix milliseconds when it expires, if it does.
    pub expires_ms: Option<i64>,
    /// Unix milliseconds of the write.
    pub written_ms: i64,
    /// Its place in the order of writes.
    pub seq: i64,
}

fn entry(r: &sqlx::any::AnyRow) -> Result<KvEntry, StoreError> {
    Ok(KvEntry {
        namespace: r.try_get(0)?,
        key: r.try_get(1)?,
        value: r.try_get(2)?,
        expires_ms: r.try_get(3)?,
        written_ms: r.try_get(4)?,
        seq: r.try_get(5)?,
    })
}

const COLUMNS: &str = "namespace, key, value, expires_ms, written_ms, seq";

impl KvEntry {
    /// Whether it holds a value at `now_ms` (not deleted, not expired).
    pub fn live(&self, now_ms: i64) -> bool {
        self.value.is_some() && self.expires_ms.is_none_or(|x| x > now_ms)
    }
}

/// Writes `value` (none: a tombstone) as the next write, in `tx`.
async fn put(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    namespace: &str,
    key: &str,
    value: Option<&[u8]>,
    expires_ms: Option<i64>,
    now_ms: i64,
) -> Result<KvEntry, StoreError> {
    let seq: i64 =
        sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'kv' RETURNING value")
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    let updated = sqlx::query(
        "UPDATE kv_values SET value = $1, expires_ms = $2, written_ms = $3, seq = $4 \
         WHERE namespace = $5 AND key = $6",
    )
    .bind(value.map(<[u8]>::to_vec))
    .bind(expires_ms)
    .bind(now_ms)
    .bind(seq)
    .bind(namespace)
    .bind(key)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(&format!(
            "INSERT INTO kv_values ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(namespace)
        .bind(key)
        .bind(value.map(<[u8]>::to_vec))
        .bind(expires_ms)
        .bind(now_ms)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    }
    Ok(KvEntry {
        namespace: namespace.to_string(),
        key: key.to_string(),
        value: value.map(<[u8]>::to_vec),
        expires_ms,
        written_ms: now_ms,
        seq,
    })
}

impl Store {
    /// Writes `value` (none: deletes) under `namespace`/`key` as the next write; returns it.
    pub async fn kv_write(
        &self,
        namespace: &str,
        key: &str,
        value: Option<&[u8]>,
        expires_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<KvEntry, StoreError> {
        let mut tx = self.pool.begin().await?;
        let e = put(&mut tx, namespace, key, value, expires_ms, now_ms).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Adds `delta` to the decimal counter at `namespace`/`key` (absent, deleted or expired: 0)
    /// as the next write, in one transaction (so concurrent increments from every PoP all
    /// count); returns it. A value that is not a decimal `u64`, or an overflow, is refused.
    pub async fn kv_increment(
        &self,
        namespace: &str,
        key: &str,
        delta: u64,
        now_ms: i64,
    ) -> Result<KvEntry, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Take the row's lock first (PostgreSQL: a second increment waits for this one).
        sqlx::query("UPDATE kv_values SET seq = seq WHERE namespace = $1 AND key = $2")
            .bind(namespace)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM kv_values WHERE namespace = $1 AND key = $2"
        ))
        .bind(namespace)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let current = row
            .as_ref()
            .map(entry)
            .transpose()?
            .filter(|e| e.live(now_ms));
        let invalid = |reason: String| StoreError::Invalid(vec![Problem::new("key", reason)]);
        let (n, expires_ms) = match current {
            None => (0, None),
            Some(e) => {
                let text = String::from_utf8(e.value.unwrap_or_default()).ok();
                let n = text.and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| {
                    invalid(format!(
                        "{key:?} holds a value that is not a decimal counter"
                    ))
                })?;
                (n, e.expires_ms)
            }
        };
        let n = n
            .checked_add(delta)
            .ok_or_else(|| invalid(format!("{key:?} would overflow a 64-bit counter")))?;
        let text = n.to_string();
        let e = put(
            &mut tx,
            namespace,
            key,
            Some(text.as_bytes()),
            expires_ms,
            now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(e)
    }

    /// The live value of `namespace`/`key` at `now_ms` (not deleted, not expired).
    pub async fn kv_get(
        &self,
        namespace: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<KvEntry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM kv_values WHERE namespace = $1 AND key = $2"
        ))
        .bind(namespace)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let e = row.as_ref().map(entry).transpose()?;
        Ok(e.filter(|e| e.live(now_ms)))
    }

    /// Live keys of `namespace` starting with `prefix`, in order, after `cursor`, at most
    /// `limit`.
    pub async fn kv_list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<KvEntry>, StoreError> {
        // The prefix's range: keys >= prefix and < prefix with its last char bumped; done
        // here on the keys read, since LIKE escapes differ between the databases.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM kv_values WHERE namespace = $1 AND key >= $2 AND key > $3 \
             AND value IS NOT NULL AND (expires_ms IS NULL OR expires_ms > $4) ORDER BY key LIMIT $5"
        ))
        .bind(namespace)
        .bind(prefix)
        .bind(cursor.unwrap_or(""))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let all = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        Ok(all
            .into_iter()
            .take_while(|e| e.key.starts_with(prefix))
            .collect())
    }

    /// Writes after `since`, in order, at most `limit` (tombstones too).
    pub async fn kv_changes_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<KvEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM kv_values WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// The number of the last write.
    pub async fn kv_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'kv'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Drops every value of `namespace` (the namespace is gone); each key becomes a tombstone
    /// so PoPs drop it too.
    pub async fn kv_drop_namespace(
        &self,
        namespace: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let rows =
            sqlx::query("SELECT key FROM kv_values WHERE namespace = $1 AND value IS NOT NULL")
                .bind(namespace)
                .fetch_all(&self.pool)
                .await?;
        let keys: Vec<String> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        for k in &keys {
            self.kv_write(namespace, k, None, None, now_ms).await?;
        }
        Ok(keys.len())
    }

    /// Deletes expired values and tombstones older than `before_ms`, and remembers the newest
    /// tombstone deleted ([`Store::kv_pruned`]): a PoP further behind than that has missed a
    /// delete and starts over from the live values.
    pub async fn kv_prune(&self, now_ms: i64, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let newest: Option<i64> =
            sqlx::query("SELECT MAX(seq) FROM kv_values WHERE value IS NULL AND written_ms < $1")
                .bind(before_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if let Some(seq) = newest {
            sqlx::query("UPDATE counters SET value = $1 WHERE name = 'kv_pruned' AND value < $1")
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        let r = sqlx::query(
            "DELETE FROM kv_values WHERE (value IS NULL AND written_ms < $1) \
             OR (expires_ms IS NOT NULL AND expires_ms <= $2 AND written_ms < $1)",
        )
        .bind(before_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// The newest deleted write whose tombstone was pruned: a PoP that has followed only to
    /// before it must start over.
    pub async fn kv_pruned(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'kv_pruned'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_write_wins_in_order_with_ttl_tombstones_and_prefix_lists() {
        let s = crate::store::tests::memory().await;
        let a = s
            .kv_write("ns", "user:1", Some(b"ann"), None, 10)
            .await
            .unwrap();
        let b = s
            .kv_write("ns", "user:2", Some(b"bob"), Some(50), 11)
            .await
            .unwrap();
        let c = s
            .kv_write("ns", "user:1", Some(b"anne"), None, 12)
            .await
            .unwrap();
        s.kv_write("ns", "users", Some(b"x"), None, 13)
            .await
            .unwrap();
        s.kv_write("other", "user:9", Some(b"y"), None, 14)
            .await
            .unwrap();
        assert!(a.seq < b.seq && b.seq < c.seq);
        assert_eq!(
            s.kv_get("ns", "user:1", 20)
                .await
                .unwrap()
                .unwrap()
                .value
                .unwrap(),
            b"anne"
        );
        assert!(s.kv_get("ns", "user:2", 49).await.unwrap().is_some());
        assert!(
            s.kv_get("ns", "user:2", 50).await.unwrap().is_none(),
            "expired"
        );
        let keys = |v: Vec<KvEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(
            keys(s.kv_list("ns", "user:", None, 10, 20).await.unwrap()),
            ["user:1", "user:2"]
        );
        assert_eq!(
            keys(
                s.kv_list("ns", "user:", Some("user:1"), 10, 20)
                    .await
                    .unwrap()
            ),
            ["user:2"]
        );
        assert_eq!(
            keys(s.kv_list("ns", "user:", None, 10, 60).await.unwrap()),
            ["user:1"]
        );
        assert_eq!(
            keys(s.kv_list("ns", "", None, 2, 20).await.unwrap()),
            ["user:1", "user:2"]
        );
        let d = s.kv_write("ns", "user:1", None, None, 30).await.unwrap();
        assert!(
            s.kv_get("ns", "user:1", 31).await.unwrap().is_none(),
            "deleted"
        );
        // The changes after `b`: user:1 once (its last write, the tombstone), users, other.
        let changes = s.kv_changes_since(b.seq, 100).await.unwrap();
        let seen: Vec<(&str, &str, bool)> = changes
            .iter()
            .map(|e| (e.namespace.as_str(), e.key.as_str(), e.value.is_some()))
            .collect();
        assert_eq!(
            seen,
            [
                ("ns", "users", true),
                ("other", "user:9", true),
                ("ns", "user:1", false)
            ]
        );
        assert_eq!(s.kv_seq().await.unwrap(), d.seq);
        assert_eq!(s.kv_drop_namespace("other", 40).await.unwrap(), 1);
        assert!(s.kv_get("other", "user:9", 41).await.unwrap().is_none());
        // Pruned: expired user:2 and the tombstones older than 35; the newer one stays.
        assert_eq!(s.kv_pruned().await.unwrap(), 0);
        assert_eq!(s.kv_prune(100, 35).await.unwrap(), 2);
        assert_eq!(s.kv_changes_since(0, 100).await.unwrap().len(), 2);
        assert_eq!(
            s.kv_pruned().await.unwrap(),
            d.seq,
            "a PoP behind the pruned tombstone must start over"
        );
    }

    #[tokio::test]
    async fn increments_count_from_zero_keep_the_expiry_and_refuse_what_is_not_a_counter() {
        let s = crate::store::tests::memory().await;
        let value = |e: KvEntry| String::from_utf8(e.value.unwrap()).unwrap();
        assert_eq!(value(s.kv_increment("ns", "n", 5, 10).await.unwrap()), "5");
        let e = s.kv_increment("ns", "n", 2, 11).await.unwrap();
        assert_eq!(value(e.clone()), "7");
        assert!(e.seq > 1, "each increment is a write of its own");
        s.kv_write("ns", "t", Some(b"40"), Some(100), 12)
            .await
            .unwrap();
        let e = s.kv_increment("ns", "t", 2, 13).await.unwrap();
        assert_eq!((e.expires_ms, value(e)), (Some(100), "42".to_string()));
        assert_eq!(
            value(s.kv_increment("ns", "t", 1, 100).await.unwrap()),
            "1",
            "an expired counter starts again"
        );
        s.kv_write("ns", "word", Some(b"abc"), None, 14)
            .await
            .unwrap();
        assert!(matches!(
            s.kv_increment("ns", "word", 1, 15).await,
            Err(StoreError::Invalid(_))
        ));
        s.kv_write("ns", "max", Some(u64::MAX.to_string().as_bytes()), None, 16)
            .await
            .unwrap();
        assert!(s.kv_increment("ns", "max", 1, 17).await.is_err());
    }
}
