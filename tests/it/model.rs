//! Model-based property test: a proptest state machine over random sequences
//! of operations, crashes and reopens on the simulated filesystem.
//!
//! Each case is a list of [`ModelOp`]s: puts, updates, deletes, log appends,
//! reports and checkpoints; crashes where the process dies inside a mutation
//! after a random number of I/O operations and power loss then keeps, loses
//! or tears each pending write and directory entry; and clean reopens.
//! `statewal::sim::fuzz::check_model` runs them against an in-memory model and
//! checks after every reopen that each acknowledged mutation survived and
//! nothing was invented. proptest shrinks a failure to a minimal list of
//! steps. 64 cases by default; `PROPTEST_CASES` overrides.

use proptest::prelude::*;
use statewal::sim::TearFill;
use statewal::sim::fuzz::{Choice, ModelOp, Mutate, check_model};

fn mutate() -> impl Strategy<Value = Mutate> {
    let id = 0u8..4;
    prop_oneof![
        3 => id.clone().prop_map(|id| Mutate::Put { id }),
        2 => id.clone().prop_map(|id| Mutate::Update { id }),
        2 => id.clone().prop_map(|id| Mutate::Delete { id }),
        2 => (id.clone(), 0u8..40).prop_map(|(session, len)| Mutate::AppendLog { session, len }),
        1 => id.prop_map(|id| Mutate::SaveReport { id }),
        1 => Just(Mutate::Checkpoint),
    ]
}

fn choice() -> impl Strategy<Value = Choice> {
    let fill = prop_oneof![
        Just(TearFill::Nothing),
        Just(TearFill::Zeros),
        Just(TearFill::Garbage)
    ];
    prop_oneof![
        Just(Choice::Lost),
        Just(Choice::Kept),
        (any::<u32>(), fill).prop_map(|(at, fill)| Choice::Torn { at, fill }),
    ]
}

fn op() -> impl Strategy<Value = ModelOp> {
    let during = proptest::option::of((mutate(), 0u8..24));
    prop_oneof![
        8 => mutate().prop_map(ModelOp::Do),
        2 => (during, proptest::collection::vec(choice(), 0..12))
            .prop_map(|(during, choices)| ModelOp::Crash { during, choices }),
        1 => any::<bool>().prop_map(|shutdown| ModelOp::Reopen { shutdown }),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // A failing case is printed, shrunk; it is not written to a file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn acknowledged_writes_survive_crashes_and_nothing_is_invented(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        check_model(&ops).map_err(TestCaseError::fail)?;
    }
}

/// A fixed run through every kind of step, so a break shows up even with
/// `PROPTEST_CASES=0`.
#[test]
fn a_fixed_run_of_every_step() {
    let torn = Choice::Torn {
        at: 7,
        fill: TearFill::Garbage,
    };
    let ops = [
        ModelOp::Do(Mutate::Put { id: 0 }),
        ModelOp::Do(Mutate::AppendLog { session: 1, len: 3 }),
        ModelOp::Do(Mutate::Delete { id: 2 }),
        ModelOp::Crash {
            during: Some((Mutate::Put { id: 1 }, 2)),
            choices: vec![Choice::Kept, torn, Choice::Lost],
        },
        ModelOp::Do(Mutate::Update { id: 0 }),
        ModelOp::Do(Mutate::SaveReport { id: 3 }),
        ModelOp::Do(Mutate::Checkpoint),
        ModelOp::Do(Mutate::AppendLog { session: 1, len: 0 }),
        ModelOp::Reopen { shutdown: false },
        ModelOp::Crash {
            during: None,
            choices: vec![torn; 4],
        },
        ModelOp::Do(Mutate::Delete { id: 0 }),
        ModelOp::Reopen { shutdown: true },
    ];
    check_model(&ops).unwrap();
}
