//! Reading a segment back: split its bytes into valid records and damaged spans.
//!
//! Pure bytes, no I/O; recovery and `verify` decide what a damaged span means.
//!
//! A damaged span is either the unsynced tail a crash may tear (records that
//! were never acknowledged as durable under `SyncBeforeAck`) or damage to
//! bytes that had been durable. The two look alike; what tells them apart is
//! a later record's `synced_before`: a record written after the damaged
//! records were synced proves they had been durable ([`mark_durable`]).

use super::record::{
    Decoded, FORMAT_VERSION, MARKER_PAYLOAD_LEN, Marker, REC_KIND_OFFSET, REC_LEN_OFFSET,
    REC_SEQ_OFFSET, REC_SYNCED_DISTANCE_OFFSET, RECORD_HEADER_LEN, RECORD_PAYLOAD_MAX, RecordRef,
    SYNC_MARKER_KIND, SegmentHeader, decode_record, kind_allowed, parse_marker, u32_at, u64_at,
};

/// The resync scan may hash at most this many bytes per byte of segment...
pub const RESYNC_CRC_BUDGET_FACTOR: u64 = 2;
/// ...plus this many, before the rest of the segment becomes one damaged
/// span. A clean segment hashes each byte once and never resyncs.
pub const RESYNC_CRC_BUDGET_FLOOR_BYTES: u64 = 1024 * 1024;

/// One piece of a segment, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A valid record at byte `offset`.
    Record {
        /// Where its frame starts.
        offset: u64,
        /// The record.
        record: RecordRef<'a>,
    },
    /// A valid sync marker at byte `offset` (version 2): every record up to
    /// `marker.synced_through` had been synced when it was written. It holds
    /// no operation and takes no sequence number.
    Marker {
        /// Where its frame starts.
        offset: u64,
        /// The marker.
        marker: Marker,
    },
    /// Bytes `offset..end` that are not valid records.
    Damaged {
        /// Where the damage starts.
        offset: u64,
        /// Where the next valid record starts, or the end of the file.
        end: u64,
        /// What is wrong with the first bytes.
        reason: &'static str,
        /// The first sequence number the damaged bytes may have held.
        first_seq: u64,
        /// True if the damaged records must not be cut as a torn tail: a
        /// later record or marker proves they had been synced, or the
        /// same-boot rule rules out a crash (set by [`mark_durable`]); false
        /// for a crash's unsynced tail.
        durable: bool,
        /// True if the span has the shape an interrupted write leaves: it
        /// runs to the end of the file, and its nonzero bytes end inside the
        /// frame header or before the frame that starts the span would end,
        /// with nothing but zeros after them.
        unfinished_write: bool,
    },
}

/// A segment split into pieces.
#[derive(Debug)]
pub struct SegmentScan<'a> {
    /// The header, or why it is not valid (then `pieces` is empty).
    pub header: Result<SegmentHeader, String>,
    /// Records, markers and damaged spans in file order.
    pub pieces: Vec<Piece<'a>>,
    /// Bytes the scan fed to the checksum, valid frames included: bounded by
    /// the resync budget (exposed for tests).
    pub crc_bytes: u64,
    /// True if the resync budget ran out and the rest of the segment was
    /// taken as one damaged span.
    pub budget_spent: bool,
}

/// Splits a segment file's bytes into records, markers and damaged spans.
pub fn scan_segment(buf: &[u8]) -> SegmentScan<'_> {
    let header = match SegmentHeader::decode(buf) {
        Ok(h) => h,
        Err(e) => {
            return SegmentScan {
                header: Err(e),
                pieces: Vec::new(),
                crc_bytes: 0,
                budget_spent: false,
            };
        }
    };
    let mut pieces = Vec::new();
    let mut pos = header.len();
    let mut last_seq = header.first_seq.saturating_sub(1);
    let mut resync = Resync {
        buf,
        header,
        crc_bytes: 0,
        budget: RESYNC_CRC_BUDGET_FLOOR_BYTES
            .saturating_add(RESYNC_CRC_BUDGET_FACTOR.saturating_mul(buf.len() as u64)),
        spent: false,
    };
    while pos < buf.len() {
        let decoded = decode_record(&buf[pos..], header.salt);
        if let Decoded::Record(record, len) = decoded {
            let piece = piece_at(&header, pos, record);
            resync.crc_bytes += len as u64;
            if let Piece::Record { record, .. } = &piece {
                last_seq = last_seq.max(record.seq);
            }
            pieces.push(piece);
            pos += len;
            continue;
        }
        if buf[pos..].iter().all(|&b| b == 0) {
            // Zeros written ahead of the records (preallocation): the
            // clean end of the segment, not damage.
            break;
        }
        let reason = match decoded {
            Decoded::Invalid(why) => why,
            Decoded::Record(..) => unreachable!("handled above"),
            Decoded::Incomplete => "incomplete record",
        };
        let end = resync.next_record(pos + 1, last_seq).unwrap_or(buf.len());
        pieces.push(Piece::Damaged {
            offset: pos as u64,
            end: end as u64,
            reason,
            first_seq: last_seq.saturating_add(1),
            durable: false,
            unfinished_write: end == buf.len()
                && unfinished_write(&buf[pos..])
                && !resync.length_flipped(pos),
        });
        pos = end;
    }
    SegmentScan {
        header: Ok(header),
        pieces,
        crc_bytes: resync.crc_bytes,
        budget_spent: resync.spent,
    }
}

/// The piece a checksummed frame is. A frame of an unknown kind stays a
/// record, so that replay reports it as an undecodable record (never a torn
/// tail): it was written whole, by something.
fn piece_at<'a>(header: &SegmentHeader, pos: usize, record: RecordRef<'a>) -> Piece<'a> {
    let offset = pos as u64;
    if header.version >= FORMAT_VERSION
        && record.kind == SYNC_MARKER_KIND
        && let Some(marker) = parse_marker(&record)
    {
        return Piece::Marker { offset, marker };
    }
    Piece::Record { offset, record }
}

/// Whether damaged bytes running to the end of the file have the shape an
/// interrupted write leaves: the frame that starts them was being written
/// front to back and stopped, so its nonzero bytes end inside its 24-byte
/// header or before the frame would end, and only zeros follow. A whole
/// frame with a bad checksum (its last byte present and nonzero) is not
/// that shape; nor is damage followed by more nonzero bytes.
pub fn unfinished_write(span: &[u8]) -> bool {
    let Some(last) = span.iter().rposition(|&b| b != 0) else {
        return true;
    };
    let nonzero_end = last + 1;
    if nonzero_end <= RECORD_HEADER_LEN {
        return true;
    }
    let len = u32_at(span, REC_LEN_OFFSET);
    // A marker's length is fixed: one that claims another was damaged, not
    // cut (a flipped length bit would otherwise pass for a longer frame).
    let marker_len_ok =
        span[REC_KIND_OFFSET] != SYNC_MARKER_KIND || len as usize == MARKER_PAYLOAD_LEN;
    marker_len_ok && len <= RECORD_PAYLOAD_MAX && nonzero_end < RECORD_HEADER_LEN + len as usize
}

/// Marks each damaged span, across consecutive segments in order, as
/// `durable` if any later record or marker was written after the span's
/// records were synced, or if it is the rest of a segment whose resync
/// budget ran out (what it hides cannot be judged). Segments are synced whole before the next one is
/// started, so a record in a later segment vouches for everything before it.
///
/// `same_boot` says the last segment was created in the machine's current
/// boot (its header's boot id is the one the filesystem reports): then the
/// page cache still holds every write the writer made, and the only damage
/// a killed process can leave is an unfinished write at the very end. Any
/// other damage in the last segment is marked durable (corrupt).
pub fn mark_durable(scans: &mut [SegmentScan<'_>], same_boot: bool) {
    // A segment is synced whole before the next one gets its first record,
    // so any record in a later segment vouches for everything before it,
    // whatever its own `synced_before` (records appended while a rotation's
    // sync ran carry an older one).
    let mut later_segment_has_records = false;
    let count = scans.len();
    for (i, scan) in scans.iter_mut().enumerate().rev() {
        let mut latest_synced = if later_segment_has_records {
            u64::MAX
        } else {
            0
        };
        let strict = same_boot && i + 1 == count;
        let mut has_records = false;
        // When the resync budget ran out, the last piece is the rest of the
        // segment taken whole: the records and markers in it can no longer
        // vouch for it, so it is never a torn tail. (Found in review: a log
        // text holding a few plausible frame headers spent the budget after
        // one flipped bit, and across a restart every later acknowledged,
        // marker-vouched record was cut as a torn tail.)
        let mut swallowed = scan.budget_spent;
        for piece in scan.pieces.iter_mut().rev() {
            match piece {
                Piece::Record { record, .. } => {
                    has_records = true;
                    latest_synced = latest_synced.max(record.synced_before);
                }
                Piece::Marker { marker, .. } => {
                    latest_synced = latest_synced.max(marker.synced_through);
                }
                Piece::Damaged {
                    first_seq,
                    durable,
                    unfinished_write,
                    ..
                } => {
                    *durable = std::mem::take(&mut swallowed)
                        || latest_synced >= *first_seq
                        || (strict && !*unfinished_write);
                }
            }
        }
        later_segment_has_records |= has_records;
    }
}

/// The resync scan after damage, with its checksum budget.
struct Resync<'a> {
    buf: &'a [u8],
    header: SegmentHeader,
    crc_bytes: u64,
    budget: u64,
    spent: bool,
}

impl Resync<'_> {
    /// Whether the frame at `pos`, which has the shape of an unfinished
    /// write, is in fact a whole frame whose length field had a bit flipped
    /// upward: its checksum matches once that bit is cleared. A whole frame
    /// is not a kill's unfinished write, so in the same boot it is corrupt.
    /// (Found in review: a flipped length bit in the last acknowledged record
    /// under `OsBuffered`, with no marker after it, was cut as a torn tail.)
    /// Paid from the checksum budget; once that is spent the shape decides.
    fn length_flipped(&mut self, pos: usize) -> bool {
        let span = &self.buf[pos..];
        if span.len() < RECORD_HEADER_LEN {
            return false;
        }
        let len = u32_at(span, REC_LEN_OFFSET);
        let mut frame = Vec::new();
        for bit in (0..32).filter(|b| len & (1u32 << b) != 0) {
            let shorter = len ^ (1u32 << bit);
            let total = RECORD_HEADER_LEN + shorter as usize;
            if total > span.len() {
                continue;
            }
            if self.crc_bytes.saturating_add(total as u64) > self.budget {
                self.spent = true;
                return false;
            }
            self.crc_bytes += total as u64;
            frame.clear();
            frame.extend_from_slice(&span[..total]);
            frame[REC_LEN_OFFSET..REC_LEN_OFFSET + 4].copy_from_slice(&shorter.to_le_bytes());
            if let Decoded::Record(..) = decode_record(&frame, self.header.salt) {
                return true;
            }
        }
        false
    }

    /// The offset of the first valid record or marker at or after `from`,
    /// if any. Cheap tests (kind byte, zero padding, plausible length and
    /// sequence) come before the checksum so a scan over garbage stays fast;
    /// the checksum itself is paid from the budget, and once that is spent
    /// nothing more is found: the rest of the segment is one damaged span.
    fn next_record(&mut self, from: usize, last_seq: u64) -> Option<usize> {
        let buf = self.buf;
        let mut pos = from;
        while !self.spent && pos + RECORD_HEADER_LEN <= buf.len() {
            let h = &buf[pos..];
            let kind = h[REC_KIND_OFFSET];
            let len = u32_at(h, REC_LEN_OFFSET);
            let seq = u64_at(h, REC_SEQ_OFFSET);
            let distance = u32_at(h, REC_SYNCED_DISTANCE_OFFSET);
            // A marker repeats a sequence number already seen; a record
            // must come after every one seen.
            let sequence_ok = if kind == SYNC_MARKER_KIND {
                len as usize == MARKER_PAYLOAD_LEN && distance == 0
            } else {
                seq > last_seq
            };
            let total = RECORD_HEADER_LEN as u64 + u64::from(len);
            let plausible = kind_allowed(self.header.version, kind)
                && h[REC_KIND_OFFSET + 1..REC_SYNCED_DISTANCE_OFFSET] == [0, 0, 0]
                && len <= RECORD_PAYLOAD_MAX
                && total <= h.len() as u64
                && sequence_ok;
            if plausible {
                if self.crc_bytes.saturating_add(total) > self.budget {
                    self.spent = true;
                    break;
                }
                self.crc_bytes += total;
                if let Decoded::Record(..) = decode_record(h, self.header.salt) {
                    return Some(pos);
                }
            }
            pos += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{
        REC_CRC_OFFSET, RecordKind, SEGMENT_HEADER_LEN, encode_marker, encode_record,
    };

    fn marker(synced_through: u64) -> Marker {
        Marker {
            synced_through,
            unix_ms: 1_700_000_000_000,
            boot_id: None,
        }
    }

    fn flags_with(buf: &[u8], same_boot: bool) -> Vec<Option<bool>> {
        let mut scans = [scan_segment(buf)];
        mark_durable(&mut scans, same_boot);
        let [scan] = scans;
        scan.pieces
            .iter()
            .map(|p| match p {
                Piece::Record { .. } | Piece::Marker { .. } => None,
                Piece::Damaged { durable, .. } => Some(*durable),
            })
            .collect()
    }

    /// A segment of `n` records; record `seq` was written when `synced(seq)` was durable.
    fn segment(n: u64, synced: impl Fn(u64) -> u64) -> Vec<u8> {
        let h = SegmentHeader::new(1, 5, 1);
        let mut buf = h.encode();
        for seq in 1..=n {
            let payload = format!("task{seq}");
            encode_record(
                &mut buf,
                5,
                seq,
                synced(seq),
                RecordKind::DeleteTask,
                payload.as_bytes(),
            );
        }
        buf
    }

    fn damage_flags(buf: &[u8]) -> Vec<Option<bool>> {
        flags_with(buf, false)
    }

    #[test]
    fn a_cut_tail_is_not_durable() {
        let buf = segment(3, |seq| seq - 1);
        assert_eq!(
            damage_flags(&buf[..buf.len() - 3]),
            [None, None, Some(false)]
        );
    }

    #[test]
    fn damage_vouched_for_by_a_later_record_is_durable() {
        // Record 2 spans bytes 77..106; record 3 was written after it was synced.
        let mut buf = segment(3, |seq| seq - 1);
        buf[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 27] ^= 0x10;
        assert_eq!(damage_flags(&buf), [None, Some(true), None]);
    }

    #[test]
    fn damage_inside_one_unsynced_batch_is_a_torn_tail() {
        // Records 1..3 were written together before any sync: a crash may
        // keep record 3's sector and lose record 2's.
        let mut buf = segment(3, |_| 0);
        buf[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 27] ^= 0x10;
        assert_eq!(damage_flags(&buf), [None, Some(false), None]);
    }

    #[test]
    fn zeros_after_the_records_are_a_clean_end() {
        let mut buf = segment(2, |seq| seq - 1);
        buf.resize(buf.len() + 4096, 0);
        assert_eq!(damage_flags(&buf), [None, None]);
    }

    #[test]
    fn a_record_in_a_later_segment_vouches_for_the_earlier_one() {
        // Records 1..3 went out as one batch and were synced by the rotation;
        // segment 2's first record was appended during that sync, so its own
        // distance says nothing, but its segment's existence does.
        let mut first = segment(3, |_| 0);
        first[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 27] ^= 0x10;
        let h = SegmentHeader::new(2, 6, 4);
        let mut second = h.encode();
        encode_record(&mut second, 6, 4, 0, RecordKind::DeleteTask, b"x");
        let mut scans = [scan_segment(&first), scan_segment(&second)];
        mark_durable(&mut scans, false);
        assert!(matches!(
            scans[0].pieces[1],
            Piece::Damaged { durable: true, .. }
        ));
    }

    // Part 1 of issue 8: a batch of records written together and synced
    // once carries no later record that vouches for it, so a bit flipped in
    // it was cut as a torn tail. The marker written after the sync vouches.
    #[test]
    fn a_marker_vouches_for_the_synced_batch_before_it() {
        let mut buf = segment(3, |_| 0);
        encode_marker(&mut buf, 5, &marker(3));
        buf[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 27] ^= 0x10;
        assert_eq!(flags_with(&buf, false), [None, Some(true), None, None]);
        // A marker that vouches for less (a time-only one) does not.
        let mut buf = segment(3, |_| 0);
        encode_marker(&mut buf, 5, &marker(1));
        buf[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 27] ^= 0x10;
        assert_eq!(flags_with(&buf, false), [None, Some(false), None, None]);
    }

    // Part 1, same boot: with the page cache intact, a kill leaves only an
    // unfinished write at the very end. A whole last frame with a flipped
    // bit (zeros after it, as preallocation leaves) is corruption.
    #[test]
    fn same_boot_cuts_only_an_unfinished_write() {
        let mut whole = segment(3, |_| 0);
        let last_start = whole.len() - (RECORD_HEADER_LEN + 5);
        whole.resize(whole.len() + 4096, 0);
        // Cut short: the frame's last bytes never arrived.
        let mut cut = whole.clone();
        cut[last_start + RECORD_HEADER_LEN + 3..].fill(0);
        assert_eq!(flags_with(&cut, true), [None, None, Some(false)]);
        // Cut inside the frame header.
        let mut cut = whole.clone();
        cut[last_start + 10..].fill(0);
        assert_eq!(flags_with(&cut, true), [None, None, Some(false)]);
        // A flipped bit in the whole last frame: corrupt in the same boot,
        // a torn tail across a restart (power loss may tear any unsynced byte).
        let mut flipped = whole.clone();
        flipped[last_start + REC_CRC_OFFSET] ^= 1;
        assert_eq!(flags_with(&flipped, true), [None, None, Some(true)]);
        assert_eq!(flags_with(&flipped, false), [None, None, Some(false)]);
        // Garbage after an unfinished write is not that shape either.
        let mut garbage = cut.clone();
        garbage[last_start + 200] = 7;
        assert_eq!(flags_with(&garbage, true), [None, None, Some(true)]);
        // Damage in the middle is never an unfinished write.
        let mut mid = segment(3, |seq| seq - 1);
        mid[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 27] ^= 0x10;
        let mut scans = [scan_segment(&mid)];
        mark_durable(&mut scans, true);
        assert!(matches!(
            scans[0].pieces[1],
            Piece::Damaged {
                unfinished_write: false,
                ..
            }
        ));
    }

    #[test]
    fn a_marker_whose_length_was_flipped_is_not_an_unfinished_write() {
        let mut buf = segment(2, |seq| seq - 1);
        let at = buf.len();
        encode_marker(&mut buf, 5, &marker(2));
        buf.resize(buf.len() + 512, 0);
        // A marker cut short is an unfinished write...
        let mut cut = buf.clone();
        cut[at + RECORD_HEADER_LEN + 10..].fill(0);
        assert_eq!(flags_with(&cut, true), [None, None, Some(false)]);
        // ...one whose length bit flipped claims a longer frame, but a
        // marker's length is fixed.
        buf[at + REC_LEN_OFFSET] ^= 0x40;
        assert_eq!(flags_with(&buf, true), [None, None, Some(true)]);
    }

    // Part 4 of issue 8: a segment crafted with plausible frame headers whose
    // lengths run far made the resync scan hash megabytes at every header:
    // quadratic (4 MiB took 33 s). The checksum budget bounds it.
    #[test]
    fn a_crafted_segment_scans_within_the_crc_budget() {
        const LEN: usize = 4 * 1024 * 1024;
        const EVERY: usize = 4096;
        let mut buf = SegmentHeader::new(1, 5, 1).encode();
        buf.resize(LEN, 0xee);
        let mut pos = SEGMENT_HEADER_LEN;
        while pos + RECORD_HEADER_LEN < LEN {
            // A frame header that passes every cheap test: known kind, zero
            // padding, a length that reaches almost to the end, a sequence
            // number ahead, and a checksum that will not match.
            let h = &mut buf[pos..pos + RECORD_HEADER_LEN];
            h[REC_CRC_OFFSET..REC_CRC_OFFSET + 4].copy_from_slice(&[1, 2, 3, 4]);
            let len = (LEN - pos - RECORD_HEADER_LEN - 1) as u32;
            h[REC_LEN_OFFSET..REC_LEN_OFFSET + 4].copy_from_slice(&len.to_le_bytes());
            h[REC_SEQ_OFFSET..REC_SEQ_OFFSET + 8].copy_from_slice(&(pos as u64).to_le_bytes());
            h[REC_KIND_OFFSET..REC_SYNCED_DISTANCE_OFFSET].copy_from_slice(&[1, 0, 0, 0]);
            h[REC_SYNCED_DISTANCE_OFFSET..].copy_from_slice(&1u32.to_le_bytes());
            pos += EVERY;
        }
        let scan = scan_segment(&buf);
        let bound = RESYNC_CRC_BUDGET_FLOOR_BYTES + RESYNC_CRC_BUDGET_FACTOR * LEN as u64;
        // Without the budget this hashes about 1024 headers x 2 MiB = 2 GiB.
        assert!(
            scan.crc_bytes <= bound,
            "hashed {} bytes for a {LEN}-byte segment (bound {bound})",
            scan.crc_bytes
        );
        assert!(scan.budget_spent);
        // The rest of the segment is one damaged span, judged as any other.
        assert!(matches!(
            scan.pieces.as_slice(),
            [Piece::Damaged { end, .. }] if *end == LEN as u64
        ));
    }
}
