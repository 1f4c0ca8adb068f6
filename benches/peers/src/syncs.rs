//! `statewal-peers syncs`: counts each durable engine's sync calls per put
//! in W1 with `strace -f -c`, so the README can show that every engine
//! syncs once per put and none is measured doing less than it claims.
//!
//! Each engine runs in a child process with no puts and with `puts` puts,
//! so that what the open and the close do is subtracted: once under
//! strace, and once without it while the sectors written to the scratch
//! directory's disk are counted (`/proc/diskstats`). That count is the
//! whole device's, so it includes any other process writing to it at the
//! time; `/proc/self/io` would be the process's own, but it counts a whole
//! folio per dirtied page, and ext4 on Linux 6.18 makes 1 MiB folios of a
//! file written in large chunks.

use crate::engines::{self, Kind, Mode, Result};
use crate::tasks::TaskSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// The system calls counted. LMDB also writes its meta page through a
/// descriptor opened with `O_DSYNC`; such a write is a sync that no
/// call here shows (see the README).
const SYNC_CALLS: &[&str] = &["fsync", "fdatasync", "msync", "sync_file_range", "syncfs"];
const WRITE_CALLS: &[&str] = &["write", "pwrite64", "writev", "pwritev", "pwritev2"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncCount {
    pub engine: String,
    pub puts: u64,
    /// Per put, after subtracting the run without puts.
    pub fsync: f64,
    pub fdatasync: f64,
    pub other_syncs: f64,
    pub write_calls: f64,
    /// KiB the scratch disk was sent per put (device-wide, see above).
    pub disk_kib: f64,
}

/// The child's `puts`: opens `kind` durable in `dir`, makes `n` puts from
/// one writer, and closes it.
pub fn puts(kind: Kind, dir: &Path, n: usize) -> Result<()> {
    let tasks = TaskSet::new(1)?;
    let engine = engines::open(kind, Mode::Durable, dir)?;
    for i in 0..n {
        engine.put(&tasks.get(0, i))?;
    }
    drop(engine);
    Ok(())
}

/// Runs every durable engine of `kinds` under strace.
pub fn count_all(scratch: &Path, kinds: &[Kind], puts: u64) -> Result<Vec<SyncCount>> {
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for &kind in kinds {
        if kind.setup(Mode::Durable).is_none() {
            continue;
        }
        eprintln!("syncs: {} ({puts} puts under strace)", kind.name());
        let zero = traced(&exe, scratch, kind, 0)?;
        let many = traced(&exe, scratch, kind, puts)?;
        let disk = sectors_written(&exe, scratch, kind, puts)? as f64
            - sectors_written(&exe, scratch, kind, 0)? as f64;
        let per = |names: &[&str]| {
            let sum = |t: &Traced| names.iter().map(|n| t.calls(n)).sum::<u64>() as f64;
            (sum(&many) - sum(&zero)) / puts as f64
        };
        let others: Vec<&str> = SYNC_CALLS[2..].to_vec();
        out.push(SyncCount {
            engine: kind.name().to_string(),
            puts,
            fsync: per(&["fsync"]),
            fdatasync: per(&["fdatasync"]),
            other_syncs: per(&others),
            write_calls: per(WRITE_CALLS),
            disk_kib: disk * 512.0 / 1024.0 / puts as f64,
        });
    }
    Ok(out)
}

struct Traced {
    counts: Vec<(String, u64)>,
}

impl Traced {
    fn calls(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c)
    }
}

fn traced(exe: &Path, scratch: &Path, kind: Kind, puts: u64) -> Result<Traced> {
    let dir = scratch.join(format!("syncs-{}-{puts}", kind.name()));
    let _ = std::fs::remove_dir_all(&dir);
    let summary = scratch.join(format!("syncs-{}-{puts}.strace", kind.name()));
    let calls: Vec<&str> = SYNC_CALLS.iter().chain(WRITE_CALLS).copied().collect();
    let output = Command::new("strace")
        .args(["-f", "-c", "-e"])
        .arg(format!("trace={}", calls.join(",")))
        .arg("-o")
        .arg(&summary)
        .arg(exe)
        .args(["puts", kind.name()])
        .arg(&dir)
        .arg(puts.to_string())
        .output()
        .map_err(|e| format!("cannot run strace (is it installed?): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{} under strace failed: {}",
            kind.name(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let text = std::fs::read_to_string(&summary)?;
    let _ = std::fs::remove_file(&summary);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Traced {
        counts: parse_strace_summary(&text),
    })
}

/// The calls column of `strace -c`'s table: `% time, seconds, usecs/call,
/// calls, [errors], syscall`.
fn parse_strace_summary(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 5 || cols[0].parse::<f64>().is_err() {
                return None;
            }
            let name = cols.last()?;
            if *name == "total" {
                return None;
            }
            Some((name.to_string(), cols[3].parse().ok()?))
        })
        .collect()
}

/// Sectors written to the scratch directory's disk while a child makes
/// `puts` puts (without strace).
fn sectors_written(exe: &Path, scratch: &Path, kind: Kind, puts: u64) -> Result<u64> {
    let dir = scratch.join(format!("disk-{}-{puts}", kind.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let device = std::fs::metadata(&dir)?.dev();
    let before = diskstats_sectors(device)?;
    let status = Command::new(exe)
        .args(["puts", kind.name()])
        .arg(&dir)
        .arg(puts.to_string())
        .status()?;
    let after = diskstats_sectors(device)?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return Err(format!("{} failed ({status})", kind.name()).into());
    }
    Ok(after.saturating_sub(before))
}

/// Sectors written so far to the block device `dev` (a `st_dev`), from
/// `/proc/diskstats`: major, minor, name, then sectors written tenth.
fn diskstats_sectors(dev: u64) -> Result<u64> {
    let (major, minor) = (libc_major(dev), libc_minor(dev));
    let text = std::fs::read_to_string("/proc/diskstats")?;
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.len() > 9 && c[0] == major.to_string() && c[1] == minor.to_string())
        .and_then(|c| c[9].parse().ok())
        .ok_or_else(|| format!("device {major}:{minor} is not in /proc/diskstats").into())
}

/// glibc's `major()` and `minor()` of a `dev_t`.
fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}
