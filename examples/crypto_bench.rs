//! Put throughput with encryption at rest on and off (issue 13's figure),
//! in one run, alternating short slices so both see the same machine:
//!
//! `cargo run --release --features encryption --example crypto_bench -- DIR SLICES SECONDS WRITERS [CIPHER]`
//!
//! Each slice opens a store (encrypted or not, in a directory of its own
//! below DIR, kept across slices), runs WRITERS threads of puts for SECONDS
//! (`SyncBeforeAck`, 512-byte tasks, 1,000 ids per writer cycled), and
//! closes it. Prints each slice, the median of each mode, the ratio of the
//! medians, and the median of the adjacent pairs' ratios. CIPHER is
//! `xchacha20poly1305` (default) or `aes-256-gcm`.

use statewal::crypto::{Algorithm, Key};
use statewal::{Options, Store, Task};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::{median, task};

fn main() -> statewal::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map(String::as_str).unwrap_or("crypto-bench"));
    let slices: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let writers: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let cipher: Algorithm = match args.get(5) {
        Some(c) => c.parse()?,
        None => Algorithm::default(),
    };
    let key = Key::generate()?;
    let each = Duration::from_secs_f64(secs);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for slice in 0..slices {
        let encrypted = slice % 2 == 0;
        let mut opts = Options::new(dir.join(if encrypted { "on" } else { "off" }))
            .checkpoint_interval(Some(Duration::from_secs(30)));
        if encrypted {
            opts = opts.encryption_key(key.clone()).cipher(cipher);
        }
        let store = Arc::new(Store::open(opts)?);
        let rate = run_slice(&store, writers, each)?;
        drop(store);
        println!(
            "slice {slice}: encryption {}: {rate:.0} puts/s",
            if encrypted { "on" } else { "off" }
        );
        if encrypted { &mut on } else { &mut off }.push(rate);
    }
    let mut pairs: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    let pair = median(&mut pairs);
    let (on, off) = (median(&mut on), median(&mut off));
    println!(
        "{cipher}, {writers} writer(s): median on {on:.0} puts/s, off {off:.0} puts/s: \
         on/off {:.3}; median of the {} pairs' on/off: {pair:.3}",
        on / off,
        pairs.len()
    );
    Ok(())
}

/// Puts per second of `writers` threads for `each`.
fn run_slice(store: &Arc<Store>, writers: usize, each: Duration) -> statewal::Result<f64> {
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || -> statewal::Result<u64> {
                let tasks: Vec<Task> = (0..1000).map(|i| task(&format!("w{w}-t{i}"))).collect();
                let mut puts = 0u64;
                while started.elapsed() < each {
                    store.put_task(tasks[puts as usize % tasks.len()].clone())?;
                    puts += 1;
                }
                Ok(puts)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().expect("a writer panicked")?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
