//! The journal's byte format: segment headers and record frames.
//!
//! Pure bytes, no I/O. `docs/format.md` draws the same layout; the constants
//! below are its source of truth in code.
//!
//! **Invariant:** a frame is valid only if its checksum, computed over the
//! segment's salt, the frame header after the checksum and the payload,
//! matches. Bytes left by an earlier segment carry another salt and never pass.

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STWALSEG";
/// The segment format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Offset of [`SEGMENT_MAGIC`] in the segment header.
pub const SEG_MAGIC_OFFSET: usize = 0;
/// Offset of the format version (u32 LE).
pub const SEG_VERSION_OFFSET: usize = SEG_MAGIC_OFFSET + 8;
/// Offset of the header length (u32 LE), always [`SEGMENT_HEADER_LEN`] in version 1.
pub const SEG_HEADER_LEN_OFFSET: usize = SEG_VERSION_OFFSET + 4;
/// Offset of the segment id (u64 LE), also the number in its file name.
pub const SEG_ID_OFFSET: usize = SEG_HEADER_LEN_OFFSET + 4;
/// Offset of the salt (u64 LE), fresh and random for each segment.
pub const SEG_SALT_OFFSET: usize = SEG_ID_OFFSET + 8;
/// Offset of the sequence number the segment's first record will carry (u64 LE).
pub const SEG_FIRST_SEQ_OFFSET: usize = SEG_SALT_OFFSET + 8;
/// Offset of the header checksum (u32 LE): CRC32 of bytes `0..SEG_CRC_OFFSET`.
pub const SEG_CRC_OFFSET: usize = SEG_FIRST_SEQ_OFFSET + 8;
/// Length of the segment header; records start here.
pub const SEGMENT_HEADER_LEN: usize = SEG_CRC_OFFSET + 4 + 4;
const _: () = assert!(SEGMENT_HEADER_LEN == 48);

/// Offset of a record's checksum (u32 LE).
pub const REC_CRC_OFFSET: usize = 0;
/// Offset of a record's payload length (u32 LE).
pub const REC_LEN_OFFSET: usize = REC_CRC_OFFSET + 4;
/// Offset of a record's sequence number (u64 LE).
pub const REC_SEQ_OFFSET: usize = REC_LEN_OFFSET + 4;
/// Offset of a record's kind (u8).
pub const REC_KIND_OFFSET: usize = REC_SEQ_OFFSET + 8;
/// Offset of the durability distance (u32 LE): when the record was written,
/// every record with a sequence number up to `seq - distance` was already
/// synced. Recovery uses it to tell a crash's unsynced tail from damage to
/// records that had been durable. Saturates at `u32::MAX`. Bytes 17..20 are zero.
pub const REC_SYNCED_DISTANCE_OFFSET: usize = REC_KIND_OFFSET + 1 + 3;
/// Length of a record header; the payload follows.
pub const RECORD_HEADER_LEN: usize = REC_SYNCED_DISTANCE_OFFSET + 4;
const _: () = assert!(RECORD_HEADER_LEN == 24);
/// The largest payload a record may claim. A length above this is damage,
/// checked before anything is allocated.
pub const RECORD_PAYLOAD_MAX: u32 = 64 * 1024 * 1024;

/// The largest record kind byte this code knows; kinds run from 1 to it.
pub const RECORD_KIND_MAX: u8 = RecordKind::Batch as u8;

/// What a record does. The payload of each kind is specified in `docs/format.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Payload: the task as JSON.
    PutTask = 1,
    /// Payload: the task id, UTF-8.
    DeleteTask = 2,
    /// Payload: the session record as JSON.
    PutSession = 3,
    /// Payload: the session id, UTF-8.
    DeleteSession = 4,
    /// Payload: id length (u16 LE), session id, log offset (u64 LE), text.
    AppendLog = 5,
    /// Payload: id length (u16 LE), report id, report JSON.
    SaveReport = 6,
    /// Payload: file name length (u16 LE), archive file name, line offset
    /// (u64 LE), the task's JSON line.
    ArchiveTask = 7,
    /// Payload: op count (u32 LE), then per op its kind (u8), payload length
    /// (u32 LE) and payload, each as its own record kind would hold it. Only
    /// kinds 1 to 4 may be inside; applied all or none. Format version 2 only.
    Batch = 9,
}

impl RecordKind {
    /// The kind for a byte read from disk.
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::PutTask,
            2 => RecordKind::DeleteTask,
            3 => RecordKind::PutSession,
            4 => RecordKind::DeleteSession,
            5 => RecordKind::AppendLog,
            6 => RecordKind::SaveReport,
            7 => RecordKind::ArchiveTask,
            9 => RecordKind::Batch,
            _ => return None,
        })
    }

    /// A short lowercase name, for dumps and messages.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::PutTask => "put_task",
            RecordKind::DeleteTask => "delete_task",
            RecordKind::PutSession => "put_session",
            RecordKind::DeleteSession => "delete_session",
            RecordKind::AppendLog => "append_log",
            RecordKind::SaveReport => "save_report",
            RecordKind::ArchiveTask => "archive_task",
            RecordKind::Batch => "batch",
        }
    }
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment id, also in its file name.
    pub id: u64,
    /// Mixed into every record checksum of this segment.
    pub salt: u64,
    /// The sequence number of the segment's first record.
    pub first_seq: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[SEG_MAGIC_OFFSET..SEG_MAGIC_OFFSET + 8].copy_from_slice(&SEGMENT_MAGIC);
        b[SEG_VERSION_OFFSET..SEG_VERSION_OFFSET + 4]
            .copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[SEG_HEADER_LEN_OFFSET..SEG_HEADER_LEN_OFFSET + 4]
            .copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[SEG_ID_OFFSET..SEG_ID_OFFSET + 8].copy_from_slice(&self.id.to_le_bytes());
        b[SEG_SALT_OFFSET..SEG_SALT_OFFSET + 8].copy_from_slice(&self.salt.to_le_bytes());
        b[SEG_FIRST_SEQ_OFFSET..SEG_FIRST_SEQ_OFFSET + 8]
            .copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[..SEG_CRC_OFFSET]);
        b[SEG_CRC_OFFSET..SEG_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(SegmentHeader::decode(&b), Ok(*self));
        b
    }

    /// Decodes and checks a header, saying what is wrong if it is not valid.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(format!(
                "segment header is {} bytes, expected {SEGMENT_HEADER_LEN}",
                b.len()
            ));
        }
        if b[..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        let crc = u32_at(b, SEG_CRC_OFFSET);
        if crc != crc32fast::hash(&b[..SEG_CRC_OFFSET]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32_at(b, SEG_VERSION_OFFSET);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported segment format version {version}"));
        }
        let header_len = u32_at(b, SEG_HEADER_LEN_OFFSET);
        if header_len as usize != SEGMENT_HEADER_LEN {
            return Err(format!("unexpected segment header length {header_len}"));
        }
        // The last four bytes are outside the checksum; version 1 writes
        // zeros there, so anything else is damage.
        if b[SEG_CRC_OFFSET + 4..SEGMENT_HEADER_LEN] != [0; 4] {
            return Err("reserved segment header bytes are not zero".into());
        }
        Ok(SegmentHeader {
            id: u64_at(b, SEG_ID_OFFSET),
            salt: u64_at(b, SEG_SALT_OFFSET),
            first_seq: u64_at(b, SEG_FIRST_SEQ_OFFSET),
        })
    }
}

/// One record as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Its kind byte (checked against [`RecordKind`] by the caller).
    pub kind: u8,
    /// Every record up to this sequence number was synced before this one
    /// was written.
    pub synced_before: u64,
    /// Its payload.
    pub payload: &'a [u8],
}

/// What [`decode_record`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, valid record of `len` bytes (header and payload).
    Record(RecordRef<'a>, usize),
    /// The buffer ends before the record does: a torn or unfinished write.
    Incomplete,
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

/// Appends one framed record to `out`.
///
/// `synced` is the highest sequence number known to be on stable storage
/// when the record is written (less than `seq`).
pub fn encode_record(
    out: &mut Vec<u8>,
    salt: u64,
    seq: u64,
    synced: u64,
    kind: RecordKind,
    payload: &[u8],
) {
    assert!(
        synced < seq,
        "a record cannot be synced before it is written"
    );
    assert!(
        payload.len() <= RECORD_PAYLOAD_MAX as usize,
        "payload over cap reached the codec"
    );
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    out.extend_from_slice(payload);
    let frame = &mut out[start..];
    frame[REC_LEN_OFFSET..REC_LEN_OFFSET + 4]
        .copy_from_slice(&(payload.len() as u32).to_le_bytes());
    frame[REC_SEQ_OFFSET..REC_SEQ_OFFSET + 8].copy_from_slice(&seq.to_le_bytes());
    frame[REC_KIND_OFFSET] = kind as u8;
    let distance = u32::try_from(seq - synced).unwrap_or(u32::MAX);
    frame[REC_SYNCED_DISTANCE_OFFSET..REC_SYNCED_DISTANCE_OFFSET + 4]
        .copy_from_slice(&distance.to_le_bytes());
    let crc = frame_crc(salt, frame);
    frame[REC_CRC_OFFSET..REC_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    debug_assert!(
        matches!(decode_record(&out[start..], salt), Decoded::Record(r, _) if r.seq == seq)
    );
}

/// Decodes the record at the start of `buf`.
pub fn decode_record(buf: &[u8], salt: u64) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return Decoded::Incomplete;
    }
    let len = u32_at(buf, REC_LEN_OFFSET);
    if len > RECORD_PAYLOAD_MAX {
        return Decoded::Invalid("record length over the cap");
    }
    let total = RECORD_HEADER_LEN + len as usize;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let frame = &buf[..total];
    if u32_at(frame, REC_CRC_OFFSET) != frame_crc(salt, frame) {
        return Decoded::Invalid("record checksum mismatch");
    }
    let seq = u64_at(frame, REC_SEQ_OFFSET);
    let record = RecordRef {
        seq,
        kind: frame[REC_KIND_OFFSET],
        synced_before: seq.saturating_sub(u64::from(u32_at(frame, REC_SYNCED_DISTANCE_OFFSET))),
        payload: &frame[RECORD_HEADER_LEN..],
    };
    Decoded::Record(record, total)
}

fn frame_crc(salt: u64, frame: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(&frame[REC_CRC_OFFSET + 4..]);
    h.finalize()
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("slice of 4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("slice of 8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_salt() {
        let mut out = Vec::new();
        encode_record(&mut out, 7, 42, 40, RecordKind::DeleteTask, b"abc");
        match decode_record(&out, 7) {
            Decoded::Record(r, n) => {
                assert_eq!(
                    (r.seq, r.kind, r.synced_before, r.payload, n),
                    (42, 2, 40, &b"abc"[..], out.len())
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode_record(&out, 8),
            Decoded::Invalid("record checksum mismatch")
        );
        assert_eq!(decode_record(&out[..out.len() - 1], 7), Decoded::Incomplete);
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            id: 3,
            salt: 99,
            first_seq: 17,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[SEG_FIRST_SEQ_OFFSET] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }
}
