//! The fuzz target bodies (`statewal::sim::fuzz`) over a generated corpus, as
//! ordinary tests, so CI checks the same invariants as `fuzz/` without
//! libFuzzer or a nightly toolchain.
//!
//! The corpus is deterministic: seeded splitmix64 bytes of many lengths,
//! plus structured seeds built from a real journal segment and `state.json`
//! (written by a store on a `SimFs`) with single bits flipped and tails cut.
//! A failing input is printed in hex; feed it to the fuzz target to debug
//! (`cargo +nightly fuzz run <target> <file>`).

use statewal::__internal::fs::{Fs, OpenMode};
use statewal::__internal::journal::reader::{Piece, scan_segment};
use statewal::__internal::journal::record::{RECORD_HEADER_LEN, SEG_SALT_OFFSET, SegmentHeader};
use statewal::__internal::journal::{JOURNAL_DIR, segment_name};
use statewal::sim::fuzz::{self, sim_options};
use statewal::sim::{SimFs, SplitMix64};
use statewal::{RecoveryMode, Store, Task};
use std::sync::Arc;

const SEED: u64 = 0xf022;

/// Runs `body` on `input`, printing the input if it panics.
fn check(target: &str, body: fn(&[u8]), input: &[u8]) {
    if let Err(panic) = std::panic::catch_unwind(|| body(input)) {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!(
            "fuzz target {target} failed on input ({} bytes): {hex}",
            input.len()
        );
        std::panic::resume_unwind(panic);
    }
}

/// `n` inputs of seeded random bytes, of lengths up to `len_max`.
fn random_inputs(seed: u64, n: usize, len_max: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let len = rng.next_u64() % (len_max + 1);
            (0..len).map(|_| rng.next_u64() as u8).collect()
        })
        .collect()
}

/// A real journal: segment 1 (covered by `state.json`) and segment 2 (not),
/// and the `state.json` of the checkpoint between them.
struct Real {
    segments: [Vec<u8>; 2],
    state: Vec<u8>,
}

fn real() -> Real {
    let fs = SimFs::new(SEED);
    let opts = sim_options(RecoveryMode::TolerateTornTail).journal_preallocate_bytes(0);
    let store = Store::open_with_fs(opts, Arc::new(fs.clone()), None).expect("open");
    let mut t = Task::new("a");
    t.set_description("first");
    store.put_task(t).expect("put");
    store.put_task(Task::new("b")).expect("put");
    store
        .put_session(serde_json::json!({"id": "s", "user": "u"}))
        .expect("session");
    store.checkpoint().expect("checkpoint");
    store.append_log("s", "hello\n").expect("log");
    store
        .save_report("r", serde_json::json!({"ok": true}))
        .expect("report");
    store.delete_task("b").expect("delete");
    store.put_task(Task::new("c")).expect("put");
    drop(store); // No checkpoint on drop: segment 2 is the only copy.
    let read = |rel: &str| fs.read(rel).expect("read").expect("exists").to_vec();
    let names = fs.list(JOURNAL_DIR).expect("list");
    assert_eq!(names, [segment_name(1), segment_name(2)], "two segments");
    Real {
        segments: [1, 2].map(|id| read(&format!("{JOURNAL_DIR}/{}", segment_name(id)))),
        state: read("state.json"),
    }
}

/// `bytes` with bit `bit` flipped.
fn flipped(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// Every `step`-th bit position of `bytes`, starting at `first`.
fn bits(bytes: &[u8], first: usize, step: usize) -> impl Iterator<Item = usize> {
    (first..bytes.len() * 8).step_by(step)
}

fn le_u16(n: usize) -> [u8; 2] {
    u16::try_from(n)
        .expect("seed parts are small")
        .to_le_bytes()
}

#[test]
fn decode_record_corpus() {
    let real = real();
    let seg = &real.segments[1];
    let salt = &seg[SEG_SALT_OFFSET..SEG_SALT_OFFSET + 8];
    let mut inputs = random_inputs(SEED, 1500, 200);
    // The segment from its header, and each record frame, with every third
    // bit flipped, under each sealing flag.
    let mut frames = vec![seg.clone()];
    for piece in scan_segment(seg).pieces {
        if let Piece::Record { offset, record } = piece {
            let at = offset as usize;
            frames.push(seg[at..at + RECORD_HEADER_LEN + record.payload.len()].to_vec());
        }
    }
    for (i, frame) in frames.iter().enumerate() {
        for bit in bits(frame, i % 3, 3).take(120) {
            let mut input = salt.to_vec();
            // Flag bit 4 picks version 1 for the sealing flags.
            input.push((bit % 32) as u8);
            input.extend_from_slice(&flipped(frame, bit));
            inputs.push(input);
        }
    }
    for input in &inputs {
        check("decode_record", fuzz::decode_record, input);
    }
    eprintln!("decode_record: {} inputs", inputs.len());
}

#[test]
fn segment_reader_corpus() {
    let real = real();
    let mut inputs = random_inputs(SEED + 1, 800, 400);
    // The same lengths again, read as built-then-damaged segments.
    for mut input in random_inputs(SEED + 2, 400, 200) {
        input.insert(0, 1 | (input.len() as u8 & 6));
        inputs.push(input);
    }
    // Both real segments (shape 2: two raw segments), one bit flipped or the
    // tail cut.
    let [one, two] = &real.segments;
    let both = |one: &[u8], two: &[u8]| {
        let mut input = vec![2];
        input.extend_from_slice(&le_u16(one.len()));
        input.extend_from_slice(one);
        input.extend_from_slice(two);
        input
    };
    for bit in bits(one, 0, 11) {
        inputs.push(both(&flipped(one, bit), two));
    }
    for bit in bits(two, 5, 7) {
        inputs.push(both(one, &flipped(two, bit)));
    }
    for cut in (0..two.len()).step_by(5) {
        inputs.push(both(one, &two[..cut]));
    }
    for input in &inputs {
        check("segment_reader", fuzz::segment_reader, input);
    }
    eprintln!("segment_reader: {} inputs", inputs.len());
}

#[test]
fn replay_corpus() {
    let real = real();
    let mut inputs = random_inputs(SEED + 3, 120, 300);
    // Raw input: shape 8|4|3 is a raw state.json and two raw segments.
    let raw = |state: &[u8], one: &[u8], two: &[u8]| {
        let mut input = vec![8 | 4 | 3];
        input.extend_from_slice(&SEED.to_le_bytes());
        input.extend_from_slice(&le_u16(state.len()));
        input.extend_from_slice(state);
        input.extend_from_slice(&le_u16(one.len()));
        input.extend_from_slice(one);
        input.extend_from_slice(two);
        input
    };
    let Real {
        segments: [one, two],
        state,
    } = &real;
    inputs.push(raw(state, one, two));
    for bit in bits(two, 3, 29) {
        inputs.push(raw(state, one, &flipped(two, bit)));
    }
    for cut in (48..two.len()).step_by(23) {
        inputs.push(raw(state, one, &two[..cut]));
    }
    for bit in bits(one, 1, 97) {
        inputs.push(raw(state, &flipped(one, bit), two));
    }
    for bit in bits(state, 2, 83) {
        inputs.push(raw(&flipped(state, bit), one, two));
    }
    inputs.push(raw(b"", one, two));
    for input in &inputs {
        check("replay", fuzz::replay, input);
    }
    eprintln!("replay: {} inputs", inputs.len());
}

#[test]
fn model_corpus() {
    let inputs = random_inputs(SEED + 4, 120, 160);
    for input in &inputs {
        check("model", fuzz::model, input);
    }
    eprintln!("model: {} inputs", inputs.len());
}

/// Regression (found by the `replay` body): a journal whose only segment was
/// cut to its header, with `first_seq` 3 and no `state.json`, opened with
/// nothing applied. New records then restarted at sequence number 1, below
/// the header's, and the checkpoint wrote `journal_seq: 0`, so the next open
/// in the default mode refused: "records 1 to 2 are missing".
#[test]
fn a_header_only_segment_past_the_first_seq_survives_a_checkpoint() {
    let fs = SimFs::new(SEED);
    let header = SegmentHeader::new(1, 7, 3);
    fs.create_dir(JOURNAL_DIR).expect("mkdir");
    let name = format!("{JOURNAL_DIR}/{}", segment_name(1));
    let mut f = fs.open(&name, OpenMode::CreateNew).expect("create");
    f.write_all_at(0, &header.encode()).expect("write");
    let open = || {
        let opts = sim_options(RecoveryMode::TolerateTornTail);
        Store::open_with_fs(opts, Arc::new(fs.clone()), None)
    };
    let store = open().expect("open");
    assert_eq!(
        store.put_task(Task::new("a")).expect("put"),
        3,
        "numbers continue"
    );
    store.checkpoint().expect("checkpoint");
    drop(store);
    let store = open().expect("reopen after the checkpoint");
    assert_eq!(store.list_tasks().unwrap(), [Task::new("a")]);
}
