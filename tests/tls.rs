//! TLS on the client and peer listeners, with certificates made by the test (rcgen): a 3-member
//! cluster over https client and peer URLs with client-cert-auth on both serves etcdctl with a
//! proper client certificate on every member and refuses clients without one or with one from
//! another CA; the peer listener refuses members without a peer certificate; an expired server
//! certificate fails etcdctl's verification; unusable TLS settings
//! stop the server at startup with a message naming the flag and the file.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::certs::TestPki;
use common::*;

/// etcdctl with TLS flags (`--cacert`, and `--cert`/`--key` when `client` is given).
fn etcdctl_tls(endpoint: &str, ca: &str, client: Option<(&str, &str)>, args: &[&str]) -> Output {
    let mut all = vec![format!("--cacert={ca}")];
    if let Some((cert, key)) = client {
        all.push(format!("--cert={cert}"));
        all.push(format!("--key={key}"));
    }
    all.push("--dial-timeout=3s".to_string());
    all.extend(args.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    etcdctl(endpoint, &all)
}

/// The TLS flags of a member whose client and peer URLs are https, with client-cert-auth on both.
fn member_tls_flags(pki: &TestPki) -> Vec<String> {
    [
        "--cert-file",
        pki.server.cert(),
        "--key-file",
        pki.server.key(),
        "--trusted-ca-file",
        pki.ca(),
        "--client-cert-auth",
        "--peer-cert-file",
        pki.server.cert(),
        "--peer-key-file",
        pki.server.key(),
        "--peer-trusted-ca-file",
        pki.ca(),
        "--peer-client-cert-auth=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn https_cluster_with_client_cert_auth() {
    let certs = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(certs.path());
    let flags = member_tls_flags(&pki);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = Cluster::start_with(3, &flags, Some(pki.client_tls()));
    let client = Some((pki.client.cert(), pki.client.key()));

    for (i, m) in c.members.iter().enumerate() {
        let ep = m.client_url();
        assert!(ep.starts_with("https://"), "{ep}");
        let key = format!("tls{i}");
        assert_eq!(ok(etcdctl_tls(&ep, pki.ca(), client, &["put", &key, "v"]), "put over TLS").trim(), "OK");
        for other in &c.members {
            let got = ok(etcdctl_tls(&other.client_url(), pki.ca(), client, &["get", &key]), "get over TLS");
            assert_eq!(got, format!("{key}\nv\n"), "member {} reading {key}", other.name);
        }
        let list = ok(etcdctl_tls(&ep, pki.ca(), client, &["member", "list"]), "member list over TLS");
        for other in &c.members {
            assert!(list.contains(&other.name) && list.contains(&other.peer_url()), "member list on {i}: {list}");
        }
    }

    // No client certificate: refused at the handshake.
    let ep = c.members[0].client_url();
    // etcdctl reports a handshake it could not complete as a failed dial.
    let refused_dial = |out: &Output| String::from_utf8_lossy(&out.stderr).contains("context deadline exceeded");
    let out = etcdctl_tls(&ep, pki.ca(), None, &["get", "tls0"]);
    assert!(!out.status.success(), "a client without a certificate was served: {out:?}");
    assert!(refused_dial(&out), "etcdctl without a certificate failed otherwise: {out:?}");
    // A certificate from another CA: refused too.
    let foreign = Some((pki.foreign_client.cert(), pki.foreign_client.key()));
    let out = etcdctl_tls(&ep, pki.ca(), foreign, &["get", "tls0"]);
    assert!(!out.status.success(), "a client with a foreign certificate was served: {out:?}");
    assert!(refused_dial(&out), "etcdctl with a foreign certificate failed otherwise: {out:?}");
    // The same refusal seen by a Rust client: the connection fails at the transport (the server's
    // TLS alert, or the connection it closes, depending on when the alert arrives); no gRPC
    // status ever comes from a service.
    let refused = rt().block_on(async {
        let no_cert = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca).unwrap()));
        let ep = tonic::transport::Endpoint::from_shared(ep.clone()).unwrap().tls_config(no_cert).unwrap();
        // With TLS 1.3 the client's side of the handshake may complete before the server checks.
        let ch = match ep.connect().await {
            Ok(ch) => ch,
            Err(e) => return format!("{e:?}"),
        };
        let mut kv = conflux::node::proto::etcdserverpb::kv_client::KvClient::new(ch);
        let status = get(&mut kv, "tls0", false).await.expect_err("served without a client certificate");
        assert!(
            matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown),
            "refused with an unexpected status: {status:?}"
        );
        format!("{status:?}")
    });
    assert!(refused.contains("Transport"), "the refusal is not a transport failure: {refused}");
    // Every member's peer certificate verified for its advertised peer URL at start.
    for i in 0..c.members.len() {
        let log = c.log(i);
        assert!(!log.contains("does not verify"), "member {i} warned about its peer certificate:\n{log}");
    }
    // The member logs each refused handshake.
    let log = c.log(0);
    assert!(log.contains("tls accept error") && log.contains("no certificates"), "refusals not logged:\n{log}");
    // Proper clients are still served, on every member.
    for m in &c.members {
        let got = ok(etcdctl_tls(&m.client_url(), pki.ca(), client, &["get", "tls0"]), "get after refusals");
        assert_eq!(got, "tls0\nv\n");
    }
    // Plain http to a TLS port gets nowhere either.
    let plain = etcdctl(&format!("http://127.0.0.1:{}", c.members[0].client_port), &["--dial-timeout=2s", "get", "x"]);
    assert!(!plain.status.success(), "plain http was served on an https port: {plain:?}");
}

/// A running `conflux` that is killed on drop.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn single_member_args(dir: &Path, client_url: &str, peer_port: u16) -> Vec<String> {
    let peer = format!("http://127.0.0.1:{peer_port}");
    [
        "--name",
        "solo",
        "--data-dir",
        dir.join("solo.conflux").to_str().unwrap(),
        "--listen-client-urls",
        client_url,
        "--advertise-client-urls",
        client_url,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("solo={peer}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn expired_server_certificate_fails_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let mut args = single_member_args(dir.path(), &url, free_port());
    args.extend(["--cert-file", pki.expired_server.cert(), "--key-file", pki.expired_server.key()].map(String::from));
    let log = std::fs::File::create(dir.path().join("solo.log")).unwrap();
    let mut proc = Proc(
        Command::new(env!("CARGO_BIN_EXE_conflux"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn conflux"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!(
                "conflux exited with {status}: {}",
                std::fs::read_to_string(dir.path().join("solo.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "conflux did not listen on {url} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = etcdctl_tls(&url, pki.ca(), None, &["get", "k"]);
    assert!(!out.status.success(), "etcdctl accepted an expired server certificate: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("context deadline exceeded"),
        "etcdctl failed otherwise than by not completing the handshake: {out:?}"
    );
    // etcdctl gives up on the endpoint; a Rust client says why.
    let err = rt()
        .block_on(async {
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca).unwrap()));
            tonic::transport::Endpoint::from_shared(url.clone()).unwrap().tls_config(tls).unwrap().connect().await
        })
        .expect_err("connected to a server with an expired certificate");
    let text = format!("{err:?}").to_ascii_lowercase();
    assert!(text.contains("expired"), "the failure does not say the certificate expired: {err:?}");
}

/// Run conflux with `args` and wait (20 s at most) for it to exit; its status and stderr.
fn run_to_exit(args: &[String]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn conflux");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
            return (status, text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("conflux {args:?} did not exit within 20 s (it should refuse to start)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_refused(args: &[String], parts: &[&str]) {
    let (status, text) = run_to_exit(args);
    assert!(!status.success(), "conflux started with {args:?}");
    for p in parts {
        assert!(text.contains(p), "the error does not name {p:?}: {text}");
    }
}

#[test]
fn unusable_tls_settings_stop_startup_naming_flag_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let https = format!("https://127.0.0.1:{}", free_port());
    let base = single_member_args(dir.path(), &https, free_port());
    let with = |extra: &[&str]| {
        let mut a = base.clone();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // An https URL without a certificate.
    assert_refused(&base, &["--listen-client-urls", &https, "--cert-file and --key-file"]);
    // A key file that is not there.
    let missing = dir.path().join("missing-key.pem");
    assert_refused(
        &with(&["--cert-file", pki.server.cert(), "--key-file", missing.to_str().unwrap()]),
        &["--key-file", missing.to_str().unwrap()],
    );
    // Garbage where a certificate should be.
    let garbage = pki.garbage.to_str().unwrap();
    assert_refused(&with(&["--cert-file", garbage, "--key-file", pki.server.key()]), &["--cert-file", garbage]);
    // Garbage as the peer CA.
    let peer = format!("https://127.0.0.1:{}", free_port());
    let mut peer_args = single_member_args(dir.path(), &format!("http://127.0.0.1:{}", free_port()), 0);
    for (flag, value) in [
        ("--listen-peer-urls", peer.as_str()),
        ("--initial-advertise-peer-urls", peer.as_str()),
        ("--initial-cluster", &format!("solo={peer}")),
    ] {
        let at = peer_args.iter().position(|a| a == flag).unwrap();
        peer_args[at + 1] = value.to_string();
    }
    peer_args.extend(
        ["--peer-cert-file", pki.server.cert(), "--peer-key-file", pki.server.key(), "--peer-trusted-ca-file", garbage]
            .map(String::from),
    );
    assert_refused(&peer_args, &["--peer-trusted-ca-file", garbage]);
    // A key that belongs to another certificate.
    assert_refused(
        &with(&["--cert-file", pki.server.cert(), "--key-file", pki.client.key()]),
        &["--key-file", pki.client.key(), "--cert-file", pki.server.cert()],
    );
    // Client-cert-auth with nothing to verify against.
    assert_refused(
        &with(&["--cert-file", pki.server.cert(), "--key-file", pki.server.key(), "--client-cert-auth"]),
        &["--client-cert-auth", "--trusted-ca-file"],
    );
}

#[test]
fn the_peer_listener_refuses_members_without_a_peer_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(certs.path());
    let flags = member_tls_flags(&pki);
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut c = Cluster::start_with(1, &flag_refs, Some(pki.client_tls()));
    let client = Some((pki.client.cert(), pki.client.key()));
    let first = c.members[0].client_url();
    ok(etcdctl_tls(&first, pki.ca(), client, &["put", "peer-test", "v"]), "put");

    // The peer listener refuses a dialler without a peer certificate, and serves one with it.
    let peer_url = c.members[0].peer_url();
    let hello = |with_cert: bool| {
        let ca = tonic::transport::Certificate::from_pem(std::fs::read(&pki.ca).unwrap());
        let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(ca);
        if with_cert {
            let read = |p: &Path| std::fs::read(p).unwrap();
            tls = tls.identity(tonic::transport::Identity::from_pem(read(&pki.server.cert), read(&pki.server.key)));
        }
        let ep = tonic::transport::Endpoint::from_shared(peer_url.clone()).unwrap().tls_config(tls).unwrap();
        rt().block_on(async {
            let ch = ep.connect().await.map_err(|e| format!("{e:?}"))?;
            let mut peer = conflux::node::proto::peer::peer_client::PeerClient::new(ch);
            peer.hello(conflux::node::proto::peer::Payload::default()).await.map(|_| ()).map_err(|e| format!("{e:?}"))
        })
    };
    hello(true).expect("a member with the peer certificate is served");
    let refused = hello(false).expect_err("a dialler without a certificate was served on the peer port");
    assert!(refused.contains("Transport"), "refused otherwise than at the transport: {refused}");

    // The member still serves its clients and its peers.
    ok(etcdctl_tls(&first, pki.ca(), client, &["get", "peer-test"]), "get after a refused peer");
    hello(true).expect("a member with the peer certificate is still served");
    c.wait_ready(0);
}
