//! Issue 8, part 1: acknowledged records are never dropped silently.
//!
//! The bug: a bit flipped in the last synced batch looked like a torn tail
//! (no later record vouched for it) and was cut with a WARN line, losing up
//! to a whole group-commit batch of acknowledged records. Now a sync marker
//! written after each sync vouches for the batch, and in the same boot only
//! an unfinished write at the very end may be cut.

use crate::util::*;
use statewal::__internal::fs::{Fs, RealFs};
use statewal::__internal::journal::reader::{Piece, scan_segment};
use statewal::__internal::journal::record::RECORD_HEADER_LEN;
use statewal::__internal::verify::{FindingClass, verify};
use statewal::sim::{Outcome, PendingKind, SimFs, TearFill};
use statewal::{ErrorKind, Mutation, Options, Store};
use std::path::Path;
use std::sync::Arc;

/// Puts `before` tasks one by one, then `batch` tasks submitted together and
/// acknowledged by one sync; the store then "dies" without a checkpoint.
fn store_with_batch(dir: &Path, before: usize, batch: usize) -> Vec<(u64, u64)> {
    // No preallocated zeros: each of the thousands of opens below reads the
    // whole segment.
    let store = Store::open(crash_opts(dir).journal_preallocate_bytes(0)).expect("open");
    put_all(&store, &ids("a", before));
    let pending: Vec<_> = ids("b", batch)
        .iter()
        .map(|id| store.submit(Mutation::PutTask(task(id))).expect("submit"))
        .collect();
    for p in pending {
        p.wait().expect("acknowledged");
    }
    drop(store);
    let spans = record_spans(&only_segment(dir));
    spans[spans.len() - batch..].to_vec()
}

/// `Store::open` in the default mode, retried while the directory is
/// `Locked`: a child process that a test running beside this one spawns
/// shares our lock's open file until it execs (the lock file is
/// close-on-exec, but fork comes first), so a fast reopen can see it held.
fn open_retrying(dir: &Path) -> statewal::Result<Store> {
    for _ in 0..200 {
        match Store::open(opts(dir)) {
            Err(e) if e.kind() == ErrorKind::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
    Store::open(opts(dir))
}

/// Flips every bit of `spans` in `seg` in turn and checks that the default
/// open refuses, naming the file, an offset in the batch and "corrupt", and
/// that verify calls the damage corrupt. Returns the number of flips.
fn every_flip_is_refused(dir: &Path, spans: &[(u64, u64)]) -> u64 {
    let seg = only_segment(dir);
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    let (first, last) = (spans[0].0, spans[spans.len() - 1].1);
    let mut flips = 0;
    for &(start, end) in spans {
        for at in start..end {
            for bit in 0..8 {
                flip_bit(&seg, at, bit);
                let what = format!("bit {bit} of byte {at} (batch {first}..{last})");
                let err = match open_retrying(dir) {
                    Ok(_) => panic!("{what}: the default open accepted a damaged synced batch"),
                    Err(e) => e,
                };
                assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
                let msg = err.to_string();
                assert!(
                    msg.contains("corrupt") && msg.contains(&name),
                    "{what}: {msg}"
                );
                let offset = err.offset().expect("an offset");
                assert!(
                    (first..last).contains(&offset),
                    "{what}: offset {offset}: {msg}"
                );
                assert!(msg.contains(&format!("byte {offset}")), "{what}: {msg}");
                let report = verify(&RealFs::existing(dir).unwrap()).unwrap();
                assert!(
                    report
                        .findings
                        .iter()
                        .any(|f| f.class == FindingClass::Corrupt && f.file.ends_with(&name)),
                    "{what}: verify did not call it corrupt: {:?}",
                    report.findings
                );
                flip_bit(&seg, at, bit);
                flips += 1;
            }
        }
    }
    flips
}

// Guards part 1 through the library, single writer: every bit of a synced,
// acknowledged batch of 8 records, flipped in turn, makes the default open
// refuse instead of cutting the batch as a torn tail.
#[test]
fn a_flipped_bit_in_a_synced_batch_is_corrupt_not_torn() {
    let dir = scratch();
    let spans = store_with_batch(dir.path(), 3, 8);
    let flips = every_flip_is_refused(dir.path(), &spans);
    eprintln!("library: {flips} flips in a synced batch of 8 records, each refused");
    // Untouched, the store opens with everything.
    let store = Store::open(opts(dir.path())).unwrap();
    let mut all = ids("a", 3);
    all.extend(ids("b", 8));
    check_tasks(&store, &all);
}

/// Starts `serve --stdio`, pipelines `n` puts, waits for every `ok`, and
/// kills the server with SIGKILL. Returns the spans of the `n` records.
fn serve_puts_and_kill(dir: &Path, n: usize) -> Vec<(u64, u64)> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let mut child = statewal_command(dir)
        .args(["serve", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut requests = String::new();
    for i in 0..n {
        let t = serde_json::to_string(&task(&format!("s{i}"))).unwrap();
        requests.push_str(&format!(r#"{{"req":{i},"op":"put_task","task":{t}}}"#));
        requests.push('\n');
    }
    stdin.write_all(requests.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for i in 0..n {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains(r#""ok":true"#), "answer {i}: {line}");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);
    // Cut the preallocated zeros after the last frame (the clean end either
    // way), so that each of the thousands of opens below reads less.
    let seg = only_segment(dir);
    let bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(end as u64)
        .unwrap();
    let spans = record_spans(&only_segment(dir));
    assert_eq!(spans.len(), n, "one record per put");
    spans
}

// Guards part 1 as the issue reproduced it: puts pipelined into
// `serve --stdio`, every answer `ok`, SIGKILL, then one bit flipped. The
// default open used to cut the rest as a torn tail and exit 0. CI flips every
// bit of 8 records; STATEWAL_FLIP_LONG=1 does it for 300.
#[test]
fn serve_killed_after_acknowledging_then_any_flipped_bit_is_refused() {
    let long = std::env::var_os("STATEWAL_FLIP_LONG").is_some();
    let n = if long { 300 } else { 8 };
    let dir = scratch();
    let spans = serve_puts_and_kill(dir.path(), n);
    // Through the binary once per record: `list` refuses and `verify` says corrupt.
    let seg = only_segment(dir.path());
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    for &(start, end) in spans.iter().step_by((n / 8).max(1)) {
        let at = start + (end - start) / 2;
        flip_bit(&seg, at, 3);
        let list = run_statewal(dir.path(), &["list"], "", &[]);
        let stderr = String::from_utf8_lossy(&list.stderr);
        assert!(!list.status.success(), "list accepted a flip at {at}");
        assert!(
            stderr.contains("corrupt") && stderr.contains(&name) && stderr.contains("byte"),
            "{stderr}"
        );
        let v = run_statewal(dir.path(), &["verify"], "", &[]);
        let out = String::from_utf8_lossy(&v.stdout);
        assert_eq!(v.status.code(), Some(1), "verify: {out}");
        assert!(out.contains("corrupt"), "{out}");
        flip_bit(&seg, at, 3);
    }
    let flips = every_flip_is_refused(dir.path(), &spans);
    eprintln!("serve --stdio: {n} acknowledged puts, SIGKILL, {flips} bit flips, each refused");
    let store = Store::open(opts(dir.path())).unwrap();
    check_tasks(&store, &ids("s", n));
}

fn sim_opts() -> Options {
    Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
}

/// A SimFs store holding `before` single puts and then a batch of 8, whose
/// marker is still unsynced. The store is left open (dropped without a
/// checkpoint) so its pending writes are what power loss may take.
fn sim_store_with_batch(before: usize) -> SimFs {
    let fs = SimFs::new(7);
    let store = Store::open_with_fs(sim_opts(), Arc::new(fs.clone()), None).unwrap();
    put_all(&store, &ids("a", before));
    let pending: Vec<_> = ids("b", 8)
        .iter()
        .map(|id| store.submit(Mutation::PutTask(task(id))).unwrap())
        .collect();
    for p in pending {
        p.wait().unwrap();
    }
    drop(store);
    fs
}

// Guards the other direction of part 1: the marker is not synced, so power
// loss may lose or tear it. Every such outcome must still open, with every
// acknowledged record (a new boot: the same-boot rule does not apply).
#[test]
fn a_marker_lost_or_torn_by_power_loss_still_opens() {
    let fs = sim_store_with_batch(3);
    let items = fs.pending();
    let (index, tear_points) = items
        .iter()
        .find_map(|i| match &i.kind {
            PendingKind::FileData { tear_points, .. } if i.description.contains("journal/") => {
                Some((i.index, tear_points.clone()))
            }
            _ => None,
        })
        .expect("the marker is pending");
    let mut all = ids("a", 3);
    all.extend(ids("b", 8));
    let mut outcomes = vec![Outcome::Lost];
    for at in tear_points {
        for fill in [TearFill::Nothing, TearFill::Zeros, TearFill::Garbage] {
            outcomes.push(Outcome::Torn { at, fill });
        }
    }
    for outcome in outcomes {
        let after = fs.crash_with(|i| {
            if i.index == index {
                outcome
            } else {
                Outcome::Kept
            }
        });
        let store = Store::open_with_fs(sim_opts(), Arc::new(after), None)
            .unwrap_or_else(|e| panic!("{outcome:?}: {e}"));
        check_tasks(&store, &all);
    }
}

// Guards the same-boot rule's allowance: a process killed in the middle of
// writing its last batch (never acknowledged) leaves a record cut short with
// zeros after it; the reopen in the same boot cuts it and opens.
#[test]
fn a_cut_short_last_record_after_a_kill_opens_in_the_same_boot() {
    let fs = SimFs::new(9);
    let store = Store::open_with_fs(sim_opts(), Arc::new(fs.clone()), None).unwrap();
    put_all(&store, &ids("a", 4));
    drop(store);
    let seg = "journal/00000000000000000001.wal";
    let bytes = fs.read(seg).unwrap().unwrap().to_vec();
    let scan = scan_segment(&bytes);
    let Some(Piece::Record { offset, record }) = scan
        .pieces
        .iter()
        .rev()
        .find(|p| matches!(p, Piece::Record { .. }))
    else {
        panic!("no records")
    };
    let start = *offset as usize;
    let end = start + RECORD_HEADER_LEN + record.payload.len();
    // The last record was being written: its marker never came, and its
    // frame stops partway (header written, payload cut).
    for cut in [start + 10, start + 30] {
        let killed = fs.restart();
        killed.corrupt(seg, |b| b[cut..].fill(0));
        assert_eq!(killed.boot_id(), fs.boot_id(), "a kill keeps the boot");
        let store = Store::open_with_fs(sim_opts(), Arc::new(killed.clone()), None)
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        check_tasks(&store, &ids("a", 3));
        // The same damage in a whole frame (a flipped bit, not a cut) is
        // refused in the same boot.
        drop(store);
        // Its marker is gone too, so only the same-boot rule can tell.
        let flipped = fs.restart();
        flipped.corrupt(seg, |b| {
            b[end..].fill(0);
            b[start + 30] ^= 1;
        });
        let err = Store::open_with_fs(sim_opts(), Arc::new(flipped.clone()), None).map(drop);
        let msg = check_err(err, ErrorKind::Corrupt);
        assert!(msg.contains("corrupt") && msg.contains(seg), "{msg}");
        // After a power loss (a new boot) the same bytes are a torn tail:
        // the unsynced last write may come back damaged.
        let rebooted = flipped.crash_with(|_| Outcome::Kept);
        let store = Store::open_with_fs(sim_opts(), Arc::new(rebooted), None).unwrap();
        check_tasks(&store, &ids("a", 3));
    }
}

// Review bug (part 1, same boot, any policy): under `OsBuffered` the last
// acknowledged record has no marker after it, so only the same-boot rule
// protects it. A bit flipped upward in its length field made the whole
// frame claim to run past its nonzero bytes, which is the shape of an
// unfinished write: the reopen in the same boot cut the acknowledged record
// as a torn tail instead of refusing.
#[test]
fn a_flip_in_the_last_whole_frame_that_mimics_a_cut_is_corrupt_in_the_same_boot() {
    let fs = SimFs::new(11);
    let opts = || sim_opts().sync_policy(statewal::SyncPolicy::OsBuffered);
    let store = Store::open_with_fs(opts(), Arc::new(fs.clone()), None).unwrap();
    store
        .put_session(serde_json::json!({"id": "s", "user": "u"}))
        .unwrap();
    store.append_log("s", "first line ").unwrap();
    store.append_log("s", "last line ").unwrap();
    drop(store);
    let seg = "journal/00000000000000000001.wal";
    let bytes = fs.read(seg).unwrap().unwrap().to_vec();
    let scan = scan_segment(&bytes);
    // Every flush now ends with a marker, even without a sync; the last
    // record is the one before it.
    assert!(
        matches!(scan.pieces.last(), Some(Piece::Marker { .. })),
        "a write that does not sync ends with a marker"
    );
    let Some(Piece::Record { offset, record }) = scan
        .pieces
        .iter()
        .rev()
        .find(|p| matches!(p, Piece::Record { .. }))
    else {
        unreachable!("the segment holds records")
    };
    let start = *offset as usize;
    assert!(record.payload.ends_with(b" "));
    let len_at = start + statewal::__internal::journal::record::REC_LEN_OFFSET;
    let edits = [
        ("length bit 16 set", len_at + 2, 1u8),
        ("length bit 10 set", len_at + 1, 4),
        ("length bit 25 set", len_at + 3, 2),
    ];
    for (what, byte, bit) in edits {
        let killed = fs.restart();
        killed.corrupt(seg, |b| b[byte] ^= bit);
        assert_eq!(killed.boot_id(), fs.boot_id(), "a kill keeps the boot");
        check_refused(&killed, opts(), seg, what);
    }
}

// Review bug (parts 1 and 4): once the resync checksum budget is spent, the
// rest of the segment is one damaged span, and the markers and records in
// it can no longer vouch for it. A log text holding a few plausible frame
// headers with long lengths spends the budget after one bit flipped in its
// record; across a restart the span then looked like an unvouched torn tail
// and every later acknowledged, synced, marker-vouched record was cut.
#[test]
fn a_spent_resync_budget_never_cuts_vouched_records_as_a_torn_tail() {
    let fs = SimFs::new(13);
    let store = Store::open_with_fs(sim_opts(), Arc::new(fs.clone()), None).unwrap();
    store
        .put_session(serde_json::json!({"id": "s", "user": "u"}))
        .unwrap();
    // A plausible frame header: checksum, length 0x000E0000, sequence far
    // ahead, kind 1 and zero padding, a distance. All ASCII, so valid UTF-8.
    let mut fake = Vec::new();
    fake.extend_from_slice(b"AAAA");
    fake.extend_from_slice(&0x000E_0000u32.to_le_bytes());
    fake.extend_from_slice(&[1u8; 8]);
    fake.extend_from_slice(&[1, 0, 0, 0]);
    fake.extend_from_slice(&[1, 1, 1, 1]);
    let mut text = b"hello ".to_vec();
    for _ in 0..8 {
        text.extend_from_slice(&fake);
    }
    store
        .append_log("s", std::str::from_utf8(&text).unwrap())
        .unwrap();
    put_all(&store, &ids("a", 5));
    drop(store);
    let seg = "journal/00000000000000000001.wal";
    let bytes = fs.read(seg).unwrap().unwrap().to_vec();
    let at = bytes
        .windows(6)
        .position(|w| w == b"hello ")
        .expect("the log text");
    let flipped = fs.restart();
    flipped.corrupt(seg, |b| b[at] ^= 1);
    // A power loss that kept every byte: a new boot, so only vouching counts.
    let rebooted = flipped.crash_with(|_| Outcome::Kept);
    let damaged = rebooted.read(seg).unwrap().unwrap().to_vec();
    assert!(
        scan_segment(&damaged).budget_spent,
        "the text spends the budget"
    );
    check_refused(&rebooted, sim_opts(), seg, "");
}

// Review bug (part 1, "same boot, any policy"): under `OsBuffered` the last
// acknowledged record had no marker after it, so a whole last frame whose
// own last bytes are zeros (a log text ending in NULs) with a bit flipped
// had exactly the shape of a write cut short there, and an open in the same
// boot cut the acknowledged record as a torn tail. Every write that does not
// sync now ends with a marker.
#[test]
fn a_flipped_last_record_ending_in_zeros_is_corrupt_under_os_buffered() {
    let fs = SimFs::new(17);
    let opts = || sim_opts().sync_policy(statewal::SyncPolicy::OsBuffered);
    let store = Store::open_with_fs(opts(), Arc::new(fs.clone()), None).unwrap();
    store.append_log("s", "first\n").unwrap();
    store.append_log("s", "last\0\0\0\0").unwrap();
    drop(store);
    let seg = "journal/00000000000000000001.wal";
    let bytes = fs.read(seg).unwrap().unwrap().to_vec();
    let scan = scan_segment(&bytes);
    let Some((start, len)) = scan.pieces.iter().rev().find_map(|p| match p {
        Piece::Record { offset, record } => Some((
            *offset as usize,
            statewal::__internal::journal::record::RECORD_HEADER_LEN + record.payload.len(),
        )),
        _ => None,
    }) else {
        unreachable!("the segment holds records")
    };
    // A bit in the text before its trailing zeros.
    let byte = start + len - 6;
    let killed = fs.restart();
    killed.corrupt(seg, |b| b[byte] ^= 0x01);
    assert_eq!(killed.boot_id(), fs.boot_id(), "a kill keeps the boot");
    check_refused(&killed, opts(), seg, "");
}

/// The default open refuses `fs` as corrupt, naming `seg`, and `verify`
/// calls the damage corrupt too.
fn check_refused(fs: &SimFs, opts: Options, seg: &str, what: &str) {
    let err = Store::open_with_fs(opts, Arc::new(fs.clone()), None).map(drop);
    let msg = check_err(err, ErrorKind::Corrupt);
    assert!(
        msg.contains("corrupt") && msg.contains(seg),
        "{what}: {msg}"
    );
    let report = verify(fs).unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.class == FindingClass::Corrupt),
        "{what}: verify {:?}",
        report.findings
    );
}
