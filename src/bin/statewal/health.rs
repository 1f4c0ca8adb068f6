//! `statewal health`: is the state directory fit to run a store on?

use crate::out::{count, json_line};
use statewal::Result;
use std::path::Path;
use std::process::ExitCode;

/// Prints [`statewal::health`] of `dir`; exit 1 when unhealthy.
pub fn run(dir: &Path, json: bool) -> Result<ExitCode> {
    let h = statewal::health(dir);
    if json {
        json_line(&h)?;
    } else {
        print_human(&h)?;
    }
    Ok(if h.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_human(h: &statewal::report::Health) -> statewal::Result<()> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    outln!("state directory   {}", h.dir);
    outln!("exists            {}", yes_no(h.exists));
    outln!("writable          {}", yes_no(h.writable));
    match h.free_bytes {
        Some(n) => outln!(
            "free space        {} ({})",
            human_bytes(n),
            count(n, "byte")
        ),
        None => outln!("free space        unknown"),
    }
    outln!(
        "last checkpoint   {}",
        h.last_checkpoint.as_deref().unwrap_or("none yet")
    );
    outln!(
        "backups           {} ({} valid, {} unusable left by another writer)",
        h.backups,
        h.backups_valid,
        h.backups_leftover
    );
    outln!(
        "journal           {} in {}",
        human_bytes(h.journal_bytes),
        count(h.journal_segments, "segment")
    );
    match h.lock_holder_pid {
        Some(pid) => outln!("lock holder       pid {pid}"),
        None => outln!("lock holder       none"),
    }
    for w in &h.warnings {
        outln!("warning: {w}");
    }
    if h.healthy {
        outln!("healthy");
    } else {
        outln!("UNHEALTHY:");
        for p in &h.problems {
            outln!("  - {p}");
        }
    }
    Ok(())
}

/// Bytes in binary units for a person, e.g. "1.5 MiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
