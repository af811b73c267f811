//! openraft's own storage conformance suite, run against the engine.

mod common;

use common::{MemSm, Store, TC, default_config};
use conflux_engine::Config;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;

struct Builder {
    config: Config,
}

impl StoreBuilder<TC, Store, MemSm, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, Store, MemSm), StorageError<TC>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(dir.path(), self.config.clone()).map_err(|e| StorageError::read(TC::err_from_error(&e)))?;
        Ok((dir, store, MemSm::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_default_segments() -> Result<(), StorageError<TC>> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Suite::test_all(Builder {
        config: Config { segment_bytes: 1 << 20, max_entry_bytes: 64 << 10, ..default_config() },
    })
    .await
}

/// Tiny segments and a tiny tail cache: every test crosses segment boundaries and reads from disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_tiny_segments() -> Result<(), StorageError<TC>> {
    Suite::test_all(Builder {
        config: Config { segment_bytes: 4096, max_entry_bytes: 1024, tail_cache_bytes: 0, ..default_config() },
    })
    .await
}
