//! `edgenet up`: a whole network on this machine in one command. It starts the control plane
//! (SQLite in a directory it names, its local CA signing every zone's certificate), a demo
//! origin and N PoPs on loopback ports, each a real `edgenet` process following the control
//! plane with an HTTP and an HTTPS listener; registers the PoPs and a demo zone through the
//! API; prints the URLs, the CA file to trust, and an API token.
//!
//! The first SIGINT or SIGTERM stops everything, at any moment: the handlers are installed
//! before the first child starts, and the start-up races them. Children run in process groups
//! of their own (a terminal's Ctrl-C reaches `up` only, which stops them in order with
//! SIGTERM so PoPs drain), and each dies with `up` even when `up` is killed outright
//! (`PR_SET_PDEATHSIG`, set by the child itself: see [`die_with_parent`]).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// The environment variable that names a child's `up` process: the child asks the kernel for
/// SIGTERM when its parent dies.
const PARENT_ENV: &str = "EDGENET_UP_PARENT";

/// In a child of `up`: ask for SIGTERM when `up` dies, and leave at once if it already did
/// (between the fork and this call). Does nothing in a process `up` did not start, nor in
/// one its children started (they inherit the variable).
pub fn die_with_parent() {
    let Some(parent) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    use nix::sys::signal::Signal;
    let up = nix::unistd::Pid::from_raw(parent);
    if nix::unistd::getppid() != up {
        // Either `up` died before this call (this process was handed to another parent), or
        // this is not `up`'s child but a grandchild that inherited the variable (a PoP's
        // worker-compile process): leave only in the first case.
        if nix::sys::signal::kill(up, None).is_err() {
            std::process::exit(0);
        }
        return;
    }
    if nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_ok() && nix::unistd::getppid() != up {
        std::process::exit(0);
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The `edgenet` binary to start the parts with.
    pub exe: PathBuf,
    /// Where everything keeps its files.
    pub data: PathBuf,
    /// How many PoPs.
    pub pops: usize,
    /// The control plane's port; the origin uses port - 70, PoP i HTTP port + 10 + i, HTTPS
    /// port + 373 + i, backbone port + 1000 + i, admin port + 2020 + i (7070, 7000, 7081..,
    /// 7444.., 8071.., 9091.. by default).
    pub port: u16,
}

/// The started processes; dropping it stops them.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &self.0 {
            // SIGTERM lets PoPs drain and the control plane close its database cleanly.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
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

impl Children {
    /// Starts `exe args` as `name`, its output in `log`, in a process group of its own and
    /// bound to die with this process.
    fn spawn(
        &mut self,
        name: &str,
        exe: &Path,
        args: &[&str],
        log: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        println!("starting {name}");
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .env(PARENT_ENV, std::process::id().to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        self.0.push((name.to_string(), child));
        Ok(())
    }
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    while !f().await {
        if Instant::now() > end {
            anyhow::bail!("{what} did not come up within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Runs the network until the first SIGINT or SIGTERM.
pub fn up(o: UpOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut children = Children(Vec::new());
    let outcome = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            started = start(&o, &mut children) => started.map(|()| "stopped"),
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    });
    match &outcome {
        Ok(signal) => println!("{signal}: stopping..."),
        Err(e) => eprintln!("edgenet up: {e:#}; stopping what it started"),
    }
    drop(children);
    outcome.map(|_| ())
}

/// Starts everything, prints where it is, then waits for ever (the caller's signal ends it).
async fn start(o: &UpOptions, children: &mut Children) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.data)?;
    let data = o.data.canonicalize()?;
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs)?;
    let control_dir = data.join("control");
    // One artifact directory for the control plane's upload checks and every PoP: a worker
    // is compiled once, when it is uploaded, and the PoPs load it.
    let artifacts = data.join("artifacts");
    let control_url = format!("http://127.0.0.1:{}", o.port);
    let origin_addr = format!("127.0.0.1:{}", o.port - 70);

    children.spawn(
        "the control plane",
        &o.exe,
        &[
            "control",
            "--data",
            &control_dir.to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{}", o.port),
            "--local-ca",
            "--worker-artifacts",
            &artifacts.to_string_lossy(),
        ],
        &logs.join("control.log"),
        &[],
    )?;
    let token_file = control_dir.join("admin-token");
    wait_for("the control plane", Duration::from_secs(20), || async {
        token_file.exists() && listening(o.port).await
    })
    .await?;
    let admin = std::fs::read_to_string(&token_file)?.trim().to_string();
    let ca_file = control_dir.join("zones-ca.pem");
    wait_for(
        "the control plane's local CA",
        Duration::from_secs(20),
        || async { ca_file.exists() },
    )
    .await?;
    children.spawn(
        "the demo origin",
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
    let t = api(
        reqwest::Method::POST,
        "/v1/tokens".into(),
        json!({"name": "edgenet up PoPs", "scopes": ["pop"]}),
    )
    .await?;
    let pop_token = t["result"]["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The PoPs' admin listeners accept this one for purges and drains.
    let t = api(
        reqwest::Method::POST,
        "/v1/tokens".into(),
        json!({"name": "edgenet up PoP admin", "scopes": ["pop-admin"]}),
    )
    .await?;
    let pop_admin = t["result"]["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
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

    let mut urls = Vec::new();
    for i in 1..=o.pops {
        let name = format!("pop{i}");
        let http = o.port + 10 + i as u16;
        let https = o.port + 373 + i as u16;
        let admin_port = o.port + 2020 + i as u16;
        let backbone = o.port + 1000 + i as u16;
        let cfg = data.join(format!("{name}.toml"));
        std::fs::write(&cfg, format!(
            "# Written by `edgenet up`. Zones come from the control plane.\n[node]\nname = \"{name}\"\nthreads = 1\ndrain_timeout = \"2s\"\n\n\
             [[listeners]]\naddress = \"127.0.0.1:{http}\"\nprotocol = \"http\"\n\n\
             [[listeners]]\naddress = \"127.0.0.1:{https}\"\nprotocol = \"https\"\n\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n\n\
             [access_log]\noutput = \"file\"\npath = \"logs/{name}-access.log\"\n\n[cache]\nmemory = \"64MiB\"\n\n[workers]\nartifact_dir = \"artifacts\"\n\n\
             [backbone]\nlisten = \"127.0.0.1:{backbone}\"\n"))?;
        children.spawn(
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
            https,
        ));
    }
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file)?)?;
    let tls_client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?;
    for (name, url, _, https) in &urls {
        // A PoP is up in about a second; a loaded 2-core machine (a test suite beside it) has
        // taken over 30 s, so a minute before giving up.
        wait_for(
            &format!("{name} serving the demo zone"),
            Duration::from_secs(60),
            || async {
                client
                    .get(url)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            },
        )
        .await?;
        // HTTPS once the demo zone's certificate, signed by the local CA, reached the PoP.
        wait_for(
            &format!("{name} serving the demo zone over HTTPS"),
            Duration::from_secs(60),
            || async {
                tls_client
                    .get(format!("https://127.0.0.1:{https}/"))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            },
        )
        .await?;
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
    println!("  PoP admin      {pop_admin}   (pop-admin: purges and drains on the PoPs' admin listeners)");
    println!("  demo origin    http://{origin_addr}/");
    println!(
        "  local CA       {}   (signs every zone's certificate: trust it with curl --cacert)",
        ca_file.display()
    );
    for (name, url, metrics, https) in &urls {
        println!("  {name:<14} {url}   https://127.0.0.1:{https}/   (metrics {metrics})");
    }
    let first = &urls[0].1;
    let first_https = urls[0].3;
    println!("\nTry:\n  curl -i {first}\n  curl -s -H 'Authorization: Bearer {admin}' {control_url}/v1/pops | python3 -m json.tool");
    println!("  curl -s -X POST -H 'Authorization: Bearer {admin}' {control_url}/v1/zones \\\n    -d '{{\"name\": \"shop\", \"hostnames\": [\"shop.test\"], \"origins\": {{\"servers\": [{{\"address\": \"{origin_addr}\"}}]}}}}'");
    println!("  curl -i -H 'Host: shop.test' {first}        # served by every PoP within a second");
    println!(
        "  curl -i --cacert {} --resolve shop.test:{first_https}:127.0.0.1 https://shop.test:{first_https}/   # and over HTTPS",
        ca_file.display()
    );
    println!("  curl -s -X POST -H 'Authorization: Bearer {admin}' {control_url}/v1/zones/demo/purge_cache \\\n    -d '{{\"purge_everything\": true}}'   # every PoP; answered once all applied it");
    let purge = urls[0].2.replace("/metrics", "/cache/purge");
    println!("  curl -s -X POST -H 'Authorization: Bearer {pop_admin}' {purge} -d '{{\"zone\": \"demo\", \"everything\": true}}'   # one PoP");
    println!("\nCtrl-C stops everything.");
    std::future::pending::<()>().await;
    Ok(())
}
