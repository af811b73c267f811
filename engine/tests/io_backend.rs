//! `io = auto | uring | sync`: the probe, the fallback and its log line, and the io_uring
//! backend under a real store.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use conflux_engine::Config;
use conflux_engine::io::{IoMode, backend, backend_with};

/// Collects what tracing writes, to check the fallback's log line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
    let out = Captured::default();
    let w = out.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || w.clone()).with_ansi(false).finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

/// A sysctl file that says io_uring is disabled system-wide.
fn disabled_sysctl() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"2\n").unwrap();
    f
}

#[test]
fn auto_falls_back_to_sync_with_one_log_line_when_the_probe_fails() {
    let sysctl = disabled_sysctl();
    let (r, log) = capture(|| backend_with(IoMode::Auto, sysctl.path()));
    let (_, chosen) = r.expect("auto never fails");
    assert_eq!(chosen, IoMode::Sync);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("io_uring")).collect();
    assert_eq!(lines.len(), 1, "one log line about the fallback, got: {log}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("unavailable; using sync"), "{}", lines[0]);
    assert!(lines[0].contains("disabled system-wide"), "the line says why: {}", lines[0]);
}

#[test]
fn uring_fails_clearly_when_the_probe_fails() {
    let sysctl = disabled_sysctl();
    let e = backend_with(IoMode::Uring, sysctl.path()).expect_err("uring must fail where io_uring is disabled");
    let msg = e.to_string();
    assert!(msg.contains("io = uring"), "{msg}");
    assert!(msg.contains("disabled system-wide"), "{msg}");
    assert!(msg.contains(&sysctl.path().display().to_string()), "names the sysctl: {msg}");
}

#[test]
fn sync_never_probes() {
    let sysctl = disabled_sysctl();
    let (_, chosen) = backend_with(IoMode::Sync, sysctl.path()).unwrap();
    assert_eq!(chosen, IoMode::Sync);
}

#[test]
fn modes_parse_and_bad_names_are_named() {
    assert_eq!("auto".parse::<IoMode>().unwrap(), IoMode::Auto);
    assert_eq!("uring".parse::<IoMode>().unwrap(), IoMode::Uring);
    assert_eq!("sync".parse::<IoMode>().unwrap(), IoMode::Sync);
    let e = "fast".parse::<IoMode>().unwrap_err();
    assert!(e.contains("\"fast\"") && e.contains("auto, uring or sync"), "{e}");
}

/// On a machine with io_uring, `uring` writes a log that reopens intact (also under `sync`); the
/// whole engine suite runs on this backend with `CONFLUX_ENGINE_IO=uring`.
#[test]
fn uring_store_appends_and_reopens() {
    let (io, chosen) = match backend(IoMode::Uring) {
        Ok(b) => b,
        Err(e) if std::env::var("CONFLUX_ENGINE_IO").as_deref() != Ok("uring") => {
            eprintln!("io_uring unavailable here, skipping the uring store check: {e}");
            return;
        }
        Err(e) => panic!("CONFLUX_ENGINE_IO=uring but {e}"),
    };
    assert_eq!(chosen, IoMode::Uring);
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let config = Config { io, ..small_config() };
    let mut s = open(dir.path(), config);
    rt.block_on(append_sync(&mut s, (0..300).map(test_entry).collect())).unwrap();
    check_entries(&s, 0, 300);
    assert!(s.stats().fsyncs > 0);
    drop(s);
    let s = open(dir.path(), Config { io: Arc::new(conflux_engine::io::StdIo), ..small_config() });
    check_entries(&s, 0, 300);
}
