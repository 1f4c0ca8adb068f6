//! Edits of `tasks/<id>.json` made while the store is open (part 2).
//!
//! The open looks at every task file ([`super::edits`]). After it, a person
//! may still edit a task file by hand (the seed design's troubleshooting
//! says to), and a checkpoint, which writes the files of the tasks that
//! changed, would replace the edit unseen. So each checkpoint, before it
//! replaces or removes a task file, checks that the file still holds what
//! this process last wrote there, or what the open read there:
//! [`TaskFiles`] keeps a fingerprint of each (its CRC32 and length). A file
//! that differs, one where no file was known, or an entry that is not a
//! regular file is set aside as `tasks/<id>.json.edited-<ms>` and reported,
//! and only then replaced or removed. It is not imported: see
//! `docs/decisions.md`, "Hand edits while the store is open".
//!
//! The check reads only the files the checkpoint writes or removes, once
//! each, so its cost follows the changes, not the number of tasks.
//!
//! The same fingerprints, with the stat that vouches for each (inode,
//! length, a settled modification time, the status-change time), are left
//! for the next open in
//! `.statewal-task-stats` ([`TaskFiles::save`]), so that it reads only the
//! task files whose stat changed ([`scan`]; `docs/decisions.md`, issue 10).
//!
//! **Invariant:** a task file is replaced or removed by a checkpoint only
//! when it holds what this process last wrote or read there, or after it
//! was set aside and that rename made durable.
//!
//! **Invariant:** the open leaves a task file unread only when its stat is
//! the one a checkpoint saved for the `state.json` the open loaded, and
//! that stat was settled when taken.

use super::aside::{self, Aside};
use super::{Action, Decision, now_ms};
use crate::error::{ErrorKind, Result};
use crate::fs::{self, FileStat, Fs};
use crate::layout::TASKS_DIR;
use std::collections::{HashMap, HashSet};

/// The hasher of the maps of task file names, one entry per task: foldhash,
/// seeded at random per process (SipHash's cost per name was a few percent
/// of an open of 100,000 tasks).
type FastHash = foldhash::fast::RandomState;

/// From this many names without a known file in one checkpoint, `tasks/`
/// is listed once rather than each name looked up (`TaskFiles::listing`).
const UNKNOWN_LISTED_MIN: usize = 256;

/// A fingerprint of a task file's bytes: 8 bytes per file, so 100,000
/// tasks cost about 5 MB with their names and the map around them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Print {
    crc: u32,
    len: u32,
}

impl Print {
    pub fn of(bytes: &[u8]) -> Print {
        Print {
            crc: crc32fast::hash(bytes),
            // A task file is far below 4 GiB (statewal reads at most 128
            // MiB of one); a longer one saturates and still differs.
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        }
    }
}

/// What is known of one task file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    /// Its bytes' fingerprint.
    print: Print,
    /// Its stat, when the stat vouches for the file holding the store's
    /// copy of the task: the file was written by a checkpoint of this
    /// process (stamped with a settled time), or read at open, found equal
    /// to the recovered copy and settled ([`FileStat::settled`]). Saved
    /// for the next open ([`TaskFiles::save`]).
    vouched: Option<FileStat>,
}

/// What this process last wrote to, or read from, each task file.
#[derive(Debug, Default)]
pub(crate) struct TaskFiles {
    /// By file name (`<id>.json`). A name not here: no file known.
    known: HashMap<Box<str>, Known, FastHash>,
    /// Bytes a failed checkpoint may have left in a file (its batch failed
    /// part way through the renames): accepted as well as `known` until the
    /// next checkpoint writes that task.
    maybe: HashMap<Box<str>, Print, FastHash>,
    /// A file was set aside and `tasks/` not yet synced since (the sync
    /// failed, or a later rename did): synced before anything is written
    /// under the old name.
    unsynced: bool,
}

impl TaskFiles {
    /// What the open found: each task file's name, fingerprint, and the
    /// stat that vouches for it (see [`Known::vouched`]), if any.
    pub fn from_scan(files: impl Iterator<Item = (String, Print, Option<FileStat>)>) -> TaskFiles {
        TaskFiles {
            known: files
                .map(|(name, print, vouched)| (name.into_boxed_str(), Known { print, vouched }))
                .collect(),
            ..TaskFiles::default()
        }
    }

    /// Forgets a file the open set aside.
    pub fn forget(&mut self, name: &str) {
        self.known.remove(name);
    }

    /// Checks each file about to be written (`Some`) or removed (`None`),
    /// by name in `tasks/`, and sets aside every one that changed since
    /// this process last wrote or read it; `tasks/` is synced before this
    /// returns, so the renames (and any an earlier, failed checkpoint left
    /// unsynced) are durable before the files are replaced. Each file set
    /// aside is added to `out`, even when a later one fails.
    pub fn guard(
        &mut self,
        fs: &dyn Fs,
        files: &[(String, Option<Vec<u8>>)],
        out: &mut Vec<Decision>,
    ) -> Result<()> {
        let mut ms = now_ms();
        let present = self.listing(fs, files)?;
        for (name, body) in files {
            if present
                .as_ref()
                .is_some_and(|p| !p.contains(name.as_str()) && !self.is_known(name))
            {
                continue; // No file where none was known: nothing to keep.
            }
            let Some(why) = self.changed(fs, name)? else {
                continue;
            };
            let path = fs::join(TASKS_DIR, name);
            self.unsynced = true;
            let to = aside::rename_aside(
                fs,
                &Aside {
                    path: path.clone(),
                    why: why.clone(),
                },
                &mut ms,
            )?;
            self.known.remove(name.as_str());
            self.maybe.remove(name.as_str());
            let (kept, then) = match body {
                Some(_) => (
                    super::merge::STATEWAL,
                    "the store's copy is written in its place",
                ),
                None => (
                    "nothing",
                    "the task is no longer in the store (deleted or archived)",
                ),
            };
            out.push(Decision {
                task: name[..name.len() - ".json".len()].to_string(),
                action: Action::SetAside,
                kept: kept.into(),
                other: Some(format!("{path}, now {to}")),
                reason: format!(
                    "{why}; {then}. Not imported while the store is open: to apply it, \
                     stop the store and rename it back; the next open imports it if newer"
                ),
            });
        }
        self.sync(fs)
    }

    /// Records what a checkpoint's batch for these files did: on success
    /// each file holds its body (or is gone), with the stat the batch took
    /// of it (`stats`, in the order of `files`; see
    /// [`crate::fs::write_atomic_batch_stamped`]); after a failure each may
    /// hold its old bytes or its new ones.
    pub fn written(
        &mut self,
        files: &[(String, Option<Vec<u8>>)],
        stats: &[Option<FileStat>],
        ok: bool,
        now: std::time::SystemTime,
    ) {
        for (i, (name, body)) in files.iter().enumerate() {
            let name = name.as_str();
            match (body, ok) {
                (Some(b), true) => {
                    let stat = stats.get(i).copied().flatten();
                    let known = Known {
                        print: Print::of(b),
                        // Stamped with a settled time by the batch; checked
                        // again here, as a filesystem may ignore the stamp.
                        vouched: stat.filter(|s| s.settled(now)),
                    };
                    self.known.insert(name.into(), known);
                    self.maybe.remove(name);
                }
                (None, true) => {
                    self.known.remove(name);
                    self.maybe.remove(name);
                }
                (Some(b), false) => {
                    self.maybe.insert(name.into(), Print::of(b));
                }
                // Removed or not: a missing file is never an edit.
                (None, false) => {}
            }
        }
    }

    /// Whether a file is known under `name` (written or read here).
    fn is_known(&self, name: &str) -> bool {
        self.known.contains_key(name) || self.maybe.contains_key(name)
    }

    /// Every entry name in `tasks/`, whatever it is, when `files` has at
    /// least [`UNKNOWN_LISTED_MIN`] names where no file is known (the first
    /// checkpoint after tasks were created): one listing instead of a
    /// `stat` per name (measured: the stats added about 0.5 s to the first
    /// checkpoint of 100,000 tasks). `None`: look each name up.
    fn listing(
        &self,
        fs: &dyn Fs,
        files: &[(String, Option<Vec<u8>>)],
    ) -> Result<Option<std::collections::HashSet<String>>> {
        let unknown = files.iter().filter(|(n, _)| !self.is_known(n)).count();
        if unknown < UNKNOWN_LISTED_MIN {
            return Ok(None);
        }
        Ok(fs
            .list_all(TASKS_DIR)?
            .map(|names| names.into_iter().collect()))
    }

    /// Why `tasks/<name>` is not what this process last saw there, if it is
    /// not. One read (or, where no file was known, one stat).
    fn changed(&self, fs: &dyn Fs, name: &str) -> Result<Option<String>> {
        let path = fs::join(TASKS_DIR, name);
        let seen: Vec<Print> = [self.known.get(name).map(|k| &k.print), self.maybe.get(name)]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let not_regular = |e: crate::error::Error| -> Result<Option<String>> {
            match e.kind() {
                // A directory, symlink or FIFO: never followed, never
                // opened for long (the fs layer opens without blocking).
                ErrorKind::InvalidInput => Ok(Some(format!(
                    "was replaced by something that is not a regular file while the store was \
                     open ({e})"
                ))),
                // In an encrypted store: a file that does not open (put
                // there in clear, altered, or moved from another name), or
                // one too large to read whole.
                ErrorKind::Corrupt | ErrorKind::TooLarge | ErrorKind::Key => {
                    Ok(Some(format!("changed while the store was open ({e})")))
                }
                _ => Err(e),
            }
        };
        let Some(longest) = seen.iter().map(|p| p.len).max() else {
            return match fs.file_len(&path) {
                Ok(None) => Ok(None),
                Ok(Some(n)) => Ok(Some(format!(
                    "appeared while the store was open ({n} bytes where this process knew of \
                     no file)"
                ))),
                Err(e) => not_regular(e),
            };
        };
        // One byte past the longest known: a longer file differs anyway.
        match fs.read_at(&path, 0, u64::from(longest) + 1) {
            // Removed by hand: nothing to keep.
            Ok(None) => Ok(None),
            Ok(Some(bytes)) if seen.contains(&Print::of(&bytes)) => Ok(None),
            Ok(Some(_)) => Ok(Some(
                "changed while the store was open (it differs from what this process last \
                 wrote or read there)"
                    .into(),
            )),
            Err(e) => not_regular(e),
        }
    }

    /// Makes the renames aside durable, if one is not yet.
    fn sync(&mut self, fs: &dyn Fs) -> Result<()> {
        if self.unsynced {
            // Sync the directory so the renames aside survive power loss
            // before the checkpoint writes the store's copy under the old
            // name: power loss could keep that write's rename and lose this
            // one, and the edit would be gone.
            fs.sync_dir(TASKS_DIR)?;
            self.unsynced = false;
        }
        Ok(())
    }
}

/// The modification time a checkpoint stamps on the task files it writes:
/// a little more than [`fs::MTIME_SETTLED_NS`] before now, so the stat
/// taken right after the write is already settled, and any later write by
/// anyone stamps a later time (the clock moves forward) and changes it.
pub(crate) fn stamp(fs: &dyn Fs) -> std::time::SystemTime {
    let back = std::time::Duration::from_nanos(fs::MTIME_SETTLED_NS as u64)
        + std::time::Duration::from_secs(1);
    fs.now() - back
}

/// The file, in the state directory, where a checkpoint leaves the stats
/// that vouch for the task files for the next open ([`TaskFiles::save`]).
/// A cache: written without a sync, ignored when missing, damaged, or
/// written for another `state.json`.
pub(crate) const STATS_FILE: &str = ".statewal-task-stats";

/// The stats file's layout (little-endian): the magic, a version (u32),
/// the CRC32 of the `state.json` it was written with (u32), the number of
/// entries (u64), the entries, and a CRC32 of everything before it (u32).
/// Each entry: the name's length (u16), the name (UTF-8), the inode (u64),
/// the length (u64), the modification time and the status-change time in
/// ns since the epoch (i128 each), and the fingerprint of the bytes: CRC32
/// and length (u32 each).
const STATS_MAGIC: &[u8; 8] = b"SWTSTAT\n";
/// Version 2 added the status-change time (a hostile review of issue 10:
/// an in-place edit that put back the modification time went unseen). A
/// file of any other version is ignored, as a missing one is: it is a
/// cache.
const STATS_VERSION: u32 = 2;
const STATS_HEADER_LEN: usize = STATS_MAGIC.len() + 4 + 4 + 8;
const STATS_ENTRY_FIXED_LEN: usize = 2 + 8 + 8 + 16 + 16 + 4 + 4;
const STATS_NAME_MAX: usize = 255;
const _: () = assert!(STATS_HEADER_LEN == 24);

/// What a stats file vouches for, by task file name.
pub(crate) type Vouched = HashMap<String, (FileStat, Print), FastHash>;

impl TaskFiles {
    /// Leaves the stats that vouch for task files for the next open, bound
    /// to the `state.json` just written (its CRC `state_crc`). Every file
    /// listed holds, when its stat is unchanged, the copy of its task in
    /// that `state.json`: a checkpoint writes every task that changed since
    /// the last one, so a task file this process wrote or found equal to
    /// the store's copy holds each later checkpoint's copy until the task
    /// changes, and then it is written again (or, if that fails, its entry
    /// is in `maybe` and not listed, and no `state.json` is written).
    /// Written by temp file and rename, without a sync: losing it costs
    /// the next open a read of every task file, as before.
    pub fn save(&self, fs: &dyn Fs, state_crc: u32) -> Result<()> {
        let mut out = Vec::with_capacity(STATS_HEADER_LEN + self.known.len() * 64);
        out.extend_from_slice(STATS_MAGIC);
        out.extend_from_slice(&STATS_VERSION.to_le_bytes());
        out.extend_from_slice(&state_crc.to_le_bytes());
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        for (name, k) in &self.known {
            let (Some(stat), false) = (k.vouched, self.maybe.contains_key(name)) else {
                continue;
            };
            if name.len() > STATS_NAME_MAX {
                continue;
            }
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&stat.ino.to_le_bytes());
            out.extend_from_slice(&stat.len.to_le_bytes());
            out.extend_from_slice(&stat.mtime_ns.to_le_bytes());
            out.extend_from_slice(&stat.ctime_ns.to_le_bytes());
            out.extend_from_slice(&k.print.crc.to_le_bytes());
            out.extend_from_slice(&k.print.len.to_le_bytes());
            count += 1;
        }
        out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        fs::write_replace_unsynced(fs, "", STATS_FILE, &out)
    }
}

/// The stats a checkpoint left for the `state.json` whose CRC is
/// `state_crc`; empty when there are none, or they are damaged or belong
/// to another `state.json`.
pub(crate) fn load_vouched(fs: &dyn Fs, state_crc: u32) -> Result<Vouched> {
    // A planted file of many gigabytes is ignored unread rather than mapped
    // and hashed: stats of a million task files take well under this.
    const STATS_BYTES_MAX: u64 = 256 << 20;
    if let Ok(Some(len)) = fs.file_len(STATS_FILE)
        && len > STATS_BYTES_MAX
    {
        tracing::warn!(
            len,
            "ignoring .statewal-task-stats: larger than any stats file statewal writes"
        );
        return Ok(Vouched::default());
    }
    match fs.read(STATS_FILE) {
        Ok(Some(bytes)) => Ok(parse_stats(&bytes, state_crc).unwrap_or_default()),
        Ok(None) => Ok(Vouched::default()),
        // Not a regular file: not ours, ignored.
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(Vouched::default()),
        Err(e) => Err(e),
    }
}

fn parse_stats(bytes: &[u8], state_crc: u32) -> Option<Vouched> {
    let body_len = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(body_len);
    if body.len() < STATS_HEADER_LEN
        || !body.starts_with(STATS_MAGIC)
        || crc32fast::hash(body).to_le_bytes() != crc
    {
        return None;
    }
    let mut at = STATS_MAGIC.len();
    let mut take = |n: usize| -> Option<&[u8]> {
        let part = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(part)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    if u32_of(take(4)?) != STATS_VERSION || u32_of(take(4)?) != state_crc {
        return None;
    }
    let count = u64_of(take(8)?);
    // Checked against what the bytes can hold before anything is allocated.
    if count > ((body.len() - STATS_HEADER_LEN) / STATS_ENTRY_FIXED_LEN) as u64 {
        return None;
    }
    let mut out = Vouched::with_capacity_and_hasher(count as usize, FastHash::default());
    for _ in 0..count {
        let name_len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
        if name_len > STATS_NAME_MAX {
            return None;
        }
        let name = std::str::from_utf8(take(name_len)?).ok()?.to_string();
        let ino = u64_of(take(8)?);
        let len = u64_of(take(8)?);
        let mtime_ns = i128::from_le_bytes(take(16)?.try_into().expect("16 bytes"));
        let ctime_ns = i128::from_le_bytes(take(16)?.try_into().expect("16 bytes"));
        let print = Print {
            crc: u32_of(take(4)?),
            len: u32_of(take(4)?),
        };
        let stat = FileStat {
            ino,
            len,
            mtime_ns,
            ctime_ns,
        };
        out.insert(name, (stat, print));
    }
    (at == body.len()).then_some(out)
}

/// What the open's look at `tasks/` found ([`scan`]).
pub(crate) struct Scan {
    /// The files read (those no stat vouched for).
    pub read: Vec<super::foreign::TaskFile>,
    /// The files a stat vouched for, unread: each holds the loaded
    /// checkpoint's copy of its task. Name, fingerprint, stat.
    pub vouched: Vec<(String, Print, FileStat)>,
    /// The names of the entries in `tasks/` that are not regular files, as
    /// the listing typed them; `None` when the filesystem cannot type them
    /// in one listing (then each name needed is looked up).
    pub not_regular: Option<HashSet<String>>,
}

/// Looks at every `tasks/*.json`: a file whose stat is the one `vouched`
/// lists for it (and whose task the loaded checkpoint holds, `in_base`)
/// is not read: it holds that checkpoint's copy. Every other one is read
/// and parsed, as [`super::foreign::task_files`] does.
pub(crate) fn scan(fs: &dyn Fs, vouched: &Vouched, in_base: impl Fn(&str) -> bool) -> Result<Scan> {
    // One listing, typed: the open's check for entries that are not
    // regular files (`apply::not_regular`) then looks up only those,
    // instead of a stat per task file it writes.
    let (files, not_regular) = match fs.list_typed(TASKS_DIR)? {
        Some(l) => (l.files, Some(l.others.into_iter().collect())),
        None => (fs.list(TASKS_DIR)?, None),
    };
    let mut out = Scan {
        read: Vec::new(),
        vouched: Vec::new(),
        not_regular,
    };
    let names: Vec<String> = files
        .into_iter()
        .filter(|n| !n.starts_with('.') && n.ends_with(".json"))
        .collect();
    let candidates: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| vouched.contains_key(*n) && in_base(&n[..n.len() - ".json".len()]))
        .collect();
    let stats: HashMap<String, FileStat, FastHash> = match candidates.is_empty() {
        true => HashMap::default(),
        false => candidates
            .iter()
            .zip(fs.stat_in(TASKS_DIR, &candidates)?)
            .filter_map(|(n, s)| Some((n.to_string(), s?)))
            .collect(),
    };
    drop(candidates);
    for name in names {
        if let (Some(now), Some((seen, print))) = (stats.get(&name), vouched.get(&name))
            && now == seen
        {
            out.vouched.push((name, *print, *now));
            continue;
        }
        // Not vouched for, changed, gone, or not a regular file: read.
        if let Some(file) = super::foreign::read_task_file(fs, name)? {
            out.read.push(file);
        }
    }
    Ok(out)
}

// These tests run on `SimFs`; a packaged crate's `cargo test` without `sim`
// skips them rather than failing to build.
#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::fs::SimFs;

    fn files() -> TaskFiles {
        let stat = |ino| FileStat {
            ino,
            len: 10,
            mtime_ns: 5,
            ctime_ns: 6,
        };
        TaskFiles::from_scan(
            [
                ("a.json".to_string(), Print::of(b"a"), Some(stat(1))),
                ("b.json".to_string(), Print::of(b"bb"), Some(stat(2))),
                ("c.json".to_string(), Print::of(b"c"), None),
            ]
            .into_iter(),
        )
    }

    #[test]
    fn stats_round_trip_and_are_bound_to_one_state_json() {
        let fs = SimFs::new(1);
        files().save(&fs, 42).unwrap();
        let got = load_vouched(&fs, 42).unwrap();
        assert_eq!(got.len(), 2, "c has no stat that vouches for it");
        assert_eq!(got["b.json"].1, Print::of(b"bb"));
        assert_eq!(got["a.json"].0.ino, 1);
        assert!(
            load_vouched(&fs, 43).unwrap().is_empty(),
            "another state.json"
        );
    }

    // Guards: a stats file of version 1 (no status-change time) is ignored,
    // as a missing one is, even with a good checksum and the right
    // state.json CRC: its stats cannot tell an edit whose modification time
    // was put back.
    #[test]
    fn stats_of_another_version_are_ignored() {
        let fs = SimFs::new(1);
        files().save(&fs, 42).unwrap();
        let mut bytes = fs.read(STATS_FILE).unwrap().unwrap().to_vec();
        let body = bytes.len() - 4;
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(parse_stats(&bytes, 42).is_none());
        assert!(parse_stats(&fs.read(STATS_FILE).unwrap().unwrap(), 42).is_some());
    }

    #[test]
    fn damaged_or_cut_stats_are_ignored() {
        let fs = SimFs::new(1);
        files().save(&fs, 42).unwrap();
        let bytes = fs.read(STATS_FILE).unwrap().unwrap().to_vec();
        for cut in 0..bytes.len() {
            assert!(parse_stats(&bytes[..cut], 42).is_none(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            assert!(parse_stats(&b, 42).is_none(), "flip at {at}");
        }
        // A count larger than the bytes can hold allocates nothing.
        let mut huge = bytes[..bytes.len() - 4].to_vec();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32fast::hash(&huge);
        huge.extend_from_slice(&crc.to_le_bytes());
        assert!(parse_stats(&huge, 42).is_none());
    }
}
