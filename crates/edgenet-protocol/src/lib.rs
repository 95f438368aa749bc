//! What the control plane and its PoPs say to each other, as types both sides depend on: the
//! objects (zones, PoP records), the lines of the configuration stream, the PoPs'
//! acknowledgements, and the layout of the NATS key-value bucket that carries the same objects
//! at scale.
//!
//! The server (`edgenet-control`) writes these and the followers (`edgenet-node`) read them;
//! neither indexes JSON by string. An object whose body this side cannot decode (a newer
//! control plane's field, say) is kept as [`Decoded::Invalid`] with the reason, so the PoP
//! refuses that version with a clear error instead of losing the stream.

pub mod nats;
mod objects;
mod stream;

pub use objects::{Decoded, Kind, ObjectSet, Objects, PopRecord};
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
