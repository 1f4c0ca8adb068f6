//! Reading a segment back: split its bytes into valid records and damaged spans.
//!
//! Pure bytes, no I/O; recovery and `verify` decide what a damaged span means.

use super::record::{
    Decoded, REC_KIND_OFFSET, REC_LEN_OFFSET, REC_SEQ_OFFSET, RECORD_HEADER_LEN,
    RECORD_PAYLOAD_MAX, RecordRef, SEGMENT_HEADER_LEN, SegmentHeader, decode_record, u32_at,
    u64_at,
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
        /// True if a valid record follows in this segment; false if the damage
        /// runs to the end of the file (the shape a torn write leaves).
        record_follows: bool,
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
                    record_follows: next.is_some(),
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

/// The offset of the first valid record at or after `from`, if any. Cheap
/// tests (kind byte, zero padding, plausible length and sequence) come before
/// the checksum so a scan over garbage stays fast.
fn find_next_record(buf: &[u8], from: usize, salt: u64, last_seq: u64) -> Option<usize> {
    let mut pos = from;
    while pos + RECORD_HEADER_LEN <= buf.len() {
        let h = &buf[pos..];
        let plausible = (1..=6).contains(&h[REC_KIND_OFFSET])
            && h[REC_KIND_OFFSET + 1..RECORD_HEADER_LEN] == [0, 0, 0]
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

    fn segment(n: u64) -> Vec<u8> {
        let h = SegmentHeader {
            id: 1,
            salt: 5,
            first_seq: 1,
        };
        let mut buf = h.encode().to_vec();
        for seq in 1..=n {
            encode_record(
                &mut buf,
                5,
                seq,
                RecordKind::DeleteTask,
                format!("task{seq}").as_bytes(),
            );
        }
        buf
    }

    #[test]
    fn torn_tail_and_middle_damage_are_told_apart() {
        let buf = segment(3);
        let cut = &buf[..buf.len() - 3];
        let scan = scan_segment(cut);
        assert!(matches!(
            scan.pieces.last(),
            Some(Piece::Damaged {
                record_follows: false,
                ..
            })
        ));
        assert_eq!(scan.pieces.len(), 3);

        let mut flipped = buf.clone();
        flipped[SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 27] ^= 0x10; // inside record 2
        let scan = scan_segment(&flipped);
        let kinds: Vec<bool> = scan
            .pieces
            .iter()
            .map(|p| matches!(p, Piece::Record { .. }))
            .collect();
        assert_eq!(kinds, [true, false, true]);
        assert!(matches!(
            scan.pieces[1],
            Piece::Damaged {
                record_follows: true,
                ..
            }
        ));
    }
}
