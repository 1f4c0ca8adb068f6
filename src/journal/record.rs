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
/// The segment format this code writes. It reads this one and version 1.
pub const FORMAT_VERSION: u32 = 2;
/// The first segment format, still read (48-byte header, record kinds 1 to 7).
pub const FORMAT_VERSION_1: u32 = 1;

/// Offset of [`SEGMENT_MAGIC`] in the segment header (both versions).
pub const SEG_MAGIC_OFFSET: usize = 0;
/// Offset of the format version (u32 LE).
pub const SEG_VERSION_OFFSET: usize = SEG_MAGIC_OFFSET + 8;
/// Offset of the header length (u32 LE): [`SEGMENT_HEADER_V1_LEN`] or [`SEGMENT_HEADER_LEN`].
pub const SEG_HEADER_LEN_OFFSET: usize = SEG_VERSION_OFFSET + 4;
/// Offset of the segment id (u64 LE), also the number in its file name.
pub const SEG_ID_OFFSET: usize = SEG_HEADER_LEN_OFFSET + 4;
/// Offset of the salt (u64 LE), fresh and random for each segment.
pub const SEG_SALT_OFFSET: usize = SEG_ID_OFFSET + 8;
/// Offset of the sequence number the segment's first record will carry (u64 LE).
pub const SEG_FIRST_SEQ_OFFSET: usize = SEG_SALT_OFFSET + 8;

/// Version 1: offset of the header checksum (u32 LE), CRC32 of bytes `0..40`.
pub const SEG_V1_CRC_OFFSET: usize = SEG_FIRST_SEQ_OFFSET + 8;
/// Version 1: length of the segment header (4 zero bytes follow the checksum).
pub const SEGMENT_HEADER_V1_LEN: usize = SEG_V1_CRC_OFFSET + 4 + 4;
const _: () = assert!(SEGMENT_HEADER_V1_LEN == 48);

/// Version 2: offset of the store id (16 bytes), the same in every segment
/// and in `state.json` of one store.
pub const SEG_STORE_ID_OFFSET: usize = SEG_FIRST_SEQ_OFFSET + 8;
/// Version 2: offset of the boot id of the machine that created the segment
/// (16 bytes, all zero when unknown).
pub const SEG_BOOT_ID_OFFSET: usize = SEG_STORE_ID_OFFSET + 16;
/// Version 2: offset of the cipher algorithm (u8, 0 = not encrypted); the
/// three bytes after it are zero.
pub const SEG_CIPHER_ALG_OFFSET: usize = SEG_BOOT_ID_OFFSET + 16;
/// Version 2: offset of the cipher's key id (u32 LE, 0 when not encrypted).
pub const SEG_CIPHER_KEY_ID_OFFSET: usize = SEG_CIPHER_ALG_OFFSET + 4;
/// Version 2: offset of the cipher's per-segment salt (16 bytes, zero when
/// not encrypted).
pub const SEG_CIPHER_SALT_OFFSET: usize = SEG_CIPHER_KEY_ID_OFFSET + 4;
/// Version 2: offset of the header checksum (u32 LE), CRC32 of bytes `0..96`.
pub const SEG_CRC_OFFSET: usize = SEG_CIPHER_SALT_OFFSET + 16;
/// Version 2: length of the segment header; records start here. Four zero
/// bytes follow the checksum.
pub const SEGMENT_HEADER_LEN: usize = SEG_CRC_OFFSET + 4 + 4;
const _: () = assert!(SEG_CRC_OFFSET == 96 && SEGMENT_HEADER_LEN == 104);
const _: () =
    assert!(SEGMENT_HEADER_LEN.is_multiple_of(8) && SEGMENT_HEADER_V1_LEN.is_multiple_of(8));

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

/// The largest record kind a version-1 segment may hold.
pub const RECORD_KIND_MAX_V1: u8 = RecordKind::ArchiveTask as u8;
/// The kind byte of a sync marker (version 2 only): not an operation, see
/// [`encode_marker`].
pub const SYNC_MARKER_KIND: u8 = 8;
/// The kind byte reserved for the atomic batch record (version 2 only).
pub const BATCH_KIND: u8 = RecordKind::Batch as u8;
/// The largest record kind byte a version-2 segment may hold; kinds run from 1 to it.
pub const RECORD_KIND_MAX: u8 = BATCH_KIND;
const _: () = assert!(RECORD_KIND_MAX_V1 == 7 && SYNC_MARKER_KIND == RECORD_KIND_MAX_V1 + 1);

/// The payload length of a sync marker: synced-through sequence number (u64
/// LE), wall-clock unix milliseconds (u64 LE), boot id (16 bytes), tag.
pub const MARKER_PAYLOAD_LEN: usize = MARKER_TAG_OFFSET + 1;
/// Offset, in a marker's payload, of the wall-clock unix milliseconds.
pub const MARKER_UNIX_MS_OFFSET: usize = 8;
/// Offset, in a marker's payload, of the writer's boot id.
pub const MARKER_BOOT_ID_OFFSET: usize = MARKER_UNIX_MS_OFFSET + 8;
/// Offset, in a marker's payload, of [`MARKER_TAG`].
pub const MARKER_TAG_OFFSET: usize = MARKER_BOOT_ID_OFFSET + 16;
/// The last byte of every marker: nonzero, so a whole marker never ends in
/// a zero (the same-boot rule in `docs/recovery.md` relies on it).
pub const MARKER_TAG: u8 = 0x5a;
const _: () = assert!(MARKER_PAYLOAD_LEN == 33);
/// The whole frame of a sync marker.
pub const MARKER_FRAME_LEN: usize = RECORD_HEADER_LEN + MARKER_PAYLOAD_LEN;

/// Whether a record kind byte may appear in a segment of `version`.
pub fn kind_allowed(version: u32, kind: u8) -> bool {
    let max = if version == FORMAT_VERSION_1 {
        RECORD_KIND_MAX_V1
    } else {
        RECORD_KIND_MAX
    };
    (1..=max).contains(&kind)
}

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

/// A 128-bit id: a store's identity, or a machine boot's.
pub type Id128 = [u8; 16];

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// [`FORMAT_VERSION`] or [`FORMAT_VERSION_1`].
    pub version: u32,
    /// The segment id, also in its file name.
    pub id: u64,
    /// Mixed into every record checksum of this segment.
    pub salt: u64,
    /// The sequence number of the segment's first record.
    pub first_seq: u64,
    /// The store the segment belongs to; `None` in version 1 (and when a
    /// version-2 header holds zeros).
    pub store_id: Option<Id128>,
    /// The boot id of the machine that created the segment, if known.
    pub boot_id: Option<Id128>,
    /// How the segment's record payloads are sealed; `None` when they are
    /// not (always in version 1).
    pub cipher: Option<SegmentCipher>,
}

/// The cipher header of an encrypted segment (`docs/encryption.md`): which
/// cipher, which key, and the salt of the segment's subkey. The codec only
/// carries these bytes; `crate::crypto` gives them meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCipher {
    /// The cipher's code, never 0 (1 = XChaCha20-Poly1305, 2 = AES-256-GCM).
    pub code: u8,
    /// The id of the key that sealed the records.
    pub key_id: u32,
    /// The salt of the segment's subkey.
    pub salt: [u8; 16],
}

/// The cipher codes a segment header may hold (0 is "not encrypted").
pub const CIPHER_CODE_MAX: u8 = 2;

impl SegmentHeader {
    /// A version-2 header with no store id and no boot id.
    pub fn new(id: u64, salt: u64, first_seq: u64) -> SegmentHeader {
        SegmentHeader {
            version: FORMAT_VERSION,
            id,
            salt,
            first_seq,
            store_id: None,
            boot_id: None,
            cipher: None,
        }
    }

    /// The length of this header's encoding: where its records start.
    pub fn len(&self) -> usize {
        header_len_of(self.version)
    }

    /// Always false: a header has bytes (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The header's bytes, in its own version.
    pub fn encode(&self) -> Vec<u8> {
        let v1 = self.version == FORMAT_VERSION_1;
        assert!(
            v1 || self.version == FORMAT_VERSION,
            "unknown segment version reached the codec"
        );
        assert!(
            !v1 || (self.store_id.is_none() && self.boot_id.is_none() && self.cipher.is_none()),
            "a version-1 header has no ids"
        );
        let len = self.len();
        let mut b = vec![0u8; len];
        b[SEG_MAGIC_OFFSET..SEG_MAGIC_OFFSET + 8].copy_from_slice(&SEGMENT_MAGIC);
        b[SEG_VERSION_OFFSET..SEG_VERSION_OFFSET + 4].copy_from_slice(&self.version.to_le_bytes());
        b[SEG_HEADER_LEN_OFFSET..SEG_HEADER_LEN_OFFSET + 4]
            .copy_from_slice(&(len as u32).to_le_bytes());
        b[SEG_ID_OFFSET..SEG_ID_OFFSET + 8].copy_from_slice(&self.id.to_le_bytes());
        b[SEG_SALT_OFFSET..SEG_SALT_OFFSET + 8].copy_from_slice(&self.salt.to_le_bytes());
        b[SEG_FIRST_SEQ_OFFSET..SEG_FIRST_SEQ_OFFSET + 8]
            .copy_from_slice(&self.first_seq.to_le_bytes());
        let crc_at = if v1 {
            SEG_V1_CRC_OFFSET
        } else {
            b[SEG_STORE_ID_OFFSET..SEG_STORE_ID_OFFSET + 16]
                .copy_from_slice(&self.store_id.unwrap_or_default());
            b[SEG_BOOT_ID_OFFSET..SEG_BOOT_ID_OFFSET + 16]
                .copy_from_slice(&self.boot_id.unwrap_or_default());
            // Zero when not encrypted.
            if let Some(c) = &self.cipher {
                b[SEG_CIPHER_ALG_OFFSET] = c.code;
                b[SEG_CIPHER_KEY_ID_OFFSET..SEG_CIPHER_KEY_ID_OFFSET + 4]
                    .copy_from_slice(&c.key_id.to_le_bytes());
                b[SEG_CIPHER_SALT_OFFSET..SEG_CIPHER_SALT_OFFSET + 16].copy_from_slice(&c.salt);
            }
            SEG_CRC_OFFSET
        };
        let crc = crc32fast::hash(&b[..crc_at]);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(SegmentHeader::decode(&b), Ok(*self));
        b
    }

    /// Decodes and checks a header of either version, saying what is wrong
    /// if it is not valid.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_V1_LEN {
            return Err(format!(
                "segment header is {} bytes, expected at least {SEGMENT_HEADER_V1_LEN}",
                b.len()
            ));
        }
        if b[..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        let version = u32_at(b, SEG_VERSION_OFFSET);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
            return Err(format!("unsupported segment format version {version}"));
        }
        let len = header_len_of(version);
        if b.len() < len {
            return Err(format!(
                "segment header is {} bytes, expected {len}",
                b.len()
            ));
        }
        let crc_at = len - 8;
        let crc = u32_at(b, crc_at);
        if crc != crc32fast::hash(&b[..crc_at]) {
            return Err("segment header checksum mismatch".into());
        }
        let header_len = u32_at(b, SEG_HEADER_LEN_OFFSET);
        if header_len as usize != len {
            return Err(format!("unexpected segment header length {header_len}"));
        }
        // The last four bytes are outside the checksum; both versions write
        // zeros there, so anything else is damage.
        if b[crc_at + 4..len] != [0; 4] {
            return Err("reserved segment header bytes are not zero".into());
        }
        let mut h = SegmentHeader {
            version,
            id: u64_at(b, SEG_ID_OFFSET),
            salt: u64_at(b, SEG_SALT_OFFSET),
            first_seq: u64_at(b, SEG_FIRST_SEQ_OFFSET),
            store_id: None,
            boot_id: None,
            cipher: None,
        };
        if version == FORMAT_VERSION {
            let code = b[SEG_CIPHER_ALG_OFFSET];
            if code > CIPHER_CODE_MAX {
                return Err(format!(
                    "unknown cipher code {code} (key id {}): this build knows codes 1 to \
                     {CIPHER_CODE_MAX}",
                    u32_at(b, SEG_CIPHER_KEY_ID_OFFSET)
                ));
            }
            if b[SEG_CIPHER_ALG_OFFSET + 1..SEG_CIPHER_KEY_ID_OFFSET] != [0; 3] {
                return Err("reserved cipher header bytes are not zero".into());
            }
            if code == 0 {
                if b[SEG_CIPHER_ALG_OFFSET + 1..SEG_CRC_OFFSET]
                    .iter()
                    .any(|&x| x != 0)
                {
                    return Err("cipher header bytes of an unencrypted segment are not zero".into());
                }
            } else {
                let key_id = u32_at(b, SEG_CIPHER_KEY_ID_OFFSET);
                if key_id == 0 {
                    return Err(format!("encrypted segment (cipher {code}) with key id 0"));
                }
                h.cipher = Some(SegmentCipher {
                    code,
                    key_id,
                    salt: b[SEG_CIPHER_SALT_OFFSET..SEG_CIPHER_SALT_OFFSET + 16]
                        .try_into()
                        .expect("16 bytes"),
                });
            }
            h.store_id = id_at(b, SEG_STORE_ID_OFFSET);
            h.boot_id = id_at(b, SEG_BOOT_ID_OFFSET);
        }
        Ok(h)
    }
}

/// The header length of a segment format version (the current one for an
/// unknown version).
pub fn header_len_of(version: u32) -> usize {
    if version == FORMAT_VERSION_1 {
        SEGMENT_HEADER_V1_LEN
    } else {
        SEGMENT_HEADER_LEN
    }
}

/// The 16 bytes at `at`, or `None` when they are all zero (unknown).
fn id_at(b: &[u8], at: usize) -> Option<Id128> {
    let id: Id128 = b[at..at + 16].try_into().expect("slice of 16 bytes");
    (id != [0; 16]).then_some(id)
}

/// An id as 32 lowercase hex digits, as `state.json` and messages show it.
pub fn id_hex(id: &Id128) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 32 lowercase hex digits.
pub fn parse_id_hex(s: &str) -> Option<Id128> {
    if s.len() != 32 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// A sync marker as read back (see [`encode_marker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Every record up to this sequence number was synced before the marker
    /// was written.
    pub synced_through: u64,
    /// The writer's wall clock when it wrote the marker, in unix milliseconds.
    pub unix_ms: u64,
    /// The writer's boot id, if it knew it.
    pub boot_id: Option<Id128>,
}

/// Appends a sync marker frame: record kind [`SYNC_MARKER_KIND`] whose frame
/// sequence number is `marker.synced_through` with distance 0. It takes no
/// sequence number of its own.
pub fn encode_marker(out: &mut Vec<u8>, salt: u64, marker: &Marker) {
    let start = out.len();
    out.extend_from_slice(&[0u8; MARKER_FRAME_LEN]);
    let frame = &mut out[start..];
    frame[REC_LEN_OFFSET..REC_LEN_OFFSET + 4]
        .copy_from_slice(&(MARKER_PAYLOAD_LEN as u32).to_le_bytes());
    frame[REC_SEQ_OFFSET..REC_SEQ_OFFSET + 8].copy_from_slice(&marker.synced_through.to_le_bytes());
    frame[REC_KIND_OFFSET] = SYNC_MARKER_KIND;
    let p = &mut frame[RECORD_HEADER_LEN..];
    p[..8].copy_from_slice(&marker.synced_through.to_le_bytes());
    p[MARKER_UNIX_MS_OFFSET..MARKER_UNIX_MS_OFFSET + 8]
        .copy_from_slice(&marker.unix_ms.to_le_bytes());
    p[MARKER_BOOT_ID_OFFSET..MARKER_BOOT_ID_OFFSET + 16]
        .copy_from_slice(&marker.boot_id.unwrap_or_default());
    p[MARKER_TAG_OFFSET] = MARKER_TAG;
    let crc = frame_crc(salt, frame);
    frame[REC_CRC_OFFSET..REC_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    debug_assert!(matches!(
        decode_record(&out[start..], salt),
        Decoded::Record(r, MARKER_FRAME_LEN) if parse_marker(&r) == Some(*marker)
    ));
}

/// The marker a checksummed frame of kind [`SYNC_MARKER_KIND`] holds, or
/// `None` if its fields disagree (then it is damage).
pub fn parse_marker(r: &RecordRef<'_>) -> Option<Marker> {
    let p = r.payload;
    let well_formed = r.kind == SYNC_MARKER_KIND
        && p.len() == MARKER_PAYLOAD_LEN
        && p[MARKER_TAG_OFFSET] == MARKER_TAG
        && r.synced_before == r.seq
        && u64_at(p, 0) == r.seq;
    well_formed.then(|| Marker {
        synced_through: r.seq,
        unix_ms: u64_at(p, MARKER_UNIX_MS_OFFSET),
        boot_id: id_at(p, MARKER_BOOT_ID_OFFSET),
    })
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
        let mut h = SegmentHeader::new(3, 99, 17);
        h.store_id = Some([7; 16]);
        h.boot_id = Some([9; 16]);
        let mut b = h.encode();
        assert_eq!(b.len(), SEGMENT_HEADER_LEN);
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[SEG_FIRST_SEQ_OFFSET] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
        // Version 1 still decodes, with no ids.
        let v1 = SegmentHeader {
            version: FORMAT_VERSION_1,
            store_id: None,
            boot_id: None,
            ..h
        };
        let b = v1.encode();
        assert_eq!(b.len(), SEGMENT_HEADER_V1_LEN);
        assert_eq!(SegmentHeader::decode(&b), Ok(v1));
    }

    #[test]
    fn a_cipher_header_round_trips_and_bad_ones_are_refused() {
        let mut h = SegmentHeader::new(1, 2, 3);
        h.cipher = Some(SegmentCipher {
            code: 2,
            key_id: 0xdead_beef,
            salt: [9; 16],
        });
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let reseal = |b: &mut Vec<u8>| {
            let crc = crc32fast::hash(&b[..SEG_CRC_OFFSET]);
            b[SEG_CRC_OFFSET..SEG_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        };
        let cases: [(usize, u8, &str); 4] = [
            (SEG_CIPHER_ALG_OFFSET, 3, "unknown cipher code 3"),
            (SEG_CIPHER_ALG_OFFSET + 1, 1, "reserved cipher header bytes"),
            (
                SEG_CIPHER_ALG_OFFSET,
                0,
                "of an unencrypted segment are not zero",
            ),
            (SEG_CIPHER_KEY_ID_OFFSET, 0, ""),
        ];
        for (at, value, why) in cases {
            let mut b = h.encode();
            b[at] = value;
            if at == SEG_CIPHER_KEY_ID_OFFSET {
                b[at..at + 4].copy_from_slice(&[0; 4]);
            }
            reseal(&mut b);
            let err = SegmentHeader::decode(&b).unwrap_err();
            let why = if why.is_empty() { "key id 0" } else { why };
            assert!(err.contains(why), "{at}: {err}");
        }
    }

    #[test]
    fn marker_round_trip_ends_in_its_tag() {
        let m = Marker {
            synced_through: 41,
            unix_ms: 1_700_000_000_000,
            boot_id: Some([3; 16]),
        };
        let mut out = Vec::new();
        encode_marker(&mut out, 5, &m);
        assert_eq!(out.len(), MARKER_FRAME_LEN);
        assert_eq!(out.last(), Some(&MARKER_TAG));
        match decode_record(&out, 5) {
            Decoded::Record(r, _) => assert_eq!(parse_marker(&r), Some(m)),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_id_hex(&id_hex(&[0xab; 16])), Some([0xab; 16]));
        assert_eq!(parse_id_hex("AB"), None);
    }
}
