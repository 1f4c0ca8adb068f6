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
    Decoded, REC_KIND_OFFSET, REC_LEN_OFFSET, REC_SEQ_OFFSET, REC_SYNCED_DISTANCE_OFFSET,
    RECORD_HEADER_LEN, RECORD_KIND_MAX, RECORD_PAYLOAD_MAX, RecordRef, SEGMENT_HEADER_LEN,
    SegmentHeader, decode_record, u32_at, u64_at,
};

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
        /// True if a later record proves the damaged records had been synced
        /// (set by [`mark_durable`]); false for a crash's unsynced tail.
        durable: bool,
    },
}

/// A segment split into pieces.
#[derive(Debug)]
pub struct SegmentScan<'a> {
    /// The header, or why it is not valid (then `pieces` is empty).
    pub header: Result<SegmentHeader, String>,
    /// Records and damaged spans in file order.
    pub pieces: Vec<Piece<'a>>,
}

/// Splits a segment file's bytes into records and damaged spans.
pub fn scan_segment(buf: &[u8]) -> SegmentScan<'_> {
    let header = match SegmentHeader::decode(buf) {
        Ok(h) => h,
        Err(e) => {
            return SegmentScan {
                header: Err(e),
                pieces: Vec::new(),
            };
        }
    };
    let mut pieces = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut last_seq = header.first_seq.saturating_sub(1);
    while pos < buf.len() {
        match decode_record(&buf[pos..], header.salt) {
            Decoded::Record(record, len) => {
                pieces.push(Piece::Record {
                    offset: pos as u64,
                    record,
                });
                last_seq = last_seq.max(record.seq);
                pos += len;
            }
            _ if buf[pos..].iter().all(|&b| b == 0) => {
                // Zeros written ahead of the records (preallocation): the
                // clean end of the segment, not damage.
                break;
            }
            bad => {
                let reason = match bad {
                    Decoded::Invalid(why) => why,
                    _ => "incomplete record",
                };
                let next = find_next_record(buf, pos + 1, header.salt, last_seq);
                let end = next.unwrap_or(buf.len());
                pieces.push(Piece::Damaged {
                    offset: pos as u64,
                    end: end as u64,
                    reason,
                    first_seq: last_seq.saturating_add(1),
                    durable: false,
                });
                pos = end;
            }
        }
    }
    SegmentScan {
        header: Ok(header),
        pieces,
    }
}

/// Marks each damaged span, across consecutive segments in order, as
/// `durable` if any later record was written after the span's records were
/// synced. Segments are synced whole before the next one is started, so a
/// record in a later segment vouches for everything before it.
pub fn mark_durable(scans: &mut [SegmentScan<'_>]) {
    // A segment is synced whole before the next one gets its first record,
    // so any record in a later segment vouches for everything before it,
    // whatever its own `synced_before` (records appended while a rotation's
    // sync ran carry an older one).
    let mut later_segment_has_records = false;
    for scan in scans.iter_mut().rev() {
        let mut latest_synced = if later_segment_has_records {
            u64::MAX
        } else {
            0
        };
        let mut has_records = false;
        for piece in scan.pieces.iter_mut().rev() {
            match piece {
                Piece::Record { record, .. } => {
                    has_records = true;
                    latest_synced = latest_synced.max(record.synced_before);
                }
                Piece::Damaged {
                    first_seq, durable, ..
                } => *durable = latest_synced >= *first_seq,
            }
        }
        later_segment_has_records |= has_records;
    }
}

/// The offset of the first valid record at or after `from`, if any. Cheap
/// tests (kind byte, zero padding, plausible length and sequence) come before
/// the checksum so a scan over garbage stays fast.
fn find_next_record(buf: &[u8], from: usize, salt: u64, last_seq: u64) -> Option<usize> {
    let mut pos = from;
    while pos + RECORD_HEADER_LEN <= buf.len() {
        let h = &buf[pos..];
        let plausible = (1..=RECORD_KIND_MAX).contains(&h[REC_KIND_OFFSET])
            && h[REC_KIND_OFFSET + 1..REC_SYNCED_DISTANCE_OFFSET] == [0, 0, 0]
            && u32_at(h, REC_LEN_OFFSET) <= RECORD_PAYLOAD_MAX
            && u64_at(h, REC_SEQ_OFFSET) > last_seq;
        if plausible && matches!(decode_record(h, salt), Decoded::Record(..)) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{RecordKind, encode_record};

    /// A segment of `n` records; record `seq` was written when `synced(seq)` was durable.
    fn segment(n: u64, synced: impl Fn(u64) -> u64) -> Vec<u8> {
        let h = SegmentHeader {
            id: 1,
            salt: 5,
            first_seq: 1,
        };
        let mut buf = h.encode().to_vec();
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
        let mut scans = [scan_segment(buf)];
        mark_durable(&mut scans);
        let [scan] = scans;
        scan.pieces
            .iter()
            .map(|p| match p {
                Piece::Record { .. } => None,
                Piece::Damaged { durable, .. } => Some(*durable),
            })
            .collect()
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
        let h = SegmentHeader {
            id: 2,
            salt: 6,
            first_seq: 4,
        };
        let mut second = h.encode().to_vec();
        encode_record(&mut second, 6, 4, 0, RecordKind::DeleteTask, b"x");
        let mut scans = [scan_segment(&first), scan_segment(&second)];
        mark_durable(&mut scans);
        assert!(matches!(
            scans[0].pieces[1],
            Piece::Damaged { durable: true, .. }
        ));
    }
}
