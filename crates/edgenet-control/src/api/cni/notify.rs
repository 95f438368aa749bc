//! Maintenance events and their notices. The operator schedules, changes and cancels events
//! (`/v1/cni/maintenance`), checked by the pure rules (two business days of notice for routine
//! work in the site's time zone, 16 hours between windows on redundant devices); accounts
//! read them with the interconnects each would affect. Accounts subscribe webhooks, filtered
//! by notice type and PoP code; [`deliver_notices`] turns the notices due at a time into one
//! delivery per subscription, signs each (`Edgenet-Signature`), and retries a failed one with
//! backoff for up to 24 hours, recording every attempt. [`run_notifier`] runs it on the
//! clock; tests call it with an injected one.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use edgenet_interconnect::maintenance::{self, Event, Filter, Notice, NoticeType, Urgency};
use edgenet_interconnect::webhook;
use serde_json::{json, Value};

use super::super::{decode, ok, random_hex, ApiResult, JsonBody};
use super::*;
use crate::api::unix_ms;

/// A maintenance event as stored: the pure event and what people read of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEvent {
    #[serde(flatten)]
    event: Event,
    #[serde(default)]
    description: String,
}

/// A maintenance event to schedule, or its new window.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The site's code.
    pub site: String,
    /// The device, or none for the whole site.
    #[serde(default)]
    pub device: Option<String>,
    /// `routine` or `emergency`.
    #[schema(value_type = String, example = "routine")]
    pub urgency: Urgency,
    /// The window's start, RFC 3339 (`2026-12-10T02:00:00Z`).
    pub start: String,
    /// The window's end, RFC 3339.
    pub end: String,
    /// What is done, for the customers.
    #[serde(default)]
    pub description: String,
}

fn millis(field: &str, value: &str) -> Result<i64, Problem> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| Problem::new(field, format!("{value:?} is not an RFC 3339 time: {e}")))
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn event_view(r: &Record) -> Value {
    let Ok(s) = parse::<StoredEvent>(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    let e = s.event;
    json!({
        "id": r.id, "site": e.site, "pop": e.site.split('-').next().unwrap_or(&e.site),
        "device": e.device, "urgency": e.urgency, "emergency": e.urgency == Urgency::Emergency,
        "start": rfc3339(e.start_ms), "end": rfc3339(e.end_ms), "state": e.state,
        "notified": e.notified_ms.map(rfc3339), "description": s.description,
        "created": rfc3339(e.created_ms), "version": r.version,
    })
}

async fn events(app: &App) -> Result<Vec<Event>, StoreError> {
    app.store
        .records(RecordKind::Maintenance, Owner::Operator)
        .await?
        .iter()
        .map(|r| parse::<StoredEvent>(r).map(|s| s.event))
        .collect()
}

/// Schedules or changes an event: `id` none for a new one.
async fn write_event(
    app: &App,
    headers: &HeaderMap,
    p: &RecordParams,
    body: &Value,
    id: Option<&str>,
) -> ApiResult {
    app.authorize(headers, &["write"]).await?;
    let new: NewEvent = decode(body)?;
    let now = unix_ms();
    let site = site(app, &new.site).await?;
    let (start, end) = match (millis("start", &new.start), millis("end", &new.end)) {
        (Ok(s), Ok(e)) => (s, e),
        (s, e) => {
            return Err(
                StoreError::Invalid([s.err(), e.err()].into_iter().flatten().collect()).into(),
            )
        }
    };
    let before = match id {
        Some(id) => Some(
            app.store
                .record(RecordKind::Maintenance, id, Owner::Operator)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("maintenance event {id}")))?,
        ),
        None => None,
    };
    let before = before.as_ref().map(parse::<StoredEvent>).transpose()?;
    if let Some(b) = before
        .as_ref()
        .filter(|b| b.event.state == NoticeType::Canceled)
    {
        return Err(StoreError::Refused(format!("event {} is canceled", b.event.id)).into());
    }
    let id = id.map_or_else(new_id, String::from);
    let event = Event {
        id: id.clone(),
        site: site.code.clone(),
        device: new.device.clone(),
        urgency: new.urgency,
        start_ms: start,
        end_ms: end,
        created_ms: before.as_ref().map_or(now, |b| b.event.created_ms),
        state: if before.is_some() {
            NoticeType::Changed
        } else {
            NoticeType::Scheduled
        },
        notified_ms: before.as_ref().and_then(|b| b.event.notified_ms),
        notified_state: before.as_ref().and_then(|b| b.event.notified_state),
    };
    // A change is announced now: its notice counts from now.
    let announced = Event {
        created_ms: now,
        ..event.clone()
    };
    let problems = maintenance::validate(&announced, &site, &events(app).await?);
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let value = to_value(&StoredEvent {
        event,
        description: new.description,
    });
    let write = if before.is_some() {
        Write::Replace(if_match(headers)?)
    } else {
        Write::Create
    };
    let options = p.write(write, now);
    let r = put_plain(
        app,
        RecordKind::Maintenance,
        &id,
        Owner::Operator,
        options,
        value,
    )
    .await?;
    if !p.validate_only {
        tracing::info!(%id, site = %site.code, device = ?new.device, urgency = ?new.urgency, start = %new.start, "maintenance event stored");
    }
    Ok(written(p, &r, event_view(&r)))
}

/// Every maintenance event.
#[utoipa::path(get, path = "/v1/cni/maintenance", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize(&headers, &["read"]).await?;
    let records = app
        .store
        .records(RecordKind::Maintenance, Owner::Operator)
        .await?;
    Ok(ok(StatusCode::OK, page(records, &p, event_view)))
}

/// Schedules a maintenance event on a device or a whole site.
#[utoipa::path(post, path = "/v1/cni/maintenance", request_body = NewEvent,
    responses((status = 201, description = "scheduled"), (status = 400, description = "each problem with its field: too little notice, too close to a redundant device's window")))]
pub(super) async fn create_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    write_event(&app, &headers, &p, &body, None).await
}

/// Changes an event's window (its notice goes out as `changed`).
#[utoipa::path(put, path = "/v1/cni/maintenance/{id}", request_body = NewEvent,
    responses((status = 200, description = "changed"), (status = 400, description = "each problem with its field"), (status = 409, description = "canceled")))]
pub(super) async fn put_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    write_event(&app, &headers, &p, &body, Some(&id)).await
}

/// Cancels an event (kept, as `canceled`; notified if its first notice went out).
#[utoipa::path(delete, path = "/v1/cni/maintenance/{id}", responses((status = 200, description = "canceled")))]
pub(super) async fn cancel_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    app.authorize(&headers, &["write"]).await?;
    let options = WriteOptions::new(Write::Replace(if_match(&headers)?), unix_ms());
    let r = app
        .store
        .write_record(
            RecordKind::Maintenance,
            &id,
            Owner::Operator,
            options,
            &|before, _| {
                let before = before.ok_or_else(|| StoreError::NotFound(id.clone()))?;
                let mut s: StoredEvent = parse(before)?;
                s.event.state = NoticeType::Canceled;
                Ok((to_value(&s), vec![]))
            },
        )
        .await?;
    tracing::info!(%id, "maintenance event canceled");
    Ok(record_response(StatusCode::OK, &r, event_view(&r)))
}

/// The maintenance events, each with the account's interconnects it would take down.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/maintenance", responses((status = 200, description = "`{items: [{..., affects}], next}`")))]
pub(super) async fn list_account_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let mine = app
        .store
        .records(RecordKind::Interconnect, Owner::Account(&account))
        .await?;
    let records = app
        .store
        .records(RecordKind::Maintenance, Owner::Operator)
        .await?;
    Ok(ok(
        StatusCode::OK,
        page(records, &p, |r| {
            let mut v = event_view(r);
            let affects: Vec<&str> = mine
                .iter()
                .filter(|ic| {
                    ic.body["site"] == v["site"]
                        && (v["device"].is_null() || ic.body["device"] == v["device"])
                })
                .map(|ic| ic.id.as_str())
                .collect();
            v["affects"] = json!(affects);
            v
        }),
    ))
}

/// A notification subscription as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Subscription {
    url: String,
    filter: Filter,
    secret: String,
}

/// A webhook subscription to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Where notices are POSTed (http or https).
    pub url: String,
    /// Notice types wanted: `scheduled`, `changed`, `canceled` (none: all).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub types: Vec<NoticeType>,
    /// PoP codes wanted (`gru`; none: all).
    #[serde(default)]
    pub pops: Vec<String>,
}

fn subscription_view(r: &Record) -> Value {
    let Ok(s) = parse::<Subscription>(r) else {
        return json!({"id": r.id, "error": "the stored record does not decode"});
    };
    json!({"id": r.id, "url": s.url, "types": s.filter.types, "pops": s.filter.pops, "created_ms": r.created_ms})
}

/// The account's subscriptions (never their secrets).
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/subscriptions", responses((status = 200, description = "`{items, next}`")))]
pub(super) async fn list_subscriptions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let records = app
        .store
        .records(RecordKind::Subscription, Owner::Account(&account))
        .await?;
    Ok(ok(StatusCode::OK, page(records, &p, subscription_view)))
}

/// Subscribes a webhook to maintenance notices; the signing secret is in this response only.
#[utoipa::path(post, path = "/v1/accounts/{account}/cni/subscriptions", request_body = NewSubscription,
    responses((status = 201, description = "`{id, url, types, pops, secret}`"), (status = 400, description = "each problem with its field")))]
pub(super) async fn create_subscription(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(p): Query<RecordParams>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let new: NewSubscription = decode(&body)?;
    let mut problems = Vec::new();
    match reqwest::Url::parse(&new.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => problems.push(Problem::new(
            "url",
            format!(
                "{:?}: http or https with a host, not {}",
                new.url,
                u.scheme()
            ),
        )),
        Err(e) => problems.push(Problem::new("url", format!("{:?}: {e}", new.url))),
    }
    for (i, pop) in new.pops.iter().enumerate() {
        if pop.len() != 3 || !pop.bytes().all(|b| b.is_ascii_lowercase()) {
            problems.push(Problem::new(
                format!("pops[{i}]"),
                format!("{pop:?} is not a PoP code: three lower-case letters (gru for gru-b)"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(StoreError::Invalid(problems).into());
    }
    let secret = format!("whsec_{}", random_hex(32));
    let value = to_value(&Subscription {
        url: new.url,
        filter: Filter {
            types: new.types,
            pops: new.pops,
        },
        secret: secret.clone(),
    });
    let options = p.write(Write::Create, unix_ms());
    let r = put_plain(
        &app,
        RecordKind::Subscription,
        &new_id(),
        Owner::Account(&account),
        options,
        value,
    )
    .await?;
    let mut v = subscription_view(&r);
    if !p.validate_only {
        v["secret"] = json!(secret);
        tracing::info!(id = %r.id, %account, url = %v["url"], "subscription created");
    }
    Ok(written(&p, &r, v))
}

/// Deletes a subscription and its deliveries.
#[utoipa::path(delete, path = "/v1/accounts/{account}/cni/subscriptions/{id}", responses((status = 200, description = "deleted"), (status = 404, description = "no such subscription in the account")))]
pub(super) async fn delete_subscription(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["write"])
        .await?;
    let owner = Owner::Account(&account);
    app.store
        .delete_record(RecordKind::Subscription, &id, owner, if_match(&headers)?)
        .await?;
    // Its deliveries, finished or not, go with it.
    for d in app.store.records(RecordKind::Delivery, owner).await? {
        if d.body["subscription"] == id.as_str() {
            app.store
                .delete_record(RecordKind::Delivery, &d.id, owner, None)
                .await?;
        }
    }
    tracing::info!(%id, %account, "subscription deleted");
    Ok(ok(StatusCode::OK, json!({"id": id})))
}

/// One attempt at a delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    at_ms: i64,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    error: Option<String>,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// One notice to one subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    subscription: String,
    notice: Notice,
    body: String,
    first_ms: i64,
    next_ms: Option<i64>,
    state: DeliveryState,
    attempts: Vec<Attempt>,
}

/// A subscription's deliveries, each with every attempt.
#[utoipa::path(get, path = "/v1/accounts/{account}/cni/subscriptions/{id}/deliveries", responses((status = 200, description = "`{items: [{id, notice, state, attempts: [{at_ms, status, error}], next_ms}], next}`")))]
pub(super) async fn list_deliveries(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((account, id)): Path<(String, String)>,
    Query(p): Query<RecordParams>,
) -> ApiResult {
    app.authorize_account(&headers, &account, &["read"]).await?;
    let owner = Owner::Account(&account);
    found(&app, RecordKind::Subscription, &id, owner, "subscription").await?;
    let records: Vec<Record> = app
        .store
        .records(RecordKind::Delivery, owner)
        .await?
        .into_iter()
        .filter(|r| r.body["subscription"] == id.as_str())
        .collect();
    Ok(ok(
        StatusCode::OK,
        page(records, &p, |r| {
            let mut v = r.body.clone();
            v["id"] = json!(r.id);
            v
        }),
    ))
}

/// One notifier at a time, whoever calls it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Notices that became due.
    pub notices: usize,
    /// Delivery attempts made.
    pub attempts: usize,
    /// Of which succeeded.
    pub delivered: usize,
}

/// Turns the notices due at `now_ms` into deliveries, and attempts every delivery due.
pub async fn deliver_notices(
    app: &App,
    client: &reqwest::Client,
    now_ms: i64,
) -> Result<Round, StoreError> {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut round = Round::default();
    let stored: Vec<Record> = app
        .store
        .records(RecordKind::Maintenance, Owner::Operator)
        .await?;
    let events = stored
        .iter()
        .map(|r| parse::<StoredEvent>(r).map(|s| s.event))
        .collect::<Result<Vec<_>, _>>()?;
    let subscriptions = app
        .store
        .records(RecordKind::Subscription, Owner::Operator)
        .await?;
    for notice in maintenance::due(&events, now_ms) {
        round.notices += 1;
        let Some(r) = stored.iter().find(|r| r.id == notice.event) else {
            continue;
        };
        let body = json!({"type": format!("maintenance.{}", to_value(&notice.kind).as_str().unwrap_or("")),
            "sent_at": rfc3339(now_ms), "event": event_view(r)})
        .to_string();
        // Deliveries first, then the event marked: a crash between sends a notice twice,
        // never not at all.
        for s in &subscriptions {
            let Ok(sub) = parse::<Subscription>(s) else {
                continue;
            };
            if !sub.filter.wants(&notice) {
                continue;
            }
            let delivery = to_value(&Delivery {
                subscription: s.id.clone(),
                notice: notice.clone(),
                body: body.clone(),
                first_ms: now_ms,
                next_ms: Some(now_ms),
                state: DeliveryState::Pending,
                attempts: Vec::new(),
            });
            let options = WriteOptions::new(Write::Create, now_ms);
            put_plain(
                app,
                RecordKind::Delivery,
                &new_id(),
                s.owner(),
                options,
                delivery,
            )
            .await?;
        }
        app.store
            .write_record(
                RecordKind::Maintenance,
                &r.id,
                Owner::Operator,
                WriteOptions::new(Write::Replace(None), now_ms),
                &|before, _| {
                    let before =
                        before.ok_or_else(|| StoreError::NotFound(notice.event.clone()))?;
                    let mut s: StoredEvent = parse(before)?;
                    s.event.notified_ms.get_or_insert(now_ms);
                    s.event.notified_state = Some(s.event.state);
                    Ok((to_value(&s), vec![]))
                },
            )
            .await?;
        tracing::info!(event = %notice.event, kind = ?notice.kind, pop = %notice.pop, "maintenance notice due");
    }
    for r in app
        .store
        .records(RecordKind::Delivery, Owner::Operator)
        .await?
    {
        let Ok(mut d) = parse::<Delivery>(&r) else {
            continue;
        };
        if d.state != DeliveryState::Pending {
            // Finished deliveries are listed for a month, then forgotten.
            if now_ms - d.first_ms > KEEP_DELIVERIES_MS {
                app.store
                    .delete_record(RecordKind::Delivery, &r.id, Owner::Operator, None)
                    .await?;
            }
            continue;
        }
        if d.next_ms.is_none_or(|t| t > now_ms) {
            continue;
        }
        let Some(sub) = subscriptions
            .iter()
            .find(|s| s.id == d.subscription)
            .and_then(|s| parse::<Subscription>(s).ok())
        else {
            // Its subscription is gone.
            d.state = DeliveryState::Failed;
            d.next_ms = None;
            save(app, &r, &d, now_ms).await?;
            continue;
        };
        round.attempts += 1;
        let signature = webhook::signature(sub.secret.as_bytes(), now_ms / 1000, d.body.as_bytes());
        let sent = client
            .post(&sub.url)
            .header("content-type", "application/json")
            .header(webhook::SIGNATURE_HEADER, signature)
            .header("Edgenet-Delivery", &r.id)
            .body(d.body.clone())
            .send()
            .await;
        let attempt = match sent {
            Ok(res) => Attempt {
                at_ms: now_ms,
                status: Some(res.status().as_u16()),
                error: None,
            },
            Err(e) => Attempt {
                at_ms: now_ms,
                status: None,
                error: Some(e.to_string()),
            },
        };
        let success = attempt.status.is_some_and(|s| (200..300).contains(&s));
        d.attempts.push(attempt);
        if success {
            round.delivered += 1;
            d.state = DeliveryState::Delivered;
            d.next_ms = None;
        } else {
            let failed = d.attempts.len() as u32;
            d.next_ms = webhook::next_attempt(d.first_ms, failed, now_ms);
            if d.next_ms.is_none() {
                d.state = DeliveryState::Failed;
                tracing::warn!(delivery = %r.id, url = %sub.url, attempts = failed, "webhook delivery given up after 24 hours");
            }
        }
        save(app, &r, &d, now_ms).await?;
    }
    Ok(round)
}

async fn save(app: &App, r: &Record, d: &Delivery, now_ms: i64) -> Result<(), StoreError> {
    let options = WriteOptions::new(Write::Replace(None), now_ms);
    put_plain(
        app,
        RecordKind::Delivery,
        &r.id,
        r.owner(),
        options,
        to_value(d),
    )
    .await?;
    Ok(())
}

/// How long a finished delivery stays listed.
const KEEP_DELIVERIES_MS: i64 = 30 * 24 * 3_600_000;

/// How often the notifier runs.
const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Delivers notices on the clock, for as long as the control plane serves.
pub fn run_notifier(app: Arc<App>) {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("an HTTP client builds");
        loop {
            if let Err(e) = deliver_notices(&app, &client, unix_ms()).await {
                tracing::warn!(error = %e, "maintenance notices");
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
