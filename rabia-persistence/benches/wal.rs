//! `FilePersistence` append throughput with group commit: groups of G
//! records per `append` (one `fdatasync` each, `SyncPolicy::Always`).
//!
//! ```text
//! cargo bench -p rabia-persistence --bench wal -- [--groups 1,16,256,4096] [--records 20000]
//! ```
//! Uses a directory under `$RABIA_BENCH_DIR` (default: the system temp dir).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use rabia_core::protocol::{Bit, Message, PersistRecord};
use rabia_core::{Phase, Slot};
use rabia_persistence::{FileOptions, FilePersistence, Persistence};
use std::time::Instant;

fn main() {
    let mut groups = vec![1usize, 16, 256, 4096];
    let mut records = 20_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--groups" => {
                groups = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|g| g.parse().unwrap())
                    .collect()
            }
            "--records" => records = args.next().unwrap().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let base = std::env::var("RABIA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!("FilePersistence append, SyncPolicy::Always, {records} State records per run (about 30 bytes each)");
    println!(
        "{:>8} {:>14} {:>12} {:>14}",
        "group", "records/s", "syncs/s", "µs per sync"
    );
    for group in groups {
        let dir = tempfile::Builder::new()
            .prefix("rabia-wal-bench-")
            .tempdir_in(&base)
            .unwrap();
        let elapsed = runtime.block_on(async {
            let mut store = FilePersistence::open(dir.path(), FileOptions::default()).unwrap();
            store.recover().await.unwrap();
            let batch: Vec<PersistRecord> = (0..group as u64)
                .map(|i| PersistRecord::Sent {
                    slot: Slot(i),
                    message: Message::State {
                        slot: Slot(i),
                        phase: Phase(1),
                        bit: Bit::One,
                        candidate: None,
                    },
                })
                .collect();
            let appends = records.div_ceil(group);
            let started = Instant::now();
            for _ in 0..appends {
                store.append(&batch).await.unwrap();
            }
            (started.elapsed(), appends)
        });
        let (elapsed, appends) = elapsed;
        let secs = elapsed.as_secs_f64();
        println!(
            "{:>8} {:>14.0} {:>12.0} {:>14.1}",
            group,
            (appends * group) as f64 / secs,
            appends as f64 / secs,
            secs * 1e6 / appends as f64
        );
    }
}
