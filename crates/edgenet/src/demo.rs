//! The demo origin of `edgenet up`: a small HTTP server that answers every path with a page
//! naming the path and the time it was made, cacheable for 10 seconds, so a newcomer can see
//! the PoPs proxy and cache it.

use std::net::SocketAddr;

use axum::http::{header, Uri};
use axum::response::IntoResponse;

async fn page(uri: Uri) -> impl IntoResponse {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let body = format!(
        "<!doctype html>\n<title>edgenet demo</title>\n<h1>Hello from the edgenet demo origin</h1>\n\
         <p>Path <code>{}</code>, made at Unix time {}.{:03} (cacheable for 10 s).</p>\n",
        html_escape(uri.path()),
        now / 1000,
        now % 1000
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=10"),
        ],
        body,
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Serves until the process ends.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new().fallback(page);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {listen}: {e}"))?;
    tracing::info!(%listen, "demo origin serving");
    axum::serve(listener, app).await?;
    Ok(())
}
