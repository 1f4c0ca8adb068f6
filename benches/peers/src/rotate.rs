//! W1 to W3: every engine in turn for a short slice, A B C … A B C …, so
//! each sees the same disk weather; a round is `slices` passes, and each
//! figure is the median over rounds.

use crate::engines::{Engine, Kind, Result};
use crate::tasks::TaskSet;
use std::time::{Duration, Instant};

/// How long and how often each engine runs.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub rounds: usize,
    pub slices: usize,
    pub slice_ms: u64,
}

/// What one engine did over all rounds.
pub struct Measured {
    pub kind: Kind,
    /// Puts per second in each round (its slices' puts over their time).
    pub rounds_ops_per_sec: Vec<f64>,
    pub puts: u64,
    /// Each put's latency, in nanoseconds, over all rounds.
    pub lat_ns: Vec<u32>,
}

/// Runs `engines` with `threads` writers each, rotating through slices.
pub fn rotate(
    engines: &[(Kind, Box<dyn Engine>)],
    tasks: &TaskSet,
    threads: usize,
    plan: Plan,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Measured>> {
    let slice = Duration::from_millis(plan.slice_ms);
    let mut out: Vec<Measured> = engines
        .iter()
        .map(|(kind, _)| Measured {
            kind: *kind,
            rounds_ops_per_sec: Vec::new(),
            puts: 0,
            lat_ns: Vec::new(),
        })
        .collect();
    // Where each engine's writers are in their cycle of task ids.
    let mut next = vec![vec![0usize; threads]; engines.len()];
    for round in 0..plan.rounds {
        let mut puts = vec![0u64; engines.len()];
        let mut secs = vec![0f64; engines.len()];
        for _ in 0..plan.slices {
            for (k, (_, engine)) in engines.iter().enumerate() {
                let (n, s, lat) = run_slice(engine.as_ref(), tasks, &mut next[k], slice)?;
                puts[k] += n;
                secs[k] += s;
                out[k].lat_ns.extend(lat);
            }
        }
        for (k, m) in out.iter_mut().enumerate() {
            m.rounds_ops_per_sec.push(puts[k] as f64 / secs[k]);
            m.puts += puts[k];
        }
        progress(round + 1);
    }
    Ok(out)
}

/// One slice: `next.len()` writers put until `slice` is over, then the
/// engine's end-of-slice work. Returns the puts, the seconds they took and
/// their latencies.
fn run_slice(
    engine: &dyn Engine,
    tasks: &TaskSet,
    next: &mut [usize],
    slice: Duration,
) -> Result<(u64, f64, Vec<u32>)> {
    let started = Instant::now();
    let deadline = started + slice;
    let per_writer: Vec<Result<Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = next
            .iter_mut()
            .enumerate()
            .map(|(w, i)| {
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(4096);
                    loop {
                        let t0 = Instant::now();
                        if t0 >= deadline {
                            break;
                        }
                        engine.put(&tasks.get(w, *i))?;
                        lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                        *i += 1;
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writers do not panic"))
            .collect()
    });
    engine.end_slice()?;
    let secs = started.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for r in per_writer {
        lat.extend(r?);
    }
    Ok((lat.len() as u64, secs, lat))
}

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p` quantile of `lat_ns`, in microseconds.
pub fn percentile_us(lat_ns: &mut [u32], p: f64) -> f64 {
    if lat_ns.is_empty() {
        return f64::NAN;
    }
    lat_ns.sort_unstable();
    lat_ns[((lat_ns.len() - 1) as f64 * p) as usize] as f64 / 1e3
}
