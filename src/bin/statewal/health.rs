//! `statewal health`: is the state directory (or the database) fit to run
//! a store on?

use crate::Cli;
use crate::out::{count, json_line};
use statewal::{Options, Result, Store};
use std::process::ExitCode;

/// Prints [`statewal::health`] of the directory, or the store's health on
/// a database; exit 1 when unhealthy.
pub fn run(cli: &Cli, json: bool) -> Result<ExitCode> {
    let Some(url) = cli.database_url() else {
        let h = statewal::health(&cli.dir);
        if json {
            json_line(&h)?;
        } else {
            print_human(&h)?;
        }
        return Ok(exit(h.healthy));
    };
    database(url, json)
}

fn exit(healthy: bool) -> ExitCode {
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Health on PostgreSQL: reachable, takes writes, statewal's schema is
/// there and current. A read-only open, so it creates nothing; a database
/// that cannot be opened is unhealthy (exit 1), with the reason.
fn database(url: &str, json: bool) -> Result<ExitCode> {
    let shown = statewal::__internal::redacted(url);
    let (healthy, writable, problems) =
        match Store::open(Options::new("unused").database(url).read_only(true)) {
            Ok(store) => {
                let h = store.health();
                (h.healthy, h.writable, h.problems)
            }
            Err(e) => (false, false, vec![e.to_string()]),
        };
    if json {
        json_line(&serde_json::json!({
            "database": shown,
            "healthy": healthy,
            "writable": writable,
            "problems": problems,
        }))?;
    } else {
        outln!("database          {shown}");
        outln!("writable          {}", if writable { "yes" } else { "no" });
        if healthy {
            outln!("healthy");
        } else {
            outln!("UNHEALTHY:");
            for p in &problems {
                outln!("  - {p}");
            }
        }
    }
    Ok(exit(healthy))
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
