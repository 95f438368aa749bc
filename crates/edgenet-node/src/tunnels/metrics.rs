//! Prometheus metrics of tunnels and Magic Transit, brought up to the packet path's counters
//! at scrape time: per prefix (packets, bytes, delivered, drops by reason, announced), per
//! firewall rule (packets, bytes, drops), per tunnel (packets and bytes each way, health) and
//! per v2 CNI delivered onto (packets and bytes each way, drops, port up).

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use std::sync::atomic::Ordering::Relaxed;

use edgenet_dataplane::health::Health;
use edgenet_protocol::{PrefixState, RuleState, TunnelState};
use edgenet_proxy::metrics::Metrics;

use super::cni::Delivery;

/// The metrics.
pub struct MagicMetrics {
    prefix_packets: IntCounterVec,
    prefix_bytes: IntCounterVec,
    prefix_delivered: IntCounterVec,
    prefix_dropped: IntCounterVec,
    prefix_announced: IntGaugeVec,
    rule_packets: IntCounterVec,
    rule_bytes: IntCounterVec,
    rule_dropped: IntCounterVec,
    tunnel_packets: IntCounterVec,
    tunnel_bytes: IntCounterVec,
    tunnel_healthy: IntGaugeVec,
    cni_packets: IntCounterVec,
    cni_bytes: IntCounterVec,
    cni_dropped: IntCounterVec,
    cni_up: IntGaugeVec,
}

/// Moves `counter` up to `value` (a counter that went backwards, its object made again, starts
/// over).
fn catch_up(vec: &IntCounterVec, labels: &[&str], value: u64) {
    let c = vec.with_label_values(labels);
    let now = c.get();
    if value >= now {
        c.inc_by(value - now);
    } else {
        let _ = vec.remove_label_values(labels);
        vec.with_label_values(labels).inc_by(value);
    }
}

impl MagicMetrics {
    /// Registers them.
    pub fn new(metrics: &Metrics) -> MagicMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            metrics.register(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            metrics.register(Box::new(g.clone()));
            g
        };
        let prefix = &["account", "prefix"];
        let rule = &["account", "rule"];
        let tunnel = &["account", "tunnel", "direction"];
        let cni = &["account", "cni", "direction"];
        MagicMetrics {
            prefix_packets: counter(
                "edgenet_magic_prefix_packets_total",
                "Packets received for a customer prefix",
                prefix,
            ),
            prefix_bytes: counter(
                "edgenet_magic_prefix_bytes_total",
                "Bytes received for a customer prefix",
                prefix,
            ),
            prefix_delivered: counter(
                "edgenet_magic_prefix_delivered_total",
                "Packets of a customer prefix delivered to the customer",
                prefix,
            ),
            prefix_dropped: counter(
                "edgenet_magic_prefix_dropped_total",
                "Packets of a customer prefix dropped, by reason",
                &["account", "prefix", "reason"],
            ),
            prefix_announced: gauge(
                "edgenet_magic_prefix_announced",
                "1 while this PoP announces the customer prefix",
                prefix,
            ),
            rule_packets: counter(
                "edgenet_magic_rule_packets_total",
                "Packets a firewall rule matched",
                rule,
            ),
            rule_bytes: counter(
                "edgenet_magic_rule_bytes_total",
                "Bytes a firewall rule matched",
                rule,
            ),
            rule_dropped: counter(
                "edgenet_magic_rule_dropped_total",
                "Packets a firewall rule dropped",
                rule,
            ),
            tunnel_packets: counter(
                "edgenet_tunnel_packets_total",
                "Packets through a GRE tunnel (direction in or out)",
                tunnel,
            ),
            tunnel_bytes: counter(
                "edgenet_tunnel_bytes_total",
                "Inner bytes through a GRE tunnel (direction in or out)",
                tunnel,
            ),
            tunnel_healthy: gauge(
                "edgenet_tunnel_health",
                "A tunnel's health here: 2 healthy, 1 degraded, 0 down",
                &["account", "tunnel"],
            ),
            cni_packets: counter(
                "edgenet_cni_delivery_packets_total",
                "Packets delivered onto a v2 CNI (out) or routed from it to the account's networks (in)",
                cni,
            ),
            cni_bytes: counter(
                "edgenet_cni_delivery_bytes_total",
                "Bytes delivered onto a v2 CNI (out) or routed from it to the account's networks (in)",
                cni,
            ),
            cni_dropped: counter(
                "edgenet_cni_delivery_dropped_total",
                "Packets for or from a v2 CNI that could not go on (no route, refused by the kernel)",
                &["account", "cni"],
            ),
            cni_up: gauge(
                "edgenet_cni_delivery_up",
                "1 while a v2 CNI's port is up and delivered onto",
                &["account", "cni"],
            ),
        }
    }

    /// Brings them up to the states.
    pub fn update(
        &self,
        prefixes: &[PrefixState],
        rules: &[RuleState],
        tunnels: &[TunnelState],
        cnis: &[std::sync::Arc<Delivery>],
    ) {
        for p in prefixes {
            let l = [p.account.as_str(), p.cidr.as_str()];
            catch_up(&self.prefix_packets, &l, p.packets);
            catch_up(&self.prefix_bytes, &l, p.bytes);
            catch_up(&self.prefix_delivered, &l, p.delivered);
            for (reason, n) in &p.dropped {
                catch_up(&self.prefix_dropped, &[l[0], l[1], reason], *n);
            }
            self.prefix_announced
                .with_label_values(&l)
                .set(i64::from(p.announced));
        }
        for r in rules {
            let l = [r.account.as_str(), r.rule.as_str()];
            catch_up(&self.rule_packets, &l, r.packets);
            catch_up(&self.rule_bytes, &l, r.bytes);
            catch_up(&self.rule_dropped, &l, r.dropped);
        }
        for t in tunnels {
            let (a, id) = (t.account.as_str(), t.tunnel.as_str());
            catch_up(&self.tunnel_packets, &[a, id, "in"], t.packets_in);
            catch_up(&self.tunnel_packets, &[a, id, "out"], t.packets_out);
            catch_up(&self.tunnel_bytes, &[a, id, "in"], t.bytes_in);
            catch_up(&self.tunnel_bytes, &[a, id, "out"], t.bytes_out);
            let health = match t.health {
                Health::Healthy => 2,
                Health::Degraded => 1,
                Health::Down => 0,
            };
            self.tunnel_healthy.with_label_values(&[a, id]).set(health);
        }
        for d in cnis {
            let (a, id, c) = (d.port.account.as_str(), d.port.id.as_str(), &d.counters);
            catch_up(
                &self.cni_packets,
                &[a, id, "in"],
                c.packets_in.load(Relaxed),
            );
            catch_up(
                &self.cni_packets,
                &[a, id, "out"],
                c.packets_out.load(Relaxed),
            );
            catch_up(&self.cni_bytes, &[a, id, "in"], c.bytes_in.load(Relaxed));
            catch_up(&self.cni_bytes, &[a, id, "out"], c.bytes_out.load(Relaxed));
            catch_up(&self.cni_dropped, &[a, id], c.dropped.load(Relaxed));
            self.cni_up
                .with_label_values(&[a, id])
                .set(i64::from(d.is_up()));
        }
    }
}
