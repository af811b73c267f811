//! Who this member is: member and cluster ids (computed as etcd computes them, so the same flags
//! give the same ids), and the `node` file that ties a data directory to one member of one cluster.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// A URL as etcd prints it: `scheme://host:port`, no trailing slash.
pub fn url_string(u: &url::Url) -> String {
    let s = u.as_str();
    if u.path() == "/" && u.query().is_none() && u.fragment().is_none() {
        s.trim_end_matches('/').to_string()
    } else {
        s.to_string()
    }
}

fn first_u64(digest: &[u8]) -> u64 {
    u64::from_be_bytes(digest[..8].try_into().expect("sha1 digests are 20 bytes"))
}

/// A member's id: the first 8 bytes (big-endian) of SHA-1 over its sorted peer URLs, joined,
/// followed by the cluster token — etcd's rule for members of the initial cluster.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// The id MemberAdd gives a new member: like [`member_id`], with the time of the request (seconds
/// since the epoch, in decimal) after the token — etcd's rule, so adding the same URLs again
/// later (after a removal) gives another id.
pub fn added_member_id(peer_urls: &[String], token: &str, now_secs: u64) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    h.update(now_secs.to_string().as_bytes());
    first_u64(&h.finalize())
}

/// A cluster's id: the first 8 bytes of SHA-1 over its sorted member ids (8 bytes big-endian
/// each) — etcd's rule.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

/// The identity file's last line: this key, then the CRC-32C of every byte before the line
/// (docs/format.md, "Node identity file").
const CHECKSUM_KEY: &str = "checksum: ";

/// The contents of `<data-dir>/node`: written once when the member first starts, checked at
/// every later start (a data directory belongs to one member of one cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `--name` at creation.
    pub name: String,
    /// Member id.
    pub member_id: u64,
    /// Cluster id.
    pub cluster_id: u64,
    /// `--initial-cluster-token` at creation.
    pub cluster_token: String,
}

/// Why the identity file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not an identity file.
    #[error("{} is damaged or not a conflux identity file: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl Identity {
    /// The file's path in a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("node")
    }

    /// Read it; `None` when the data directory has none (a new member). A `node.tmp` left by
    /// a crash during [`Identity::store`] is removed (it was never the identity).
    pub fn load(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
        let tmp = data_dir.join("node.tmp");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(IdentityError::Io { op: "remove leftover", path: tmp, source }),
        }
        let path = Identity::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(IdentityError::Io { op: "read", path, source }),
        };
        let malformed = |reason: String| IdentityError::Malformed { path: path.clone(), reason };
        // The last line is `checksum: <crc32c of every byte before it, 8 hex digits>`.
        let Some(content) = text.strip_suffix('\n') else {
            return Err(malformed(format!("no line end at offset {}", text.len())));
        };
        let body_end = content.rfind('\n').map_or(0, |i| i + 1);
        let (body, last) = content.split_at(body_end);
        let Some(stored) = last.strip_prefix(CHECKSUM_KEY) else {
            return Err(malformed(format!("no `{CHECKSUM_KEY}` line at offset {body_end}")));
        };
        let computed = crc32c::crc32c(body.as_bytes());
        if u32::from_str_radix(stored, 16).ok() != Some(computed) || stored.len() != 8 {
            return Err(malformed(format!(
                "checksum mismatch: the line at offset {body_end} says {stored:?}, bytes 0..{body_end} give {computed:08x}"
            )));
        }
        serde_norway::from_str(body).map(Some).map_err(|e| malformed(e.to_string()))
    }

    /// Write it durably (temporary file, fsync, rename, directory fsync).
    pub fn store(&self, data_dir: &Path) -> Result<(), IdentityError> {
        use std::io::Write;
        let path = Identity::path(data_dir);
        let tmp = data_dir.join("node.tmp");
        let mut text = serde_norway::to_string(self).expect("an identity always serializes");
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let crc = crc32c::crc32c(text.as_bytes());
        text.push_str(&format!("{CHECKSUM_KEY}{crc:08x}\n"));
        fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + use<> {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { op, path, source }
        }
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(io("fsync directory", data_dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_etcds_rule() {
        // Order of URLs does not matter; the token does.
        let a = member_id(&["http://10.0.0.1:2380".into(), "http://10.0.0.2:2380".into()], "t");
        let b = member_id(&["http://10.0.0.2:2380".into(), "http://10.0.0.1:2380".into()], "t");
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://10.0.0.1:2380".into(), "http://10.0.0.2:2380".into()], "u"));
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
        let urls = ["http://10.0.0.1:2380".to_string()];
        assert_ne!(added_member_id(&urls, "t", 1), added_member_id(&urls, "t", 2));
        assert_ne!(added_member_id(&urls, "t", 1), member_id(&urls, "t"));
        assert_ne!(cluster_id(&[1, 2]), cluster_id(&[1, 2, 3]));
        // etcd's default single member: `default=http://localhost:2380`, token `etcd-cluster`.
        assert_eq!(member_id(&["http://localhost:2380".into()], "etcd-cluster"), 0x8e9e05c52164694d);
    }

    #[test]
    fn identity_round_trips_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), None);
        let id = Identity { name: "n1".into(), member_id: 7, cluster_id: 9, cluster_token: "t".into() };
        id.store(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(id.clone()));
        std::fs::write(Identity::path(dir.path()), "name: [").unwrap();
        let e = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("node") && e.contains("damaged"), "{e}");
        // Any changed byte is caught by the checksum, even one that leaves valid YAML.
        id.store(dir.path()).unwrap();
        let good = std::fs::read(Identity::path(dir.path())).unwrap();
        assert!(String::from_utf8_lossy(&good).lines().last().unwrap().starts_with("checksum: "));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1;
            std::fs::write(Identity::path(dir.path()), &bad).unwrap();
            let e = Identity::load(dir.path()).expect_err("a flipped bit is refused");
            assert!(e.to_string().contains("node"), "byte {i}: {e}");
        }
        std::fs::write(Identity::path(dir.path()), &good[..good.len() - 3]).unwrap();
        let e = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("offset"), "{e}");
        std::fs::write(Identity::path(dir.path()), "name: n1\nmember_id: 7\ncluster_id: 9\ncluster_token: t\n")
            .unwrap();
        let e = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no `checksum: ` line"), "{e}");
    }

    #[test]
    fn urls_print_without_a_trailing_slash() {
        assert_eq!(url_string(&"http://127.0.0.1:2380".parse().unwrap()), "http://127.0.0.1:2380");
        assert_eq!(url_string(&"http://127.0.0.1:2380/".parse().unwrap()), "http://127.0.0.1:2380");
    }
}
