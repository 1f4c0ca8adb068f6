//! The filesystem seam: every byte the store reads or writes goes through [`Fs`].
//!
//! Paths given to an [`Fs`] are relative to the state directory and use `/`
//! separators (`"tasks/a.json"`). An implementation refuses anything that
//! would leave the directory (an absolute path or a `..` component), so the
//! store cannot touch a file outside it even through a bug.
//!
//! [`RealFs`] is the operating system. `sim::SimFs` (with the `sim`
//! feature) is a simulated, fault-injecting one for crash tests; it plugs in
//! through the same trait.

mod read_only;
mod real;
#[cfg(feature = "sim")]
pub mod sim;

pub use read_only::ReadOnlyFs;
pub use real::RealFs;
#[cfg(feature = "sim")]
pub use sim::SimFs;

use crate::error::{Error, ErrorKind, Result};
use std::ops::Deref;

/// How [`Fs::open`] treats an existing or missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file; fail if it exists (temp files, new journal segments).
    CreateNew,
    /// Open the file for writing, creating it if missing (session logs).
    CreateOrOpen,
    /// Open an existing file for writing (truncating a torn journal tail).
    Existing,
}

/// The whole contents of a file, read once. The real filesystem maps large
/// files into memory rather than copying them.
pub enum Bytes {
    /// Bytes copied into memory.
    Owned(Vec<u8>),
    /// A read-only memory map of the file.
    Mapped(memmap2::Mmap),
}

/// The kind and the length, not the bytes.
impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Bytes::Owned(_) => "Owned",
            Bytes::Mapped(_) => "Mapped",
        };
        write!(f, "Bytes::{kind}({} bytes)", self.len())
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

/// An open file, for writing. Reads go through [`Fs::read`].
// `len` is the file's length in bytes; an `is_empty` would add nothing here.
#[allow(clippy::len_without_is_empty)]
pub trait FsFile: Send + Sync {
    /// Writes all of `data` at `offset`.
    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Flushes the file's data (and the size, if it changed) to stable storage.
    fn sync_data(&mut self) -> Result<()>;
    /// Sets the file's length, cutting or zero-extending it.
    fn set_len(&mut self, len: u64) -> Result<()>;
    /// The file's current length.
    fn len(&self) -> Result<u64>;
    /// Sets the file's modification time. Default: does nothing (then
    /// [`FsFile::stat`] shows a recent time, and the open's stat-only check
    /// never trusts the file: see `reconcile::live`).
    fn set_modified(&mut self, time: std::time::SystemTime) -> Result<()> {
        let _ = time;
        Ok(())
    }
    /// The file's [`FileStat`] now, taken on the open file. Default: `None`,
    /// unknown.
    fn stat(&self) -> Result<Option<FileStat>> {
        Ok(None)
    }
    /// Makes the file at least `len` bytes long, the new bytes reading as
    /// zeros and their space allocated, as cheaply as the implementation
    /// can: the real one uses `fallocate` (no bytes written; the extents
    /// are marked unwritten), falling back to writing zeros. Not durable
    /// until [`FsFile::sync_data`]. Default: [`FsFile::set_len`].
    fn allocate(&mut self, len: u64) -> Result<()> {
        if len > self.len()? {
            self.set_len(len)?;
        }
        Ok(())
    }
    /// A writable shared mapping of the file's first `len` bytes, which the
    /// file must already hold, or `None` where the implementation offers
    /// none (the default). A write through it lands in the page cache as a
    /// `write` would: it survives a process crash, and is durable only once
    /// [`FsFile::sync_data`] returns. The journal maps only bytes whose
    /// space is already allocated (written as zeros, or [`FsFile::allocate`]d),
    /// so a store through the map needs no new space on ext4 or xfs (a
    /// copy-on-write filesystem may still need some, and a full one answers
    /// that with SIGBUS, not an error).
    fn map(&mut self, len: u64) -> Result<Option<Box<dyn FsMap>>> {
        let _ = len;
        Ok(None)
    }
}

/// What tells one version of a file from another without reading it: its
/// inode, length, modification time and status-change time. Two stats are
/// equal only when the file was neither replaced (a new inode), nor written
/// (a new modification time, unless in the same clock tick), nor resized,
/// nor had its metadata changed since: the status-change time (`ctime`) is
/// set by the kernel at every write, rename and metadata change, and no
/// user can set it, so an in-place edit whose modification time was put
/// back (`touch -r`, `rsync -t`, `cp -p` onto the same inode) still changes
/// the stat. The open's stat-only check of `tasks/` rests on it
/// (`reconcile::live`, which says when a stat may be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStat {
    /// The inode number (on `SimFs`, the node's number).
    pub ino: u64,
    /// The length in bytes.
    pub len: u64,
    /// The modification time, in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// The status-change time (`st_ctime`), in nanoseconds since the Unix
    /// epoch; compared for equality only (see [`FileStat::settled`]).
    pub ctime_ns: i128,
}

/// How far a file's modification time must lie before the moment its stat
/// was taken for the stat to vouch for the bytes read (or written) with it
/// ([`FileStat::settled`]). Any write after that moment stamps the file with
/// a time at most one clock tick before it (the kernel's coarse clock, or a
/// whole second where the filesystem keeps no finer time), so later than a
/// settled stat's time, and the next stat differs.
pub const MTIME_SETTLED_NS: i128 = 2_000_000_000;

impl FileStat {
    /// Whether a later write is certain to change this stat, taken at `now`
    /// (or after it): its modification time is at least
    /// [`MTIME_SETTLED_NS`] before `now`. A file written in the same clock
    /// tick as it was last stamped, with the same length and in place,
    /// would otherwise look unchanged. Only the modification time counts:
    /// the checkpoint stamps it back, but cannot do that to the
    /// status-change time, which its own rename sets to now; that time is
    /// compared for equality, and catches any later change but one in the
    /// same clock tick that also puts back the modification time.
    pub fn settled(&self, now: std::time::SystemTime) -> bool {
        self.mtime_ns < FileStat::ns_of(now) - MTIME_SETTLED_NS
    }

    /// Nanoseconds since the Unix epoch of `t` (negative before it).
    pub fn ns_of(t: std::time::SystemTime) -> i128 {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        }
    }
}

/// A writable shared mapping of the start of a file ([`FsFile::map`]).
// `len` is the mapping's length; an `is_empty` would add nothing here.
#[allow(clippy::len_without_is_empty)]
pub trait FsMap: Send + Sync {
    /// Copies `data` into the mapping at `offset`, front to back, so that a
    /// process killed mid-copy leaves a prefix of it, as an interrupted
    /// `write` does. `offset + data.len()` must be at most [`FsMap::len`].
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// The mapped length in bytes.
    fn len(&self) -> u64;
}

/// A directory's entries, as one listing types them ([`Fs::list_typed`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The regular files, sorted, as [`Fs::list`] gives them.
    pub files: Vec<String>,
    /// Every other entry (a directory, a symlink, a FIFO, a socket, a
    /// device), unsorted.
    pub others: Vec<String>,
}

/// The narrow set of filesystem operations the store needs.
pub trait Fs: Send + Sync + 'static {
    /// A human-readable name of the root, for messages.
    fn describe(&self, rel: &str) -> String;
    /// Creates a directory if it is missing (mode 0700). An existing symlink
    /// in its place is refused.
    fn create_dir(&self, rel: &str) -> Result<()>;
    /// Opens a file for writing (files are created with mode 0600). Never
    /// follows a symlink, never blocks on a FIFO, and refuses anything but a
    /// regular file. An existing file (`CreateOrOpen`, `Existing`) with more
    /// than one hard link is refused too: those modes write in place, and
    /// the other name may be outside the state directory. (Files written by
    /// temp file and rename need no such check: the rename replaces the
    /// link, it never writes through it.)
    fn open(&self, rel: &str, mode: OpenMode) -> Result<Box<dyn FsFile>>;
    /// Reads a whole regular file; `Ok(None)` if it does not exist. Never
    /// follows a symlink and never blocks on a FIFO: anything but a regular
    /// file is an [`ErrorKind::InvalidInput`] error naming it.
    fn read(&self, rel: &str) -> Result<Option<Bytes>>;
    /// Reads a whole regular file with plain reads into memory, never
    /// through a memory map, so that a file another process truncates or
    /// grows meanwhile gives the bytes read, never a fault (SIGBUS).
    /// `Ok(None)` if it does not exist.
    fn read_unmapped(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read(rel)?.map(|b| b.to_vec()))
    }
    /// The bytes of a file as they are on disk, [`Fs::read_unmapped`]'s
    /// bytes except under a sealing layer (an encrypted store), which gives
    /// the sealed bytes: what a replica ships. Default: `read_unmapped`.
    fn read_raw(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        self.read_unmapped(rel)
    }
    /// The plain bytes of `raw`, bytes of file `rel` as [`Fs::read_raw`]
    /// gave them: the same bytes except under a sealing layer, which opens
    /// them (an error if they do not authenticate). Default: `raw`.
    fn unseal<'a>(&self, rel: &str, raw: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
        let _ = rel;
        Ok(std::borrow::Cow::Borrowed(raw))
    }
    /// Reads at most `len` bytes of a regular file from byte `offset`, with
    /// plain reads as [`Fs::read_unmapped`] does; fewer at the end of the
    /// file, none from past it. `Ok(None)` if it does not exist. For reading
    /// part of a large file (a session log) without reading all of it.
    /// Default: [`Fs::read_unmapped`], then the part asked for.
    fn read_at(&self, rel: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_unmapped(rel)?
            .map(|bytes| part_of(&bytes, offset, len)))
    }
    /// Whether `rel` is a directory (a symlink is not).
    fn is_dir(&self, rel: &str) -> Result<bool>;
    /// The length of a regular file; `Ok(None)` if it does not exist.
    fn file_len(&self, rel: &str) -> Result<Option<u64>>;
    /// Renames `from` over `to`, atomically replacing it.
    fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Removes a file; a missing file is not an error.
    fn remove(&self, rel: &str) -> Result<()>;
    /// Makes creations, renames and removals in a directory durable.
    fn sync_dir(&self, rel: &str) -> Result<()>;
    /// The names of the regular files in a directory (symlinks and
    /// subdirectories are left out), sorted.
    fn list(&self, rel: &str) -> Result<Vec<String>>;
    /// The names of the subdirectories of a directory (symlinks are left
    /// out), sorted. Default: none, for an implementation that has no
    /// subdirectories to show (statewal only uses this to find the journal
    /// segments a merge kept aside, `journal/superseded-<ms>/`).
    fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        let _ = rel;
        Ok(Vec::new())
    }
    /// Takes the exclusive lock on the state directory, held until the
    /// returned guard is dropped.
    fn lock(&self) -> Result<Box<dyn Send + Sync>>;
    /// The id of the machine's current boot, if known: it changes at every
    /// restart, and a process that dies without one leaves the page cache
    /// (every write it made) intact. Recovery's same-boot rule rests on it
    /// (`docs/recovery.md`). Default: unknown.
    fn boot_id(&self) -> Option<[u8; 16]> {
        None
    }
    /// Makes the data of every listed file durable, as `sync_data` on each
    /// would. An implementation may flush more than asked (the real one
    /// syncs the whole filesystem once when that is cheaper than many
    /// fsyncs).
    fn sync_files(&self, rels: &[String]) -> Result<()> {
        for rel in rels {
            self.open(rel, OpenMode::Existing)?.sync_data()?;
        }
        Ok(())
    }
    /// The [`FileStat`] of a regular file; `Ok(None)` when it does not
    /// exist, or when this filesystem cannot tell versions apart (the
    /// default): every caller then reads the file, as without a stat.
    /// Anything but a regular file is an [`ErrorKind::InvalidInput`] error,
    /// as for [`Fs::file_len`].
    fn stat(&self, rel: &str) -> Result<Option<FileStat>> {
        self.file_len(rel).map(|_| None)
    }
    /// [`Fs::stat`] of each of `names` in directory `dir`, in order; `None`
    /// for a name that is missing, not a regular file, or cannot be told
    /// apart (callers then read it). Any other failure is an error.
    fn stat_in(&self, dir: &str, names: &[&str]) -> Result<Vec<Option<FileStat>>> {
        names
            .iter()
            .map(|n| match self.stat(&join(dir, n)) {
                Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(None),
                other => other,
            })
            .collect()
    }
    /// [`Fs::read_at`], with the file's [`FileStat`] taken on the open file
    /// *before* the bytes are read (so a write after the stat shows in a
    /// later stat, never in bytes the stat vouches for). Default: no stat.
    fn read_at_stat(
        &self,
        rel: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Vec<u8>, Option<FileStat>)>> {
        Ok(self.read_at(rel, offset, len)?.map(|b| (b, None)))
    }
    /// The names of every entry in a directory, whatever it is (regular
    /// files, directories, symlinks, FIFOs, ...), unsorted; a missing
    /// directory lists nothing. `Ok(None)` when this filesystem cannot list
    /// them all (the default): callers then look each name up instead.
    fn list_all(&self, rel: &str) -> Result<Option<Vec<String>>> {
        let _ = rel;
        Ok(None)
    }
    /// A directory's entries from one listing, split by the type the
    /// listing gives each (never followed through a symlink): what
    /// [`Fs::list`] returns, and the names of everything else. A missing
    /// directory lists nothing. `Ok(None)` when this filesystem cannot
    /// type its entries in one listing (the default): callers then use
    /// [`Fs::list`] and look up any other name they need.
    fn list_typed(&self, rel: &str) -> Result<Option<Listing>> {
        let _ = rel;
        Ok(None)
    }
    /// The time now, as this filesystem stamps files. Default: the system
    /// clock.
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
    /// How many threads may write the files of one batch at once
    /// (`write_atomic_batch`). Default: 1, one after the other, so a
    /// simulated filesystem counts the same operations in the same order at
    /// every run.
    fn batch_threads(&self) -> usize {
        1
    }
}

/// Checks that `rel` stays inside the state directory.
pub(crate) fn check_rel(rel: &str) -> Result<()> {
    let bad = rel.starts_with('/')
        || rel.contains('\\')
        || rel.contains('\0')
        || rel.split('/').any(|c| c == ".." || c == ".");
    if bad {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("refusing path {rel:?}: it would leave the state directory"),
        ));
    }
    Ok(())
}

/// The at most `len` bytes of `bytes` from `offset`, as [`Fs::read_at`]
/// returns them.
pub(crate) fn part_of(bytes: &[u8], offset: u64, len: u64) -> Vec<u8> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
    bytes[start..end.min(bytes.len())].to_vec()
}

/// Joins a directory and a file name into a relative path.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Writes `data` to `rel` atomically: a temp file in the same directory, its
/// data synced, renamed over the target, and the directory synced.
pub(crate) fn write_atomic(fs: &dyn Fs, dir: &str, name: &str, data: &[u8]) -> Result<()> {
    let (tmp, mut file) = write_temp(fs, dir, name, data)?;
    // Sync the data before the rename so the new name never points at a
    // file whose contents were lost.
    file.sync_data()?;
    drop(file);
    fs.rename(&tmp, &join(dir, name))?;
    // Sync the directory so the rename survives power loss.
    fs.sync_dir(dir)
}

/// Replaces `dir/name` with `data` by temp file and rename, without any
/// sync: for a cache, which power loss may leave old, empty or torn (its
/// reader must check it), never for anything the store needs.
pub(crate) fn write_replace_unsynced(
    fs: &dyn Fs,
    dir: &str,
    name: &str,
    data: &[u8],
) -> Result<()> {
    let (tmp, file) = write_temp(fs, dir, name, data)?;
    drop(file);
    fs.rename(&tmp, &join(dir, name))
}

/// Writes several files into `dir` atomically with one data sync for all of
/// them and one directory sync: every temp file is written, their data is
/// synced together, then each is renamed over its target. `None` removes
/// the file instead.
pub(crate) fn write_atomic_batch(
    fs: &dyn Fs,
    dir: &str,
    files: &[(String, Option<Vec<u8>>)],
) -> Result<()> {
    write_atomic_batch_stamped(fs, dir, files, None).map(drop)
}

/// [`write_atomic_batch`], and, with `stamp`, each file written gets that
/// modification time (before its data is synced) and its [`FileStat`] is
/// returned, in the order of `files` (`None` for a removal, where the
/// filesystem cannot stat, or where the file changed between its write and
/// the stat). The temp files are written by up to [`Fs::batch_threads`]
/// threads at once.
///
/// The stat is taken after the renames, since a rename sets the renamed
/// file's status-change time; it vouches for the bytes written only when
/// its inode, length and modification time are those the open temp file
/// had after the write (one more `fstatat` per file).
pub(crate) fn write_atomic_batch_stamped(
    fs: &dyn Fs,
    dir: &str,
    files: &[(String, Option<Vec<u8>>)],
    stamp: Option<std::time::SystemTime>,
) -> Result<Vec<Option<FileStat>>> {
    let bodies: Vec<(&str, &[u8])> = files
        .iter()
        .filter_map(|(name, body)| body.as_deref().map(|b| (name.as_str(), b)))
        .collect();
    let written = in_parallel(fs.batch_threads(), &bodies, |&(name, data)| {
        let (_, mut file) = write_temp(fs, dir, name, data)?;
        if let Some(t) = stamp {
            file.set_modified(t)?;
        }
        // Taken now, on the file written, to check the one taken after the
        // rename against: the rename changes only the status-change time.
        stamp.map_or(Ok(None), |_| file.stat())
    })?;
    let temps: Vec<String> = bodies
        .iter()
        .map(|(name, _)| temp_name(dir, name))
        .collect();
    // Sync the data before the renames so no new name points at a file
    // whose contents were lost.
    fs.sync_files(&temps)?;
    let mut stats = Vec::with_capacity(files.len());
    let mut written = written.into_iter();
    for (name, body) in files {
        let target = join(dir, name);
        match body {
            Some(_) => {
                fs.rename(&temp_name(dir, name), &target)?;
                stats.push(written.next().flatten());
            }
            None => {
                fs.remove(&target)?;
                stats.push(None);
            }
        }
    }
    if !files.is_empty() {
        // Sync the directory so the renames and removals survive power loss.
        fs.sync_dir(dir)?;
    }
    if stamp.is_some() {
        restat_after_rename(fs, dir, files, &mut stats)?;
    }
    Ok(stats)
}

/// Replaces each stat taken on a written temp file with the target's stat
/// now, after its rename, when inode, length and modification time still
/// agree (else `None`: something changed the file since, and its stat
/// vouches for nothing).
fn restat_after_rename(
    fs: &dyn Fs,
    dir: &str,
    files: &[(String, Option<Vec<u8>>)],
    stats: &mut [Option<FileStat>],
) -> Result<()> {
    let at: Vec<usize> = (0..files.len()).filter(|&i| stats[i].is_some()).collect();
    if at.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = at.iter().map(|&i| files[i].0.as_str()).collect();
    let now = fs.stat_in(dir, &names)?;
    for (i, after) in at.into_iter().zip(now) {
        let before = stats[i].expect("only stats taken");
        stats[i] = after
            .filter(|a| (a.ino, a.len, a.mtime_ns) == (before.ino, before.len, before.mtime_ns));
    }
    Ok(())
}

/// `f` of each item, in order, run on up to `threads` threads; the first
/// error stops the rest (items not yet started are skipped).
pub(super) fn in_parallel<T: Sync, R: Send>(
    threads: usize,
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    /// Fewer items than this per thread are not worth a thread.
    const ITEMS_PER_THREAD_MIN: usize = 64;
    let threads = threads.min(items.len() / ITEMS_PER_THREAD_MIN).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> (Vec<(usize, R)>, Result<()>) {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= items.len() || failed.load(Ordering::Relaxed) {
                return (done, Ok(()));
            }
            match f(&items[i]) {
                Ok(r) => done.push((i, r)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return (done, Err(e));
                }
            }
        }
    };
    /// What one worker did: its items' results by index, and how it ended.
    type Part<R> = (Vec<(usize, R)>, Result<()>);
    let parts: Vec<Part<R>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("batch workers do not panic"))
            .collect()
    });
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (done, outcome) in parts {
        outcome?;
        for (i, r) in done {
            results[i] = Some(r);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every item ran when none failed"))
        .collect())
}

/// `dir/.<name>.tmp`: the temp file of an atomic write. Ids never start with
/// a dot, so it cannot collide with a layout file.
fn temp_name(dir: &str, name: &str) -> String {
    join(dir, &format!(".{name}.tmp"))
}

/// Writes `data` to a fresh temp file for `name`, not yet synced.
fn write_temp(
    fs: &dyn Fs,
    dir: &str,
    name: &str,
    data: &[u8],
) -> Result<(String, Box<dyn FsFile>)> {
    let tmp = temp_name(dir, name);
    let mut file = match fs.open(&tmp, OpenMode::CreateNew) {
        // A leftover from a crash mid-write: harmless, replaced here. Tried
        // only when the create finds one, so a batch of new files costs no
        // lookup of a name that is not there.
        Err(e) if already_exists(&e) => {
            fs.remove(&tmp)?;
            fs.open(&tmp, OpenMode::CreateNew)?
        }
        other => other?,
    };
    file.write_all_at(0, data)?;
    Ok((tmp, file))
}

/// Whether `e` is the operating system's "file exists" (EEXIST).
fn already_exists(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
}
