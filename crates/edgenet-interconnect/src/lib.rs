//! Interconnects as a product, in the shape of Cloudflare Network Interconnect (CNI): the
//! sites (PoPs) with their facility and devices, each device's dataplane and ports
//! ([`site`]); what each dataplane can carry ([`dataplane`]); the CNI that binds an
//! interconnect to addressing and BGP, checked against its dataplane ([`cni`]); AWS and
//! Google circuits against their providers' rules ([`cloud`]); the
//! point-to-point /31 and /127 allocation from the operator's pools ([`addressing`]); a direct
//! interconnect's Letter of Authorization as a PDF ([`loa`]);
//! the BGP policy of a CNI's session: import filter, max-prefix, exports ([`filter`]);
//! each interconnect type's provisioning workflow ([`workflow`]), status from what its PoP
//! reports ([`status`]) with the receive level read from `ethtool -m` or a per-port file
//! ([`optics`]), maintenance events with their notice rules ([`maintenance`]), and the
//! diversity warning for a customer that one window would cut off ([`diversity`]); and the
//! signatures and retry schedule of notification webhooks ([`webhook`]).
//!
//! Pure: no IO, no clock (time is passed in; time zones from the tz database compiled in). Every refusal is a [`Problem`] naming the field
//! path and the reason, so the API and `edgenet check` report them the same way.

pub mod addressing;
pub mod cloud;
pub mod cni;
pub mod dataplane;
pub mod diversity;
pub mod filter;
pub mod loa;
pub mod maintenance;
pub mod optics;
pub mod site;
pub mod status;
pub mod webhook;
pub mod workflow;

/// One thing wrong with an object: the field path inside it and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// `devices[0].ports[3].optic`.
    pub field: String,
    /// What is wrong, with the value where there is one.
    pub reason: String,
}

impl Problem {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}
