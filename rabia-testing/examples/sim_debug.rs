//! Runs one seed with a custom liveness budget and prints the report.
use rabia_testing::sim::{run, SimConfig};
fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let mut config = SimConfig::new(args[0], args[1] as usize);
    config.liveness_budget = std::time::Duration::from_secs(args[2]);
    let r = run(config);
    println!("{:?}\n{:#?}", r.violation, r.stats);
}
