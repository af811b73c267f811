//! Damage at rest: bit flips in sealed segments surface as a typed corruption error naming file
//! and offset at the first read of the record; damage inside the last segment's acknowledged
//! records refuses the open; indexes that are missing or garbled are rebuilt.

mod common;

use common::*;
use conflux_engine::{CorruptionKind, Error};

fn build(dir: &std::path::Path, n: u64) {
    let rt = rt();
    let mut s = open(dir, small_config());
    for chunk in (0..n).collect::<Vec<_>>().chunks(7) {
        rt.block_on(append_sync(&mut s, chunk.iter().map(|&i| test_entry(i)).collect())).unwrap();
    }
    assert!(segments(dir).len() >= 3, "want several segments");
}

#[test]
fn bit_flips_in_sealed_segments_are_reported_at_first_read() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let n = 400;
    build(&src, n);
    let seg = segments(&src)[1].clone();
    let recs = record_offsets(&seg);
    let seg_first: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    for (k, &(off, len)) in recs.iter().enumerate().step_by(5) {
        // Flip one bit in the header (after the length field) or in the payload.
        for byte in [off + 4, off + 9, off + 17, off + 24, off + 24 + len as u64 - 1] {
            let dir = base.path().join(format!("flip-{k}-{byte}"));
            copy_dir(&src, &dir);
            let p = dir.join("log").join(seg.file_name().unwrap());
            let mut b = std::fs::read(&p).unwrap();
            b[byte as usize] ^= 0x10;
            std::fs::write(&p, &b).unwrap();
            let idx = seg_first + k as u64;
            let s = match Store::open(&dir, small_config()) {
                Ok(s) => s,
                // The last record of a sealed segment is the index's proof: open checks it, so
                // damage there is reported at open, with the same file and offset.
                Err(Error::Corruption { file, offset, .. }) if k + 1 == recs.len() => {
                    assert_eq!((file, offset), (p.clone(), off));
                    std::fs::remove_dir_all(&dir).unwrap();
                    continue;
                }
                Err(e) => panic!("flip at {byte}: open failed: {e}"),
            };
            match s.read(idx..idx + 1) {
                Err(Error::Corruption { file, offset, reason }) => {
                    assert_eq!(file, p, "names the file");
                    assert_eq!(offset, off, "names the record's offset");
                    assert!(
                        matches!(
                            reason,
                            CorruptionKind::ChecksumMismatch { .. } | CorruptionKind::IndexMismatch { .. }
                        ),
                        "{reason:?}"
                    );
                }
                other => panic!("flip at {byte} of entry {idx}: expected corruption, got {other:?}"),
            }
            // Neighbours are untouched; a range across the damage fails rather than skipping it.
            if idx > 0 {
                check_entries(&s, 0, idx);
            }
            assert!(s.read(0..n).is_err(), "a range covering damage must not return partial data silently");
            drop(s);
            let report = conflux_engine::tools::verify(&conflux_engine::io::StdIo, &dir).unwrap();
            assert!(!report.is_clean(), "verify finds the flip at {byte}");
            assert!(report.problems.iter().any(|pr| pr.file == p && pr.offset == off), "{:?}", report.problems);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn a_huge_length_field_is_corruption_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 600);
    let seg = segments(dir.path())[0].clone();
    let (off, _) = record_offsets(&seg)[3];
    let mut b = std::fs::read(&seg).unwrap();
    b[off as usize..off as usize + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(&seg, &b).unwrap();
    let s = open(dir.path(), small_config());
    let first: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    match s.read(first + 3..first + 4) {
        Err(Error::Corruption { offset, reason: CorruptionKind::BadLength { .. }, .. }) => assert_eq!(offset, off),
        other => panic!("expected a bad length, got {other:?}"),
    }
}

#[test]
fn damage_inside_the_last_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 600);
    let seg = segments(dir.path()).last().unwrap().clone();
    let recs = record_offsets(&seg);
    assert!(recs.len() >= 3);
    let (off, _) = recs[1];
    let mut b = std::fs::read(&seg).unwrap();
    b[off as usize + 26] ^= 1; // payload of an acknowledged record with valid records after it
    std::fs::write(&seg, &b).unwrap();
    match Store::open(dir.path(), small_config()) {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, seg);
            assert_eq!(offset, off);
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("opened a log with damaged acknowledged records"),
    }
}

#[test]
fn missing_or_garbled_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 600);
    let segs = segments(dir.path());
    // Delete one sealed index, garble another's slots, truncate a third.
    std::fs::remove_file(segs[0].with_extension("idx")).unwrap();
    let p1 = segs[1].with_extension("idx");
    let mut b = std::fs::read(&p1).unwrap();
    for (i, x) in b.iter_mut().enumerate().skip(64).take(200) {
        *x = (i * 7) as u8;
    }
    std::fs::write(&p1, &b).unwrap();
    let p2 = segs[2].with_extension("idx");
    std::fs::OpenOptions::new().write(true).open(&p2).unwrap().set_len(100).unwrap();
    let s = open(dir.path(), small_config());
    check_entries(&s, 0, 600);
    drop(s);
    // Rebuilt indexes are sealed and consistent: verify reports nothing to repair for them.
    let r = conflux_engine::tools::verify(&conflux_engine::io::StdIo, dir.path()).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert!(!r.notes.iter().any(|n| n.contains(".idx")), "{:?}", r.notes);
}

#[test]
fn stale_slots_pointing_at_another_record_are_caught() {
    // A sealed index whose slots were swapped: the header's proof (last record crc) still holds,
    // but the reader checks each record's index field and refuses the wrong one.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 600);
    let segs = segments(dir.path());
    let p = segs[0].with_extension("idx");
    let mut b = std::fs::read(&p).unwrap();
    let (a, c) = (64 + 8, 64 + 16);
    let tmp: [u8; 8] = b[a..a + 8].try_into().unwrap();
    b.copy_within(c..c + 8, a);
    b[c..c + 8].copy_from_slice(&tmp);
    std::fs::write(&p, &b).unwrap();
    let s = open(dir.path(), small_config());
    // The swap breaks monotonic slots, so open rebuilt the index and every read is right.
    check_entries(&s, 0, 600);
}
