//! TLS material for the client and peer listeners and for the peer clients: the PEM files named
//! by `--cert-file`/`--key-file`/`--trusted-ca-file` (and their `--peer-` twins), read and checked
//! once at startup, then handed to tonic's rustls transport.
//!
//! Checking here rather than leaving it to the transport buys messages an operator can act on:
//! every error names the flag and the file (a missing file, a file with no PEM in it, a key that
//! does not belong to the certificate). Which URLs use TLS, and which flags a URL needs, is
//! decided in [`super::config`]; this module only reads files. Operators' view:
//! `docs/operations.md`, "TLS".

use std::path::{Path, PathBuf};

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::config::{TlsFlags, TlsSettings};

/// Why TLS material could not be loaded. Every variant names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {flag} {}: {source}", path.display())]
    Read {
        /// The flag naming the file, with `--`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not PEM, or holds no item of the kind the flag expects.
    #[error("{flag} {}: {reason}", path.display())]
    Pem {
        /// The flag naming the file, with `--`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key does not belong to the certificate (or rustls cannot use it).
    #[error("{key_flag} {} does not fit {cert_flag} {}: {reason}", key.display(), cert.display())]
    KeyMismatch {
        /// `--key-file` or `--peer-key-file`.
        key_flag: &'static str,
        /// The key file.
        key: PathBuf,
        /// `--cert-file` or `--peer-cert-file`.
        cert_flag: &'static str,
        /// The certificate file.
        cert: PathBuf,
        /// rustls's reason.
        reason: String,
    },
    /// tonic refused the checked material (not expected once the checks above passed).
    #[error("cannot set up TLS for {what}: {reason}")]
    Transport {
        /// The listener or client.
        what: &'static str,
        /// tonic's error.
        reason: String,
    },
}

/// Checked TLS material of one side (client or peer).
#[derive(Clone)]
pub struct TlsMaterial {
    /// Certificate chain and key, PEM (absent when only a trusted CA was given).
    identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Trusted CA bundle, PEM.
    trusted_ca: Option<Vec<u8>>,
    /// Require and verify client certificates (`--client-cert-auth`, `--peer-client-cert-auth`).
    client_cert_auth: bool,
    /// The flags the material came from, for messages.
    flags: TlsFlags,
}

impl std::fmt::Debug for TlsMaterial {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("identity", &self.identity.is_some())
            .field("trusted_ca", &self.trusted_ca.is_some())
            .field("client_cert_auth", &self.client_cert_auth)
            .finish()
    }
}

impl TlsMaterial {
    /// Read and check the files `settings` names; `None` when it names none.
    ///
    /// # Errors
    /// A [`TlsError`] naming the flag and the file: unreadable, not PEM, no certificate or no
    /// key in it, or a key that does not match the certificate.
    pub fn load(settings: &TlsSettings) -> Result<Option<TlsMaterial>, TlsError> {
        let flags = settings.flags;
        let identity = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => {
                let cert_pem = read(flags.cert, cert)?;
                let key_pem = read(flags.key, key)?;
                let chain = certificates(flags.cert, cert, &cert_pem)?;
                let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
                    flag: flags.key,
                    path: key.clone(),
                    reason: pem_reason(&e, "private key (PKCS#8, PKCS#1 or SEC1)"),
                })?;
                let provider = rustls::crypto::ring::default_provider();
                rustls::sign::CertifiedKey::from_der(chain, private, &provider).map_err(|e| TlsError::KeyMismatch {
                    key_flag: flags.key,
                    key: key.clone(),
                    cert_flag: flags.cert,
                    cert: cert.clone(),
                    reason: e.to_string(),
                })?;
                Some((cert_pem, key_pem))
            }
            // `resolve` refuses one without the other.
            _ => None,
        };
        let trusted_ca = match &settings.trusted_ca_file {
            Some(path) => {
                let pem = read(flags.trusted_ca, path)?;
                let mut roots = rustls::RootCertStore::empty();
                for der in certificates(flags.trusted_ca, path, &pem)? {
                    roots.add(der).map_err(|e| TlsError::Pem {
                        flag: flags.trusted_ca,
                        path: path.clone(),
                        reason: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                Some(pem)
            }
            None => None,
        };
        if identity.is_none() && trusted_ca.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsMaterial { identity, trusted_ca, client_cert_auth: settings.client_cert_auth, flags }))
    }

    /// The server side: present the certificate; with client-cert-auth, require a client
    /// certificate signed by the trusted CA (refused at the handshake otherwise).
    ///
    /// # Errors
    /// [`TlsError::Transport`] when no certificate and key were given (`resolve` prevents it).
    pub fn server(&self) -> Result<ServerTlsConfig, TlsError> {
        let Some((cert, key)) = &self.identity else {
            return Err(TlsError::Transport {
                what: self.flags.cert,
                reason: "a TLS listener needs a certificate and a key".into(),
            });
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if self.client_cert_auth
            && let Some(ca) = &self.trusted_ca
        {
            config = config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(false);
        }
        Ok(config)
    }

    /// The client side (a member dialling another over https): verify the server with the
    /// trusted CA, present the certificate when one was given. `None` without a trusted CA.
    pub fn client(&self) -> Option<ClientTlsConfig> {
        let ca = self.trusted_ca.as_ref()?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Some(config)
    }
}

impl TlsMaterial {
    /// Whether this side's own certificate verifies, against its own trusted CA, for each https
    /// URL in `urls` (the URLs others dial): one warning per URL that does not, since the members
    /// dialling it (verifying with the same CA) would refuse the connection. Nothing to say
    /// without both a certificate and a trusted CA.
    pub fn self_check(&self, urls: &[url::Url]) -> Vec<String> {
        let (Some((cert_pem, _)), Some(ca_pem)) = (&self.identity, &self.trusted_ca) else {
            return Vec::new();
        };
        // Both parsed cleanly in `load`.
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).flatten().collect();
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(ca_pem).flatten() {
            let _ = roots.add(der);
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            match rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
            {
                Ok(v) => v,
                Err(e) => {
                    return vec![format!("cannot check {} against {}: {e}", self.flags.cert, self.flags.trusted_ca)];
                }
            };
        let Some((end_entity, intermediates)) = chain.split_first() else { return Vec::new() };
        let now = rustls::pki_types::UnixTime::now();
        let mut warnings = Vec::new();
        for url in urls.iter().filter(|u| u.scheme() == "https") {
            let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_owned()) else { continue };
            if let Err(e) = verifier.verify_server_cert(end_entity, intermediates, &name, &[], now) {
                warnings.push(format!(
                    "{} does not verify as {url} against {}: {e}; members dialling {url} will refuse it",
                    self.flags.cert, self.flags.trusted_ca
                ));
            }
        }
        warnings
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { flag, path: path.to_owned(), source })
}

/// Every certificate in a PEM file; at least one.
fn certificates(flag: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Pem { flag, path: path.to_owned(), reason };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls::pki_types::pem::Error, expected: &str) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!("holds no PEM {expected}"),
        other => format!("is not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::config::{CLIENT_TLS_FLAGS, PEER_TLS_FLAGS};

    /// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir` named `name`.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn settings(flags: TlsFlags, cert: Option<&Path>, key: Option<&Path>, ca: Option<&Path>) -> TlsSettings {
        TlsSettings {
            flags,
            cert_file: cert.map(Path::to_owned),
            key_file: key.map(Path::to_owned),
            trusted_ca_file: ca.map(Path::to_owned),
            client_cert_auth: ca.is_some(),
        }
    }

    #[test]
    fn nothing_named_loads_nothing() {
        assert!(TlsMaterial::load(&settings(CLIENT_TLS_FLAGS, None, None, None)).unwrap().is_none());
    }

    #[test]
    fn a_good_pair_and_ca_give_server_and_client_configs() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "a");
        let m = TlsMaterial::load(&settings(PEER_TLS_FLAGS, Some(&cert), Some(&key), Some(&cert))).unwrap().unwrap();
        m.server().unwrap();
        assert!(m.client().is_some());
        let debug = format!("{m:?}");
        assert!(!debug.contains("PRIVATE KEY"), "Debug shows the key: {debug}");
        // Without a trusted CA there is nothing to verify a server with.
        let m = TlsMaterial::load(&settings(PEER_TLS_FLAGS, Some(&cert), Some(&key), None)).unwrap().unwrap();
        assert!(m.client().is_none());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(dir.path(), "a");
        let (_, other_key) = self_signed(dir.path(), "b");
        let e = TlsMaterial::load(&settings(CLIENT_TLS_FLAGS, Some(&cert), Some(&other_key), None)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
        for part in ["--key-file", other_key.to_str().unwrap(), "--cert-file", cert.to_str().unwrap()] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }

    #[test]
    fn self_check_warns_for_urls_the_certificate_does_not_cover() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let (c, k, ca) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("ca.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&ca, ca_pem).unwrap();
        let m = TlsMaterial::load(&settings(PEER_TLS_FLAGS, Some(&c), Some(&k), Some(&ca))).unwrap().unwrap();
        let url = |u: &str| url::Url::parse(u).unwrap();
        let covered = [url("https://127.0.0.1:2380"), url("https://localhost:2380"), url("http://10.0.0.9:2380")];
        assert_eq!(m.self_check(&covered), Vec::<String>::new());
        let warnings = m.self_check(&[url("https://10.0.0.9:2380")]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("--peer-cert-file does not verify as https://10.0.0.9:2380"), "{warnings:?}");
        // Signed by another CA than the trusted one.
        let (other, _) = self_signed(dir.path(), "other");
        let m = TlsMaterial::load(&settings(PEER_TLS_FLAGS, Some(&c), Some(&k), Some(&other))).unwrap().unwrap();
        assert_eq!(m.self_check(&covered[..1]).len(), 1);
    }

    #[test]
    fn unreadable_and_non_pem_files_name_flag_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "a");
        let missing = dir.path().join("missing.pem");
        let e = TlsMaterial::load(&settings(CLIENT_TLS_FLAGS, Some(&missing), Some(&key), None)).unwrap_err();
        assert!(matches!(&e, TlsError::Read { flag: "--cert-file", path, .. } if *path == missing), "{e:?}");
        // A key where the certificate belongs: PEM, but no certificate in it.
        let e = TlsMaterial::load(&settings(CLIENT_TLS_FLAGS, Some(&key), Some(&key), None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("--cert-file {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)", key.display())
        );
        // A certificate where the key belongs.
        let e = TlsMaterial::load(&settings(PEER_TLS_FLAGS, Some(&cert), Some(&cert), None)).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("--peer-key-file {}: holds no PEM private key", cert.display())),
            "{e}"
        );
        // An empty CA bundle.
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = TlsMaterial::load(&settings(PEER_TLS_FLAGS, None, None, Some(&empty))).unwrap_err();
        assert!(e.to_string().starts_with(&format!("--peer-trusted-ca-file {}:", empty.display())), "{e}");
    }
}
