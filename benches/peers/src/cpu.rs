//! How much CPU other processes used while a workload ran, from
//! `/proc/<pid>/stat`: the user and system time of every process but this
//! one and the kernel's threads (whose writeback and journal commits are
//! partly this benchmark's own work), a finished child counted through its
//! parent. The load average cannot say it: it counts this benchmark's own
//! writers while they wait in `fdatasync`.

use std::collections::HashMap;
use std::time::Instant;

/// `PF_KTHREAD` in the flags field of `/proc/<pid>/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;
/// `USER_HZ`, the unit of the times in `/proc/<pid>/stat`: 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

pub struct CpuMeter {
    started: Instant,
    ticks: HashMap<u32, u64>,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            ticks: other_processes(),
        }
    }

    /// Cores' worth of CPU that other processes used since `start`, on
    /// average (0 where `/proc` is missing).
    pub fn others_cores(&self) -> f64 {
        let used: u64 = other_processes()
            .into_iter()
            .map(|(pid, t)| t.saturating_sub(self.ticks.get(&pid).copied().unwrap_or(0)))
            .sum();
        used as f64 / TICKS_PER_SEC / self.started.elapsed().as_secs_f64().max(1e-9)
    }
}

/// utime + stime + cutime + cstime of every user process but this one.
fn other_processes() -> HashMap<u32, u64> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The fields after the command name, which is in parentheses:
            // state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
            // cminflt, majflt, cmajflt, utime, stime, cutime, cstime.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let num = |i: usize| rest.get(i)?.parse::<u64>().ok();
            if num(6)? & PF_KTHREAD != 0 {
                return None;
            }
            Some((pid, num(11)? + num(12)? + num(13)? + num(14)?))
        })
        .collect()
}
