//! A restore from the bucket on `SimFs` (issue 11): once
//! `replica::restore_to_fs` returns, nothing it wrote is still waiting for
//! a sync, and power loss then keeps every record it reported; cut by
//! power loss at any operation, what it leaves opens as a prefix of the
//! history, never a mix.

use crate::replica::{file_bucket, replicated, tasks_of};
use crate::util::{scratch, task};
use statewal::replica::{self, RestoreTarget};
use statewal::sim::{Fs, Outcome, SimFs};
use statewal::{Options, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

type Tasks = BTreeMap<String, Vec<u8>>;

fn sim_opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
}

/// A bucket holding 42 puts: a checkpoint of the first 21 (shipped by the
/// first open's close) and the journal of all. Returns it, the tasks after
/// each sequence number (0 for none) and the sequence numbers.
fn shipped_history(
    tmp: &std::path::Path,
) -> (crate::replica::Bucket, BTreeMap<u64, Tasks>, Vec<u64>) {
    let bucket = file_bucket(tmp);
    let dir = tmp.join("store");
    let mut at = BTreeMap::from([(0, Tasks::new())]);
    let mut seqs = Vec::new();
    for half in 0..2 {
        let opts = replicated(&dir, &bucket).replicate_interval(Duration::from_secs(3600));
        let store = Store::open(opts).unwrap();
        for i in half * 21..(half + 1) * 21 {
            let mut t = task(&format!("t{}", i % 30));
            t.set_description(format!("put {i}"));
            let seq = store.put_task(t).unwrap();
            at.insert(seq, tasks_of(&store));
            seqs.push(seq);
        }
        drop(store);
    }
    (bucket, at, seqs)
}

fn open_tasks(fs: SimFs) -> statewal::Result<Tasks> {
    let store = Store::open_with_fs(sim_opts(), Arc::new(fs), None)?;
    Ok(tasks_of(&store))
}

/// Fails with any of the restore's syncs removed: a segment's or
/// `state.json`'s data, its rename's directory sync, and the final syncs
/// of `journal/` and of the store's directory (without a checkpoint,
/// nothing else makes `journal/` durable).
#[test]
fn a_returned_restore_is_durable() {
    let tmp = scratch();
    let (bucket, at, seqs) = shipped_history(tmp.path());
    for (target, checkpointed) in [
        (RestoreTarget::Latest, true),
        (RestoreTarget::Seq(seqs[30]), true),
        (RestoreTarget::Seq(seqs[10]), false),
    ] {
        let sim = SimFs::new(7);
        let report = replica::restore_to_fs(&bucket.url, &[], Arc::new(sim.clone()), target)
            .expect("restore");
        assert_eq!(report.checkpoint_seq.is_some(), checkpointed, "{report:?}");
        assert!(report.stopped_at.is_none(), "{report:?}");
        let pending = sim.pending();
        assert!(
            pending.is_empty(),
            "{target:?}: not durable yet: {pending:#?}"
        );
        let after = sim.crash_with(|_| Outcome::Lost);
        let held = open_tasks(after).expect("the restored store opens after power loss");
        assert_eq!(held, at[&report.last_seq], "{target:?}: {report:?}");
    }
}

/// Power loss at each operation of a restore: the directory left opens
/// as the history up to some record, and a restore into it again is
/// refused rather than mixed in.
#[test]
fn a_restore_cut_by_power_loss_leaves_a_prefix() {
    let tmp = scratch();
    let (bucket, at, seqs) = shipped_history(tmp.path());
    for target in [RestoreTarget::Seq(seqs[30]), RestoreTarget::Seq(seqs[10])] {
        let probe = SimFs::new(1);
        replica::restore_to_fs(&bucket.url, &[], Arc::new(probe.clone()), target).unwrap();
        let ops = probe.ops();
        for n in 0..ops {
            for lose in [true, false] {
                let sim = SimFs::new(n);
                sim.crash_after_ops(n);
                let cut = replica::restore_to_fs(&bucket.url, &[], Arc::new(sim.clone()), target);
                assert!(cut.is_err(), "{target:?}: op {n} of {ops} did not stop it");
                let after = sim.crash_with(|_| if lose { Outcome::Lost } else { Outcome::Kept });
                match open_tasks(after.clone()) {
                    Ok(held) => assert!(
                        at.values().any(|t| *t == held),
                        "{target:?}, power loss at op {n} (unsynced {}): {held:#?} \
                         is no prefix of the history",
                        if lose { "lost" } else { "kept" }
                    ),
                    Err(e) => panic!("{target:?}, power loss at op {n}: does not open: {e}"),
                }
                if !after.list("").unwrap().is_empty() {
                    let again = replica::restore_to_fs(&bucket.url, &[], Arc::new(after), target);
                    assert!(again.is_err(), "a restore into a partial one went ahead");
                }
            }
        }
    }
}
