//! BGP-4 and BFD for the PoP's anycast announcements (DESIGN.md section 4).
//!
//! The pure protocol core builds without tokio or sockets: `message` is the wire codec
//! (RFC 4271 with RFC 5492 capabilities, RFC 6793 four-octet AS numbers, RFC 4760
//! multiprotocol reachability, RFC 2918 route refresh, RFC 1997 and 8092 communities); `fsm`
//! the RFC 4271 state machine (events in, actions out); `rib` the Adj-RIB-In and best-path
//! selection; `bfd` RFC 5880 packets and sessions; `config` the speaker's settings and the
//! per-peer exports as plain values.
//!
//! With the `speaker` feature, `speaker` drives those cores over tokio sockets (`socket`:
//! TCP MD5, BFD's TTL rules). The configuration crate depends on the pure part only.

pub mod bfd;
pub mod config;
pub mod fsm;
pub mod message;
pub mod rib;
#[cfg(feature = "speaker")]
pub mod socket;
#[cfg(feature = "speaker")]
pub mod speaker;

pub use message::{Message, MessageError};
