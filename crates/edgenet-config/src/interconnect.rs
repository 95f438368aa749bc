//! The `[interconnect]` section, validated: the identity of the speaker that runs the CNIs'
//! BGP sessions (shared with `[anycast]` when both are configured: a PoP has one speaker), the
//! kernel table for peering routes, and where receive levels are read.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use edgenet_bgp::bfd::BfdConfig;

use crate::schema::{AnycastSection, InterconnectSection};
use crate::validate::Validator;

/// Validated interconnect settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Interconnect {
    /// Our AS on CNI sessions.
    pub local_as: u32,
    /// The BGP identifier.
    pub router_id: Ipv4Addr,
    /// Where a speaker of its own listens (only without `[anycast]`).
    pub listen: Vec<SocketAddr>,
    /// The kernel routing table of peering routes.
    pub table: u32,
    /// The priority of the rule that sends lookups to `table` first; none: no rule.
    pub rule_priority: Option<u32>,
    /// Per-port receive levels, for ports without diagnostics.
    pub optics_dir: PathBuf,
    /// How often levels and counters are read.
    pub poll_interval: Duration,
    /// Time between connection attempts.
    pub connect_retry: Duration,
    /// The hold time offered.
    pub hold_time: Duration,
    /// BFD timers for CNIs that ask for BFD.
    pub bfd: BfdConfig,
}

impl Validator<'_> {
    pub(crate) fn interconnect(
        &mut self,
        raw: &InterconnectSection,
        anycast: Option<&AnycastSection>,
    ) -> Interconnect {
        let local_as = match (raw.local_as, anycast) {
            (Some(a), Some(any)) if a != any.local_as => {
                self.err(
                    "interconnect.local_as",
                    a.to_string(),
                    format!(
                        "must equal anycast.local_as ({}): the PoP's one speaker runs both",
                        any.local_as
                    ),
                );
                a
            }
            (Some(0), _) => {
                self.err(
                    "interconnect.local_as",
                    "0",
                    "must be between 1 and 4294967295",
                );
                0
            }
            (Some(a), _) => a,
            (None, Some(any)) => any.local_as,
            (None, None) => {
                self.err(
                    "interconnect.local_as",
                    "",
                    "is required without [anycast] (with it, anycast.local_as is used)",
                );
                0
            }
        };
        let router_id = match (&raw.router_id, anycast) {
            (Some(r), _) => match r.parse::<Ipv4Addr>() {
                Ok(a) if !a.is_unspecified() => a,
                _ => {
                    self.err(
                        "interconnect.router_id",
                        r,
                        "must be a non-zero IPv4 address (the BGP identifier)",
                    );
                    Ipv4Addr::new(0, 0, 0, 1)
                }
            },
            (None, Some(any)) => any.router_id.parse().unwrap_or(Ipv4Addr::new(0, 0, 0, 1)),
            (None, None) => {
                self.err(
                    "interconnect.router_id",
                    "",
                    "is required without [anycast] (with it, anycast.router_id is used)",
                );
                Ipv4Addr::new(0, 0, 0, 1)
            }
        };
        if anycast.is_some() && !raw.listen.is_empty() {
            self.err(
                "interconnect.listen",
                raw.listen.join(", "),
                "must be empty with [anycast]: its listeners take the CNIs' connections too",
            );
        }
        let listen = raw
            .listen
            .iter()
            .enumerate()
            .filter_map(|(i, l)| self.socket_addr(&format!("interconnect.listen[{i}]"), l))
            .collect();
        if raw.table == 0 || (253..=255).contains(&raw.table) {
            self.err(
                "interconnect.table",
                raw.table.to_string(),
                "must be a table of its own: not 0, 253 (default), 254 (main) or 255 (local)",
            );
        }
        if raw.rule_priority >= 32766 {
            self.err(
                "interconnect.rule_priority",
                raw.rule_priority.to_string(),
                "must be below 32766, where the main table's rule is (0: no rule)",
            );
        }
        for (what, d, min, max) in [
            ("poll_interval", raw.poll_interval, 50, 60_000),
            ("connect_retry", raw.connect_retry, 100, 600_000),
        ] {
            if d < Duration::from_millis(min) || d > Duration::from_millis(max) {
                self.err(
                    format!("interconnect.{what}"),
                    humantime::format_duration(d).to_string(),
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(Duration::from_millis(min)),
                        humantime::format_duration(Duration::from_millis(max))
                    ),
                );
            }
        }
        if raw.hold_time != Duration::ZERO
            && (raw.hold_time < Duration::from_secs(3)
                || raw.hold_time > Duration::from_secs(65535))
        {
            self.err(
                "interconnect.hold_time",
                humantime::format_duration(raw.hold_time).to_string(),
                "must be 0 or between 3s and 65535s (RFC 4271)",
            );
        }
        let bfd = match &raw.bfd {
            Some(b) => self.bfd("interconnect.bfd", b),
            None => BfdConfig {
                desired_min_tx: Duration::from_millis(300),
                required_min_rx: Duration::from_millis(300),
                detect_mult: 3,
            },
        };
        Interconnect {
            local_as,
            router_id,
            listen,
            table: raw.table,
            rule_priority: (raw.rule_priority != 0).then_some(raw.rule_priority),
            optics_dir: self.resolve(&raw.optics_dir),
            poll_interval: raw.poll_interval,
            connect_retry: raw.connect_retry,
            hold_time: raw.hold_time,
            bfd,
        }
    }
}
