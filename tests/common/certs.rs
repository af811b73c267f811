//! Test certificates, made fresh by each test with rcgen and written as PEM files into a
//! temporary directory: a CA, a server certificate for 127.0.0.1/localhost (also used by members
//! towards each other), a client certificate, a client certificate from another CA, an expired
//! server certificate, and a file of garbage.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn cert(&self) -> &str {
        self.cert.to_str().unwrap()
    }
    pub fn key(&self) -> &str {
        self.key.to_str().unwrap()
    }
}

/// Every file a TLS test needs.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA everything trusts.
    pub ca: PathBuf,
    /// For 127.0.0.1 and localhost; server and client use (members present it to each other).
    pub server: CertFiles,
    /// A client certificate signed by `ca`.
    pub client: CertFiles,
    /// A client certificate signed by another CA.
    pub foreign_client: CertFiles,
    /// A server certificate signed by `ca` that expired in 2021.
    pub expired_server: CertFiles,
    /// Not PEM at all.
    pub garbage: PathBuf,
}

impl TestPki {
    pub fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }

    /// Generate every file into `dir`.
    pub fn generate(dir: &Path) -> TestPki {
        let (ca_params, ca_key) = new_ca("conflux test CA");
        let ca_pem = ca_params.self_signed(&ca_key).expect("self-sign the CA").pem();
        let ca = Issuer::new(ca_params, ca_key);
        let (other_params, other_key) = new_ca("another CA");
        let other = Issuer::new(other_params, other_key);

        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write a test certificate");
            p
        };
        let leaf = |name: &str, issuer: &Issuer<'_, KeyPair>, expired: bool| {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("SANs");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            } else {
                params.not_before = rcgen::date_time_ymd(2024, 1, 1);
                params.not_after = rcgen::date_time_ymd(2124, 1, 1);
            }
            let key = KeyPair::generate().expect("generate a key");
            let cert = params.signed_by(&key, issuer).expect("sign a certificate");
            CertFiles {
                cert: write(&format!("{name}.pem"), &cert.pem()),
                key: write(&format!("{name}-key.pem"), &key.serialize_pem()),
            }
        };
        TestPki {
            ca: write("ca.pem", &ca_pem),
            server: leaf("server", &ca, false),
            client: leaf("client", &ca, false),
            foreign_client: leaf("foreign-client", &other, false),
            expired_server: leaf("expired-server", &ca, true),
            garbage: write("garbage.pem", "this is not a certificate\n"),
        }
    }

    /// The harness's own client: trusts the CA, presents the client certificate.
    pub fn client_tls(&self) -> tonic::transport::ClientTlsConfig {
        let read = |p: &Path| std::fs::read(p).expect("read a test certificate");
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&self.ca)))
            .identity(tonic::transport::Identity::from_pem(read(&self.client.cert), read(&self.client.key)))
    }
}

fn new_ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    (params, KeyPair::generate().expect("generate a CA key"))
}
