//! The edge key-value store between the control plane and its PoPs: the stream of writes
//! (`GET /v1/kv/stream?since=SEQ`, one [`KvStreamLine`] per line) and what the PoP-scoped
//! routes a PoP forwards its workers' writes to (`/v1/kv/values/{namespace}/{key}`,
//! `/v1/kv/increment/{namespace}/{key}?delta=N`) answer: the write as a [`KvLine`].
//!
//! Writes are numbered on a sequence of their own (not configuration versions); a PoP keeps
//! the number of the last it applied and resumes after it. The last write wins.

use serde::{Deserialize, Serialize};

/// The largest key, in bytes (as Workers KV).
pub const MAX_KEY: usize = 512;
/// The largest value: every PoP keeps a copy (Workers KV allows 25 MiB).
pub const MAX_VALUE: usize = 1 << 20;

/// One write: a value in base64, or none for a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLine {
    /// Its place in the order of writes.
    pub seq: i64,
    /// The namespace's id.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The value, base64; none: deleted.
    pub value: Option<String>,
    /// Unix milliseconds when it expires.
    pub expires_ms: Option<i64>,
    /// Unix milliseconds of the write.
    pub written_ms: i64,
}

/// A line of the KV stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KvStreamLine {
    /// A write.
    Write(KvLine),
    /// Where the stream stands: sent once the writes the PoP asked for are all sent (the PoP
    /// is caught up), then as a ping when idle.
    Head {
        /// The last write sent.
        seq: i64,
        /// The PoP asked for writes after one whose delete is no longer kept: it must drop its
        /// copy; every live value follows.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_heads_and_resets_are_told_apart() {
        let w: KvStreamLine = serde_json::from_str(
            r#"{"seq":3,"namespace":"n","key":"k","value":null,"expires_ms":null,"written_ms":1}"#,
        )
        .unwrap();
        assert!(matches!(
            w,
            KvStreamLine::Write(KvLine {
                seq: 3,
                value: None,
                ..
            })
        ));
        let h: KvStreamLine = serde_json::from_str(r#"{"seq":9}"#).unwrap();
        assert_eq!(
            h,
            KvStreamLine::Head {
                seq: 9,
                reset: false
            }
        );
        let r: KvStreamLine = serde_json::from_str(r#"{"seq":0,"reset":true}"#).unwrap();
        assert_eq!(
            r,
            KvStreamLine::Head {
                seq: 0,
                reset: true
            }
        );
        assert_eq!(
            serde_json::to_string(&KvStreamLine::Head {
                seq: 4,
                reset: false
            })
            .unwrap(),
            r#"{"seq":4}"#
        );
    }
}
