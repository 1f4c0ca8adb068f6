//! Criterion benches: statewal's append by sync policy and thread count,
//! replay and checkpoint, each beside the baselines in `baselines.rs`.
//! `statewal bench` runs the same comparison as one table in about a minute.

mod baselines;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use statewal::{Options, Store, SyncPolicy, Task};
use std::time::{Duration, Instant};

const TASK_BYTES: usize = 512;

fn task(id: &str) -> Task {
    Task::from_json(baselines::task_json(id, TASK_BYTES).as_bytes()).expect("the bench task parses")
}

fn open(dir: &std::path::Path, policy: SyncPolicy) -> Store {
    let opts = Options::new(dir)
        .sync_policy(policy)
        .checkpoint_interval(None)
        .checkpoint_on_drop(false);
    Store::open(opts).expect("the bench store opens")
}

/// One writer: statewal under each policy against direct-atomic, direct-naive and raw-append.
fn append_one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("append-1-thread");
    g.measurement_time(Duration::from_secs(3));
    let tmp = tempfile::tempdir().unwrap();
    for (name, policy) in [
        ("statewal-sync-before-ack", SyncPolicy::SyncBeforeAck),
        ("statewal-os-buffered", SyncPolicy::OsBuffered),
    ] {
        let store = open(&tmp.path().join(name), policy);
        let tasks: Vec<Task> = (0..1000).map(|i| task(&format!("t{i}"))).collect();
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                store.put_task(tasks[i % tasks.len()].clone()).unwrap()
            })
        });
    }
    let dir = baselines::direct_dir(&tmp.path().join("direct")).unwrap();
    let bodies: Vec<(String, String)> = (0..1000)
        .map(|i| {
            (
                format!("t{i}"),
                baselines::task_json(&format!("t{i}"), TASK_BYTES),
            )
        })
        .collect();
    let mut i = 0;
    g.bench_function("direct-atomic", |b| {
        b.iter(|| {
            i += 1;
            let (id, body) = &bodies[i % bodies.len()];
            baselines::direct_atomic_put(&dir, id, body.as_bytes()).unwrap()
        })
    });
    g.bench_function("direct-naive", |b| {
        b.iter(|| {
            i += 1;
            let (id, body) = &bodies[i % bodies.len()];
            baselines::direct_naive_put(&dir, id, body.as_bytes()).unwrap()
        })
    });
    let raw = baselines::RawAppend::create(&tmp.path().join("raw.dat"), 64 << 20).unwrap();
    g.bench_function("raw-append", |b| {
        b.iter(|| {
            i += 1;
            raw.append(bodies[i % bodies.len()].1.as_bytes()).unwrap()
        })
    });
    g.finish();
}

/// N writers under sync-before-ack (group commit) against raw-append with
/// the same grouping and direct-atomic with as many threads. Reported time
/// is per put, across all threads.
fn append_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("append-threads");
    g.measurement_time(Duration::from_secs(3));
    let tmp = tempfile::tempdir().unwrap();
    for threads in [4usize, 16] {
        let store = open(
            &tmp.path().join(format!("sw-{threads}")),
            SyncPolicy::SyncBeforeAck,
        );
        let dir = baselines::direct_dir(&tmp.path().join(format!("direct-{threads}"))).unwrap();
        let raw =
            baselines::RawAppend::create(&tmp.path().join(format!("raw-{threads}.dat")), 64 << 20)
                .unwrap();
        let body = baselines::task_json("t", TASK_BYTES);
        let run = |iters: u64, op: &(dyn Fn(usize, u64) + Sync)| {
            let per = iters.div_ceil(threads as u64);
            let t0 = Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    s.spawn(move || (0..per).for_each(|i| op(t, i)));
                }
            });
            t0.elapsed()
        };
        g.bench_function(BenchmarkId::new("statewal-sync-before-ack", threads), |b| {
            b.iter_custom(|iters| {
                run(iters, &|t, i| {
                    store.put_task(task(&format!("w{t}-{}", i % 100))).unwrap();
                })
            })
        });
        g.bench_function(BenchmarkId::new("raw-append", threads), |b| {
            b.iter_custom(|iters| run(iters, &|_, _| raw.append(body.as_bytes()).unwrap()))
        });
        g.bench_function(BenchmarkId::new("direct-atomic", threads), |b| {
            b.iter_custom(|iters| {
                run(iters, &|t, i| {
                    baselines::direct_atomic_put(
                        &dir,
                        &format!("w{t}-{}", i % 100),
                        body.as_bytes(),
                    )
                    .unwrap()
                })
            })
        });
    }
    g.finish();
}

/// Opening a store whose journal holds 20k records (replay), and a
/// checkpoint of 20k tasks with 200 changed.
fn replay_and_checkpoint(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replay");
    {
        let store = open(&dir, SyncPolicy::OsBuffered);
        for i in 0..20_000 {
            store.put_task(task(&format!("t{i}"))).unwrap();
        }
    }
    g.bench_function("open-20k-journal-records", |b| {
        b.iter(|| {
            let store = open(&dir, SyncPolicy::SyncBeforeAck);
            assert_eq!(store.recovery_report().unwrap().records_replayed, 20_000);
        })
    });
    let store = open(&tmp.path().join("ckpt"), SyncPolicy::OsBuffered);
    for i in 0..20_000 {
        store.put_task(task(&format!("t{i}"))).unwrap();
    }
    store.checkpoint().unwrap();
    let mut round = 0;
    g.bench_function("checkpoint-20k-tasks-200-changed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                for i in 0..200 {
                    let mut t = task(&format!("t{}", (i * 97 + round) % 20_000));
                    t.set("round", round).unwrap();
                    store.put_task(t).unwrap();
                }
                let t0 = Instant::now();
                store.checkpoint().unwrap();
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    append_one_thread,
    append_threads,
    replay_and_checkpoint
);
criterion_main!(benches);
