//! loadgen drives a conflux member that serves clients over TLS with client-cert-auth, using
//! etcdctl's `--cacert`/`--cert`/`--key`; the certificates are made here with rcgen.

mod common;

use std::path::Path;

use common::{RUN_LIMIT, check_report, free_port, loadgen, read_json};
use conflux::node::config::{NodeConfig, ServeArgs};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::json;

/// A CA, a certificate for 127.0.0.1 (the member's, both sides) and a client certificate, as
/// PEM files in `dir`: (ca, member cert, member key, client cert, client key).
fn pki(dir: &Path) -> [String; 5] {
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write a test certificate");
        p.to_str().unwrap().to_string()
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "loadgen test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (write(&format!("{name}.pem"), cert.pem()), write(&format!("{name}-key.pem"), key.serialize_pem()))
    };
    let (member, member_key) = leaf("member");
    let (client, client_key) = leaf("client");
    [write("ca.pem", ca_pem), member, member_key, client, client_key]
}

#[test]
fn put_load_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, member, member_key, client, client_key] = pki(dir.path());
    let client_url = format!("https://127.0.0.1:{}", free_port());
    let peer_url = format!("https://127.0.0.1:{}", free_port());
    let args = ServeArgs {
        name: Some("tls".into()),
        data_dir: Some(dir.path().join("tls.conflux")),
        listen_client_urls: Some(client_url.clone()),
        advertise_client_urls: Some(client_url.clone()),
        listen_peer_urls: Some(peer_url.clone()),
        initial_advertise_peer_urls: Some(peer_url.clone()),
        initial_cluster: Some(format!("tls={peer_url}")),
        heartbeat_interval: Some("50".into()),
        election_timeout: Some("500".into()),
        cert_file: Some(member.clone()),
        key_file: Some(member_key.clone()),
        trusted_ca_file: Some(ca.clone()),
        client_cert_auth: Some("true".into()),
        peer_cert_file: Some(member),
        peer_key_file: Some(member_key),
        peer_trusted_ca_file: Some(ca.clone()),
        ..ServeArgs::default()
    };
    let cfg = NodeConfig::resolve(args, &|_: &str| None).expect("configuration");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let node = rt.block_on(conflux::node::start(cfg)).expect("start a TLS member");

    let json_path = dir.path().join("tls.json");
    let ran = loadgen(
        &[
            "--endpoints",
            &client_url,
            "--cacert",
            &ca,
            "--cert",
            &client,
            "--key",
            &client_key,
            "--workload",
            "put",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--key-space",
            "100",
            "--clients",
            "2",
            "--seed",
            "7",
            "--quiet",
            "--json",
            json_path.to_str().unwrap(),
        ],
        RUN_LIMIT,
    );
    ran.expect_code(0, "loadgen over TLS");
    let r = read_json(&json_path);
    check_report(&r, &["put"], 7, &[("workload", json!("put"))]);
    assert_eq!(r["endpoints"][0]["errors"], json!(0), "{}", r["endpoints"]);
    rt.block_on(node.shutdown());
}
