//! Object names in the bucket, and what a listing of them says. Pure: no
//! I/O, no runtime. The byte-level description is `docs/replication.md`,
//! "Bucket layout"; the two are kept in step.
//!
//! Every name is relative to the replica's prefix and uses only ASCII
//! lowercase letters, digits, `-`, `.` and `/`, which no backend escapes
//! differently from another. Numbers are zero-padded to a fixed width, so
//! names sort as their numbers do, and a listing under a prefix narrows to
//! one generation or one segment.

use std::collections::BTreeMap;

/// The claim: written create-only by the first store that ships under the
/// prefix, holding its store id. A second store finds it and stops.
pub const CLAIM: &str = "statewal-replica.json";
/// The directory of generations.
pub const GENERATIONS: &str = "generations";
/// Inside a generation: one directory per journal segment.
pub const SEGMENTS: &str = "segments";
/// Inside a generation: the checkpoints' `state.json` files.
pub const CHECKPOINTS: &str = "checkpoints";
/// Beside the claim: one object per open that shipped to the prefix.
pub const EPOCHS: &str = "epochs";
/// The version written into the claim.
pub const CLAIM_VERSION: u32 = 1;

/// A generation id: 16 hex digits of the Unix time in milliseconds when it
/// began, then 8 random hex digits, so the newest sorts last.
pub const GENERATION_ID_LEN: usize = 24;
/// Width of a segment id, a byte offset or a sequence number in a name.
pub const NUMBER_WIDTH: usize = 20;
/// Width of a CRC-32 in a name.
pub const CRC_WIDTH: usize = 8;

/// A new generation id for a generation beginning at `unix_ms`.
pub fn generation_id(unix_ms: u64, random: u32) -> String {
    format!("{unix_ms:016x}{random:08x}")
}

/// When the generation `id` began (Unix milliseconds), from its first 16
/// hex digits; `None` if it is not a generation id.
pub fn generation_unix_ms(id: &str) -> Option<u64> {
    is_generation_id(id)
        .then(|| u64::from_str_radix(&id[..16], 16).ok())
        .flatten()
}

/// Whether `s` is a generation id.
pub fn is_generation_id(s: &str) -> bool {
    s.len() == GENERATION_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The name of the object holding bytes `start..end` of segment `segment`,
/// whose CRC-32 is `crc`. The bytes are those of the local segment file at
/// the same offsets; the object is never replaced, since a later upload of
/// the same segment starts where this one ends.
pub fn segment_object(generation: &str, segment: u64, start: u64, end: u64, crc: u32) -> String {
    assert!(start < end, "an empty range is never shipped");
    format!(
        "{GENERATIONS}/{generation}/{SEGMENTS}/{segment:020}/{start:020}-{end:020}-{crc:08x}.wal"
    )
}

/// The name of the object holding a checkpoint's `state.json`, which
/// covers the journal through `seq` and whose bytes have CRC-32 `crc`.
pub fn checkpoint_object(generation: &str, seq: u64, crc: u32) -> String {
    format!("{GENERATIONS}/{generation}/{CHECKPOINTS}/{seq:020}-{crc:08x}.json")
}

/// The name of the object an open writes, create-only, before it ships to
/// the prefix as its `epoch`-th shipper (1, 2, ...). An open that finds
/// the epoch after its own stops shipping: another open of the same store
/// (a restart, or a second live copy) ships there now.
pub fn epoch_object(epoch: u64) -> String {
    format!("{EPOCHS}/{epoch:020}.json")
}

/// What an object name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// [`CLAIM`].
    Claim,
    /// A range of a segment.
    Segment {
        /// The generation id.
        generation: String,
        /// The range.
        range: Range,
    },
    /// An open's epoch.
    Epoch(u64),
    /// A checkpoint.
    Checkpoint {
        /// The generation id.
        generation: String,
        /// The checkpoint.
        checkpoint: Checkpoint,
    },
}

/// Bytes `start..end` of segment `segment`, in object `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    /// The segment id.
    pub segment: u64,
    /// The first byte's offset in the segment file.
    pub start: u64,
    /// The offset just past the last byte.
    pub end: u64,
    /// CRC-32 of the bytes.
    pub crc: u32,
    /// The object's name (relative to the prefix).
    pub name: String,
}

/// A checkpoint's `state.json`, in object `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    /// The `journal_seq` it covers.
    pub seq: u64,
    /// CRC-32 of the bytes.
    pub crc: u32,
    /// The object's name (relative to the prefix).
    pub name: String,
}

/// Reads an object name; `None` for a name statewal does not write (left
/// alone: it is not ours to judge or delete).
pub fn parse(name: &str) -> Option<Object> {
    if name == CLAIM {
        return Some(Object::Claim);
    }
    if let Some(file) = name.strip_prefix(EPOCHS).and_then(|r| r.strip_prefix('/')) {
        return Some(Object::Epoch(number(file.strip_suffix(".json")?)?));
    }
    let rest = name.strip_prefix(GENERATIONS)?.strip_prefix('/')?;
    let (generation, rest) = rest.split_once('/')?;
    if !is_generation_id(generation) {
        return None;
    }
    let generation = generation.to_string();
    if let Some(rest) = rest
        .strip_prefix(SEGMENTS)
        .and_then(|r| r.strip_prefix('/'))
    {
        let (segment, file) = rest.split_once('/')?;
        let segment = number(segment)?;
        let mut parts = file.strip_suffix(".wal")?.split('-');
        let start = number(parts.next()?)?;
        let end = number(parts.next()?)?;
        let crc = crc(parts.next()?)?;
        if parts.next().is_some() || start >= end {
            return None;
        }
        let name = name.to_string();
        let range = Range {
            segment,
            start,
            end,
            crc,
            name,
        };
        return Some(Object::Segment { generation, range });
    }
    let file = rest.strip_prefix(CHECKPOINTS)?.strip_prefix('/')?;
    let (seq, crc_hex) = file.strip_suffix(".json")?.split_once('-')?;
    let checkpoint = Checkpoint {
        seq: number(seq)?,
        crc: crc(crc_hex)?,
        name: name.to_string(),
    };
    Some(Object::Checkpoint {
        generation,
        checkpoint,
    })
}

fn number(s: &str) -> Option<u64> {
    (s.len() == NUMBER_WIDTH && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn crc(s: &str) -> Option<u32> {
    let hex = s.len() == CRC_WIDTH && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u32::from_str_radix(s, 16).ok())?
}

/// What the bucket holds, from a listing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Whether the claim exists.
    pub claimed: bool,
    /// The epochs of the opens that shipped, ascending.
    pub epochs: Vec<u64>,
    /// Each generation, oldest first.
    pub generations: BTreeMap<String, Generation>,
    /// Names under the prefix that statewal does not write.
    pub unknown: Vec<String>,
}

/// One generation's objects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Each segment's ranges, by segment id, each list ordered by start.
    pub segments: BTreeMap<u64, Vec<Range>>,
    /// Checkpoints ordered by sequence number.
    pub checkpoints: Vec<Checkpoint>,
}

impl Inventory {
    /// The inventory of a listing's names (relative to the prefix).
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Inventory {
        let mut inv = Inventory::default();
        for name in names {
            match parse(name) {
                Some(Object::Claim) => inv.claimed = true,
                Some(Object::Segment { generation, range }) => inv
                    .generations
                    .entry(generation)
                    .or_default()
                    .segments
                    .entry(range.segment)
                    .or_default()
                    .push(range),
                Some(Object::Checkpoint {
                    generation,
                    checkpoint,
                }) => inv
                    .generations
                    .entry(generation)
                    .or_default()
                    .checkpoints
                    .push(checkpoint),
                Some(Object::Epoch(epoch)) => inv.epochs.push(epoch),
                None => inv.unknown.push(name.to_string()),
            }
        }
        for g in inv.generations.values_mut() {
            g.checkpoints.sort();
            for ranges in g.segments.values_mut() {
                ranges.sort();
            }
        }
        inv.epochs.sort_unstable();
        inv
    }

    /// The newest generation, if any.
    pub fn newest(&self) -> Option<(&str, &Generation)> {
        self.generations
            .iter()
            .next_back()
            .map(|(id, g)| (id.as_str(), g))
    }
}

impl Generation {
    /// The ranges of `segment` that join up from byte 0, and the first
    /// range that does not (a gap or an overlap), if any. What follows a
    /// break cannot be placed, so a shipper resumes, and a restore stops,
    /// at the end of the joined ranges. Of several ranges from one start,
    /// the longest joins and the others are left out: objects of one
    /// generation are bytes of one file at their offsets, so a shorter one
    /// holds what the longer does (a put whose request landed after the
    /// next run shipped past it). The same range twice with different
    /// bytes is a break: two histories.
    pub fn joined(&self, segment: u64) -> (Vec<&Range>, Option<&Range>) {
        let ranges = self.segments.get(&segment).map_or(&[][..], |r| &r[..]);
        let mut joined = Vec::new();
        let mut end = 0;
        for (i, r) in ranges.iter().enumerate() {
            if r.end <= end {
                continue; // Inside what has joined already.
            }
            if r.start != end {
                return (joined, Some(r));
            }
            // Ranges sort by start, then end: a longer one follows.
            if let Some(next) = ranges.get(i + 1).filter(|n| n.start == r.start) {
                if next.end == r.end {
                    return (joined, Some(next));
                }
                continue;
            }
            joined.push(r);
            end = r.end;
        }
        (joined, None)
    }

    /// Where the joined ranges of `segment` end (0: none).
    pub fn shipped_end(&self, segment: u64) -> u64 {
        self.joined(segment).0.last().map_or(0, |r| r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "0000018c2f6a10ab1234abcd";

    #[test]
    fn names_round_trip() {
        assert!(is_generation_id(G));
        assert_eq!(generation_id(0x18c2f6a10ab, 0x1234abcd), G);
        assert_eq!(generation_unix_ms(G), Some(0x18c2f6a10ab));
        assert_eq!(generation_unix_ms("notes"), None);
        let seg = segment_object(G, 7, 48, 4096, 0xdeadbeef);
        assert_eq!(
            seg,
            "generations/0000018c2f6a10ab1234abcd/segments/00000000000000000007/\
             00000000000000000048-00000000000000004096-deadbeef.wal"
        );
        let range = Range {
            segment: 7,
            start: 48,
            end: 4096,
            crc: 0xdeadbeef,
            name: seg.clone(),
        };
        let generation = G.to_string();
        assert_eq!(parse(&seg), Some(Object::Segment { generation, range }));
        let epoch = epoch_object(3);
        assert_eq!(epoch, "epochs/00000000000000000003.json");
        assert_eq!(parse(&epoch), Some(Object::Epoch(3)));
        let ck = checkpoint_object(G, 12, 0x0000_00ff);
        assert_eq!(
            ck,
            "generations/0000018c2f6a10ab1234abcd/checkpoints/00000000000000000012-000000ff.json"
        );
        let checkpoint = Checkpoint {
            seq: 12,
            crc: 0xff,
            name: ck.clone(),
        };
        let generation = G.to_string();
        assert_eq!(
            parse(&ck),
            Some(Object::Checkpoint {
                generation,
                checkpoint
            })
        );
        assert_eq!(parse(CLAIM), Some(Object::Claim));
        for name in [&seg, &ck] {
            assert!(
                name.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'/')),
                "{name}"
            );
        }
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "notes.txt",
            "generations/xyz/segments/1/2-3-4.wal",
            "generations/0000018c2f6a10ab1234abcd/segments/7/48-4096-deadbeef.wal",
            // An empty range, and an upper-case CRC.
            "generations/0000018c2f6a10ab1234abcd/segments/00000000000000000007/\
             00000000000000000048-00000000000000000048-deadbeef.wal",
            "generations/0000018c2f6a10ab1234abcd/checkpoints/00000000000000000012-DEADBEEF.json",
        ] {
            assert_eq!(parse(name), None, "{name}");
        }
        let inv = Inventory::of(["notes.txt"]);
        assert_eq!(inv.unknown, ["notes.txt"]);
    }

    #[test]
    fn joined_ranges_stop_at_a_gap() {
        let names = [
            segment_object(G, 3, 0, 100, 1),
            segment_object(G, 3, 100, 250, 2),
            segment_object(G, 3, 300, 400, 3),
            segment_object(G, 4, 0, 80, 4),
            checkpoint_object(G, 9, 5),
            CLAIM.to_string(),
        ];
        let inv = Inventory::of(names.iter().map(|s| s.as_str()));
        assert!(inv.claimed);
        let (id, g) = inv.newest().unwrap();
        assert_eq!(id, G);
        let (joined, gap) = g.joined(3);
        assert_eq!(joined.len(), 2);
        assert_eq!(gap.map(|r| r.start), Some(300));
        assert_eq!(g.shipped_end(3), 250);
        assert_eq!(g.shipped_end(4), 80);
        assert_eq!(g.shipped_end(5), 0);
        assert_eq!(g.checkpoints[0].seq, 9);
    }

    #[test]
    fn the_longest_of_ranges_from_one_start_joins() {
        let names = [
            segment_object(G, 3, 0, 100, 1),
            segment_object(G, 3, 100, 150, 2),
            segment_object(G, 3, 100, 250, 3),
            segment_object(G, 3, 250, 300, 4),
            // The same range twice, with different bytes: a break.
            segment_object(G, 4, 0, 80, 5),
            segment_object(G, 4, 0, 80, 6),
        ];
        let inv = Inventory::of(names.iter().map(|s| s.as_str()));
        let (_, g) = inv.newest().unwrap();
        let (joined, gap) = g.joined(3);
        let ends: Vec<u64> = joined.iter().map(|r| r.end).collect();
        assert_eq!(ends, [100, 250, 300]);
        assert!(gap.is_none());
        let (joined, gap) = g.joined(4);
        assert!(joined.is_empty());
        assert_eq!(gap.map(|r| r.crc), Some(6));
    }
}
