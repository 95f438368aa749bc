//! BGP-4 for the PoP's anycast announcements (DESIGN.md section 4).
//!
//! `message` is the wire codec (RFC 4271 with RFC 5492 capabilities, RFC 6793 four-octet AS
//! numbers, RFC 4760 multiprotocol reachability, RFC 2918 route refresh, RFC 1997 and 8092
//! communities), pure: bytes in, values out, and back. The finite state machine and the session
//! driver build on it (work in progress, see the issue notes).

pub mod fsm;
pub mod message;

pub use message::{Message, MessageError};
