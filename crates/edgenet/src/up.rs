//! `edgenet up`: a whole network on this machine in one command. It starts the control plane
//! (SQLite in a directory it names), a demo origin and N PoPs on loopback ports, each a real
//! `edgenet` process following the control plane; registers the PoPs and a demo zone through
//! the API; prints the URLs and an API token; and stops everything on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// What to start.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The `edgenet` binary to start the parts with.
    pub exe: PathBuf,
    /// Where everything keeps its files.
    pub data: PathBuf,
    /// How many PoPs.
    pub pops: usize,
    /// The control plane's port; the origin uses port - 70, PoP i HTTP port + 10 + i, backbone
    /// port + 1000 + i, admin port + 2020 + i (7070, 7000, 7081.., 8071.., 9091.. by default).
    pub port: u16,
}

/// The started processes; dropping it stops them.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &self.0 {
            // SIGTERM lets PoPs drain and the control plane close its database cleanly.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, c) in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if c.try_wait().ok().flatten().is_none() {
                eprintln!("{name} did not stop in time; killing it");
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn spawn(
    children: &mut Children,
    name: &str,
    exe: &Path,
    args: &[&str],
    log: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
    children.0.push((name.to_string(), child));
    Ok(())
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let end = Instant::now() + within;
    while !f() {
        if Instant::now() > end {
            anyhow::bail!("{what} did not come up within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Runs the network until Ctrl-C.
pub fn up(o: UpOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&o.data)?;
    let data = o.data.canonicalize()?;
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs)?;
    let control_dir = data.join("control");
    let control_url = format!("http://127.0.0.1:{}", o.port);
    let origin_addr = format!("127.0.0.1:{}", o.port - 70);
    let mut children = Children(Vec::new());

    spawn(
        &mut children,
        "control plane",
        &o.exe,
        &[
            "control",
            "--data",
            &control_dir.to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{}", o.port),
        ],
        &logs.join("control.log"),
        &[],
    )?;
    let token_file = control_dir.join("admin-token");
    wait_for("the control plane", Duration::from_secs(20), || {
        token_file.exists() && std::net::TcpStream::connect(("127.0.0.1", o.port)).is_ok()
    })?;
    let admin = std::fs::read_to_string(&token_file)?.trim().to_string();
    spawn(
        &mut children,
        "demo origin",
        &o.exe,
        &["demo-origin", "--listen", &origin_addr],
        &logs.join("origin.log"),
        &[],
    )?;

    let client = reqwest::Client::new();
    let api = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let req = client
            .request(method, format!("{control_url}{path}"))
            .bearer_auth(&admin)
            .json(&body);
        async move {
            let resp = req.send().await?;
            let status = resp.status();
            let v: serde_json::Value = resp.json().await?;
            if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
                anyhow::bail!("{path}: {status}: {v}");
            }
            Ok::<_, anyhow::Error>(v)
        }
    };
    // Sample locations so the backbone has something to show.
    let places = [
        (50.11, 8.68),
        (51.51, -0.13),
        (40.71, -74.0),
        (1.35, 103.82),
        (35.68, 139.69),
    ];
    let pop_token = rt.block_on(async {
        let t = api(
            reqwest::Method::POST,
            "/v1/tokens".into(),
            json!({"name": "edgenet up PoPs", "scopes": ["pop"]}),
        )
        .await?;
        for i in 1..=o.pops {
            let (lat, lon) = places[(i - 1) % places.len()];
            api(
                reqwest::Method::POST,
                "/v1/pops".into(),
                json!({"name": format!("pop{i}"), "latitude": lat, "longitude": lon,
                "addresses": [format!("127.0.0.1:{}", o.port + 1000 + i as u16)]}),
            )
            .await?;
        }
        api(
            reqwest::Method::POST,
            "/v1/zones".into(),
            json!({"name": "demo", "hostnames": ["localhost", "127.0.0.1"],
            "origins": {"servers": [{"address": origin_addr}]},
            "response_headers": [{"action": "set", "name": "x-served-by", "value": "edgenet"}],
            "tiered_cache": ["pop1"]}),
        )
        .await?;
        Ok::<_, anyhow::Error>(
            t["result"]["secret"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    })?;

    let mut urls = Vec::new();
    for i in 1..=o.pops {
        let name = format!("pop{i}");
        let http = o.port + 10 + i as u16;
        let admin_port = o.port + 2020 + i as u16;
        let backbone = o.port + 1000 + i as u16;
        let cfg = data.join(format!("{name}.toml"));
        std::fs::write(&cfg, format!(
            "# Written by `edgenet up`. Zones come from the control plane.\n[node]\nname = \"{name}\"\nthreads = 1\ndrain_timeout = \"2s\"\n\n\
             [[listeners]]\naddress = \"127.0.0.1:{http}\"\nprotocol = \"http\"\n\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n\n\
             [access_log]\noutput = \"file\"\npath = \"logs/{name}-access.log\"\n\n[cache]\nmemory = \"64MiB\"\n\n\
             [backbone]\nlisten = \"127.0.0.1:{backbone}\"\n"))?;
        spawn(
            &mut children,
            &name,
            &o.exe,
            &[
                "pop",
                "--config",
                &cfg.to_string_lossy(),
                "--control",
                &control_url,
                "--name",
                &name,
            ],
            &logs.join(format!("{name}.log")),
            &[("EDGENET_TOKEN", &pop_token)],
        )?;
        urls.push((
            name,
            format!("http://127.0.0.1:{http}/"),
            format!("http://127.0.0.1:{admin_port}/metrics"),
        ));
    }
    for (name, url, _) in &urls {
        wait_for(
            &format!("{name} serving the demo zone"),
            Duration::from_secs(30),
            || {
                rt.block_on(async {
                    client
                        .get(url)
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false)
                })
            },
        )?;
    }

    println!(
        "edgenet is up: a control plane, {} PoPs and a demo origin (files in {}).\n",
        o.pops,
        data.display()
    );
    println!("  control plane  {control_url}   (OpenAPI: {control_url}/openapi.json)");
    println!(
        "  API token      {admin}   (admin; also in {})",
        token_file.display()
    );
    println!("  demo origin    http://{origin_addr}/");
    for (name, url, metrics) in &urls {
        println!("  {name:<14} {url}   (metrics {metrics})");
    }
    let first = &urls[0].1;
    println!("\nTry:\n  curl -i {first}\n  curl -s -H 'Authorization: Bearer {admin}' {control_url}/v1/pops | python3 -m json.tool");
    println!("  curl -s -X POST -H 'Authorization: Bearer {admin}' {control_url}/v1/zones \\\n    -d '{{\"name\": \"shop\", \"hostnames\": [\"shop.test\"], \"origins\": {{\"servers\": [{{\"address\": \"{origin_addr}\"}}]}}}}'");
    println!("  curl -i -H 'Host: shop.test' {first}        # served by every PoP within a second");
    println!("\nCtrl-C stops everything.");

    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        Ok::<_, anyhow::Error>(())
    })?;
    println!("stopping...");
    drop(children);
    Ok(())
}
