//! The API's small command line: `edgenet worker deploy FILE --name N --route PATTERN`
//! uploads a component as a new version of a script and binds each route to the script's
//! latest version (making the route, or moving it from another script or a pinned version).
//! It talks to the control plane's API as any client does, with a token from `--token` or
//! `EDGENET_TOKEN`.

use std::path::PathBuf;

use serde_json::{json, Value};

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct Api {
    /// The control plane's base URL.
    pub control: String,
    /// A token with the `write` scope for the account.
    pub token: String,
    /// The account's id.
    pub account: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/accounts/{}{path}",
            self.control.trim_end_matches('/'),
            self.account
        )
    }

    async fn call(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        content_type: &str,
    ) -> anyhow::Result<Value> {
        let url = self.url(path);
        let mut req = client
            .request(method, &url)
            .bearer_auth(&self.token)
            .header("content-type", content_type);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let errors: Vec<String> = v["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| match e["field"].as_str() {
                    Some(f) => format!("{f}: {}", e["message"].as_str().unwrap_or_default()),
                    None => e["message"].as_str().unwrap_or_default().to_string(),
                })
                .collect();
            anyhow::bail!("{url}: {status}: {}", errors.join("; "));
        }
        Ok(v["result"].clone())
    }
}

/// `edgenet worker deploy`: uploads `file` as script `name`, then binds each of `routes`.
pub async fn deploy(api: &Api, file: PathBuf, name: &str, routes: &[String]) -> anyhow::Result<()> {
    let wasm = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let client = reqwest::Client::new();
    let size = wasm.len();
    let script = api
        .call(
            &client,
            reqwest::Method::PUT,
            &format!("/workers/scripts/{name}"),
            Some(wasm.into()),
            "application/wasm",
        )
        .await?;
    println!(
        "uploaded {} ({size} bytes) as {name} version {} (sha256 {})",
        file.display(),
        script["version"],
        script["etag"].as_str().unwrap_or_default()
    );
    if routes.is_empty() {
        return Ok(());
    }
    let existing = api
        .call(
            &client,
            reqwest::Method::GET,
            "/workers/routes",
            None,
            "application/json",
        )
        .await?;
    for pattern in routes {
        let body = json!({"pattern": pattern, "script": name}).to_string();
        let found = existing["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["pattern"] == pattern.as_str());
        let (method, path) = match found.and_then(|r| r["id"].as_str()) {
            Some(id) => (reqwest::Method::PUT, format!("/workers/routes/{id}")),
            None => (reqwest::Method::POST, "/workers/routes".to_string()),
        };
        let r = api
            .call(
                &client,
                method,
                &path,
                Some(body.into()),
                "application/json",
            )
            .await?;
        println!(
            "route {pattern} -> {name} (latest version, zone {})",
            r["zone"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
