//! An account's tunnels and routing table (Cloudflare Magic's shapes): GRE tunnels under
//! `/v1/accounts/{account}/magic/gre_tunnels`, static routes under `/magic/routes`, and the
//! table as one PoP sees it (`GET /magic/routes?pop=NAME`: statics and the routes that PoP
//! learnt over BGP, each with the health behind its priority there).
//!
//! The rules are the pure crate's (`edgenet-dataplane`); this module stores what they decide
//! and streams each account's tunnels and resolved routes to every PoP as one `magic` object
//! ([`publish`]), which every PoP runs: the tunnels' endpoint is anycast. PoPs report each
//! tunnel's health as they probe it ([`observe_tunnels`]); a tunnel's view shows it by PoP.
//!
//! `tunnels.rs`: the tunnels. `routes.rs`: static routes and the table view. `prefixes.rs`:
//! Letters of Agency and the account's own prefixes (Magic Transit), announced by every PoP
//! that has a path to the customer. `firewall.rs`: the ordered L3/L4 rules and the flood
//! protections their traffic passes.

mod firewall;
mod prefixes;
mod routes;
mod tunnels;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use edgenet_dataplane::table::{NextHop, Route, StaticRouteSpec};
use edgenet_dataplane::tunnel::GreTunnelSpec;
use edgenet_protocol::{Kind, MagicProvision, PrefixProvision, TunnelProvision, TunnelState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cni::customer_side;
use super::records::{parse, to_value};
use super::{lock, App};
use crate::store::{Owner, Record, RecordKind, StoreError, Write, WriteOptions};

/// A tunnel as stored: the spec, and its BGP MD5 key beside it (the spec never serializes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTunnel {
    spec: GreTunnelSpec,
    #[serde(default)]
    md5_key: Option<String>,
}

fn load_tunnel(r: &Record) -> Result<(GreTunnelSpec, Option<String>), StoreError> {
    let t: StoredTunnel = parse(r)?;
    Ok((t.spec, t.md5_key))
}

/// What each PoP last said of one tunnel, by PoP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct TunnelStatus {
    pops: BTreeMap<String, Seen>,
}

/// One PoP's report of a tunnel and when it came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seen {
    at_ms: i64,
    state: TunnelState,
}

/// How often an unchanged report is written again (its counters move).
const REWRITE_EVERY_MS: i64 = 30_000;

/// Where a static route's `nexthop` leads among the account's tunnels and CNIs.
fn resolve(nexthop: IpAddr, tunnels: &[Record], cnis: &[Record]) -> Option<NextHop> {
    for t in tunnels {
        if let Ok((spec, _)) = load_tunnel(t) {
            let v6 = spec.addresses6().map(|(_, theirs)| IpAddr::V6(theirs));
            if IpAddr::V4(spec.customer_address()) == nexthop || v6 == Some(nexthop) {
                return Some(NextHop::Tunnel(spec.name));
            }
        }
    }
    cnis.iter()
        .find(|c| customer_side(c).contains(&nexthop))
        .map(|c| NextHop::Cni(c.id.clone()))
}

/// The account's resolved static routes (a route whose next hop is gone is left out).
fn resolved(routes: &[Record], tunnels: &[Record], cnis: &[Record]) -> Vec<Route> {
    routes
        .iter()
        .filter_map(|r| {
            let spec: StaticRouteSpec = parse(r).ok()?;
            Some(spec.route(resolve(spec.nexthop, tunnels, cnis)?))
        })
        .collect()
}

/// Streams the account's tunnels and routes to every PoP as its `magic` object (a new version
/// only when it changed; none when the account has neither).
pub(crate) async fn publish(app: &App, account: &str) -> Result<(), StoreError> {
    let owner = Owner::Account(account);
    let tunnels = app.store.records(RecordKind::GreTunnel, owner).await?;
    let routes = app.store.records(RecordKind::MagicRoute, owner).await?;
    let cnis = app.store.records(RecordKind::Cni, owner).await?;
    let prefixes = app.store.records(RecordKind::Prefix, owner).await?;
    let (firewall, _) = firewall::ruleset_of(app, account).await?;
    let before = app.store.get(Kind::Magic, account, owner).await?;
    let used = !tunnels.is_empty()
        || !routes.is_empty()
        || !prefixes.is_empty()
        || firewall != Default::default();
    let body = used.then(|| {
        let provision = MagicProvision {
            account: account.to_string(),
            tunnels: tunnels
                .iter()
                .filter_map(|t| {
                    let (spec, md5_key) = load_tunnel(t).ok()?;
                    Some(TunnelProvision {
                        id: t.id.clone(),
                        spec,
                        md5_key,
                    })
                })
                .collect(),
            routes: resolved(&routes, &tunnels, &cnis),
            prefixes: prefixes
                .iter()
                .filter_map(|p| {
                    Some(PrefixProvision {
                        id: p.id.clone(),
                        spec: parse(p).ok()?,
                    })
                })
                .collect(),
            firewall: firewall.clone(),
        };
        to_value(&provision)
    });
    if before.as_ref().map(|b| &b.body) == body.as_ref() {
        return Ok(());
    }
    let version = app
        .put(
            Kind::Magic,
            account,
            body.as_ref(),
            before.is_none(),
            None,
            owner,
        )
        .await?;
    tracing::info!(%account, tunnels = tunnels.len(), routes = routes.len(), prefixes = prefixes.len(), rules = firewall.rules.len(), version, "magic streamed");
    Ok(())
}

/// Records a PoP's tunnel reports (a report of a tunnel that does not exist, or of another
/// account than the tunnel's, is ignored and logged). An unchanged report is written again
/// only every 30 s, for its counters.
pub async fn observe_tunnels(
    app: &App,
    pop: &str,
    at_ms: i64,
    tunnels: &[TunnelState],
) -> Result<(), StoreError> {
    for t in tunnels {
        let owner = Owner::Account(&t.account);
        if app
            .store
            .record(RecordKind::GreTunnel, &t.tunnel, owner)
            .await?
            .is_none()
        {
            tracing::warn!(%pop, tunnel = %t.tunnel, account = %t.account, "report of an unknown tunnel");
            continue;
        }
        let before = app
            .store
            .record(RecordKind::TunnelStatus, &t.tunnel, owner)
            .await?;
        let status: TunnelStatus = before.as_ref().map(parse).transpose()?.unwrap_or_default();
        if let Some(seen) = status.pops.get(pop) {
            if same_state(&seen.state, t) && at_ms - seen.at_ms < REWRITE_EVERY_MS {
                continue;
            }
            if seen.state.health != t.health {
                tracing::info!(%pop, tunnel = %t.tunnel, from = ?seen.state.health, to = ?t.health, reason = ?t.reason, "tunnel health");
            }
        }
        app.store
            .write_record(
                RecordKind::TunnelStatus,
                &t.tunnel,
                owner,
                WriteOptions::new(Write::Upsert, at_ms),
                &|before, _| {
                    let mut status: TunnelStatus =
                        before.map(parse).transpose()?.unwrap_or_default();
                    status.pops.insert(
                        pop.to_string(),
                        Seen {
                            at_ms,
                            state: t.clone(),
                        },
                    );
                    Ok((to_value(&status), vec![]))
                },
            )
            .await?;
    }
    Ok(())
}

/// Whether two reports of a tunnel say the same but for their counters (the first probes sent
/// count as a change: until then its health is only the starting one).
fn same_state(a: &TunnelState, b: &TunnelState) -> bool {
    a.health == b.health
        && (a.probes_sent == 0) == (b.probes_sent == 0)
        && a.since_ms == b.since_ms
        && a.bgp.as_ref().map(|s| (&s.state, s.accepted))
            == b.bgp.as_ref().map(|s| (&s.state, s.accepted))
        && a.learnt == b.learnt
}

/// What PoPs last said of a tunnel, by PoP.
async fn status_of(app: &App, account: &str, tunnel: &str) -> Result<TunnelStatus, StoreError> {
    app.store
        .record(RecordKind::TunnelStatus, tunnel, Owner::Account(account))
        .await?
        .as_ref()
        .map(parse)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Each PoP's last report of a prefix: announced or not (and why), counters.
fn prefix_states(app: &App, id: &str) -> Value {
    lock(&app.reports)
        .iter()
        .filter_map(|(pop, r)| {
            let (states, _, at_ms) = r.magic.as_ref()?;
            let s = states.iter().find(|s| s.prefix == id)?;
            let mut v = to_value(s);
            v["reported_ms"] = serde_json::json!(at_ms);
            Some((pop.clone(), v))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Each firewall rule's counters by PoP, by rule id.
fn rule_counters(app: &App, account: &str) -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (pop, r) in lock(&app.reports).iter() {
        let Some((_, rules, _)) = r.magic.as_ref() else {
            continue;
        };
        for s in rules.iter().filter(|s| s.account == account) {
            out.entry(s.rule.clone()).or_default().insert(
                pop.clone(),
                serde_json::json!({"packets": s.packets, "bytes": s.bytes, "dropped": s.dropped}),
            );
        }
    }
    out.into_iter().map(|(k, v)| (k, v.into())).collect()
}

/// The routes, for [`super::routes`].
pub fn routes(
    r: utoipa_axum::router::OpenApiRouter<Arc<App>>,
) -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    use utoipa_axum::routes;
    r.routes(routes!(tunnels::list_tunnels, tunnels::create_tunnel))
        .routes(routes!(
            tunnels::get_tunnel,
            tunnels::put_tunnel,
            tunnels::delete_tunnel
        ))
        .routes(routes!(routes::list_routes, routes::create_route))
        .routes(routes!(prefixes::upload_loa, prefixes::list_loas))
        .routes(routes!(prefixes::download_loa))
        .routes(routes!(prefixes::list_prefixes, prefixes::create_prefix))
        .routes(routes!(
            prefixes::get_prefix,
            prefixes::put_prefix,
            prefixes::delete_prefix
        ))
        .routes(routes!(prefixes::set_advertised))
        .routes(routes!(firewall::get_firewall, firewall::put_firewall))
        .routes(routes!(
            routes::get_route,
            routes::put_route,
            routes::delete_route
        ))
}

#[cfg(test)]
mod tests;
