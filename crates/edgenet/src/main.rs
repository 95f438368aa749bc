//! The `edgenet` binary: parses arguments and starts things; the work is in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists suit a proxy's many short-lived allocations (request heads,
/// header values) better than glibc's malloc, which took ~13% of a pass-through profile; it
/// measured +10-15% req/s in bench/proxy.sh. Built without transparent huge pages (`no_thp`),
/// which would otherwise double the idle RSS (27 MB against 14 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "edgenet", version, about = "A self-hostable edge network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a control plane, PoPs and a demo origin on this machine (Ctrl-C stops them).
    Up {
        /// Where everything keeps its files.
        #[arg(long, default_value = "edgenet-up")]
        data: PathBuf,
        /// How many PoPs.
        #[arg(long, default_value_t = 3)]
        pops: usize,
        /// The control plane's port (the demo origin uses port - 70, PoP i port + 10 + i).
        #[arg(long, default_value_t = 7070)]
        port: u16,
    },
    /// Run a PoP from a configuration file.
    Pop {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Follow this control plane for zones: `http://host:port`, or `nats://host:port` to
        /// watch its JetStream bucket (through a local NATS leaf node at scale).
        #[arg(long, requires = "name")]
        control: Option<String>,
        /// The PoP's registered name at the control plane.
        #[arg(long)]
        name: Option<String>,
        /// A token with the `pop` scope.
        #[arg(long, env = "EDGENET_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The last-known-good file (default: NAME.control-state.json beside the config).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Run the control plane: the API, the store and the configuration stream.
    Control {
        /// Directory for the SQLite database and the first admin token.
        #[arg(long)]
        data: PathBuf,
        /// Keep the state in PostgreSQL instead (`postgres://user:pass@host/db`).
        #[arg(long)]
        database: Option<String>,
        /// The API's address.
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: std::net::SocketAddr,
        /// Also distribute the configuration through this NATS server's JetStream
        /// (`nats://host:port`), for PoPs started with `--control nats://...`.
        #[arg(long)]
        distribution: Option<String>,
    },
    /// Validate a configuration file and compile its worker components (into the node's
    /// artifact cache); lists every error and exits non-zero if there is one.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Compiles a worker component to its cached artifact and prints the artifact's path (the
    /// node runs this in a separate process at deploy time).
    #[command(hide = true)]
    WorkerCompile {
        /// The artifact cache directory.
        #[arg(long)]
        cache: PathBuf,
        /// The node's worker instance pool size (the engine must match the node's).
        #[arg(long)]
        instances: u32,
        /// The node's per-instance memory limit in bytes.
        #[arg(long)]
        max_memory: usize,
        /// The component (.wasm).
        wasm: PathBuf,
    },
    /// The demo origin `edgenet up` starts.
    #[command(hide = true)]
    DemoOrigin {
        /// Its address.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::WorkerCompile {
            cache,
            instances,
            max_memory,
            wasm,
        } => {
            let compiled = std::fs::read(&wasm)
                .map_err(|e| format!("{}: {e}", wasm.display()))
                .and_then(|bytes| {
                    let rt = edgenet_workers::Runtime::new(&cache, instances, max_memory)
                        .map_err(|e| format!("{e:#}"))?;
                    rt.compile(&bytes).map_err(|e| e.to_string())
                });
            match compiled {
                Ok(path) => {
                    println!("{}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => match edgenet_config::load(&config) {
            Ok(c) => {
                let refused = edgenet_proxy::workers::check_components(&c);
                if !refused.is_empty() {
                    for line in refused {
                        eprintln!("{}: {line}", config.display());
                    }
                    return ExitCode::FAILURE;
                }
                let workers: usize = c.zones.iter().map(|z| z.workers.len()).sum();
                println!(
                    "{}: ok ({} listener(s), {} zone(s), {workers} worker(s) compiled)",
                    config.display(),
                    c.listeners.len(),
                    c.zones.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                for line in e.lines() {
                    eprintln!("{line}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Pop {
            config: path,
            control,
            name,
            token,
            state,
        } => {
            init_tracing();
            let result = match control {
                None => run_pop(path),
                Some(control) => run_following_pop(path, control, name, token, state),
            };
            report(result)
        }
        Command::Control {
            data,
            database,
            listen,
            distribution,
        } => {
            init_tracing();
            report(runtime().and_then(|rt| {
                rt.block_on(edgenet_control::serve(edgenet_control::ServeOptions {
                    data,
                    database,
                    listen,
                    distribution,
                }))
            }))
        }
        Command::Up { data, pops, port } => {
            init_tracing();
            report(std::env::current_exe().map_err(Into::into).and_then(|exe| {
                edgenet_control::up::up(edgenet_control::up::UpOptions {
                    exe,
                    data,
                    pops: pops.max(1),
                    port,
                })
            }))
        }
        Command::DemoOrigin { listen } => {
            init_tracing();
            report(runtime().and_then(|rt| rt.block_on(edgenet_control::demo::serve(listen))))
        }
    }
}

fn runtime_current() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                tracing::error!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: edgenet_config::ConfigError) -> anyhow::Error {
    anyhow::anyhow!(e.lines().join("\n"))
}

fn run_pop(path: PathBuf) -> anyhow::Result<()> {
    let config = edgenet_proxy::load_config(&path).map_err(config_error)?;
    edgenet_proxy::run(path, config)
}

/// A PoP whose zones come from a control plane: it starts from its last-known-good file (so
/// it serves with the control plane down), then follows the stream on a thread of its own.
fn run_following_pop(
    path: PathBuf,
    control: String,
    name: Option<String>,
    token: Option<String>,
    state: Option<PathBuf>,
) -> anyhow::Result<()> {
    use edgenet_control::follow::{self, Applier, FollowOptions, Objects};
    use std::sync::Arc;
    let name = name.unwrap_or_default();
    let nats = control.starts_with("nats://");
    let token = match (token, nats) {
        (Some(t), _) => t,
        (None, true) => String::new(),
        (None, false) => anyhow::bail!("--control needs a token: --token or EDGENET_TOKEN"),
    };
    let state_file = state.unwrap_or_else(|| {
        path.parent()
            .unwrap_or(std::path::Path::new("."))
            .join(format!("{name}.control-state.json"))
    });
    fn zones_of(o: &Objects) -> Result<Vec<edgenet_config::ZoneSection>, String> {
        o.of("zone")
            .into_iter()
            .map(|z| {
                serde_json::from_value(z).map_err(|e| format!("a zone from the control plane: {e}"))
            })
            .collect()
    }
    if !edgenet_config::read_raw(&path)
        .map_err(config_error)?
        .zones
        .is_empty()
    {
        tracing::warn!(config = %path.display(), "the file's zones are ignored: zones come from the control plane");
    }
    let last = follow::load_state(&state_file);
    let mut start = (Vec::new(), None);
    if let Some(o) = &last {
        match zones_of(o).and_then(|z| {
            edgenet_proxy::load_config_with(&path, Some(&z))
                .map(|c| (z, c))
                .map_err(|e| e.lines().join("; "))
        }) {
            Ok((z, c)) => {
                tracing::info!(version = o.version, zones = z.len(), state = %state_file.display(), "serving the last-known-good configuration until the control plane answers");
                start = (z, Some(c));
            }
            Err(e) => {
                tracing::error!(state = %state_file.display(), error = %e, "the last-known-good configuration does not apply; starting without zones")
            }
        }
    }
    let (zones, config) = start;
    let config = match config {
        Some(c) => c,
        None => edgenet_proxy::load_config_with(&path, Some(&[])).map_err(config_error)?,
    };
    struct NodeApplier {
        node: Arc<edgenet_proxy::state::Node>,
        path: PathBuf,
    }
    impl Applier for NodeApplier {
        fn apply(&self, o: &Objects) -> Result<(), String> {
            let zones = zones_of(o)?;
            // Other PoPs' backbone addresses (the first address of each PoP record).
            let pops: edgenet_proxy::backbone::PopDirectory = o
                .of("pop")
                .iter()
                .filter_map(|p| {
                    let name = p["name"].as_str()?.to_string();
                    let addr = p["addresses"].get(0)?.as_str()?.parse().ok()?;
                    Some((name, addr))
                })
                .collect();
            self.node.pops.store(Arc::new(pops));
            edgenet_proxy::apply_control_zones(&self.node, &self.path, zones)
                .map(|_| ())
                .map_err(|lines| lines.join("; "))
        }
    }
    let opts = FollowOptions {
        control,
        token,
        pop: name,
        state_file,
    };
    let config_path = path.clone();
    // The backbone listener needs the PoP's certificate before it starts: get it now if the
    // control plane answers (a PoP without one runs without the backbone, and says so).
    let (key, cert, ca) = follow::backbone_files(&opts.state_file, &opts.pop);
    if config.backbone.is_some() && !nats && !cert.exists() {
        let got = runtime_current().and_then(|rt| {
            let client = follow::http_client();
            rt.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    follow::ensure_backbone_certificate(&client, &opts),
                )
                .await
                .map_err(|_| anyhow::anyhow!("the control plane did not answer within 10 s"))?
                .map_err(|e| anyhow::anyhow!(e))
            })
        });
        if let Err(e) = got {
            tracing::error!(error = %e, "no backbone certificate");
        }
    }
    let backbone = (key.exists() && cert.exists() && ca.exists())
        .then_some(edgenet_proxy::backbone::BackboneFiles { key, cert, ca });
    let run = edgenet_proxy::RunOptions {
        control_zones: Some(zones),
        backbone,
    };
    edgenet_proxy::run_with(path, config, run, move |node| {
        let applier = Arc::new(NodeApplier {
            node,
            path: config_path,
        });
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || match runtime_current() {
                Ok(rt) if nats => rt.block_on(edgenet_control::nats::follow_nats(
                    opts.control,
                    opts.pop,
                    opts.state_file,
                    applier,
                    last,
                )),
                Ok(rt) => rt.block_on(follow::follow(opts, applier, last)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the control-plane follower")
                }
            })
            .expect("a thread for the control-plane follower");
    })
}

/// Diagnostics go to stderr (stdout may carry the access log), filtered by `RUST_LOG`.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or journald gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
