//! Fuzz target bodies (feature `sim`): each takes arbitrary bytes and panics
//! if an invariant of statewal breaks.
//!
//! The bodies live in the library, not in `fuzz/`, so the same code runs
//! under libFuzzer (`cargo +nightly fuzz run <target>`, see `fuzz/`) and as
//! ordinary tests over a generated corpus (`tests/it/fuzz_corpus.rs`), and
//! so that the model checker also drives the proptest state machine
//! (`tests/it/model.rs`).
//!
//! | body | what it exercises |
//! |------|-------------------|
//! | [`decode_record`] | the segment-header and record-frame codec |
//! | [`segment_reader`] | `scan_segment`, `mark_durable` and `Op::decode` |
//! | [`replay`] | opening a store on arbitrary journal and `state.json` bytes, in every recovery mode |
//! | [`model`] | operations, crashes and reopens on a [`SimFs`] store against an in-memory model |
//!
//! Inputs are read with [`Input`], a byte-driven decoder that yields zeros
//! past the end, so every input is a valid program and the library needs no
//! `arbitrary` dependency. Where a checksum would stop a fuzzer from ever
//! reaching the code behind it, a flag in the input asks the body to seal
//! the frame with a correct checksum first (computed here from the formula
//! in `docs/format.md`, which also checks that formula against the code).
//!
//! Each body is a plain function: `statewal::sim::fuzz::replay(&bytes)` runs
//! one input and panics on a violation. (No doc test here: doc tests build
//! the library without the `sim` feature.)

mod model;

pub use model::{Choice, ModelOp, Mutate, check_model, model};

use crate::fs::sim::SimFs;
use crate::fs::{Fs, OpenMode};
use crate::journal::op::Op;
use crate::journal::reader::{Piece, SegmentScan, mark_durable, scan_segment};
use crate::journal::record::{
    self, Decoded, REC_CRC_OFFSET, REC_KIND_OFFSET, REC_LEN_OFFSET, REC_SEQ_OFFSET,
    REC_SYNCED_DISTANCE_OFFSET, RECORD_HEADER_LEN, RECORD_PAYLOAD_MAX, RecordKind,
    SEG_HEADER_LEN_OFFSET, SEG_VERSION_OFFSET, SEGMENT_HEADER_V1_LEN, SEGMENT_MAGIC, SegmentHeader,
    encode_record,
};
use crate::journal::{JOURNAL_DIR, segment_name};
use crate::{ErrorKind, Options, RecoveryMode, Store, Task};
use std::sync::Arc;

/// Reads values off the front of a fuzzer's input. Past the end every read
/// yields zeros (or an empty slice), so any byte string is a valid input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// An input over `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// The next two bytes as a little-endian `u16`, zero-padded.
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let got = self.bytes(2);
        b[..got.len()].copy_from_slice(got);
        u16::from_le_bytes(b)
    }

    /// The next eight bytes as a little-endian `u64`, zero-padded.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    /// One bit of the next byte.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A number in `0..n` (0 when `n` is 0), from one byte when `n` fits in
    /// one (so small choices cost one byte), else from eight.
    pub fn below(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            1..=256 => u64::from(self.u8()) % n,
            _ => self.u64() % n,
        }
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// A length byte (modulo `max + 1`), then up to that many bytes.
    pub fn short_bytes(&mut self, max: u8) -> &'a [u8] {
        let len = u16::from(self.u8()) % (u16::from(max) + 1);
        self.bytes(usize::from(len))
    }

    /// Every byte not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }
}

/// Input: `salt: u64 LE`, `flags: u8`, then the bytes to decode. Flag bit 0
/// seals the record frame at byte 0 with a correct checksum, bit 3 the one
/// right after the header, bit 1 writes a valid magic, version and header
/// length, bit 2 seals the segment-header checksum; bit 4 picks version 1
/// for bits 1 to 3 (else version 2).
pub fn decode_record(data: &[u8]) {
    // Invariants checked:
    // - `SegmentHeader::decode` and `record::decode_record` never panic, on
    //   any bytes and any salt;
    // - a decoded header (either version) re-encodes to the same bytes, and
    //   bytes that a header's encoding reproduces always decode;
    // - a decoded record is whole (`len == 24 + payload`, within the buffer),
    //   its checksum is the one `docs/format.md` defines, and a canonical
    //   frame (known kind, zero padding, distance in 1..=seq) re-encodes with
    //   `encode_record` to exactly the same bytes;
    // - a length field above `RECORD_PAYLOAD_MAX` is refused before use;
    // - `encode_record` of any fields decodes back to those fields.
    let mut input = Input::new(data);
    let salt = input.u64();
    let flags = input.u8();
    let mut buf = input.rest().to_vec();
    let version = if flags & 16 != 0 {
        record::FORMAT_VERSION_1
    } else {
        record::FORMAT_VERSION
    };
    let header_len = record::header_len_of(version);
    if flags & 2 != 0 && buf.len() >= header_len {
        buf[..8].copy_from_slice(&SEGMENT_MAGIC);
        buf[SEG_VERSION_OFFSET..SEG_VERSION_OFFSET + 4].copy_from_slice(&version.to_le_bytes());
        buf[SEG_HEADER_LEN_OFFSET..SEG_HEADER_LEN_OFFSET + 4]
            .copy_from_slice(&(header_len as u32).to_le_bytes());
    }
    if flags & 4 != 0 && buf.len() >= header_len {
        let crc_at = header_len - 8;
        let crc = crc32fast::hash(&buf[..crc_at]);
        buf[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }
    if flags & 1 != 0 {
        seal_record(&mut buf, salt);
    }
    if flags & 8 != 0 && buf.len() > header_len {
        seal_record(&mut buf[header_len..], salt);
    }
    check_header(&buf);
    check_record(&buf, salt);
    if buf.len() > header_len {
        check_record(&buf[header_len..], salt);
    }
    check_encode_round_trip(&mut Input::new(data));
}

/// Input: `shape: u8`, then segments. With shape bit 0 clear the segments
/// are raw bytes: `1 + (shape >> 1) % 3` of them, each but the last
/// prefixed by its length (`u16 LE`). With bit 0 set they are built from
/// the input as valid segments of valid records and then damaged (bit
/// flips, overwrites, cuts), also driven by the input.
pub fn segment_reader(data: &[u8]) {
    // Invariants checked:
    // - `scan_segment`, `mark_durable` and `Op::decode` never panic;
    // - a segment whose header does not decode has no pieces;
    // - the pieces tile the buffer in order, without gap or overlap, from
    //   the end of the header; whatever follows the last piece is all zeros
    //   (the clean end);
    // - a record or marker piece is the frame `decode_record` finds at its
    //   offset, damaged spans are not empty, and records after damage carry
    //   higher sequence numbers than any record before it;
    // - `mark_durable` marks a span durable exactly when a later record or
    //   marker in its segment vouches for it (`synced_before` or
    //   `synced_through >= first_seq`), or a later segment holds a record,
    //   or (same boot, last segment) the span is not an unfinished write,
    //   or the span is the rest of a segment whose resync budget ran out;
    // - the resync scan hashes no more than its budget;
    // - a payload that decodes re-encodes to one that decodes to the same
    //   kind and id.
    let mut input = Input::new(data);
    let shape = input.u8();
    let count = 1 + usize::from(shape >> 1) % 3;
    let segments = if shape & 1 == 0 {
        split_raw(&mut input, count)
    } else {
        build_segments(&mut input, count, true)
    };
    let same_boot = shape & 0x80 != 0;
    let mut scans: Vec<SegmentScan<'_>> = segments.iter().map(|s| scan_segment(s)).collect();
    for (buf, scan) in segments.iter().zip(&scans) {
        check_tiling(buf, scan);
        let budget = crate::journal::reader::RESYNC_CRC_BUDGET_FLOOR_BYTES
            + (2 + crate::journal::reader::RESYNC_CRC_BUDGET_FACTOR) * buf.len() as u64;
        assert!(scan.crc_bytes <= budget, "the scan overspent its budget");
    }
    mark_durable(&mut scans, same_boot);
    check_durable(&scans, same_boot);
    for piece in scans.iter().flat_map(|s| &s.pieces) {
        if let Piece::Record { record, .. } = piece {
            check_op(record.kind, record.payload);
        }
    }
}

/// Input: `shape: u8`, `seed: u64`, an optional `state.json` (shape bits
/// 0..2: none, a valid one, a valid one damaged, or raw bytes prefixed by
/// a `u16 LE` length), then `1 + (shape >> 2) % 2` journal segments, built
/// and damaged as in [`segment_reader`] (shape bit 3 clear) or raw (set;
/// each but the last prefixed by a `u16 LE` length).
pub fn replay(data: &[u8]) {
    // Invariants checked:
    // - opening a store on these files never panics, in any recovery mode;
    // - a failed open is `ErrorKind::Corrupt` (or `Io`) and names the file;
    //   point-in-time and salvage recovery always open;
    // - a successful open is followed by a successful checkpoint, and a
    //   reopen after it succeeds with the same tasks and sessions;
    // - if strict recovery opens, every mode opens to the same tasks.
    let mut input = Input::new(data);
    let shape = input.u8();
    let fs = SimFs::new(input.u64());
    let state = match shape & 3 {
        0 => None,
        1 => Some(state_json(&mut input)),
        2 => {
            let mut s = state_json(&mut input);
            damage(&mut input, &mut s);
            Some(s)
        }
        _ => {
            let len = usize::from(input.u16());
            Some(input.bytes(len).to_vec())
        }
    };
    let count = 1 + usize::from(shape >> 2) % 2;
    let segments = if shape & 8 == 0 {
        build_segments(&mut input, count, true)
    } else {
        split_raw(&mut input, count)
    };
    fs.create_dir(JOURNAL_DIR)
        .expect("a fresh SimFs has no faults");
    for (i, seg) in segments.iter().enumerate() {
        let name = format!("{JOURNAL_DIR}/{}", segment_name(i as u64 + 1));
        put_file(&fs, &name, seg);
    }
    if let Some(s) = &state {
        put_file(&fs, crate::layout::STATE_FILE, s);
    }
    fs.sync_dir(JOURNAL_DIR).expect("no faults");
    fs.sync_dir("").expect("no faults");
    check_every_mode(&fs);
}

/// The recovery modes, in order from the strictest.
pub const RECOVERY_MODES: [RecoveryMode; 4] = [
    RecoveryMode::Strict,
    RecoveryMode::TolerateTornTail,
    RecoveryMode::PointInTime,
    RecoveryMode::Salvage,
];

/// Options for a store on a [`SimFs`] in a fuzz body: no timer, no
/// checkpoint on drop (a drop is a crash), a small preallocation.
pub fn sim_options(mode: RecoveryMode) -> Options {
    Options::new("sim")
        .recovery_mode(mode)
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
        .journal_preallocate_bytes(256)
}

/// A small set of ids, so that operations collide.
pub const IDS: [&str; 4] = ["a", "b", "c", "d"];

fn check_every_mode(base: &SimFs) {
    type Seen = (Vec<Task>, Vec<crate::Session>);

    /// The tasks and sessions of an open store.
    fn read_all(store: &Store) -> Seen {
        let tasks = store
            .list_tasks()
            .expect("the journal engine reads from memory");
        let sessions = store
            .list_sessions()
            .expect("the journal engine reads from memory");
        (tasks, sessions)
    }
    let mut strict: Option<Seen> = None;
    for mode in RECOVERY_MODES {
        let fs = base.fork();
        let open = || Store::open_with_fs(sim_options(mode), Arc::new(fs.clone()), None);
        let store = match open() {
            Ok(store) => store,
            Err(e) => {
                assert!(
                    matches!(mode, RecoveryMode::Strict | RecoveryMode::TolerateTornTail),
                    "{mode:?} recovery must open what is left, but failed: {e:?}"
                );
                assert!(
                    matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Io),
                    "{mode:?}: an open failed with {e:?}"
                );
                assert!(e.path().is_some(), "{mode:?}: {e:?} names no file");
                continue;
            }
        };
        let seen: Seen = read_all(&store);
        if let Err(e) = store.checkpoint() {
            panic!("{mode:?}: the checkpoint after a successful open failed: {e:?}");
        }
        drop(store);
        let again = open().unwrap_or_else(|e| {
            panic!("{mode:?}: the reopen after a checkpoint failed: {e:?}");
        });
        let reopened: Seen = read_all(&again);
        assert_eq!(
            reopened, seen,
            "{mode:?}: a checkpoint and reopen changed the state"
        );
        match &strict {
            None if mode == RecoveryMode::Strict => strict = Some(seen),
            Some(s) => assert_eq!(&seen.0, &s.0, "strict opened, so {mode:?} must agree"),
            None => {}
        }
    }
}

fn put_file(fs: &SimFs, rel: &str, bytes: &[u8]) {
    let mut f = fs.open(rel, OpenMode::CreateNew).expect("no faults");
    f.write_all_at(0, bytes).expect("no faults");
    f.sync_data().expect("no faults");
}

/// A valid `state.json` with some tasks and a `journal_seq` from the input.
fn state_json(input: &mut Input<'_>) -> Vec<u8> {
    let tasks: Vec<Task> = IDS
        .iter()
        .filter(|_| input.bool())
        .map(|id| task(id, "from state.json"))
        .collect();
    let state = crate::PersistedState {
        version: crate::STATE_VERSION.to_string(),
        metrics: crate::Metrics::of(&tasks),
        tasks,
        sessions: Vec::new(),
        last_saved: "2025-07-01T10:00:00.000000000Z".into(),
        journal_seq: input.below(8),
        task_versions: Default::default(),
        store_id: None,
    };
    serde_json::to_vec_pretty(&state).expect("a state serializes")
}

fn task(id: &str, description: &str) -> Task {
    let mut t = Task::new(id);
    t.set_description(description);
    t
}

/// `count` raw segments: each but the last prefixed by a `u16` length.
fn split_raw(input: &mut Input<'_>, count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 1..count {
        let len = usize::from(input.u16());
        out.push(input.bytes(len).to_vec());
    }
    out.push(input.rest().to_vec());
    out
}

/// `count` consecutive valid segments (ids from 1, sequence numbers
/// continuing), each damaged by the input when `damaged`.
fn build_segments(input: &mut Input<'_>, count: usize, damaged: bool) -> Vec<Vec<u8>> {
    let mut seq = 1 + input.below(4);
    let mut out = Vec::new();
    for id in 1..=count as u64 {
        let salt = input.u64();
        let mut header = SegmentHeader::new(id, salt, seq);
        if input.bool() {
            header.store_id = Some([7; 16]);
            header.boot_id = Some([9; 16]);
        }
        let mut buf = header.encode();
        for _ in 0..input.below(8) {
            if input.below(4) == 0 {
                let m = record::Marker {
                    synced_through: seq - 1,
                    unix_ms: input.u64(),
                    boot_id: header.boot_id,
                };
                record::encode_marker(&mut buf, salt, &m);
            }
            let (kind, payload) = any_op(input);
            let synced = match input.below(4) {
                0 => 0,
                1 => seq.saturating_sub(1 + input.below(4)),
                _ => seq - 1,
            };
            encode_record(&mut buf, salt, seq, synced, kind, &payload);
            seq += 1;
        }
        buf.resize(buf.len() + 32 * input.below(4) as usize, 0);
        if damaged {
            damage(input, &mut buf);
        }
        out.push(buf);
    }
    out
}

/// The kind and payload of a valid op on the ids in [`IDS`], or, rarely,
/// on an id from the input (which may be one the store refuses: a task put
/// is encoded from its JSON, as a crafted record would be).
fn any_op(input: &mut Input<'_>) -> (RecordKind, Vec<u8>) {
    let kind = input.u8();
    let id = match kind >> 4 {
        0 => String::from_utf8_lossy(input.short_bytes(7)).into_owned(),
        n => IDS[usize::from(n) % IDS.len()].to_string(),
    };
    // `archive_task` is not generated yet: widening this table re-maps the
    // committed corpus, which then reaches a `put_task` with an id that is
    // not a valid path and fails salvage recovery (a gap to fix first).
    let op = match kind % 6 {
        0 => {
            let json = task(&id, &format!("v{}", input.u8())).to_json();
            return (RecordKind::PutTask, json);
        }
        1 => Op::DeleteTask(id),
        2 => Op::PutSession {
            session: serde_json::json!({ "id": id, "n": input.u8() }),
            id,
        },
        3 => Op::DeleteSession(id),
        4 => Op::AppendLog {
            session: id,
            offset: input.below(64),
            text: input.short_bytes(15).to_vec(),
        },
        _ => Op::SaveReport {
            id,
            report: serde_json::json!({ "step": input.u8() }),
        },
    };
    (op.kind(), op.encode())
}

/// Up to three edits driven by the input: flip a bit, overwrite a byte,
/// zero a range, or cut the buffer.
fn damage(input: &mut Input<'_>, buf: &mut Vec<u8>) {
    for _ in 0..input.below(4) {
        if buf.is_empty() {
            return;
        }
        let at = input.below(buf.len() as u64) as usize;
        match input.below(4) {
            0 => buf[at] ^= 1 << input.below(8),
            1 => buf[at] = input.u8(),
            2 => {
                let end = (at + 1 + input.below(64) as usize).min(buf.len());
                buf[at..end].fill(0);
            }
            _ => buf.truncate(at),
        }
    }
}

/// Writes the correct checksum into the record frame at the start of `buf`,
/// if the frame's length is within the cap and its bytes are all there.
fn seal_record(buf: &mut [u8], salt: u64) {
    if buf.len() < RECORD_HEADER_LEN {
        return;
    }
    let len = record::u32_at(buf, REC_LEN_OFFSET);
    if len > RECORD_PAYLOAD_MAX || buf.len() < RECORD_HEADER_LEN + len as usize {
        return;
    }
    let crc = format_crc(salt, &buf[..RECORD_HEADER_LEN + len as usize]);
    buf[REC_CRC_OFFSET..REC_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The record checksum as `docs/format.md` defines it, written
/// independently of `journal::record`:
/// `CRC32(salt.to_le_bytes() ‖ frame[4 .. 24 + length])`.
fn format_crc(salt: u64, frame: &[u8]) -> u32 {
    let mut bytes = salt.to_le_bytes().to_vec();
    bytes.extend_from_slice(&frame[4..]);
    crc32fast::hash(&bytes)
}

fn check_header(buf: &[u8]) {
    let decoded = SegmentHeader::decode(buf);
    if buf.len() < SEGMENT_HEADER_V1_LEN {
        assert!(decoded.is_err(), "a short header decoded: {decoded:?}");
        return;
    }
    let version = record::u32_at(buf, SEG_VERSION_OFFSET);
    let header_len = record::header_len_of(version);
    let known = version == record::FORMAT_VERSION || version == record::FORMAT_VERSION_1;
    if !known || buf.len() < header_len {
        assert!(
            decoded.is_err(),
            "an unknown or short header decoded: {decoded:?}"
        );
        return;
    }
    let id16 = |at: usize| {
        if version != record::FORMAT_VERSION {
            return None;
        }
        let id: [u8; 16] = buf[at..at + 16].try_into().expect("16 bytes");
        (id != [0; 16]).then_some(id)
    };
    let fields = SegmentHeader {
        version,
        id: record::u64_at(buf, 16),
        salt: record::u64_at(buf, 24),
        first_seq: record::u64_at(buf, 32),
        store_id: id16(record::SEG_STORE_ID_OFFSET),
        boot_id: id16(record::SEG_BOOT_ID_OFFSET),
        // A known cipher code with a nonzero key id; any other cipher
        // header re-encodes as zeros.
        cipher: (version == record::FORMAT_VERSION
            && (1..=record::CIPHER_CODE_MAX).contains(&buf[record::SEG_CIPHER_ALG_OFFSET])
            && record::u32_at(buf, record::SEG_CIPHER_KEY_ID_OFFSET) != 0)
            .then(|| record::SegmentCipher {
                code: buf[record::SEG_CIPHER_ALG_OFFSET],
                key_id: record::u32_at(buf, record::SEG_CIPHER_KEY_ID_OFFSET),
                salt: buf[record::SEG_CIPHER_SALT_OFFSET..record::SEG_CIPHER_SALT_OFFSET + 16]
                    .try_into()
                    .expect("16 bytes"),
            }),
    };
    // An unknown cipher code does not decode, whatever the rest.
    let known_cipher = version != record::FORMAT_VERSION
        || buf[record::SEG_CIPHER_ALG_OFFSET] <= record::CIPHER_CODE_MAX;
    let reencoded = fields.encode();
    // The reserved bytes after the CRC are outside it but must be zero, and
    // an unencrypted segment's cipher header must be zero, so a header is
    // valid exactly when its cipher code is known and it re-encodes to all
    // of its bytes.
    let same = known_cipher && reencoded[..] == buf[..header_len];
    match decoded {
        Ok(h) => {
            assert_eq!(h, fields, "decoded fields are the bytes' fields");
            assert!(same, "a decoded header does not re-encode to its bytes");
        }
        Err(why) => assert!(!same, "a header its encoding reproduces was refused: {why}"),
    }
}

fn check_record(buf: &[u8], salt: u64) {
    let decoded = record::decode_record(buf, salt);
    if buf.len() < RECORD_HEADER_LEN {
        assert_eq!(decoded, Decoded::Incomplete);
        return;
    }
    let len = record::u32_at(buf, REC_LEN_OFFSET);
    if len > RECORD_PAYLOAD_MAX {
        assert_eq!(decoded, Decoded::Invalid("record length over the cap"));
        return;
    }
    let total = RECORD_HEADER_LEN + len as usize;
    if buf.len() < total {
        assert_eq!(decoded, Decoded::Incomplete);
        return;
    }
    let crc_ok = record::u32_at(buf, REC_CRC_OFFSET) == format_crc(salt, &buf[..total]);
    let Decoded::Record(r, n) = decoded else {
        assert!(
            !crc_ok,
            "a frame with the right checksum was refused: {decoded:?}"
        );
        return;
    };
    assert!(crc_ok, "a record decoded with the wrong checksum");
    assert_eq!(n, total);
    assert_eq!(r.payload, &buf[RECORD_HEADER_LEN..n]);
    assert_eq!(r.seq, record::u64_at(buf, REC_SEQ_OFFSET));
    assert_eq!(r.kind, buf[REC_KIND_OFFSET]);
    assert!(r.synced_before <= r.seq);
    let distance = u64::from(record::u32_at(buf, REC_SYNCED_DISTANCE_OFFSET));
    let padding_zero = buf[REC_KIND_OFFSET + 1..REC_SYNCED_DISTANCE_OFFSET] == [0, 0, 0];
    if let Some(kind) = RecordKind::from_u8(r.kind)
        && padding_zero
        && (1..=r.seq).contains(&distance)
    {
        let mut out = Vec::new();
        encode_record(&mut out, salt, r.seq, r.synced_before, kind, r.payload);
        assert_eq!(out, &buf[..n], "a canonical record re-encodes differently");
    }
}

fn check_encode_round_trip(input: &mut Input<'_>) {
    let salt = input.u64();
    let seq = input.u64().max(1);
    let synced = input.u64() % seq;
    // The operation kinds (a sync marker has its own encoder).
    let kinds: Vec<RecordKind> = (1..=record::RECORD_KIND_MAX)
        .filter_map(RecordKind::from_u8)
        .collect();
    let kind = kinds[input.below(kinds.len() as u64) as usize];
    let payload = input.short_bytes(255);
    let mut out = vec![0xAA; usize::from(input.u8() % 4)];
    let start = out.len();
    encode_record(&mut out, salt, seq, synced, kind, payload);
    match record::decode_record(&out[start..], salt) {
        Decoded::Record(r, n) => {
            assert_eq!(n, out.len() - start);
            assert_eq!((r.seq, r.kind, r.payload), (seq, kind as u8, payload));
            // The distance saturates at u32::MAX: a record more than that
            // far ahead of the sync position claims a little more than was
            // synced, about records four billion back.
            let floor = seq.saturating_sub(u64::from(u32::MAX));
            assert_eq!(r.synced_before, synced.max(floor));
        }
        other => panic!("an encoded record did not decode: {other:?}"),
    }
}

fn check_tiling(buf: &[u8], scan: &SegmentScan<'_>) {
    let Ok(header) = &scan.header else {
        assert!(
            scan.pieces.is_empty(),
            "a segment without a header has pieces"
        );
        return;
    };
    let mut pos = header.len() as u64;
    let mut max_seq = header.first_seq.saturating_sub(1);
    let mut after_damage = false;
    for piece in &scan.pieces {
        match piece {
            Piece::Record { offset, record } => {
                assert_eq!(*offset, pos, "pieces must tile the segment");
                let at = *offset as usize;
                let again = record::decode_record(&buf[at..], header.salt);
                let len = RECORD_HEADER_LEN + record.payload.len();
                assert_eq!(again, Decoded::Record(*record, len));
                if after_damage {
                    assert!(
                        record.seq > max_seq,
                        "a record after damage went back in sequence"
                    );
                }
                after_damage = false;
                max_seq = max_seq.max(record.seq);
                pos += len as u64;
            }
            Piece::Marker { offset, marker } => {
                assert_eq!(*offset, pos, "pieces must tile the segment");
                let at = *offset as usize;
                match record::decode_record(&buf[at..], header.salt) {
                    Decoded::Record(r, len) => {
                        assert_eq!(record::parse_marker(&r), Some(*marker));
                        pos += len as u64;
                    }
                    other => panic!("a marker piece is not a frame: {other:?}"),
                }
            }
            Piece::Damaged { offset, end, .. } => {
                assert_eq!(*offset, pos, "pieces must tile the segment");
                assert!(end > offset, "an empty damaged span");
                after_damage = true;
                pos = *end;
            }
        }
    }
    assert!(pos as usize <= buf.len(), "pieces run past the segment");
    assert!(
        buf[pos as usize..].iter().all(|&b| b == 0),
        "non-zero bytes after the last piece at {pos}"
    );
}

fn check_durable(scans: &[SegmentScan<'_>], same_boot: bool) {
    for (s, scan) in scans.iter().enumerate() {
        let later_segment_records = scans[s + 1..].iter().any(|later| {
            later
                .pieces
                .iter()
                .any(|p| matches!(p, Piece::Record { .. }))
        });
        for (i, piece) in scan.pieces.iter().enumerate() {
            let Piece::Damaged {
                first_seq,
                durable,
                unfinished_write,
                ..
            } = piece
            else {
                continue;
            };
            let vouched = scan.pieces[i + 1..].iter().any(|p| match p {
                Piece::Record { record, .. } => record.synced_before >= *first_seq,
                Piece::Marker { marker, .. } => marker.synced_through >= *first_seq,
                Piece::Damaged { .. } => false,
            });
            let strict = same_boot && s + 1 == scans.len() && !unfinished_write;
            // The rest of a segment whose resync budget ran out hides what
            // could vouch for it: always durable.
            let swallowed = scan.budget_spent && i + 1 == scan.pieces.len();
            assert_eq!(
                *durable,
                vouched || later_segment_records || strict || swallowed,
                "segment {s}, piece {i}: durable flag disagrees with the later records"
            );
        }
    }
}

fn check_op(kind: u8, payload: &[u8]) {
    let Ok(op) = Op::decode(kind, payload) else {
        return;
    };
    assert_eq!(op.kind() as u8, kind);
    match Op::decode(kind, &op.encode()) {
        Ok(again) => assert_eq!((again.kind(), again.id()), (op.kind(), op.id())),
        Err(e) => panic!("a decoded op re-encodes to a payload that does not decode: {e}"),
    }
}
