//! The `edgenet` binary: parses arguments and starts things; the work is in the library crates
//! (`edgenet-node` runs a PoP, `edgenet-control` the control plane). `up` (a whole network on
//! this machine) and its demo origin live here, beside the commands they start.

mod cli;
mod demo;
mod up;

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
enum WorkerCommand {
    /// Upload a component as a new version of a script and route patterns to it.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// The script's name.
        #[arg(long)]
        name: String,
        /// A `host/path` pattern of one of the account's zones to run it on; repeatable.
        #[arg(long = "route")]
        routes: Vec<String>,
        /// A KV namespace of the account (id or title) the worker opens as BINDING
        /// (`wasi:keyvalue/store.open("BINDING")`): `BINDING=NAMESPACE`; repeatable.
        #[arg(long = "kv")]
        kv: Vec<String>,
        /// The account's id.
        #[arg(long, env = "EDGENET_ACCOUNT")]
        account: String,
        /// The control plane's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        control: String,
        /// A token with the `write` scope.
        #[arg(long, env = "EDGENET_TOKEN", hide_env_values = true)]
        token: String,
    },
}

#[derive(Subcommand)]
enum KvCommand {
    /// Write a value.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Seconds until it expires.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Print a value.
    Get {
        /// The key.
        key: String,
    },
    /// Print the keys that start with a prefix.
    List {
        /// The prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete a value.
    Delete {
        /// The key.
        key: String,
    },
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
        /// Take over from the node running with this configuration file (a new binary, say):
        /// its listening sockets pass to this process, which serves at once, while the old
        /// one finishes its requests and exits.
        #[arg(long)]
        upgrade: bool,
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
        /// The key that seals certificates' private keys at rest: 64 hex digits (default
        /// DATA/certificates.key, made on first start, mode 0600). Keep it outside the
        /// database and its backups.
        #[arg(long)]
        certificates_key: Option<PathBuf>,
        /// Issue every zone's edge certificate from the control plane's own local CA
        /// (DATA/zones-ca.pem: give it to clients to trust), as `edgenet up` does.
        #[arg(long, conflicts_with = "acme_directory")]
        local_ca: bool,
        /// Issue every zone's edge certificate over ACME from this directory
        /// (`https://acme-v02.api.letsencrypt.org/directory`).
        #[arg(long)]
        acme_directory: Option<String>,
        /// A PEM file of the CA behind the ACME directory's own TLS certificate (a test CA
        /// such as pebble's); default: the system's trust store.
        #[arg(long, requires = "acme_directory")]
        acme_ca: Option<PathBuf>,
        /// The ACME account's credentials file (default DATA/acme-account.json, made on
        /// first use, mode 0600).
        #[arg(long, requires = "acme_directory")]
        acme_account: Option<PathBuf>,
        /// A contact URI for a new ACME account (`mailto:ops@example.com`); repeatable.
        #[arg(long, requires = "acme_directory")]
        acme_contact: Vec<String>,
        /// The challenge PoPs answer: `http-01` (port 80) or `tls-alpn-01` (port 443).
        #[arg(long, default_value = "http-01", value_parser = ["http-01", "tls-alpn-01"])]
        acme_challenge: String,
        /// Keep each uploaded worker's compiled artifact (made to check the upload) in this
        /// directory: PoPs on this machine whose `workers.artifact_dir` is the same load it
        /// without compiling it again, as under `edgenet up`.
        #[arg(long)]
        worker_artifacts: Option<PathBuf>,
    },
    /// Workers through the control plane's API.
    Worker {
        #[command(subcommand)]
        command: WorkerCommand,
    },
    /// The edge key-value store through the control plane's API.
    Kv {
        /// The namespace (its id or its title).
        #[arg(long)]
        namespace: String,
        /// The account's id.
        #[arg(long, env = "EDGENET_ACCOUNT")]
        account: String,
        /// The control plane's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        control: String,
        /// A token with the `write` scope (`read` for get and list).
        #[arg(long, env = "EDGENET_TOKEN", hide_env_values = true)]
        token: String,
        #[command(subcommand)]
        command: KvCommand,
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
    up::die_with_parent();
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
        Command::Check { config } => match edgenet_node::check::check(&config) {
            Ok(s) => {
                println!(
                    "{}: ok ({} listener(s), {} zone(s), {} worker(s) compiled)",
                    config.display(),
                    s.listeners,
                    s.zones,
                    s.workers
                );
                ExitCode::SUCCESS
            }
            Err(lines) => {
                for line in lines {
                    eprintln!("{line}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Pop {
            config,
            control,
            name,
            token,
            state,
            upgrade,
        } => {
            init_tracing();
            report(match control {
                None => edgenet_node::run(config, upgrade),
                Some(control) => edgenet_node::follow::pop::run(edgenet_node::Following {
                    config,
                    control,
                    name: name.unwrap_or_default(),
                    token,
                    state,
                    upgrade,
                }),
            })
        }
        Command::Control {
            data,
            database,
            listen,
            distribution,
            certificates_key,
            local_ca,
            acme_directory,
            acme_ca,
            acme_account,
            acme_contact,
            acme_challenge,
            worker_artifacts,
        } => {
            init_tracing();
            let issuer = match (local_ca, acme_directory) {
                (true, _) => edgenet_control::IssuerOptions::Local,
                (false, Some(directory)) => edgenet_control::IssuerOptions::Acme(
                    edgenet_control::certificates::acme::AcmeOptions {
                        directory,
                        directory_ca: acme_ca,
                        account: acme_account.unwrap_or_else(|| data.join("acme-account.json")),
                        contact: acme_contact,
                        challenge: if acme_challenge == "tls-alpn-01" {
                            edgenet_protocol::ChallengeType::TlsAlpn01
                        } else {
                            edgenet_protocol::ChallengeType::Http01
                        },
                    },
                ),
                (false, None) => edgenet_control::IssuerOptions::None,
            };
            report(runtime().and_then(|rt| {
                rt.block_on(edgenet_control::serve(edgenet_control::ServeOptions {
                    certificates_key: certificates_key
                        .unwrap_or_else(|| data.join("certificates.key")),
                    data,
                    database,
                    listen,
                    distribution,
                    issuer,
                    worker_artifacts,
                }))
            }))
        }
        Command::Worker {
            command:
                WorkerCommand::Deploy {
                    file,
                    name,
                    routes,
                    kv,
                    account,
                    control,
                    token,
                },
        } => {
            let api = cli::Api {
                control,
                token,
                account,
            };
            match runtime().and_then(|rt| rt.block_on(cli::deploy(&api, file, &name, &routes, &kv)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edgenet worker deploy: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Kv {
            namespace,
            account,
            control,
            token,
            command,
        } => {
            let api = cli::Api {
                control,
                token,
                account,
            };
            let what = match command {
                KvCommand::Put { key, value, ttl } => cli::Kv::Put { key, value, ttl },
                KvCommand::Get { key } => cli::Kv::Get { key },
                KvCommand::List { prefix } => cli::Kv::List { prefix },
                KvCommand::Delete { key } => cli::Kv::Delete { key },
            };
            match runtime().and_then(|rt| rt.block_on(cli::kv(&api, &namespace, what))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edgenet kv: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Up { data, pops, port } => {
            init_tracing();
            report(std::env::current_exe().map_err(Into::into).and_then(|exe| {
                up::up(up::UpOptions {
                    exe,
                    data,
                    pops: pops.max(1),
                    port,
                })
            }))
        }
        Command::DemoOrigin { listen } => {
            init_tracing();
            report(runtime().and_then(|rt| rt.block_on(demo::serve(listen))))
        }
    }
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
