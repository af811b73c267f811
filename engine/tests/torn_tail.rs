//! A torn or zeroed tail in the last segment reopens cleanly to the last whole record, at every
//! byte offset inside its last few records.

mod common;

use common::*;

#[test]
fn every_cut_inside_the_last_records_reopens_to_the_last_whole_record() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let rt = rt();
    let n = 40u64;
    {
        let mut s = open(&src, small_config());
        rt.block_on(append_sync(&mut s, (0..n).map(test_entry).collect())).unwrap();
    }
    let segs = segments(&src);
    let last = segs.last().unwrap().clone();
    let recs = record_offsets(&last);
    assert!(recs.len() >= 4, "need a few records in the last segment, have {}", recs.len());
    let first_in_last = n - recs.len() as u64;
    let last_name = last.file_name().unwrap().to_owned();
    // Cut inside the last three records, at every byte, two ways: truncated file and zeroed tail.
    let start = recs[recs.len() - 3].0;
    let end = {
        let (o, l) = *recs.last().unwrap();
        o + (24 + l as u64).div_ceil(8) * 8
    };
    let mut cases = 0;
    for cut in start..end {
        for zero in [false, true] {
            let dir = base.path().join(format!("cut-{cut}-{zero}"));
            copy_dir(&src, &dir);
            let seg = dir.join("log").join(&last_name);
            if zero {
                let mut b = std::fs::read(&seg).unwrap();
                for x in &mut b[cut as usize..] {
                    *x = 0;
                }
                std::fs::write(&seg, b).unwrap();
            } else {
                std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();
            }
            // Whole records before the cut survive.
            let whole = recs.iter().filter(|(o, l)| o + 24 + *l as u64 <= cut).count() as u64;
            let expect_end = first_in_last + whole;
            {
                let mut s = open(&dir, small_config());
                let st = s.log_state();
                assert_eq!(st.last_log_id.map(|l| l.index + 1).unwrap_or(0), expect_end, "cut at {cut} (zero={zero})");
                check_entries(&s, 0, expect_end);
                // The log continues after the repaired tail, and survives another reopen.
                rt.block_on(append_sync(&mut s, (expect_end..expect_end + 3).map(test_entry).collect())).unwrap();
            }
            let s = open(&dir, small_config());
            check_entries(&s, 0, expect_end + 3);
            drop(s);
            let report = conflux_engine::tools::verify(&conflux_engine::io::StdIo, &dir).unwrap();
            assert!(report.is_clean(), "verify after repair: {:?}", report.problems);
            std::fs::remove_dir_all(&dir).unwrap();
            cases += 1;
        }
    }
    assert!(cases > 100);
}
