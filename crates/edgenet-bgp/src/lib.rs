//! BGP-4 for the PoP's anycast announcements (DESIGN.md section 4).
//!
//! `message` is the wire codec (RFC 4271 with RFC 5492 capabilities, RFC 6793 four-octet AS
//! numbers, RFC 4760 multiprotocol reachability, RFC 2918 route refresh, RFC 1997 and 8092
//! communities), pure: bytes in, values out, and back. `fsm` is the RFC 4271 state machine,
//! pure: events (timer expiries, TCP outcomes, messages) in, actions out. The session driver
//! (sockets, timers, TCP MD5), BFD and the RIB are the work in progress (see the issue notes).

pub mod bfd;
pub mod fsm;
pub mod message;
pub mod rib;
pub mod socket;
pub mod speaker;

pub use message::{Message, MessageError};
