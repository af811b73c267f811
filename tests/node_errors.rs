//! Bad input against real `conflux` processes: etcd's status codes and messages for malformed or
//! oversized requests, `Unavailable` (not a hang) without a leader, and clear startup errors for
//! flags or data directories that do not fit. Nothing acknowledged is lost by any of them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use conflux::node::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_requests_get_etcds_codes_and_messages() {
    let c = Cluster::start(1, &["--max-request-bytes", "4096"]);
    let ep = c.members[0].endpoint();
    assert_eq!(ok(etcdctl(&ep, &["put", "kept", "v"]), "put").trim(), "OK");

    let big = "x".repeat(8192);
    let out = etcdctl(&ep, &["put", "big", &big]);
    assert!(!out.status.success() && stderr(&out).contains("etcdserver: request is too large"), "{}", stderr(&out));

    let out = etcdctl(&ep, &["put", "missing", "--ignore-value"]);
    assert!(!out.status.success() && stderr(&out).contains("etcdserver: key not found"), "{}", stderr(&out));

    rt().block_on(async {
        let mut kv = c.kv(0).await;
        let e = kv.put(PutRequest::default()).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::InvalidArgument, "etcdserver: key is not provided"));
        let e = kv.range(RangeRequest::default()).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::InvalidArgument, "etcdserver: key is not provided"));
        let e = kv.delete_range(DeleteRangeRequest::default()).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::InvalidArgument, "etcdserver: key is not provided"));
        let e = kv
            .put(PutRequest { key: "big".into(), value: vec![b'x'; 8192].into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::InvalidArgument, "etcdserver: request is too large"));
        // Far beyond the limit the gRPC layer itself refuses the message.
        let e = kv
            .put(PutRequest { key: "huge".into(), value: vec![b'x'; 2 << 20].into(), ..Default::default() })
            .await
            .unwrap_err();
        assert!(matches!(e.code(), tonic::Code::ResourceExhausted | tonic::Code::OutOfRange), "{e:?}");
        assert_eq!(get(&mut kv, "kept", false).await.unwrap().as_deref(), Some("v"), "earlier write lost");
        assert_eq!(get(&mut kv, "big", false).await.unwrap(), None, "a refused write was applied");
    });
}

#[test]
fn without_a_leader_requests_fail_with_unavailable_in_bounded_time() {
    let mut c = Cluster::start(3, &["--request-timeout", "1500"]);
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        put(&mut kv, "before", "v").await.unwrap();
        // A linearizable read makes member 0 apply it (serializable reads may lag).
        assert_eq!(get(&mut kv, "before", false).await.unwrap().as_deref(), Some("v"));
    });
    c.kill(1);
    c.kill(2);
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        let t = Instant::now();
        let e = put(&mut kv, "lost", "v").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
        let t = Instant::now();
        let e = get(&mut kv, "before", false).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
        // A serializable read is served locally, leader or not.
        assert_eq!(get(&mut kv, "before", true).await.unwrap().as_deref(), Some("v"));
    });
    c.spawn(1);
    c.spawn(2);
    c.wait_ready(0);
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        assert_eq!(get(&mut kv, "before", false).await.unwrap().as_deref(), Some("v"), "acknowledged write lost");
    });
}

fn run_conflux(args: &[String]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("conflux {args:?} did not exit with a startup error within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn replace_flag(args: &mut [String], flag: &str, value: &str) {
    let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} not in {args:?}"));
    args[i + 1] = value.to_string();
}

#[test]
fn startup_errors_name_what_is_wrong() {
    let mut c = Cluster::start(1, &[]);
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        put(&mut kv, "kept", "v").await.unwrap();
    });
    assert!(c.terminate(0).success());

    // A name missing from --initial-cluster.
    let mut args = c.args(0);
    replace_flag(&mut args, "--name", "stranger");
    replace_flag(&mut args, "--data-dir", c.dir.path().join("other").to_str().unwrap());
    let out = run_conflux(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stranger") && stderr(&out).contains("--initial-cluster"), "{}", stderr(&out));

    // The data dir of another member.
    let mut args = c.args(0);
    replace_flag(&mut args, "--name", "m9");
    replace_flag(&mut args, "--initial-cluster", &format!("m9={}", c.members[0].peer_url()));
    let out = run_conflux(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("belongs to member \"m0\""), "{}", stderr(&out));
    // It names the identity file, which may be what is wrong (tests/bit_flips.rs flips its bits).
    let node_file = c.members[0].data_dir.join("node").display().to_string();
    assert!(stderr(&out).contains(&format!("identity file {node_file}")), "{}", stderr(&out));

    // The data dir of another cluster (the token makes the ids).
    let mut args = c.args(0);
    replace_flag(&mut args, "--initial-cluster-token", "another-cluster");
    let out = run_conflux(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("of cluster") && stderr(&out).contains("describes"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("identity file {node_file}")), "{}", stderr(&out));

    // A malformed flag value names the flag.
    let mut args = c.args(0);
    replace_flag(&mut args, "--heartbeat-interval", "soon");
    let out = run_conflux(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--heartbeat-interval") && stderr(&out).contains("soon"), "{}", stderr(&out));

    // A --peer-local-address no interface has (TEST-NET-1) is refused before anything is written.
    let mut args = c.args(0);
    replace_flag(&mut args, "--data-dir", c.dir.path().join("unused").to_str().unwrap());
    args.extend(["--peer-local-address".to_string(), "192.0.2.1".to_string()]);
    let out = run_conflux(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--peer-local-address 192.0.2.1 cannot be used"), "{}", stderr(&out));
    assert!(!c.dir.path().join("unused").exists(), "the data dir was made before the address was checked");

    // Joining an "existing" cluster that does not know this member.
    let mut args = c.args(0);
    replace_flag(&mut args, "--name", "joiner");
    replace_flag(&mut args, "--data-dir", c.dir.path().join("joiner").to_str().unwrap());
    let port = free_port();
    replace_flag(&mut args, "--initial-advertise-peer-urls", &format!("http://127.0.0.1:{port}"));
    replace_flag(&mut args, "--listen-peer-urls", &format!("http://127.0.0.1:{port}"));
    let cport = free_port();
    replace_flag(&mut args, "--listen-client-urls", &format!("http://127.0.0.1:{cport}"));
    replace_flag(&mut args, "--advertise-client-urls", &format!("http://127.0.0.1:{cport}"));
    replace_flag(&mut args, "--listen-metrics-urls", &format!("http://127.0.0.1:{}", free_port()));
    replace_flag(
        &mut args,
        "--initial-cluster",
        &format!("m0={},joiner=http://127.0.0.1:{port}", c.members[0].peer_url()),
    );
    args.extend(["--initial-cluster-state".to_string(), "existing".to_string()]);
    c.spawn(0);
    c.wait_ready(0);
    let out = run_conflux(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has the peer URLs") && stderr(&out).contains("member add"), "{}", stderr(&out));

    // The original member still has its data.
    rt().block_on(async {
        let mut kv = c.kv(0).await;
        assert_eq!(get(&mut kv, "kept", false).await.unwrap().as_deref(), Some("v"));
    });
}
