//! What the control plane and its PoPs say to each other, as types both sides depend on: the
//! objects (zones, PoP records, PoP admin tokens), the lines of the configuration stream, the
//! PoPs' reports (acknowledgements, object states, counters: [`report`]), the edge key-value
//! store's stream ([`kv`]), purges for the whole network ([`purge`]), and the layout of the NATS key-value bucket that carries the same
//! objects at scale.
//!
//! The server (`edgenet-control`) writes these and the followers (`edgenet-node`) read them;
//! neither indexes JSON by string. An object whose body this side cannot decode (a newer
//! control plane's field, say) is kept as [`Decoded::Invalid`] with the reason, so the PoP
//! refuses that version with a clear error instead of losing the stream.

pub mod kv;
pub mod nats;
mod objects;
pub mod purge;
pub mod report;
mod stream;
pub mod validate;

pub use objects::{
    pop_key_id, token_hash, CertificateProvision, CertificateSource, ChallengeProvision,
    ChallengeType, CniProvision, ComponentRef, Decoded, Kind, MagicProvision, ObjectSet, Objects,
    PopRecord, PopToken, PrefixProvision, SealedKey, SealedSecret, TunnelProvision,
    WorkerProvision, WorkerRouteProvision,
};
pub use report::{
    CniSession, Counters, LinkState, NotificationReport, ObjectReport, ObjectState, PrefixState,
    RefusedPrefix, Report, ReportedKind, RuleState, TunnelState, ZoneCounters,
};
pub use stream::{Ack, Change, ObjectChange, StreamMessage, PING_EVERY};

/// Why a version from the control plane cannot be applied as it came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// An object's body did not decode into its type.
    #[error("{kind} {name:?} from the control plane: {reason}")]
    Undecodable {
        /// The object's kind.
        kind: Kind,
        /// Its name.
        name: String,
        /// What the decoder said.
        reason: String,
    },
}

/// `POST /v1/pops/NAME/certificate`: a PoP's certificate signing request for its backbone
/// identity.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateRequest {
    /// The CSR (PEM), naming `NAME.pop.edgenet`.
    pub csr: String,
}

/// The control plane's answer to a [`CertificateRequest`]: the certificate and the CA that
/// signed it (every PoP's).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Issued {
    /// The PoP's certificate (PEM).
    pub certificate: String,
    /// The backbone CA's certificate (PEM).
    pub ca: String,
}

/// The API's envelope around a result (Cloudflare's shape), as a PoP reads it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Envelope<T> {
    /// Whether the call succeeded.
    pub success: bool,
    /// What went wrong, when it did not.
    #[serde(default)]
    pub errors: Vec<ApiProblem>,
    /// The result.
    pub result: Option<T>,
}

/// One error of an API envelope.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ApiProblem {
    /// The status code.
    #[serde(default)]
    pub code: u16,
    /// What is wrong.
    pub message: String,
    /// The field it is about.
    #[serde(default)]
    pub field: Option<String>,
}
