//! Times opening a store (checkpoint plus journal replay), for profiling:
//! `cargo run --profile profiling --example open_probe -- DIR`.

use statewal::{Options, Store};

fn main() -> statewal::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "open-probe-state".into());
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        let store = Store::open(
            Options::new(&dir)
                .checkpoint_interval(None)
                .checkpoint_on_drop(false),
        )?;
        let r = store.recovery_report().unwrap();
        println!(
            "open {:.1} ms: {} tasks loaded, {} records replayed in {:.1} ms ({:.0} records/s)",
            t0.elapsed().as_secs_f64() * 1e3,
            r.tasks_loaded,
            r.records_replayed,
            r.journal_duration.as_secs_f64() * 1e3,
            r.records_replayed as f64 / r.journal_duration.as_secs_f64()
        );
    }
    Ok(())
}
