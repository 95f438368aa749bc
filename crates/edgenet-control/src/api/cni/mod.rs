//! Interconnects, the product (Cloudflare Network Interconnect's shapes): the operator's sites,
//! settings, partners and maintenance events under `/v1/cni/...`; each account's
//! interconnects, CNIs, slots, settings, diversity and notification subscriptions under
//! `/v1/accounts/{account}/cni/...`; connectivity partners' virtual-circuit requests under
//! `/v1/cni/partner-requests`, with a partner token that reaches nothing else.
//!
//! The rules are the pure crate's (`edgenet-interconnect`); this module stores what they
//! decide ([`crate::store::Record`]s) and shows it. Where Cloudflare's dashboard shows
//! neither, the API shows an interconnect's configuration and its status with its history.
//! An MD5 key is stored for the PoP that will run the session, and never shown or logged.
//!
//! `operator.rs`: sites, the operator's settings, partners and partner requests.
//! `interconnects.rs`: an account's interconnects, their workflow steps, LOA and status,
//! slots and the diversity warning. `cnis.rs`: CNIs and the account's settings.
//! `notify.rs`: maintenance events, subscriptions, and the webhook deliveries of notices.
//! `diagnostics.rs`: a CNI's timeline, session and prefixes, from its PoP's link reports.

mod cnis;
mod diagnostics;
mod interconnects;
mod notify;
mod operator;

use std::sync::Arc;

use edgenet_interconnect::cloud::CloudCircuit;
use edgenet_interconnect::dataplane::Dataplane;
use edgenet_interconnect::site::{Site, Speed};
use edgenet_interconnect::status::{LinkReport, StatusHistory};
use edgenet_interconnect::workflow::{Party, Workflow};
use edgenet_interconnect::Problem;
use serde::{Deserialize, Serialize};

use super::records::{
    found, if_match, new_id, page, page_of, parse, put_plain, record_response, to_value, validated,
    written, RecordParams,
};
use super::{ApiError, App};
use crate::store::{Owner, Record, RecordKind, StoreError, TokenInfo, Write, WriteOptions};

pub(crate) use cnis::customer_side;
pub use notify::{deliver_notices, run_notifier, Round};
pub(crate) use operator::partners;

/// The connectivity partners every network knows; the operator may add more.
pub const PARTNERS: &[(&str, &str)] = &[
    ("console-connect", "Console Connect"),
    ("coresite", "CoreSite"),
    ("digital-realty", "Digital Realty"),
    ("equinix-fabric", "Equinix Fabric"),
    ("megaport", "Megaport"),
    ("packetfabric", "PacketFabric"),
    ("zayo", "Zayo"),
];

/// An interconnect's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterconnectType {
    /// A port of ours and a cross-connect.
    Direct,
    /// A connectivity partner's virtual circuit.
    Partner,
    /// A cloud provider's circuit.
    Cloud,
}

/// A partner's virtual circuit, as it requested it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerCircuit {
    /// The partner's id (`megaport`).
    pub partner: String,
    /// The partner's own reference of the order.
    pub reference: String,
    /// The circuit's bandwidth, Mbit/s.
    pub speed_mbps: u32,
    /// The VLAN the partner hands the circuit over on.
    pub vlan: u16,
}

/// When the LOA was issued and until when it is valid (dates at the site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaDates {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `YYYY-MM-DD`.
    pub valid_until: String,
}

/// An interconnect as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interconnect {
    /// A name for people.
    pub name: String,
    /// Direct, partner or cloud.
    #[serde(rename = "type")]
    pub kind: InterconnectType,
    /// The site's code.
    pub site: String,
    /// The device it lands on.
    pub device: String,
    /// The device's dataplane.
    pub dataplane: Dataplane,
    /// The port (direct, and AWS's dedicated connection).
    #[serde(default)]
    pub slot: Option<String>,
    /// The port's speed.
    #[serde(default)]
    pub speed: Option<Speed>,
    /// A partner's circuit.
    #[serde(default)]
    pub partner: Option<PartnerCircuit>,
    /// A cloud circuit.
    #[serde(default)]
    pub cloud: Option<CloudCircuit>,
    /// The LOA (direct).
    #[serde(default)]
    pub loa: Option<LoaDates>,
    /// Where its provisioning is, and who did what.
    pub workflow: Workflow,
    /// Its status from its PoP's reports, with history.
    pub status: StatusHistory,
    /// The link as last reported: its state and when that state was first reported.
    #[serde(default)]
    pub last_report: Option<LinkReport>,
    /// Each CNI's session on it, as last reported (by CNI id).
    #[serde(default)]
    pub sessions: std::collections::BTreeMap<String, edgenet_protocol::CniSession>,
    /// What happened to the link and its sessions, oldest first (the newest
    /// [`diagnostics::KEPT_EVENTS`]).
    #[serde(default)]
    pub events: Vec<diagnostics::Event>,
}

/// The claim of a port.
fn slot_claim(site: &str, device: &str, slot: &str) -> String {
    format!("slot:{site}/{device}/{slot}")
}

/// Who a token acts as in a workflow, and under what name.
fn party(token: &TokenInfo) -> (Party, String) {
    if token.partner.is_some() {
        (Party::Partner, token.name.clone())
    } else if token.account.is_some() {
        (Party::Customer, token.name.clone())
    } else {
        (Party::Operator, token.name.clone())
    }
}

async fn sites(app: &App) -> Result<Vec<Site>, StoreError> {
    app.store
        .records(RecordKind::Site, Owner::Operator)
        .await?
        .iter()
        .map(parse)
        .collect()
}

async fn site(app: &App, code: &str) -> Result<Site, ApiError> {
    match app
        .store
        .record(RecordKind::Site, code, Owner::Operator)
        .await?
    {
        Some(r) => Ok(parse(&r)?),
        None => Err(StoreError::Invalid(vec![Problem::new(
            "site",
            format!("{code:?} is not a site (GET /v1/accounts/ACCOUNT/cni/slots lists them)"),
        )])
        .into()),
    }
}

/// The operator's settings: the name on LOAs and the point-to-point pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorSettings {
    /// The network's name, as LOAs print it.
    #[serde(default = "default_operator")]
    pub operator: String,
    /// The pool /31s are allocated from.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "192.0.2.0/24")]
    pub pool_v4: Option<ipnet::Ipv4Net>,
    /// The pool /127s are allocated from.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "2001:db8:ff::/64")]
    pub pool_v6: Option<ipnet::Ipv6Net>,
    /// How many days an LOA is valid.
    #[serde(default = "default_loa_days")]
    pub loa_valid_days: u32,
    /// The network's anycast GRE endpoints (every PoP answers on them): a tunnel's
    /// `cloudflare_gre_endpoint` must be one of them when any is set.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub gre_endpoints: Vec<std::net::Ipv4Addr>,
}

fn default_operator() -> String {
    "edgenet".into()
}

fn default_loa_days() -> u32 {
    90
}

impl Default for OperatorSettings {
    fn default() -> OperatorSettings {
        OperatorSettings {
            operator: default_operator(),
            pool_v4: None,
            pool_v6: None,
            loa_valid_days: default_loa_days(),
            gre_endpoints: Vec::new(),
        }
    }
}

/// The record id of the operator's settings.
const OPERATOR_SETTINGS: &str = "operator";

pub(crate) async fn operator_settings(app: &App) -> Result<OperatorSettings, StoreError> {
    match app
        .store
        .record(RecordKind::Settings, OPERATOR_SETTINGS, Owner::Operator)
        .await?
    {
        Some(r) => parse(&r),
        None => Ok(OperatorSettings::default()),
    }
}

/// Records a PoP's link reports into the status of the interconnects at its sites (a report
/// of an interconnect at another PoP's site is ignored, and logged).
pub async fn observe_links(
    app: &App,
    pop: &str,
    at_ms: i64,
    links: &[edgenet_protocol::LinkState],
) -> Result<(), StoreError> {
    let sites = sites(app).await?;
    for link in links {
        let Some(r) = app
            .store
            .record(
                RecordKind::Interconnect,
                &link.interconnect,
                Owner::Operator,
            )
            .await?
        else {
            tracing::warn!(%pop, interconnect = %link.interconnect, "link report of an unknown interconnect");
            continue;
        };
        let ic: Interconnect = parse(&r)?;
        if !sites
            .iter()
            .any(|s| s.code == ic.site && s.pop_name() == pop)
        {
            tracing::warn!(%pop, interconnect = %link.interconnect, site = %ic.site, "link report from a PoP that does not run the interconnect's site");
            continue;
        }
        let report = LinkReport {
            link_up: link.link_up,
            rx_dbm: link.rx_dbm,
            bgp_established: link.bgp_established,
            at_ms,
        };
        let sessions: std::collections::BTreeMap<String, edgenet_protocol::CniSession> = link
            .sessions
            .iter()
            .map(|s| (s.cni.clone(), s.clone()))
            .collect();
        // PoPs repeat their links every few seconds: only a change is written.
        let mut next = ic.status.clone();
        if next.observe(&report).is_none()
            && next == ic.status
            && ic.last_report.is_some_and(|last| same_link(&last, &report))
            && sessions == ic.sessions
        {
            continue;
        }
        let owner = Owner::Operator;
        app.store
            .write_record(
                RecordKind::Interconnect,
                &r.id,
                owner,
                WriteOptions::new(Write::Replace(None), at_ms),
                &|before, _| {
                    let before = before.ok_or_else(|| StoreError::NotFound(r.id.clone()))?;
                    let mut ic: Interconnect = parse(before)?;
                    let change = ic.status.observe(&report).cloned();
                    if let Some(change) = &change {
                        tracing::info!(interconnect = %before.id, from = ?change.from, to = ?change.to, reason = %change.reason, "interconnect status");
                    }
                    let events = diagnostics::timeline(
                        ic.last_report.as_ref(),
                        &ic.sessions,
                        &report,
                        &link.sessions,
                        change.as_ref(),
                    );
                    diagnostics::keep(&mut ic.events, events);
                    // The time a state was first reported stays while it lasts.
                    let same = ic.last_report.is_some_and(|l| same_link(&l, &report));
                    if !same {
                        ic.last_report = Some(report);
                    }
                    ic.sessions = sessions.clone();
                    Ok((to_value(&ic), claims_of(&ic)))
                },
            )
            .await?;
    }
    Ok(())
}

/// Whether two link reports say the same (the receive level within half a dB).
fn same_link(a: &LinkReport, b: &LinkReport) -> bool {
    a.link_up == b.link_up
        && a.bgp_established == b.bgp_established
        && edgenet_interconnect::status::same_level(a.rx_dbm, b.rx_dbm)
}

/// The claims an interconnect holds: its port.
fn claims_of(ic: &Interconnect) -> Vec<String> {
    ic.slot
        .iter()
        .map(|s| slot_claim(&ic.site, &ic.device, s))
        .collect()
}

/// The routes, for [`super::routes`].
pub fn routes(
    r: utoipa_axum::router::OpenApiRouter<Arc<App>>,
) -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    use utoipa_axum::routes;
    r.routes(routes!(operator::list_sites, operator::create_site))
        .routes(routes!(
            operator::get_site,
            operator::put_site,
            operator::delete_site
        ))
        .routes(routes!(
            operator::get_operator_settings,
            operator::put_operator_settings
        ))
        .routes(routes!(operator::list_partners, operator::add_partner))
        .routes(routes!(
            operator::list_partner_requests,
            operator::submit_partner_request
        ))
        .routes(routes!(operator::get_partner_request))
        .routes(routes!(operator::accept_partner_request))
        .routes(routes!(operator::reject_partner_request))
        .routes(routes!(
            interconnects::list_interconnects,
            interconnects::create_interconnect
        ))
        .routes(routes!(
            interconnects::get_interconnect,
            interconnects::delete_interconnect
        ))
        .routes(routes!(interconnects::take_step))
        .routes(routes!(interconnects::get_loa))
        .routes(routes!(interconnects::get_status))
        .routes(routes!(interconnects::list_slots))
        .routes(routes!(interconnects::get_diversity))
        .routes(routes!(cnis::list_cnis, cnis::create_cni))
        .routes(routes!(cnis::get_cni, cnis::put_cni, cnis::delete_cni))
        .routes(routes!(cnis::get_settings, cnis::put_settings))
        .routes(routes!(diagnostics::get_diagnostics))
        .routes(routes!(notify::list_events, notify::create_event))
        .routes(routes!(notify::put_event, notify::cancel_event))
        .routes(routes!(notify::list_account_events))
        .routes(routes!(
            notify::list_subscriptions,
            notify::create_subscription
        ))
        .routes(routes!(notify::delete_subscription))
        .routes(routes!(notify::list_deliveries))
}

#[cfg(test)]
mod tests;
