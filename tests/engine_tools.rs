//! `conflux dump` and `conflux verify` against real data directories: exit codes and messages.

use std::path::Path;
use std::process::Command;

use conflux_engine::{Config, LogStore, PostcardCodec};
use openraft::entry::RaftEntry;
use openraft::storage::RaftLogStorageExt;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Data(Vec<u8>);

impl std::fmt::Display for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

openraft::declare_raft_types!(TC: D = Data, R = ());

fn write_log(dir: &Path, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = Config { segment_bytes: 16 << 10, max_entry_bytes: 4 << 10, ..Config::default() };
    let mut s: LogStore<TC, PostcardCodec<TC>> = LogStore::open(dir, config).unwrap();
    let entries: Vec<_> = (0..n)
        .map(|i| {
            let lid = openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 };
            <TC as openraft::RaftTypeConfig>::Entry::new(
                openraft::LogId::new(lid, i),
                openraft::EntryPayload::Normal(Data(vec![i as u8; 300])),
            )
        })
        .collect();
    rt.block_on(s.blocking_append(entries)).unwrap();
}

fn conflux(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_conflux")).args(args).output().expect("run conflux");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dump_and_verify_a_clean_log() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 200);
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = conflux(&["verify", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("200 records verified, 0 problems"), "{out}");
    let (code, out, _) = conflux(&["dump", d, "--records", "--slots"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("index 199 offset"), "{out}");
    assert!(out.contains("sealed first 0"), "a full segment's index is shown sealed: {out}");
    assert!(out.contains("slot 0: sequence"), "{out}");
}

#[test]
fn verify_and_dump_exit_nonzero_on_corruption_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 200);
    let seg = dir.path().join("log").join(format!("{:020}.seg", 0));
    let mut b = std::fs::read(&seg).unwrap();
    b[32 + 24 + 5] ^= 0xff; // payload of the first record
    std::fs::write(&seg, &b).unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, _) = conflux(&["verify", d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("CORRUPT: {} at offset 32", seg.display())), "{out}");
    let (code, out, _) = conflux(&["dump", d]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CORRUPT"), "{out}");
}

#[test]
fn a_missing_directory_is_a_usage_error_naming_it() {
    let (code, _, err) = conflux(&["verify", "/nonexistent/conflux-data"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/conflux-data"), "{err}");
    let (code, _, err) = conflux(&["dump", "--slots", "/tmp"]);
    assert_eq!(code, 2, "--slots without --records is refused: {err}");
    assert!(err.contains("--records"), "{err}");
}
