//! Bad input gets a clear error naming what was wrong, and loses nothing.

mod common;

use common::*;
use conflux_engine::{Config, Error};

#[test]
fn second_open_of_a_locked_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path(), small_config());
    match Store::open(dir.path(), small_config()) {
        Err(e @ Error::Locked { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
            assert!(msg.contains("locked"), "{msg}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a locked directory opened twice"),
    }
}

#[test]
fn lock_is_released_when_the_store_and_readers_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), small_config());
    let r = s.reader();
    drop(s);
    assert!(
        matches!(Store::open(dir.path(), small_config()), Err(Error::Locked { .. })),
        "a live reader keeps the lock"
    );
    drop(r);
    open(dir.path(), small_config());
}

#[test]
fn foreign_files_are_refused_by_name() {
    for (rel, what) in [("notes.txt", "data directory"), ("log/00000000000000000000.wal", "log directory")] {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), small_config()));
        let p = dir.path().join(rel);
        std::fs::write(&p, b"hello").unwrap();
        match Store::open(dir.path(), small_config()) {
            Err(Error::ForeignFile { path }) => assert_eq!(path, p, "{what}"),
            Err(e) => panic!("{what}: expected ForeignFile, got {e}"),
            Ok(_) => panic!("{what}: opened with a foreign file"),
        }
    }
}

#[test]
fn other_format_versions_are_refused_by_name() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), small_config());
        rt.block_on(append_sync(&mut s, (0..300).map(test_entry).collect())).unwrap();
    }
    // A segment header from a future version (checksum recomputed so only the version differs).
    let seg = segments(dir.path())[0].clone();
    let orig = std::fs::read(&seg).unwrap();
    let mut b = orig.clone();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &b).unwrap();
    match Store::open(dir.path(), small_config()) {
        Err(e @ Error::UnsupportedVersion { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&seg.display().to_string()) && msg.contains("version 2"), "{msg}");
        }
        Err(e) => panic!("expected UnsupportedVersion, got {e}"),
        Ok(_) => panic!("opened a version-2 segment"),
    }
    std::fs::write(&seg, &orig).unwrap();
    // A meta file from a future version.
    let meta = dir.path().join("meta");
    let mut m = std::fs::read(&meta).unwrap();
    for slot in [0usize, 4096] {
        if m.len() > slot + 12 {
            m[slot + 8..slot + 12].copy_from_slice(&7u32.to_le_bytes());
        }
    }
    std::fs::write(&meta, &m).unwrap();
    match Store::open(dir.path(), small_config()) {
        Err(Error::UnsupportedVersion { path, found: 7, .. }) => assert_eq!(path, meta),
        Err(e) => panic!("expected UnsupportedVersion for meta, got {e}"),
        Ok(_) => panic!("opened a version-7 meta file"),
    }
    // A segment that is not ours at all.
    let mut junk = orig.clone();
    junk[..8].copy_from_slice(b"NOTOURS!");
    std::fs::write(&seg, &junk).unwrap();
    std::fs::write(&meta, std::fs::read(&meta).unwrap().iter().map(|_| 0u8).collect::<Vec<_>>()).unwrap();
    match Store::open(dir.path(), small_config()) {
        Err(Error::BadMagic { path, kind: "segment", .. }) => assert_eq!(path, seg),
        Err(e) => panic!("expected BadMagic, got {e}"),
        Ok(_) => panic!("opened a foreign segment"),
    }
}

#[test]
fn a_data_dir_that_is_a_file_or_unwritable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file, small_config()).err().expect("a file is not a data directory");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");

    // Permission checks do not apply to root; run this part only as another user.
    if rustix::process::geteuid().is_root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let err = Store::open(&ro, small_config()).err().expect("read-only directory");
    assert!(err.to_string().contains(&ro.display().to_string()), "{err}");
}

#[test]
fn an_oversized_entry_is_refused_before_anything_is_written() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let config = Config { max_entry_bytes: 1000, ..small_config() };
    let mut s = open(dir.path(), config.clone());
    rt.block_on(append_sync(&mut s, (0..5).map(test_entry).collect())).unwrap();
    let batch = vec![test_entry(5), entry(1, 6, vec![7u8; 5000]), test_entry(7)];
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = called.clone();
    match s.append_with(batch, Box::new(move |_| c.store(true, std::sync::atomic::Ordering::SeqCst))) {
        Err(Error::EntryTooLarge { index: 6, max: 1000, size }) => assert!(size > 5000),
        other => panic!("expected EntryTooLarge, got {other:?}"),
    }
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst), "no callback for a refused append");
    assert_eq!(s.log_state().last_log_id.map(|l| l.index), Some(4), "nothing of the batch was taken");
    // The store still works, and the entry before the refused one was not written either.
    rt.block_on(append_sync(&mut s, (5..8).map(test_entry).collect())).unwrap();
    drop(s);
    let s = open(dir.path(), config);
    check_entries(&s, 0, 8);
}

#[test]
fn a_gap_in_appended_indexes_is_refused() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), small_config());
    rt.block_on(append_sync(&mut s, (0..5).map(test_entry).collect())).unwrap();
    match s.append_with(vec![test_entry(9)], Box::new(|_| {})) {
        Err(Error::NonContiguousAppend { expected: 5, got: 9 }) => {}
        other => panic!("expected NonContiguousAppend, got {other:?}"),
    }
}

#[test]
fn invalid_configuration_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (config, field) in [
        (Config { segment_bytes: 100, ..Config::default() }, "segment_bytes"),
        (Config { segment_bytes: 1 << 20, max_entry_bytes: 2 << 20, ..Config::default() }, "max_entry_bytes"),
    ] {
        match Store::open(dir.path(), config) {
            Err(e @ Error::InvalidConfig(_)) => assert!(e.to_string().contains(field), "{e}"),
            Err(e) => panic!("expected InvalidConfig, got {e}"),
            Ok(_) => panic!("accepted a bad {field}"),
        }
    }
}

/// A codec whose `encoded_len` promises one byte less than `encode_entry` writes.
struct LyingCodec;

impl conflux_engine::RaftCodec<TC> for LyingCodec {
    fn encode_entry(entry: &Entry, out: &mut Vec<u8>) -> Result<(), conflux_engine::CodecError> {
        Codec::encode_entry(entry, out)
    }
    fn encoded_len(entry: &Entry) -> Result<usize, conflux_engine::CodecError> {
        Ok(Codec::encoded_len(entry)? - 1)
    }
    fn decode_entry(bytes: &[u8]) -> Result<Entry, conflux_engine::CodecError> {
        Codec::decode_entry(bytes)
    }
    fn encode_vote(vote: &openraft::alias::VoteOf<TC>, out: &mut Vec<u8>) -> Result<(), conflux_engine::CodecError> {
        Codec::encode_vote(vote, out)
    }
    fn decode_vote(bytes: &[u8]) -> Result<openraft::alias::VoteOf<TC>, conflux_engine::CodecError> {
        Codec::decode_vote(bytes)
    }
    fn encode_log_id(
        log_id: &openraft::alias::LogIdOf<TC>,
        out: &mut Vec<u8>,
    ) -> Result<(), conflux_engine::CodecError> {
        Codec::encode_log_id(log_id, out)
    }
    fn decode_log_id(bytes: &[u8]) -> Result<openraft::alias::LogIdOf<TC>, conflux_engine::CodecError> {
        Codec::decode_log_id(bytes)
    }
}

#[test]
fn a_codec_that_breaks_its_size_promise_poisons_the_store() {
    use conflux_engine::RaftCodec;
    let dir = tempfile::tempdir().unwrap();
    let mut s = conflux_engine::LogStore::<TC, LyingCodec>::open(dir.path(), small_config()).unwrap();
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = called.clone();
    match s.append_with(vec![test_entry(0)], Box::new(move |_| c.store(true, std::sync::atomic::Ordering::SeqCst))) {
        Err(Error::Codec(e)) => assert!(e.to_string().contains("encoded_len"), "{e}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst), "no callback for a refused append");
    match s.append_with(vec![test_entry(0)], Box::new(|_| {})) {
        Err(Error::Poisoned(reason)) => assert!(reason.contains("encoded_len"), "{reason}"),
        other => panic!("expected the store to be poisoned, got {other:?}"),
    }
    let _ = <Codec as RaftCodec<TC>>::encoded_len(&test_entry(0)).unwrap();
}
