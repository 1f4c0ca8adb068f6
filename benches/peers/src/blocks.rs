//! `statewal-peers blocks`: what one durable put costs depending on the
//! state of the blocks it lands in (issue 10, W1). Segment recycling is
//! worth its format change only if an `fdatasync` into blocks written and
//! synced before (a recycled segment, `raw-append-wrap`) is cheaper than
//! one into the blocks a fresh segment offers.
//!
//! Each mode is one file, prepared before the timed part; then every
//! operation (a 600-byte `pwrite` at the next offset and an `fdatasync`)
//! goes to each file in turn, the order rotated at every step, so all modes
//! see the same disk weather. The modes:
//!
//! - `unwritten`: `fallocate`d and synced (ext4: unwritten extents, which
//!   the sync after a write must convert);
//! - `zeros`: zeros written and synced (statewal's segment after the first
//!   sync of its zeros written ahead; `raw-append`);
//! - `rewritten`: written with other bytes and synced: a recycled segment;
//! - `append`: empty; every write extends the file (no preallocation);
//! - `zeros+marker`: `zeros`, then a 57-byte `pwrite` after the sync, as
//!   statewal's sync marker.
//!
//! Figures are latencies of the whole operation. Count the block requests
//! each mode sends with `perf record -e block:block_rq_issue` around
//! `blocks --modes MODE` (see `docs/decisions.md`).

use crate::engines::Result;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

/// Every mode, in the order they are reported.
pub const MODES: [&str; 5] = ["unwritten", "zeros", "rewritten", "append", "zeros+marker"];
/// A 512-byte task in a statewal record frame is about this long.
const RECORD_BYTES: usize = 600;
/// statewal's sync marker frame.
const MARKER_BYTES: usize = 57;

/// Runs `ops` operations per mode in each of `rounds` rounds, fresh files
/// each round, in `dir`, and prints one line per mode.
pub fn run(dir: &Path, modes: &[String], ops: usize, rounds: usize) -> Result<()> {
    for m in modes {
        if !MODES.contains(&m.as_str()) {
            return Err(format!("no mode {m} (modes: {})", MODES.join(",")).into());
        }
    }
    let size = ((ops * (RECORD_BYTES + MARKER_BYTES)) as u64).next_multiple_of(1 << 20);
    let record = vec![0x42u8; RECORD_BYTES];
    let marker = vec![0x5Au8; MARKER_BYTES];
    let mut lat_ns: Vec<Vec<u64>> = vec![Vec::new(); modes.len()];
    for _ in 0..rounds {
        let files = modes
            .iter()
            .map(|m| prepare(&dir.join(format!("blocks-{m}.dat")), m, size))
            .collect::<Result<Vec<File>>>()?;
        let mut at = vec![0u64; modes.len()];
        for op in 0..ops {
            for k in 0..modes.len() {
                let i = (op + k) % modes.len();
                let started = Instant::now();
                files[i].write_all_at(&record, at[i])?;
                at[i] += RECORD_BYTES as u64;
                files[i].sync_data()?;
                if modes[i] == "zeros+marker" {
                    files[i].write_all_at(&marker, at[i])?;
                    at[i] += MARKER_BYTES as u64;
                }
                lat_ns[i].push(started.elapsed().as_nanos() as u64);
            }
        }
        for m in modes {
            std::fs::remove_file(dir.join(format!("blocks-{m}.dat")))?;
        }
    }
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 / 1e3;
    let base = modes
        .iter()
        .position(|m| m == "rewritten")
        .map(|i| mean(&lat_ns[i]));
    println!(
        "| mode | p50 µs | p90 µs | mean µs | mean without the top 1% µs | mean × rewritten |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (m, v) in modes.iter().zip(lat_ns.iter_mut()) {
        v.sort_unstable();
        let n = v.len();
        let trimmed = &v[..n * 99 / 100];
        println!(
            "| {m} | {} | {} | {:.1} | {:.1} | {} |",
            v[n / 2] / 1000,
            v[n * 9 / 10] / 1000,
            mean(v),
            mean(trimmed),
            base.map_or("–".into(), |b| format!("{:.3}", mean(v) / b)),
        );
    }
    Ok(())
}

/// Creates `path` in the state `mode` names, `size` bytes long (except
/// `append`), synced.
fn prepare(path: &Path, mode: &str, size: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let fill = |byte: u8| -> std::io::Result<()> {
        let chunk = vec![byte; 1 << 20];
        let mut at = 0;
        while at < size {
            file.write_all_at(&chunk, at)?;
            at += chunk.len() as u64;
        }
        Ok(())
    };
    match mode {
        "unwritten" => {
            // SAFETY: a plain system call on a descriptor this function owns.
            let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
            if r != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
        }
        "zeros" | "zeros+marker" => fill(0)?,
        "rewritten" => fill(0xA5)?,
        _ => {}
    }
    file.sync_all()?;
    Ok(file)
}
