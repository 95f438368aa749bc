//! Stage 7 on a Pingora session: the request body read in full (up to the worker's limit),
//! the worker run, and its response written as it streams. A failure before the head goes out
//! is an error page naming the worker and the cause (with a log line and a metric); after it,
//! the connection (HTTP/1) or stream (HTTP/2) is cut, so the client can tell a truncated body
//! from a whole one.

use std::net::IpAddr;

use bytes::Bytes;
use http::Version;
use http_body_util::BodyExt;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::ctx::Ctx;
use super::heads::respond_error;
use crate::core::Core;
use crate::snapshot::ZoneRuntime;
use crate::stages::worker::{self, Gathered};

/// Runs worker `idx` of `zone` on the request (for `host`, over `scheme`, from `client`) and
/// writes its response.
#[allow(clippy::too_many_arguments)] // The request's facts, each from a different place.
pub async fn run(
    core: &Core,
    session: &mut Session,
    ctx: &mut Ctx,
    zone: &ZoneRuntime,
    idx: usize,
    host: &str,
    scheme: &str,
    client: Option<IpAddr>,
) -> Result<()> {
    let w = &zone.workers[idx];
    w.requests.inc();
    ctx.log.worker = Some(w.name.clone());
    let fail = |cause: &str| {
        core.metrics
            .worker_errors
            .with_label_values(&[&zone.config.name, &w.name, cause])
            .inc();
    };
    let body = match read_body(session, w.request_body_bytes).await {
        Ok(b) => b,
        Err(status) => {
            fail("request_body");
            let reason = format!(
                "worker {}: the request body is over its limit of {} bytes",
                w.name, w.request_body_bytes
            );
            respond_error(core, session, ctx, status, &reason).await;
            return Ok(());
        }
    };
    let req = worker::worker_request(session.req_header(), scheme, host, client, body);
    let Some(req) = req else {
        respond_error(core, session, ctx, 400, "the request URI is not valid").await;
        return Ok(());
    };
    let report = |e: &edgenet_workers::WorkerError, request_id: &str| {
        let cause = e.cause();
        fail(cause);
        tracing::warn!(
            zone = %zone.config.name,
            worker = %w.name,
            cause,
            error = %e,
            request_id,
            "worker failed"
        );
    };
    let Gathered {
        parts,
        mut body,
        buffered,
        ended,
    } = match worker::gather(&w.worker, req).await {
        Ok(g) => g,
        Err(e) => {
            report(&e, &ctx.req.id);
            let reason = format!("worker {} {e}", w.name);
            let status = worker::error_status(&e);
            respond_error(core, session, ctx, status, &reason).await;
            return Ok(());
        }
    };
    let length = ended.then_some(buffered.len());
    let headers =
        worker::response_headers(&parts, &zone.config.response_headers, &ctx.req.id, length);
    let mut head = ResponseHeader::build(parts.status, Some(headers.len() + 1))
        .expect("a status from a valid response");
    for (name, value) in headers.iter() {
        let _ = head.append_header(name.clone(), value.clone());
    }
    if length.is_none() && session.req_header().version == Version::HTTP_11 {
        // Chunked keeps the connection reusable and tells a cut-off body from a whole one.
        let _ = head.insert_header(http::header::TRANSFER_ENCODING, "chunked");
    }
    let is_head = session.req_header().method == http::Method::HEAD;
    let done = is_head || length == Some(0);
    session.write_response_header(Box::new(head), done).await?;
    if done {
        return Ok(());
    }
    session.write_response_body(Some(buffered), ended).await?;
    if ended {
        return Ok(());
    }
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                // If the client went, dropping the body stops the worker.
                session.write_response_body(Some(data), false).await?;
            }
            Some(Err(e)) => {
                report(&e, &ctx.req.id);
                let why = format!("worker {} {e} after its response began", w.name);
                return Err(Error::explain(ErrorType::InternalError, why));
            }
            None => return session.write_response_body(None, true).await,
        }
    }
}

/// The request body, read in full: 413 when it is over `max`, 400 when it cannot be read.
async fn read_body(session: &mut Session, max: usize) -> std::result::Result<Bytes, u16> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(413);
    }
    let mut body = bytes::BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(413);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(_) => return Err(400),
        }
    }
}
