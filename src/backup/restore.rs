//! `conflux restore`: a new member's data directory from a backup file, as `etcdctl snapshot
//! restore` makes one from an etcd snapshot. The data (every retained version, the revision, the
//! compacted revision, the leases) comes from the file; the Raft state is new: the directory
//! holds the member's identity (`node`) and one snapshot whose Raft metadata names the new
//! cluster's members, at log index 1 of term 0, below anything an elected leader writes. The log
//! itself is created empty at the first start, which purges it up to the snapshot.
//!
//! Nothing is written unless every check passes: the directory is built under a temporary name
//! beside the target and renamed into place at the end; on failure it is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conflux_engine::format::snapshot::{END_MAGIC, MAGIC};
use conflux_engine::snapshot::Snapshots;

use super::framing::{self, HASH_LEN};
use crate::node::config::{ConfigError, NodeConfig, ServeArgs};
use crate::node::member::{self, Identity, url_string};
use crate::state_machine::{self, AppMeta, SmError};
use crate::types::{Member, SnapshotMeta, StoredMembership};

/// The restored snapshot's log index (term 0: every elected leader's entries come after it).
pub const RESTORED_INDEX: u64 = 1;
/// zstd level of the restored snapshot (the server's default).
const ZSTD_LEVEL: i32 = 3;

/// What `conflux restore` was asked to do (etcdctl's flag names).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The backup file.
    pub file: PathBuf,
    /// `--name`.
    pub name: Option<String>,
    /// `--data-dir` (default `<name>.conflux`).
    pub data_dir: Option<PathBuf>,
    /// `--initial-cluster`.
    pub initial_cluster: Option<String>,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: Option<String>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Option<String>,
    /// `--skip-hash-check`: accept a file without (or with a wrong) SHA-256 trailer.
    pub skip_hash_check: bool,
}

/// What was restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The new data directory.
    pub data_dir: PathBuf,
    /// The new member's identity.
    pub identity: Identity,
    /// The store's revision.
    pub revision: u64,
    /// Its compacted revision.
    pub compacted: u64,
    /// Live keys.
    pub keys: u64,
    /// Versions (all retained revisions of all keys).
    pub versions: u64,
    /// Whether the SHA-256 trailer was checked (false with `--skip-hash-check`, or a file without one).
    pub hash_checked: bool,
}

/// Why a restore was refused. Nothing is left in the target directory.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The flags do not describe a member of a cluster.
    #[error(transparent)]
    Config(#[from] Box<ConfigError>),
    /// The target already holds something.
    #[error("data dir {} is not empty; restore only into a new or empty directory", path.display())]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a conflux backup at all.
    #[error("{} is not a conflux backup: {reason}", path.display())]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A bare snapshot file (as in a member's `snapshots/`): no SHA-256 trailer to check.
    #[error(
        "{} has no SHA-256 trailer: it is a bare snapshot file (it ends with the snapshot end marker), not a \
         backup from `etcdctl snapshot save`; --skip-hash-check restores it, checked by its own CRCs",
        path.display()
    )]
    BareSnapshot {
        /// The file.
        path: PathBuf,
    },
    /// The file's length says it has no SHA-256 trailer: truncated, or not written whole.
    #[error(
        "{} has no SHA-256 trailer (its length {len} is not a multiple of 512 plus 32): it is truncated or was \
         not written by `etcdctl snapshot save`; --skip-hash-check restores a file without one",
        path.display()
    )]
    NoHash {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The SHA-256 trailer does not match the bytes before it.
    #[error("{}: SHA-256 mismatch: the file says {stored}, its contents hash to {computed}; the file is damaged", path.display())]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The trailer, hex.
        stored: String,
        /// What the bytes hash to, hex.
        computed: String,
    },
    /// The snapshot inside does not load (damaged container or body).
    #[error("{}: {source}", path.display())]
    Snapshot {
        /// The backup file.
        path: PathBuf,
        /// What was wrong.
        source: SmError,
    },
    /// The identity file could not be written.
    #[error(transparent)]
    Identity(#[from] member::IdentityError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RestoreError + use<> {
    let path = path.to_path_buf();
    move |source| RestoreError::Io { op, path, source }
}

/// Where the snapshot container sits in a backup file.
struct Located {
    container_len: u64,
    hash_checked: bool,
}

/// Check the file's framing and (unless skipped) its SHA-256; find the container's length.
fn locate(path: &Path, f: &mut File, skip_hash_check: bool) -> Result<Located, RestoreError> {
    let len = f.metadata().map_err(io_err("stat", path))?.len();
    let not_backup = |reason: String| RestoreError::NotABackup { path: path.to_path_buf(), reason };
    let mut magic = [0u8; 8];
    if len < magic.len() as u64 {
        return Err(not_backup(format!("it is only {len} bytes long")));
    }
    f.read_exact(&mut magic).map_err(io_err("read", path))?;
    if &magic != MAGIC {
        let what =
            if magic == [0u8; 8] { " (an etcd snapshot is a bbolt file, which conflux cannot load)" } else { "" };
        return Err(not_backup(format!(
            "it starts with {} instead of the snapshot magic \"CFLXSNAP\"{what}",
            framing::hex(&magic)
        )));
    }
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::Start(len - 8)).map_err(io_err("seek", path))?;
    f.read_exact(&mut tail).map_err(io_err("read", path))?;
    if &tail == END_MAGIC {
        // A bare snapshot file (copied from a member's snapshots/), no trailer.
        if !skip_hash_check {
            return Err(RestoreError::BareSnapshot { path: path.to_path_buf() });
        }
        return Ok(Located { container_len: len, hash_checked: false });
    }
    if !framing::has_hash_trailer(len) {
        return Err(RestoreError::NoHash { path: path.to_path_buf(), len });
    }
    let payload = len - HASH_LEN as u64;
    let mut hash_checked = false;
    if !skip_hash_check {
        let mut stored = [0u8; HASH_LEN];
        f.seek(SeekFrom::Start(payload)).map_err(io_err("seek", path))?;
        f.read_exact(&mut stored).map_err(io_err("read", path))?;
        f.seek(SeekFrom::Start(0)).map_err(io_err("seek", path))?;
        let computed =
            framing::sha256_prefix(&mut io::BufReader::new(&mut *f), payload).map_err(io_err("read", path))?;
        if stored != computed {
            return Err(RestoreError::HashMismatch {
                path: path.to_path_buf(),
                stored: framing::hex(&stored),
                computed: framing::hex(&computed),
            });
        }
        hash_checked = true;
    }
    // The padding is zeros and the container ends with its (non-zero) end magic: the container
    // is the payload without its trailing zero bytes, of which there are fewer than 512.
    let window = payload.min(framing::ALIGN);
    let mut last = vec![0u8; window as usize];
    f.seek(SeekFrom::Start(payload - window)).map_err(io_err("seek", path))?;
    f.read_exact(&mut last).map_err(io_err("read", path))?;
    let zeros = last.iter().rev().take_while(|&&b| b == 0).count() as u64;
    let container_len = payload - zeros;
    if zeros >= framing::ALIGN || container_len < END_MAGIC.len() as u64 {
        return Err(not_backup("no snapshot end marker before the padding".into()));
    }
    Ok(Located { container_len, hash_checked })
}

/// Removes the staging directory unless the restore completed.
struct Staging {
    path: PathBuf,
    done: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn is_empty_dir(path: &Path) -> Result<Option<bool>, RestoreError> {
    match std::fs::read_dir(path) {
        Ok(mut it) => Ok(Some(it.next().is_none())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(Some(false)),
        Err(source) => Err(RestoreError::Io { op: "read directory", path: path.to_path_buf(), source }),
    }
}

/// Build a new member's data directory from a backup file.
///
/// # Errors
/// [`RestoreError`]: flags that name no member, a target that is not empty, a file that is not a
/// whole, undamaged conflux backup, I/O. Nothing is left in the target then.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let args = ServeArgs {
        name: opts.name.clone(),
        data_dir: opts.data_dir.clone(),
        initial_cluster: opts.initial_cluster.clone(),
        initial_cluster_token: opts.initial_cluster_token.clone(),
        initial_advertise_peer_urls: opts.initial_advertise_peer_urls.clone(),
        ..Default::default()
    };
    // Flags only: the environment and config files are the server's.
    let cfg = NodeConfig::resolve(args, &|_| None).map_err(Box::new)?;
    let target = cfg.data_dir.clone();
    let target_existed = match is_empty_dir(&target)? {
        Some(false) => return Err(RestoreError::TargetNotEmpty { path: target }),
        Some(true) => true,
        None => false,
    };

    let path = &opts.file;
    let mut f = File::open(path).map_err(io_err("open backup", path))?;
    let located = locate(path, &mut f, opts.skip_hash_check)?;

    // Ids as a member started with these flags computes them.
    let token = &cfg.initial_cluster_token;
    let urls = |v: &[url::Url]| v.iter().map(url_string).collect::<Vec<_>>();
    let members: BTreeMap<u64, Member> = cfg
        .initial_cluster
        .iter()
        .map(|(name, u)| {
            let peer_urls = urls(u);
            (member::member_id(&peer_urls, token), Member { name: name.clone(), peer_urls, client_urls: Vec::new() })
        })
        .collect();
    let ids: Vec<u64> = members.keys().copied().collect();
    let identity = Identity {
        name: cfg.name.clone(),
        member_id: member::member_id(&urls(&cfg.initial_advertise_peer_urls), token),
        cluster_id: member::cluster_id(&ids),
        cluster_token: token.clone(),
    };

    // Build under a temporary name beside the target.
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let mut staging = Staging { path: parent.join(format!(".{base}.restore-{}", std::process::id())), done: false };
    let _ = std::fs::remove_dir_all(&staging.path);
    std::fs::create_dir_all(&staging.path).map_err(io_err("create directory", &staging.path))?;

    // The container alone, as a file the engine's checked reader opens.
    let copy = staging.path.join("backup.snap");
    {
        f.seek(SeekFrom::Start(0)).map_err(io_err("seek", path))?;
        let mut out = File::create(&copy).map_err(io_err("create", &copy))?;
        let n = io::copy(&mut (&mut f).take(located.container_len), &mut out).map_err(io_err("copy", &copy))?;
        if n != located.container_len {
            return Err(RestoreError::NotABackup { path: path.clone(), reason: "shorter than its snapshot".into() });
        }
    }
    let io_backend: Arc<dyn conflux_engine::io::Io> = Arc::new(conflux_engine::io::StdIo);
    let snap_err = |source: SmError| RestoreError::Snapshot { path: path.clone(), source };
    let snapshots = Snapshots::open(io_backend, &staging.path).map_err(|e| snap_err(SmError::Engine(e)))?;
    let (_, store, loaded) = state_machine::load(&snapshots, &copy).map_err(snap_err)?;

    let log_id = openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term: 0, node_id: 0 }, RESTORED_INDEX);
    let voters: BTreeSet<u64> = ids.iter().copied().collect();
    let membership =
        openraft::Membership::new(vec![voters], members).expect("every voter is one of the nodes it was built from");
    let meta =
        SnapshotMeta { last_log_id: Some(log_id), last_membership: StoredMembership::new(Some(log_id), membership) };
    let raft_meta = postcard::to_stdvec(&meta).map_err(|e| io_err("encode", &copy)(io::Error::other(e)))?;
    let app = AppMeta { revision: loaded.revision, compacted: loaded.compacted, keys: loaded.keys };
    let app_meta = postcard::to_stdvec(&app).map_err(|e| io_err("encode", &copy)(io::Error::other(e)))?;
    let engine_err = |e: conflux_engine::Error| snap_err(SmError::Engine(e));
    let mut w = snapshots.create(0, RESTORED_INDEX, &raft_meta, &app_meta, ZSTD_LEVEL).map_err(engine_err)?;
    {
        let mut out = BufWriter::with_capacity(1 << 20, &mut w);
        store.write_snapshot(&mut out).map_err(io_err("write snapshot", snapshots.dir()))?;
        out.flush().map_err(io_err("write snapshot", snapshots.dir()))?;
    }
    w.finish().map_err(engine_err)?;
    std::fs::remove_file(&copy).map_err(io_err("remove", &copy))?;
    identity.store(&staging.path)?;

    // Into place: an empty target directory is replaced by the rename.
    if target_existed {
        std::fs::remove_dir(&target).map_err(io_err("remove empty directory", &target))?;
    }
    std::fs::rename(&staging.path, &target).map_err(io_err("rename into place", &target))?;
    staging.done = true;
    File::open(&parent).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", &parent))?;
    Ok(RestoreReport {
        data_dir: target,
        identity,
        revision: loaded.revision,
        compacted: loaded.compacted,
        keys: loaded.keys,
        versions: loaded.versions,
        hash_checked: located.hash_checked,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mvcc::{LeaseGrantRequest, PutRequest, RangeRequest, Store, WriteRequest};
    use crate::state_machine::{SmConfig, StateMachine};

    /// A backup file of a store with a few keys, a history and a lease, as the Snapshot RPC
    /// frames it; and the store.
    fn backup(dir: &Path) -> (PathBuf, Store) {
        let s = Store::new();
        s.apply(&WriteRequest::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 })).unwrap();
        for (k, v, lease) in [("a", "1", 0), ("b", "2", 7), ("a", "3", 0)] {
            let req = PutRequest {
                key: Bytes::copy_from_slice(k.as_bytes()),
                value: Bytes::copy_from_slice(v.as_bytes()),
                lease,
                ..Default::default()
            };
            s.apply(&WriteRequest::Put(req)).unwrap();
        }
        let src = dir.join("source");
        let snapshots = Snapshots::open(Arc::new(conflux_engine::io::StdIo), &src).unwrap();
        let meta = SnapshotMeta::default();
        let mut w = snapshots.create(3, 40, &postcard::to_stdvec(&meta).unwrap(), &[], 3).unwrap();
        s.write_snapshot(&mut w).unwrap();
        let info = w.finish().unwrap();
        let reader = snapshots.open_reader(&info.path).unwrap();
        let mut chunks = framing::Chunks::new(reader.raw_file(), reader.file_len());
        let mut file = Vec::new();
        while let Some((b, _)) = chunks.next_chunk().unwrap() {
            file.extend_from_slice(&b);
        }
        file.extend_from_slice(&chunks.finish());
        let path = dir.join("backup.db");
        std::fs::write(&path, file).unwrap();
        (path, s)
    }

    fn all(s: &Store) -> Vec<(Bytes, Bytes, i64, i64, i64, i64)> {
        let req =
            RangeRequest { key: Bytes::from_static(b"\0"), range_end: Bytes::from_static(b"\0"), ..Default::default() };
        let r = s.range(&req).unwrap();
        r.kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease))
            .collect()
    }

    #[test]
    fn a_restored_directory_holds_the_store_at_a_new_raft_point() {
        let dir = tempfile::tempdir().unwrap();
        let (file, store) = backup(dir.path());
        let target = dir.path().join("new");
        let cluster = "x=http://10.0.0.1:2380,y=http://10.0.0.2:2380";
        let opts = RestoreOptions {
            file,
            name: Some("y".into()),
            data_dir: Some(target.clone()),
            initial_cluster: Some(cluster.into()),
            initial_cluster_token: Some("t".into()),
            initial_advertise_peer_urls: Some("http://10.0.0.2:2380".into()),
            skip_hash_check: false,
        };
        let r = restore(&opts).unwrap();
        assert!(r.hash_checked);
        assert_eq!((r.revision, r.keys, r.versions), (store.revision(), 2, 3));
        let x = member::member_id(&["http://10.0.0.1:2380".into()], "t");
        let y = member::member_id(&["http://10.0.0.2:2380".into()], "t");
        assert_eq!(
            Identity::load(&target).unwrap(),
            Some(Identity {
                name: "y".into(),
                member_id: y,
                cluster_id: member::cluster_id(&[x, y]),
                cluster_token: "t".into(),
            })
        );
        // What a member starting on it loads: the same store, at log index 1 of term 0, with the
        // new members as voters.
        let sm = StateMachine::open(&target, Arc::new(conflux_engine::io::StdIo), SmConfig::default()).unwrap();
        assert_eq!(all(&sm.store()), all(&store));
        assert_eq!(sm.store().revision(), store.revision());
        assert_eq!(sm.store().leases().keys().copied().collect::<Vec<_>>(), vec![7]);
        let (meta, _) = sm.current_snapshot().unwrap();
        let log_id = meta.last_log_id.unwrap();
        assert_eq!((log_id.leader_id.term, log_id.index), (0, RESTORED_INDEX));
        let voters: Vec<u64> = meta.last_membership.membership().voter_ids().collect();
        assert_eq!(voters, {
            let mut v = vec![x, y];
            v.sort();
            v
        });
        assert_eq!(sm.applied_index(), RESTORED_INDEX);
        // Only the identity and the snapshot; no staging left beside it.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".restore-")), "{names:?}");
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = backup(dir.path());
        let good = std::fs::read(&file).unwrap();
        let target = dir.path().join("new");
        for at in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&file, &bad).unwrap();
            let opts = RestoreOptions { file: file.clone(), data_dir: Some(target.clone()), ..Default::default() };
            let e = restore(&opts).unwrap_err();
            assert!(e.to_string().contains(&file.display().to_string()), "byte {at}: {e}");
            assert!(!target.exists(), "byte {at}: target written");
        }
    }
}
