//! # conflux
//!
//! A Raft storage node speaking the etcd v3 API, on its own segmented log engine
//! (`conflux-engine`, see `docs/architecture.md` and `docs/format.md`).
//!
//! `conflux [FLAGS]` runs a member (flags, config file and environment: `docs/operations.md`);
//! with no flags at all it is a working single-node member on etcd's default ports with
//! `./default.conflux` as its data directory. The operator tools: `conflux dump DIR` prints a data
//! directory's meta, segments, indexes and records; `conflux verify DIR` checks every record and
//! exits non-zero on corruption; `conflux restore FILE` builds a new member's data directory
//! from a backup taken with `etcdctl snapshot save`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: requests are allocated on tonic's threads and freed on
/// Raft's and the state machine's, and glibc's arenas contend on that (allocation was ~15% of a
/// member's CPU at 256 clients; `docs/benchmarks.md`, `docs/decisions.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "conflux", version, about = "conflux: a Raft key-value node speaking the etcd v3 API")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: conflux::node::config::ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a data directory's meta, segments and indexes (and records) for humans; exits 1 on
    /// corruption.
    Dump {
        /// The data directory (the one holding `meta` and `log/`).
        dir: PathBuf,
        /// One line per record.
        #[arg(long)]
        records: bool,
        /// With --records: the index slot beside each record.
        #[arg(long, requires = "records")]
        slots: bool,
    },
    /// Check every record, index and meta slot of a data directory; exits 1 on corruption.
    Verify {
        /// The data directory.
        dir: PathBuf,
    },
    /// Build a new member's data directory from a backup taken with `etcdctl snapshot save`.
    ///
    /// Like `etcdctl snapshot restore`: same data, new cluster. Run it once per member with that
    /// member's flags, then start each member with the same flags.
    Restore(RestoreArgs),
}

/// `conflux restore` flags: etcdctl snapshot restore's, with the same defaults.
#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// The backup file (written by `etcdctl snapshot save` against a conflux member).
    file: PathBuf,
    /// The new member's data directory; must not exist or be empty [default: <name>.conflux]
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The new member's name [default: default]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The new cluster's members, name=peer-URL pairs [default: <name>=<initial-advertise-peer-urls>]
    #[arg(long = "initial-cluster", value_name = "NAME=URL,...")]
    initial_cluster: Option<String>,
    /// The new cluster's token [default: etcd-cluster]
    #[arg(long = "initial-cluster-token", value_name = "TOKEN")]
    initial_cluster_token: Option<String>,
    /// The new member's peer URLs [default: http://localhost:2380]
    #[arg(long = "initial-advertise-peer-urls", value_name = "URLS")]
    initial_advertise_peer_urls: Option<String>,
    /// Restore without checking the file's SHA-256 (or from a file without one, such as a copy
    /// of a member's snapshots/*.snap.zst)
    #[arg(long = "skip-hash-check")]
    skip_hash_check: bool,
}

fn restore(a: RestoreArgs) -> ExitCode {
    let opts = conflux::backup::RestoreOptions {
        file: a.file,
        name: a.name,
        data_dir: a.data_dir,
        initial_cluster: a.initial_cluster,
        initial_cluster_token: a.initial_cluster_token,
        initial_advertise_peer_urls: a.initial_advertise_peer_urls,
        skip_hash_check: a.skip_hash_check,
    };
    match conflux::backup::restore(&opts) {
        Ok(r) => {
            println!(
                "restored {} into {}: revision {}, compacted {}, {} keys, {} versions{}; member {} ({:x}) of cluster \
                 {:x}. Start it with the same --name, --initial-cluster, --initial-cluster-token and \
                 --initial-advertise-peer-urls.",
                opts.file.display(),
                r.data_dir.display(),
                r.revision,
                r.compacted,
                r.keys,
                r.versions,
                if r.hash_checked { ", SHA-256 checked" } else { ", SHA-256 not checked" },
                r.identity.name,
                r.identity.member_id,
                r.identity.cluster_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conflux restore: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_dir(dir: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", dir.display())),
        Err(e) => Err(format!("cannot read data directory {}: {e}", dir.display())),
    }
}

/// Run the server until SIGINT/SIGTERM.
fn serve(args: conflux::node::config::ServeArgs) -> ExitCode {
    let config = match conflux::node::config::NodeConfig::resolve(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conflux: {e}");
            return ExitCode::from(2);
        }
    };
    // tonic reports a refused TLS handshake (a client without a valid certificate) only at debug
    // level, from its accept loop; show those lines wherever info is shown (etcd logs each
    // rejected connection too). The target is tonic's module path: should it move, the lines
    // just stop appearing.
    let tls_refusals = if matches!(config.log_level.as_str(), "trace" | "debug" | "info") {
        ",tonic::transport::server::io_stream=debug"
    } else {
        ""
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "warn,conflux={0},conflux_engine={0}{tls_refusals}",
        config.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("conflux").build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conflux: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(conflux::node::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("conflux: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let io = conflux_engine::io::StdIo;
    let Some(command) = cli.command else { return serve(cli.serve) };
    match command {
        Command::Restore(a) => restore(a),
        Command::Dump { dir, records, slots } => {
            if let Err(e) = check_dir(&dir) {
                eprintln!("conflux dump: {e}");
                return ExitCode::from(2);
            }
            let opts = conflux_engine::tools::DumpOptions { records, slots };
            let mut out = std::io::stdout().lock();
            match conflux_engine::tools::dump(&io, &dir, opts, &mut out) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("conflux dump: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Verify { dir } => {
            if let Err(e) = check_dir(&dir) {
                eprintln!("conflux verify: {e}");
                return ExitCode::from(2);
            }
            match conflux_engine::tools::verify(&io, &dir) {
                Ok(r) => {
                    for n in &r.notes {
                        println!("note: {n}");
                    }
                    for p in &r.problems {
                        println!("CORRUPT: {p}");
                    }
                    println!(
                        "{}: {} files, {} records verified, {} problems",
                        dir.display(),
                        r.files,
                        r.records,
                        r.problems.len()
                    );
                    if r.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
                }
                Err(e) => {
                    eprintln!("conflux verify: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
