//! Both storage backends pass the `Persistence` conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rabia_persistence::{FileOptions, FilePersistence, InMemoryPersistence};
use rabia_testing::conformance::persistence::run_all;

#[tokio::test]
async fn in_memory_persistence_conforms() {
    let store = InMemoryPersistence::new();
    run_all(|| store.clone()).await;
}

#[tokio::test]
async fn file_persistence_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_all(|| FilePersistence::open(&path, FileOptions::default()).unwrap()).await;
}

#[tokio::test]
async fn file_persistence_conforms_with_tiny_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let options = FileOptions {
        segment_bytes_max: 48,
        ..FileOptions::default()
    };
    run_all(|| FilePersistence::open(&path, options.clone()).unwrap()).await;
}
