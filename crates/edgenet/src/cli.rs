//! The API's small command line: `edgenet worker deploy FILE --name N --route PATTERN
//! [--kv BINDING=NAMESPACE]` uploads a component as a new version of a script, binds the KV
//! namespaces it opens, and binds each route to the script's latest version (making the
//! route, or moving it from another script or a pinned version);
//! `edgenet kv --namespace NS put|get|list|delete` reads and writes the edge key-value store.
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

/// `edgenet worker deploy`: uploads `file` as script `name`, binds the KV namespaces of `kv`
/// (`BINDING=NAMESPACE`, the namespace by id or title) in its settings, then each of `routes`.
pub async fn deploy(
    api: &Api,
    file: PathBuf,
    name: &str,
    routes: &[String],
    kv: &[String],
) -> anyhow::Result<()> {
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
    if !kv.is_empty() {
        let script_path = format!("/workers/scripts/{name}");
        let shown = api
            .call(
                &client,
                reqwest::Method::GET,
                &script_path,
                None,
                "application/json",
            )
            .await?;
        let mut settings = shown["settings"].clone();
        for binding in kv {
            let (b, ns) = binding
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--kv {binding:?}: give BINDING=NAMESPACE"))?;
            let id = namespace_id(api, &client, ns).await?;
            settings["kv_namespaces"][b] = json!(id);
            println!("KV namespace {ns} ({id}) bound as {b}");
        }
        api.call(
            &client,
            reqwest::Method::PATCH,
            &format!("{script_path}/settings"),
            Some(settings.to_string().into()),
            "application/json",
        )
        .await?;
    }
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

/// What `edgenet kv` does.
#[derive(Debug, Clone)]
pub enum Kv {
    /// Writes `value` under `key`, expiring after `ttl` seconds when given.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Seconds until it expires.
        ttl: Option<u64>,
    },
    /// Prints the value of `key`.
    Get {
        /// The key.
        key: String,
    },
    /// Prints the keys starting with `prefix`, one per line.
    List {
        /// The prefix.
        prefix: String,
    },
    /// Deletes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// The id of the account's namespace whose id or title is `namespace`.
async fn namespace_id(
    api: &Api,
    client: &reqwest::Client,
    namespace: &str,
) -> anyhow::Result<String> {
    let listed = api
        .call(
            client,
            reqwest::Method::GET,
            "/storage/kv/namespaces",
            None,
            "application/json",
        )
        .await?;
    let id = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == namespace || n["title"] == namespace)
        .and_then(|n| n["id"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no namespace {namespace:?} in account {}", api.account))?;
    Ok(id.to_string())
}

/// `edgenet kv`: one call on namespace `namespace` (its id, or its title).
pub async fn kv(api: &Api, namespace: &str, what: Kv) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let id = namespace_id(api, &client, namespace).await?;
    let values = format!("/storage/kv/namespaces/{id}/values");
    let escape = |k: &str| -> String {
        k.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    match what {
        Kv::Put { key, value, ttl } => {
            let query = ttl.map_or(String::new(), |t| format!("?expiration_ttl={t}"));
            let path = format!("{values}/{}{query}", escape(&key));
            api.call(
                &client,
                reqwest::Method::PUT,
                &path,
                Some(value.into_bytes().into()),
                "application/octet-stream",
            )
            .await?;
            println!("{key} written");
        }
        Kv::Get { key } => {
            let url = api.url(&format!("{values}/{}", escape(&key)));
            let resp = client
                .get(&url)
                .bearer_auth(&api.token)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
            let status = resp.status();
            let body = resp.bytes().await?;
            if !status.is_success() {
                anyhow::bail!("{key}: {status}");
            }
            use std::io::Write;
            std::io::stdout().write_all(&body)?;
            println!();
        }
        Kv::List { prefix } => {
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!(
                    "/storage/kv/namespaces/{id}/keys?prefix={}",
                    escape(&prefix)
                );
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", escape(c)));
                }
                let url = api.url(&path);
                let v: Value = client
                    .get(&url)
                    .bearer_auth(&api.token)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
                    .json()
                    .await?;
                for k in v["result"].as_array().into_iter().flatten() {
                    println!("{}", k["name"].as_str().unwrap_or_default());
                }
                cursor = v["result_info"]["cursor"].as_str().map(String::from);
                if cursor.is_none() {
                    break;
                }
            }
        }
        Kv::Delete { key } => {
            let path = format!("{values}/{}", escape(&key));
            api.call(
                &client,
                reqwest::Method::DELETE,
                &path,
                None,
                "application/json",
            )
            .await?;
            println!("{key} deleted");
        }
    }
    Ok(())
}
