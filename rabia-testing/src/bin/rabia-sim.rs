//! `rabia-sim`: runs the deterministic simulator over many seeds.
//!
//! ```text
//! cargo run --release -p rabia-testing --bin rabia-sim -- --seeds 1000 --nodes 3
//! cargo run --release -p rabia-testing --bin rabia-sim -- --seed 1234 --nodes 5   # replay one
//! ```
//!
//! Prints counts per fault class, mean and max phases per slot and the ⊥
//! rate; the last line is `N seeds, V violations`. Exits non-zero on any
//! violation, after printing the command that replays the failing seed.

use rabia_testing::sim::{run, FaultClasses, SimConfig, SimReport, SimStats};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    seeds: u64,
    first_seed: u64,
    single: Option<u64>,
    nodes: Vec<usize>,
    faults: FaultClasses,
    verbose: bool,
    budget_secs: Option<u64>,
    #[cfg(feature = "mutations")]
    mutation: rabia_core::protocol::Mutation,
    /// The `--mutation` argument as given, for the replay command.
    mutation_name: Option<String>,
}

fn usage() -> &'static str {
    "usage: rabia-sim [--seeds N] [--first-seed S] [--seed S] [--nodes 3[,5,7]] [--no-faults] [--budget-secs S] [--verbose]"
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        first_seed: 1,
        single: None,
        nodes: vec![3],
        faults: FaultClasses::ALL,
        verbose: false,
        budget_secs: None,
        #[cfg(feature = "mutations")]
        mutation: rabia_core::protocol::Mutation::None,
        mutation_name: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match flag.as_str() {
            "--seeds" => args.seeds = parse_u64(&value("--seeds")?)?,
            "--first-seed" => args.first_seed = parse_u64(&value("--first-seed")?)?,
            "--seed" => args.single = Some(parse_u64(&value("--seed")?)?),
            "--nodes" => {
                args.nodes = value("--nodes")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("bad --nodes {s:?}: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
                if args.nodes.iter().any(|n| *n == 0 || *n > 31) {
                    return Err("--nodes must be between 1 and 31".into());
                }
            }
            "--no-faults" => args.faults = FaultClasses::NONE,
            "--budget-secs" => args.budget_secs = Some(parse_u64(&value("--budget-secs")?)?),
            #[cfg(feature = "mutations")]
            "--mutation" => {
                use rabia_core::protocol::Mutation;
                let name = value("--mutation")?;
                args.mutation = match name.as_str() {
                    "decide-threshold-minus-one" => Mutation::DecideThresholdMinusOne,
                    "per-replica-coin" => Mutation::PerReplicaCoin,
                    "no-requeue" => Mutation::NoRequeue,
                    "send-before-persist" => Mutation::SendBeforePersist,
                    "deliver-before-votes-durable" => Mutation::DeliverBeforeVotesDurable,
                    "no-fresh-store-guard" => Mutation::NoFreshStoreGuard,
                    "unanimity-of-quorum" => Mutation::UnanimityOfQuorum,
                    other => return Err(format!("unknown mutation {other:?}")),
                };
                args.mutation_name = Some(name);
            }
            "--verbose" | "-v" => args.verbose = true,
            "--help" | "-h" => return Err(usage().into()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(args)
}

fn parse_u64(s: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("bad number {s:?}: {e}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let seeds: Vec<u64> = match args.single {
        Some(s) => vec![s],
        None => (args.first_seed..args.first_seed + args.seeds).collect(),
    };
    let started = Instant::now();
    let mut total = SimStats::default();
    let mut runs = 0u64;
    let mut failures: Vec<(usize, SimReport)> = Vec::new();
    for &nodes in &args.nodes {
        for &seed in &seeds {
            let mut config = SimConfig::new(seed, nodes);
            config.faults = args.faults;
            if let Some(secs) = args.budget_secs {
                config.liveness_budget = std::time::Duration::from_secs(secs);
            }
            #[cfg(feature = "mutations")]
            {
                config.replica.mutation = args.mutation;
            }
            let report = run(config);
            runs += 1;
            total.accumulate(&report.stats);
            if args.verbose || args.single.is_some() {
                println!(
                    "seed {seed} nodes {nodes}: {} slots ({} ⊥), {} ops acked, {} events, trace {:016x}{}",
                    report.stats.slots_decided,
                    report.stats.null_slots,
                    report.stats.operations_acknowledged,
                    report.stats.events,
                    report.trace_hash,
                    report
                        .violation
                        .as_ref()
                        .map(|v| format!(" — {v}"))
                        .unwrap_or_default()
                );
            }
            if let Some(v) = &report.violation {
                eprintln!("VIOLATION seed {seed} nodes {nodes}: {v}");
                let (features, mutation) = match &args.mutation_name {
                    Some(name) => (" --features mutations", format!(" --mutation {name}")),
                    None => ("", String::new()),
                };
                eprintln!(
                    "  replay: cargo run --release -p rabia-testing{features} --bin rabia-sim -- --seed {seed} --nodes {nodes}{}{mutation}",
                    if args.faults == FaultClasses::NONE { " --no-faults" } else { "" }
                );
                failures.push((nodes, report));
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mean_phases = if total.slots_by_protocol == 0 {
        0.0
    } else {
        total.phases_total as f64 / total.slots_by_protocol as f64
    };
    let null_rate = if total.slots_decided == 0 {
        0.0
    } else {
        total.null_slots as f64 / total.slots_decided as f64
    };
    println!(
        "runs: {runs} (nodes {:?}) in {elapsed:.1}s = {:.1} seeds/s",
        args.nodes,
        runs as f64 / elapsed.max(1e-9)
    );
    println!("fault classes injected:");
    println!(
        "  message loss        {:>10} messages lost",
        total.messages_lost
    );
    println!(
        "  duplication         {:>10} messages duplicated",
        total.messages_duplicated
    );
    println!(
        "  reordering (tail)   {:>10} messages delayed",
        total.messages_delayed
    );
    println!(
        "  partitions          {:>10} symmetric, {} one-way, {} isolations ({} messages blocked)",
        total.partitions_symmetric,
        total.partitions_asymmetric,
        total.isolations,
        total.messages_blocked
    );
    println!(
        "  crash-restart       {:>10} restarts ({} at persistence boundaries; {} unsynced writes lost)",
        total.crash_restarts, total.targeted_crashes, total.writes_lost
    );
    println!(
        "  crash-stop          {:>10} nodes stopped for good",
        total.crash_stops
    );
    println!(
        "  disk loss           {:>10} restarts with an empty store",
        total.disk_losses
    );
    println!(
        "  clock skew          {:>10} skewed clocks",
        total.skewed_clocks
    );
    println!(
        "snapshots: {} taken, {} restarts from a snapshot, {} shipped to laggards and installed",
        total.snapshots_taken, total.restarts_from_snapshot, total.snapshots_installed
    );
    println!(
        "protocol: {} slots decided, ⊥ rate {:.2}%, phases per slot mean {:.3} max {}, unanimous {:.1}% of replica decisions, {} openings announced, {} proposals by reference ({} fetched)",
        total.slots_decided,
        null_rate * 100.0,
        mean_phases,
        total.phases_max,
        total.unanimous_slots as f64 * 100.0 / total.slots_by_protocol.max(1) as f64,
        total.openings_sent,
        total.proposals_by_reference,
        total.proposal_fetches
    );
    println!(
        "clients: {} operations acknowledged, {} retries; {} events, {} messages",
        total.operations_acknowledged, total.client_retries, total.events, total.messages_sent
    );
    println!("{runs} seeds, {} violations", failures.len());
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
