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
//! `tunnels.rs`: the tunnels. `routes.rs`: static routes and the table view.

mod routes;
mod tunnels;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use edgenet_dataplane::table::{NextHop, Route, StaticRouteSpec};
use edgenet_dataplane::tunnel::GreTunnelSpec;
use edgenet_protocol::{Kind, MagicProvision, TunnelProvision, TunnelState};
use serde::{Deserialize, Serialize};

use super::cni::customer_side;
use super::records::{parse, to_value};
use super::App;
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
    let before = app.store.get(Kind::Magic, account, owner).await?;
    let body = (!tunnels.is_empty() || !routes.is_empty()).then(|| {
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
    tracing::info!(%account, tunnels = tunnels.len(), routes = routes.len(), version, "tunnels and routes streamed");
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
        .routes(routes!(
            routes::get_route,
            routes::put_route,
            routes::delete_route
        ))
}

#[cfg(test)]
mod tests;
