//! `--embedded N`: a conflux cluster of N members inside the loadgen process, on free loopback
//! ports and temporary data directories, on its own runtime (threads named `conflux-*`, so
//! loadgen's CPU accounting, which counts `lg-*` threads, leaves the servers out).

use std::path::PathBuf;

use conflux::node::config::{NodeConfig, ServeArgs};
use conflux::node::{Listeners, RunningNode};

/// A running embedded cluster.
pub struct Embedded {
    runtime: Option<tokio::runtime::Runtime>,
    nodes: Vec<RunningNode>,
    /// The members' client endpoints (`127.0.0.1:port`).
    pub endpoints: Vec<String>,
    dir: Option<tempfile::TempDir>,
    kept: Option<PathBuf>,
}

/// Options of an embedded cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Members.
    pub members: usize,
    /// Where to put the data directories (default: the system's temporary directory).
    pub data_root: Option<PathBuf>,
    /// Extra `--flag value` settings for every member (e.g. `--snapshot-count`).
    pub extra: Vec<(String, String)>,
}

/// The server's flags, parsed from an argument list.
#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    args: ServeArgs,
}

fn std_listener() -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl Embedded {
    /// Start the members and wait until they have a leader.
    pub fn start(opts: &EmbeddedOptions) -> Result<Embedded, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("conflux-node")
            .build()
            .map_err(|e| format!("cannot start the embedded cluster's runtime: {e}"))?;
        let dir = match &opts.data_root {
            Some(root) => tempfile::Builder::new().prefix("loadgen-").tempdir_in(root),
            None => tempfile::Builder::new().prefix("loadgen-").tempdir(),
        }
        .map_err(|e| format!("cannot create a data directory: {e}"))?;
        let n = opts.members.max(1);
        let mut bound = Vec::new();
        for _ in 0..n {
            let l = (std_listener(), std_listener());
            match l {
                (Ok(c), Ok(p)) => bound.push((c, p)),
                (Err(e), _) | (_, Err(e)) => return Err(format!("cannot bind a loopback port: {e}")),
            }
        }
        let port = |l: &std::net::TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
        let cluster = bound
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{}", port(p)))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (c, p)) in bound.into_iter().enumerate() {
            let client = format!("http://127.0.0.1:{}", port(&c));
            let peer = format!("http://127.0.0.1:{}", port(&p));
            let mut argv: Vec<String> = vec!["conflux".into()];
            for (flag, value) in [
                ("--name", format!("m{i}")),
                ("--data-dir", dir.path().join(format!("m{i}.conflux")).display().to_string()),
                ("--listen-client-urls", client.clone()),
                ("--advertise-client-urls", client.clone()),
                ("--listen-peer-urls", peer.clone()),
                ("--initial-advertise-peer-urls", peer),
                ("--initial-cluster", cluster.clone()),
                ("--initial-cluster-token", "loadgen-embedded".into()),
            ]
            .into_iter()
            .chain(opts.extra.iter().map(|(f, v)| (f.as_str(), v.clone())))
            {
                argv.push(flag.to_string());
                argv.push(value);
            }
            let args =
                <Flags as clap::Parser>::try_parse_from(&argv).map_err(|e| format!("embedded member m{i}: {e}"))?.args;
            let env = |_: &str| None;
            let cfg = NodeConfig::resolve(args, &env).map_err(|e| format!("embedded member m{i}: {e}"))?;
            let node = runtime
                .block_on(async {
                    let listeners = Listeners {
                        client: vec![tokio::net::TcpListener::from_std(c)?],
                        peer: vec![tokio::net::TcpListener::from_std(p)?],
                        metrics: vec![],
                    };
                    std::io::Result::Ok(conflux::node::start_on(cfg, listeners).await)
                })
                .map_err(|e| format!("embedded member m{i}: {e}"))?
                .map_err(|e| format!("embedded member m{i}: {e}"))?;
            endpoints.push(client.trim_start_matches("http://").to_string());
            nodes.push(node);
        }
        let e = Embedded { runtime: Some(runtime), nodes, endpoints, dir: Some(dir), kept: None };
        e.wait_leader(std::time::Duration::from_secs(30))?;
        Ok(e)
    }

    fn wait_leader(&self, within: std::time::Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let led = self.nodes.iter().all(|n| n.core.current_leader().is_some());
            if led {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the embedded cluster elected no leader within {within:?}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Where the data directories are.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path()).or(self.kept.as_deref())
    }

    /// Stop every member; delete the data unless `keep` (then its path is returned). May be
    /// called from inside another runtime: the shutdown runs on a thread of its own.
    pub fn stop(mut self, keep: bool) -> Option<PathBuf> {
        self.shutdown();
        let dir = self.dir.take()?;
        if keep { Some(dir.keep()) } else { None }
    }

    fn shutdown(&mut self) {
        let Some(rt) = self.runtime.take() else { return };
        let nodes: Vec<RunningNode> = self.nodes.drain(..).collect();
        let stopper = std::thread::Builder::new().name("conflux-stop".into()).spawn(move || {
            for n in nodes {
                // Bounded: a member that does not stop must not keep loadgen from exiting.
                if rt
                    .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(20), n.shutdown()).await })
                    .is_err()
                {
                    eprintln!("loadgen: an embedded member did not stop within 20 s");
                }
            }
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        });
        if let Ok(t) = stopper {
            let _ = t.join();
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.shutdown();
    }
}
