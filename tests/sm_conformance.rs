//! openraft's storage conformance suite with the MVCC state machine and the log engine together.

use std::sync::Arc;

use conflux::state_machine::{SmConfig, StateMachine};
use conflux::types::{LogStore, TypeConfig};
use conflux_engine::Config;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config { segment_bytes: 1 << 20, max_entry_bytes: 64 << 10, ..Config::default() };
        let log = LogStore::open(dir.path(), config).map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let sm = StateMachine::open(dir.path(), Arc::new(conflux_engine::io::StdIo), SmConfig::default())
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_with_mvcc_state_machine() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder).await
}
