//! The access log: one JSON line per request, written by a dedicated thread so the request path
//! never blocks on a disk or a pipe.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use edgenet_config::AccessLog;
use prometheus::IntCounter;
use serde::Serialize;

/// One access log line.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// RFC 3339 UTC time the request finished.
    pub time: String,
    /// The request id (also in the `x-request-id` response header).
    pub request_id: &'a str,
    /// The zone, or `-` when the Host matched none.
    pub zone: &'a str,
    /// The client's address.
    pub client: String,
    /// `http/1.1`, `h2`.
    pub protocol: &'static str,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The request method.
    pub method: &'a str,
    /// The Host requested.
    pub host: &'a str,
    /// The path and query.
    pub path: &'a str,
    /// The status sent.
    pub status: u16,
    /// Request body bytes read from the client.
    pub bytes_in: usize,
    /// Response body bytes sent to the client.
    pub bytes_out: usize,
    /// Total duration in milliseconds.
    pub duration_ms: f64,
    /// Time to the origin's response head in milliseconds, when an origin was used.
    pub upstream_ms: Option<f64>,
    /// The origin server chosen last.
    pub origin: Option<&'a str>,
    /// Connection attempts to origins.
    pub attempts: u32,
    /// The error, if the request failed.
    pub error: Option<String>,
    /// The `Cache-Status` value sent (RFC 9211), if the request reached a zone.
    pub cache: Option<String>,
    /// The WAF rules that matched, `id:action` comma-separated.
    pub waf: Option<String>,
    /// The rate limit that limited the request, `id:action`.
    pub rate_limit: Option<String>,
    /// The worker that handled the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// A handle that queues lines for the writer thread.
#[derive(Clone)]
pub struct AccessLogger {
    tx: Option<SyncSender<Vec<u8>>>,
    dropped: IntCounter,
}

impl AccessLogger {
    /// Starts the writer for `dest`. Opening a file can fail; the error names the file.
    pub fn start(dest: &AccessLog, dropped: IntCounter) -> anyhow::Result<AccessLogger> {
        let out: Box<dyn Write + Send> = match dest {
            AccessLog::Off => return Ok(AccessLogger { tx: None, dropped }),
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("access_log.path {}: {e}", path.display()))?,
            ),
        };
        let (tx, rx) = sync_channel::<Vec<u8>>(65536);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(rx, out))?;
        Ok(AccessLogger {
            tx: Some(tx),
            dropped,
        })
    }

    /// Whether lines are written at all (`output = "off"` writes none).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one entry; when the writer is behind by 65536 lines the line is dropped and counted.
    pub fn log(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = match serde_json::to_vec(entry) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

fn writer(rx: Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(&line);
        // Drain whatever else is queued, then flush once: lines reach the file within one batch.
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
