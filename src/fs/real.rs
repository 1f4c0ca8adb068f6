//! [`RealFs`]: the operating system's filesystem, rooted at the state directory.
//!
//! **Invariant:** this is the only module that touches `std::fs` on the
//! store's behalf.

use super::{Bytes, FileStat, Fs, FsFile, FsMap, OpenMode, check_rel};
use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Files at least this large are memory-mapped by [`Fs::read`] instead of copied.
const MMAP_MIN_BYTES: u64 = 64 * 1024;

/// From this many files on, [`Fs::sync_files`] makes their data durable with
/// one syncfs(2) of the filesystem rather than an fsync per file.
///
/// Measured on ext4 without a journal (mounted `discard`), 100,000 new
/// 600-byte files: an `fdatasync` from 32 threads each took 3.7 to 6.9 s
/// (each writes the file's data, its inode and its directory's blocks, and
/// flushes the disk cache), one syncfs 1.3 s. The price: syncfs also writes
/// back every other process's dirty data on that filesystem and waits for
/// it, and it reports their writeback errors too (the checkpoint then
/// fails, and the next one tries again). Below this count the fsyncs cost
/// tens of milliseconds and syncfs would buy little at that price.
const SYNCFS_FILES_MIN: usize = 4096;

/// Threads that write the temp files of one batch ([`Fs::batch_threads`]).
const BATCH_THREADS: usize = 4;

/// The real filesystem, rooted at one state directory.
///
/// **Invariant:** [`Fs::read`] memory-maps a file only while this `RealFs`
/// (or a clone of it) holds the directory lock. A process without the lock
/// (`verify`, `dump-journal`, `health`, `backups`) may run beside a writer
/// that truncates a segment, and a map of it would fault with SIGBUS.
#[derive(Debug, Clone)]
pub struct RealFs {
    root: PathBuf,
    /// Whether a lock taken through this `RealFs` is held.
    locked: Arc<AtomicBool>,
    /// The state directory, opened when this `RealFs` was made, for
    /// syncfs(2) ([`SYNCFS_FILES_MIN`]): a writeback error anywhere on the
    /// filesystem since then is reported by the next syncfs through it.
    /// `None` where syncfs does not report errors (Linux before 5.8).
    syncfs: Option<Arc<File>>,
}

impl RealFs {
    /// A filesystem rooted at `root`, creating the directory (0700) if it is missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<RealFs> {
        let root = root.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        let existed = root.is_dir();
        builder
            .create(&root)
            .map_err(|e| Error::io("create directory", &root, e))?;
        if !existed {
            // Sync the parent so the new state directory's own name survives
            // power loss; without it every record journaled inside could
            // vanish with the directory entry.
            let parent = match root.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            File::open(&parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("fsync directory", &parent, e))?;
        }
        Ok(RealFs::at(root))
    }

    fn at(root: PathBuf) -> RealFs {
        let syncfs = syncfs_reports_errors()
            .then(|| File::open(&root).ok().map(Arc::new))
            .flatten();
        RealFs {
            root,
            locked: Arc::default(),
            syncfs,
        }
    }

    /// A filesystem rooted at an existing directory; creates nothing, for
    /// read-only use such as `verify`.
    pub fn existing(root: impl Into<PathBuf>) -> Result<RealFs> {
        let root = root.into();
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => Ok(RealFs::at(root)),
            Ok(_) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            )),
            Err(e) => Err(Error::io("open state directory", &root, e)),
        }
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> Result<PathBuf> {
        check_rel(rel)?;
        Ok(if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        })
    }

    /// [`RealFs::path`] for a read, refusing a path that would pass through
    /// a symlinked directory (`tasks/` linked to elsewhere). `O_NOFOLLOW`
    /// guards only the last component, and the writable open refuses such a
    /// directory up front ([`Fs::create_dir`]), but a read-only open creates
    /// nothing and so checks here. `dir_too`: `rel` itself is a directory.
    //
    // Regression (review of issue 8): the read-only open loaded the task
    // files of a tasks/ symlinked outside the state directory.
    fn read_path(&self, rel: &str, dir_too: bool) -> Result<PathBuf> {
        let path = self.path(rel)?;
        let mut dirs: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        if !dir_too {
            dirs.pop();
        }
        let mut at = self.root.clone();
        for c in dirs {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("refusing to follow the symlink {}", at.display()),
                    )
                    .with_path(at));
                }
                _ => {} // Missing or not a link: the read itself says what it is.
            }
        }
        Ok(path)
    }

    /// The sorted names in directory `rel` whose type (not followed through
    /// a symlink) passes `keep`; a missing directory lists nothing. Backs
    /// [`Fs::list`] and [`Fs::list_dirs`].
    fn list_where(&self, rel: &str, keep: fn(&std::fs::FileType) -> bool) -> Result<Vec<String>> {
        let mut names = Vec::new();
        self.each_entry(rel, |name, t| {
            if t.is_some_and(|t| keep(&t)) {
                names.push(name);
            }
        })?;
        names.sort();
        Ok(names)
    }

    /// Calls `f` with the name and type (`None` when it cannot be told) of
    /// each entry of directory `rel` whose name is UTF-8; a missing
    /// directory has none.
    fn each_entry(
        &self,
        rel: &str,
        mut f: impl FnMut(String, Option<std::fs::FileType>),
    ) -> Result<()> {
        let path = self.read_path(rel, true)?;
        let entries = match std::fs::read_dir(&path) {
            Ok(it) => it,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", &path, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &path, e))?;
            if let Ok(name) = entry.file_name().into_string() {
                f(name, entry.file_type().ok());
            }
        }
        Ok(())
    }
}

/// Never follows a symlink, and opens without blocking: `open(2)` of a FIFO
/// waits for its other end (for ever, if nobody comes), so every open of a
/// layout file passes `O_NONBLOCK` and then checks on the opened descriptor
/// that it got a regular file ([`check_regular`]).
fn nofollow_nonblocking(opts: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = opts;
}

/// The kind of a file that is not a regular one, for messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_char_device() {
            return "a character device";
        } else if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Refuses an opened file that is not a regular file. Checked with `fstat`
/// on the descriptor, not with a `stat` before the open, so nothing can be
/// swapped in between the check and the use.
fn check_regular(file: &File, path: &Path) -> Result<std::fs::Metadata> {
    let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file ({}); statewal refuses to read or write it",
                path.display(),
                file_kind(meta.file_type())
            ),
        )
        .with_path(path));
    }
    Ok(meta)
}

/// Refuses a file that is about to be written in place (a session log, an
/// archive file, a journal segment, the lock file) when it has more than
/// one hard link: the other name may be a file outside the state directory,
/// and writing through this one would change it. Files written by temp file
/// and rename are replaced, never written through, so they need no check.
fn check_single_link(meta: &std::fs::Metadata, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "refusing to write {} in place: it has {} hard links, and writing it would \
                     also change the file under its other names (possibly outside the state \
                     directory); replace it with a copy of its own to go on",
                    path.display(),
                    meta.nlink()
                ),
            )
            .with_path(path));
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, path);
    Ok(())
}

/// Clears `O_NONBLOCK` again once the file is known to be a regular file, so
/// writes behave exactly as before.
fn set_blocking(file: &File, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
        fcntl_getfl(file)
            .and_then(|flags| fcntl_setfl(file, flags - OFlags::NONBLOCK))
            .map_err(|e| Error::io("clear O_NONBLOCK on", path, e.into()))?;
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// ELOOP is what `O_NOFOLLOW` answers for a symlink: say so plainly. ENXIO
/// is what a non-blocking open for writing answers for a FIFO with no
/// reader (or a socket): that is no regular file either.
fn open_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::new(
            ErrorKind::InvalidInput,
            format!("refusing to follow the symlink {}", path.display()),
        )
        .with_path(path);
    }
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ENXIO) {
        return Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file (a FIFO, socket or device); statewal refuses to read or write it",
                path.display()
            ),
        )
        .with_path(path);
    }
    Error::io(what, path, e)
}

/// Opens a regular file for reading, never following a symlink; `Ok(None)`
/// if it does not exist. Returns the file and its length.
fn open_regular(path: &Path) -> Result<Option<(File, u64)>> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    nofollow_nonblocking(&mut opts);
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error("open", path, e)),
    };
    let meta = check_regular(&file, path)?;
    Ok(Some((file, meta.len())))
}

struct RealFile {
    file: File,
    path: PathBuf,
}

impl FsFile for RealFile {
    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn sync_data(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io("set length of", &self.path, e))
    }

    fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len())
    }

    fn set_modified(&mut self, time: std::time::SystemTime) -> Result<()> {
        self.file
            .set_modified(time)
            .map_err(|e| Error::io("set the modification time of", &self.path, e))
    }

    fn stat(&self) -> Result<Option<FileStat>> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        Ok(Some(file_stat(&meta)))
    }

    fn allocate(&mut self, len: u64) -> Result<()> {
        let have = self.len()?;
        if len <= have {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            use rustix::{fs::FallocateFlags, io::Errno};
            // fallocate(2) takes signed offsets and lengths.
            if i64::try_from(have).is_err() || i64::try_from(len - have).is_err() {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("allocating {len} bytes of {}", self.path.display()),
                ));
            }
            match rustix::fs::fallocate(&self.file, FallocateFlags::empty(), have, len - have) {
                Ok(()) => return Ok(()),
                // Not on this filesystem (or kernel): write the zeros below.
                Err(Errno::OPNOTSUPP | Errno::NOSYS) => {}
                Err(e) => return Err(Error::io("allocate", &self.path, e.into())),
            }
        }
        // No fallocate here: write the zeros.
        let zeros = vec![0u8; (len - have).min(1 << 20) as usize];
        let mut at = have;
        while at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            self.write_all_at(at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    fn map(&mut self, len: u64) -> Result<Option<Box<dyn FsMap>>> {
        let have = self.len()?;
        assert!(
            len <= have,
            "mapping {len} bytes of {} which holds {have}: a store past the end would fault",
            self.path.display()
        );
        let n = usize::try_from(len).map_err(|_| {
            Error::new(
                ErrorKind::TooLarge,
                format!("mapping {len} bytes of {}", self.path.display()),
            )
        })?;
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: the file is a regular file this process opened for
        // writing in its own locked state directory, at least `len` bytes
        // long (checked above), and statewal never shortens a file it has
        // mapped: the journal maps only the segment it is writing, which
        // nothing truncates while the store is open. Another process that
        // truncates it anyway (outside statewal's lock) would make a store
        // fault: docs/recovery.md, "Not covered".
        let map = unsafe { memmap2::MmapOptions::new().len(n).map_mut(&self.file) }
            .map_err(|e| Error::io("map", &self.path, e))?;
        Ok(Some(Box::new(RealMap { map })))
    }
}

/// A shared, writable map of the start of a file.
struct RealMap {
    map: memmap2::MmapMut,
}

impl FsMap for RealMap {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let start = usize::try_from(offset).expect("offset inside the map");
        let end = start
            .checked_add(data.len())
            .filter(|&end| end <= self.map.len())
            .expect("the journal writes only inside the map");
        copy_forward(&mut self.map[start..end], data);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }
}

/// Copies `src` into `dst` with stores in ascending address order, eight
/// bytes at a time. `copy_from_slice` may store the end of a buffer before
/// its start (glibc's memmove does, for speed), and a process killed in
/// the middle would then leave the end of a frame without its header: a
/// shape the journal's reader calls damage, not an unfinished write.
/// Volatile stores are neither reordered nor merged by the compiler, and a
/// killed thread's stores are a prefix of its program order.
fn copy_forward(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_forward: lengths differ");
    let words = src.len() / 8;
    let base = dst.as_mut_ptr();
    for i in 0..words {
        let word: [u8; 8] = src[8 * i..8 * i + 8].try_into().expect("eight bytes");
        // SAFETY: `8 * i + 8 <= dst.len()`, and `[u8; 8]` has alignment 1.
        unsafe { std::ptr::write_volatile(base.add(8 * i).cast::<[u8; 8]>(), word) };
    }
    for (i, &b) in src.iter().enumerate().skip(8 * words) {
        // SAFETY: `i < dst.len()`.
        unsafe { std::ptr::write_volatile(base.add(i), b) };
    }
}

/// The [`FileStat`] of a file's metadata.
fn file_stat(meta: &std::fs::Metadata) -> FileStat {
    use std::os::unix::fs::MetadataExt;
    FileStat {
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    }
}

/// `renameat2(RENAME_NOREPLACE)`: renames `src` to `dst` only if `dst` does
/// not exist (then it fails with `EEXIST`).
fn rename_noreplace(src: &Path, dst: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    Ok(renameat_with(CWD, src, CWD, dst, RenameFlags::NOREPLACE)?)
}

/// Keeps the file at `path`, if there is one, referenced by an `O_PATH`
/// descriptor (which reads nothing and takes no lock), so that a rename
/// over it or its removal only unlinks it: its blocks are freed when the
/// last reference goes, and on a filesystem mounted with `discard` that
/// waits for the device to discard them (measured on ext4: a rename over a
/// 600-byte file took about 1.1 ms with the wait, 35 µs without). The
/// holder is then dropped by [`release_later`], off the caller's path.
fn hold(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()
}

/// Drops `held` on a background thread, where the freeing of an unlinked
/// file's blocks (and its discard) happens. At most [`releases_queued_max`]
/// wait there (each is an open descriptor); past that, or without the
/// thread, it is dropped here, as without a hold.
fn release_later(held: Option<File>) {
    use std::sync::OnceLock;
    use std::sync::mpsc::{SyncSender, sync_channel};
    static RELEASER: OnceLock<Option<SyncSender<File>>> = OnceLock::new();
    let Some(held) = held else { return };
    let tx = RELEASER.get_or_init(|| {
        let (tx, rx) = sync_channel::<File>(releases_queued_max());
        std::thread::Builder::new()
            .name("statewal-release".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = tx {
        // Full or gone: dropped here, at the old cost.
        let _ = tx.try_send(held);
    }
}

/// How many unlinked files may wait for [`release_later`]'s thread: each
/// holds a descriptor, so an eighth of the soft limit on open files (often
/// 1024, then 128), at most 4096.
fn releases_queued_max() -> usize {
    use rustix::process::{Resource, getrlimit};
    // No soft limit (RLIM_INFINITY) is `None`.
    let soft = getrlimit(Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    (soft / 8).clamp(16, 4096)
}

/// The directory lock: the locked lock file, and the flag that lets its
/// `RealFs` map files while it is held.
struct LockGuard {
    _file: File,
    held: Arc<AtomicBool>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.held.store(false, Ordering::Release);
    }
}

/// An empty buffer with room for `len` bytes of the file at `path`, or
/// [`ErrorKind::TooLarge`] when this process cannot have that much memory:
/// a file the size of a disk (a sparse one takes a second to make) must not
/// abort the process, as `Vec::with_capacity` would.
fn buffer_for(path: &Path, len: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match usize::try_from(len).ok().map(|n| buf.try_reserve_exact(n)) {
        Some(Ok(())) => Ok(buf),
        _ => Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "reading {len} bytes of {}: more than fits in memory; read a smaller range",
                path.display()
            ),
        )
        .with_path(path)),
    }
}

impl Fs for RealFs {
    fn describe(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    fn create_dir(&self, rel: &str) -> Result<()> {
        let path = self.path(rel)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("refusing to follow the symlink {}", path.display()),
            )
            .with_path(path)),
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{} exists and is not a directory", path.display()),
            )
            .with_path(path)),
            Err(e) if e.kind() == IoKind::NotFound => {
                let mut builder = std::fs::DirBuilder::new();
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder
                    .create(&path)
                    .map_err(|e| Error::io("create directory", &path, e))
            }
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn open(&self, rel: &str, mode: OpenMode) -> Result<Box<dyn FsFile>> {
        let path = self.path(rel)?;
        let mut opts = OpenOptions::new();
        // Read too: a shared writable map ([`FsFile::map`]) needs both.
        opts.read(true).write(true);
        if mode == OpenMode::CreateNew {
            // O_CREAT | O_EXCL makes a new regular file or fails: it never
            // opens an existing entry, so no symlink is followed, no FIFO
            // blocks, and there is no other link. Three system calls fewer
            // per temp file than the checks below (a checkpoint writes up
            // to one temp file per task).
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.custom_flags(libc::O_CLOEXEC).mode(0o600);
            }
            let file = opts
                .create_new(true)
                .open(&path)
                .map_err(|e| open_error("open", &path, e))?;
            return Ok(Box::new(RealFile { file, path }));
        }
        match mode {
            OpenMode::CreateNew => opts.create_new(true),
            OpenMode::CreateOrOpen => opts.create(true),
            OpenMode::Existing => &mut opts,
        };
        nofollow_nonblocking(&mut opts);
        let file = opts.open(&path).map_err(|e| open_error("open", &path, e))?;
        let meta = check_regular(&file, &path)?;
        if mode != OpenMode::CreateNew {
            // A file created here has one link; an existing one is checked.
            check_single_link(&meta, &path)?;
        }
        set_blocking(&file, &path)?;
        Ok(Box::new(RealFile { file, path }))
    }

    fn read(&self, rel: &str) -> Result<Option<Bytes>> {
        let path = self.read_path(rel, false)?;
        let Some((mut file, len)) = open_regular(&path)? else {
            return Ok(None);
        };
        if len >= MMAP_MIN_BYTES && self.locked.load(Ordering::Acquire) {
            // SAFETY: the state directory is locked by this process (checked
            // just above), so no other statewal process truncates the file
            // while it is mapped; the map is read-only and dropped before this
            // process writes it. Without the lock the file is copied.
            // Populated: every caller reads the whole file (a segment's
            // scan, a state file's parse), and mapping its pages in one call
            // costs less than a fault per 64 KiB as the reader first touches
            // them (measured on a 56 MB segment: `docs/decisions.md`, issue 10,
            // "replay into a hash index").
            let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
                .map_err(|e| Error::io("map", &path, e))?;
            return Ok(Some(Bytes::Mapped(map)));
        }
        let mut buf = buffer_for(&path, len)?;
        file.read_to_end(&mut buf)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok(Some(Bytes::Owned(buf)))
    }

    fn read_unmapped(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = self.read_path(rel, false)?;
        let Some((mut file, len)) = open_regular(&path)? else {
            return Ok(None);
        };
        // Plain read(2) calls up to end of file: a writer that truncates the
        // file meanwhile shortens what is read, one that grows it lengthens
        // it, and neither can fault this process as a map would.
        let mut buf = buffer_for(&path, len)?;
        file.read_to_end(&mut buf)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok(Some(buf))
    }

    fn read_at(&self, rel: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let path = self.read_path(rel, false)?;
        let Some((mut file, file_len)) = open_regular(&path)? else {
            return Ok(None);
        };
        // Plain read(2) calls from the offset, as in `read_unmapped`: a file
        // that grows or shrinks meanwhile gives what was there to read. The
        // buffer is sized from the length seen at open, never from `len`
        // alone, so a huge `len` allocates nothing extra.
        let want = len.min(file_len.saturating_sub(offset));
        let mut buf = buffer_for(&path, want)?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", &path, e))?;
        file.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok(Some(buf))
    }

    fn is_dir(&self, rel: &str) -> Result<bool> {
        let path = self.path(rel)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn file_len(&self, rel: &str) -> Result<Option<u64>> {
        let path = self.read_path(rel, false)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(m) if m.file_type().is_symlink() => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("refusing to follow the symlink {}", path.display()),
            )
            .with_path(path)),
            Ok(_) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            )
            .with_path(path)),
            Err(e) if e.kind() == IoKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn stat(&self, rel: &str) -> Result<Option<FileStat>> {
        let path = self.read_path(rel, false)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(file_stat(&m))),
            Ok(_) => self.file_len(rel).map(|_| None), // Its error names what it is.
            Err(e) if e.kind() == IoKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn read_at_stat(
        &self,
        rel: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Vec<u8>, Option<FileStat>)>> {
        let path = self.read_path(rel, false)?;
        let Some((file, _)) = open_regular(&path)? else {
            return Ok(None);
        };
        // The stat comes first: a write after it shows in the next stat.
        let stat = file_stat(&file.metadata().map_err(|e| Error::io("stat", &path, e))?);
        let want = len.min(stat.len.saturating_sub(offset));
        let mut buf = buffer_for(&path, want)?;
        use std::io::Seek;
        let mut file = file;
        file.seek(std::io::SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", &path, e))?;
        file.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok(Some((buf, Some(stat))))
    }

    fn stat_in(&self, dir: &str, names: &[&str]) -> Result<Vec<Option<FileStat>>> {
        use std::os::unix::fs::OpenOptionsExt;
        // The directory is checked and opened once (never through a
        // symlink), and each name is looked up in it without following a
        // symlink: one system call per name.
        let path = self.read_path(dir, true)?;
        let handle = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(h) => h,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(vec![None; names.len()]),
            Err(e) => return Err(open_error("open directory", &path, e)),
        };
        let stat_one = |name: &&str| -> Result<Option<FileStat>> {
            use rustix::fs::{AtFlags, FileType, statat};
            // No file has a NUL in its name.
            if name.contains('\0') {
                return Ok(None);
            }
            let st = match statat(&handle, *name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    let e = std::io::Error::from(e);
                    return match e.kind() {
                        IoKind::NotFound => Ok(None),
                        _ => Err(Error::io("stat", path.join(name), e)),
                    };
                }
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Ok(None);
            }
            Ok(Some(FileStat {
                ino: st.st_ino,
                len: st.st_size as u64,
                mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
                ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
            }))
        };
        // Two threads: the lookups are CPU work in the kernel.
        super::in_parallel(2, names, stat_one)
    }

    fn list_all(&self, rel: &str) -> Result<Option<Vec<String>>> {
        self.list_where(rel, |_| true).map(Some)
    }

    fn list_typed(&self, rel: &str) -> Result<Option<super::Listing>> {
        let mut out = super::Listing::default();
        // One readdir: `DirEntry::file_type` is the entry's d_type where the
        // filesystem gives one (ext4, xfs, btrfs do), so no entry is stat'ed.
        self.each_entry(rel, |name, t| match t.is_some_and(|t| t.is_file()) {
            true => out.files.push(name),
            false => out.others.push(name),
        })?;
        out.files.sort();
        Ok(Some(out))
    }

    fn batch_threads(&self) -> usize {
        BATCH_THREADS
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        // Most renames make a new name (a batch of new tasks): one call,
        // and nothing to hold. Only when a file is there is it held.
        match rename_noreplace(&src, &dst) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            // Not supported here (EINVAL), or failing for a reason the
            // plain rename below reports in its own words.
            Err(_) => {}
        }
        let replaced = hold(&dst);
        let renamed = std::fs::rename(&src, &dst)
            .map_err(|e| Error::io(&format!("rename to {} of", dst.display()), &src, e));
        release_later(replaced);
        renamed
    }

    fn remove(&self, rel: &str) -> Result<()> {
        let path = self.path(rel)?;
        let removed = hold(&path);
        let result = match std::fs::remove_file(&path) {
            Err(e) if e.kind() != IoKind::NotFound => Err(Error::io("remove", &path, e)),
            _ => Ok(()),
        };
        release_later(removed);
        result
    }

    fn sync_dir(&self, rel: &str) -> Result<()> {
        let path = self.path(rel)?;
        let mut opts = OpenOptions::new();
        opts.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // O_DIRECTORY: a FIFO swapped in for a directory fails the open
            // instead of blocking it.
            opts.custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_CLOEXEC);
        }
        let dir = opts
            .open(&path)
            .map_err(|e| Error::io("open directory", &path, e))?;
        dir.sync_all()
            .map_err(|e| Error::io("fsync directory", &path, e))
    }

    fn list(&self, rel: &str) -> Result<Vec<String>> {
        // `DirEntry::file_type` does not follow symlinks, so a planted
        // link is never listed as a file.
        self.list_where(rel, std::fs::FileType::is_file)
    }

    fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        // Not followed: a symlink to a directory is not listed.
        self.list_where(rel, std::fs::FileType::is_dir)
    }

    fn sync_files(&self, rels: &[String]) -> Result<()> {
        // One fsync waits for its own journal commit on ext4, but concurrent
        // fsyncs share commits, so many files are synced from a few threads.
        // Past SYNCFS_FILES_MIN files, one syncfs(2) instead (see there).
        if rels.len() >= SYNCFS_FILES_MIN
            && let Some(fd) = self.syncfs.as_deref()
        {
            return syncfs(fd, &self.root);
        }
        const FILES_PER_THREAD: usize = 8;
        const THREADS_MAX: usize = 32;
        let sync = |rel: &String| self.open(rel, OpenMode::Existing)?.sync_data();
        if rels.len() <= FILES_PER_THREAD {
            return rels.iter().try_for_each(sync);
        }
        let threads = rels.len().div_ceil(FILES_PER_THREAD).min(THREADS_MAX);
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            match rels.get(i) {
                                Some(rel) => sync(rel)?,
                                None => return Ok(()),
                            }
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().expect("fsync workers do not panic"))
        })
    }

    fn boot_id(&self) -> Option<[u8; 16]> {
        // Read once per process: the boot id cannot change while it runs.
        static BOOT_ID: std::sync::OnceLock<Option<[u8; 16]>> = std::sync::OnceLock::new();
        *BOOT_ID.get_or_init(|| {
            let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            parse_uuid(text.trim())
        })
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        use std::io::Write;
        let path = self.root.join(crate::layout::LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        nofollow_nonblocking(&mut opts);
        let mut file = opts
            .open(&path)
            .map_err(|e| open_error("open lock file", &path, e))?;
        // The holder's pid is written into the lock file in place: a FIFO
        // there would block the read below, and a hard link would carry the
        // write to the file's other name.
        let meta = check_regular(&file, &path)?;
        check_single_link(&meta, &path)?;
        set_blocking(&file, &path)?;
        match try_lock_briefly(&file) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "state directory {} is locked by another process{who}; \
                         one process at a time may open it",
                        self.root.display()
                    ),
                )
                .with_path(&path));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        // Record the holder for the message above; best effort, not durable.
        let _ = file.set_len(0);
        let _ = file.write_all(std::process::id().to_string().as_bytes());
        self.locked.store(true, Ordering::Release);
        Ok(Box::new(LockGuard {
            _file: file,
            held: self.locked.clone(),
        }))
    }
}

/// Makes every dirty page and inode of the filesystem holding `dir` durable,
/// and reports any writeback error on it since the last syncfs through
/// `dir` (or since it was opened).
fn syncfs(dir: &File, root: &Path) -> Result<()> {
    rustix::fs::syncfs(dir)
        .map_err(|e| Error::io("syncfs of the filesystem holding", root, e.into()))
}

/// Whether syncfs(2) reports writeback errors: Linux 5.8 and later. Before,
/// it returned success whatever happened, and only fsync could be trusted.
fn syncfs_reports_errors() -> bool {
    static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KNOWN.get_or_init(|| {
        let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
            return false;
        };
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (5, 8)
    })
}

/// The 16 bytes of a UUID in its text form (`8-4-4-4-12` hex digits).
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    (out != [0; 16]).then_some(out)
}

/// Takes the lock, trying again for up to about 250 ms while it is held.
///
/// A lock this process has just released can still be held for a moment by
/// a child process another thread is spawning: the lock belongs to the open
/// file, and the child holds a copy of the descriptor from its fork until
/// its exec closes it (`O_CLOEXEC`). Without the retry, a store dropped and
/// reopened beside a spawning thread failed now and then with `Locked` (seen
/// as flaky tests: `lock::second_open_is_locked_until_the_first_is_dropped`,
/// `cli_clean`, `torn_tail`). A lock held by a live store elsewhere is still
/// reported, after the retries.
fn try_lock_briefly(file: &std::fs::File) -> std::result::Result<(), std::fs::TryLockError> {
    let mut pause_ms = 1;
    let mut waited_ms = 0;
    loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if waited_ms < 250 => {
                std::thread::sleep(std::time::Duration::from_millis(pause_ms));
                waited_ms += pause_ms;
                pause_ms = (pause_ms * 2).min(50);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    // The syncfs path of `sync_files` (a batch of SYNCFS_FILES_MIN files
    // or more) and the hold on a replaced file: a batch writes, replaces
    // and removes what it says. Durability itself is the crash suites'
    // (on SimFs, through the same `write_atomic_batch`).
    #[test]
    fn a_large_batch_writes_replaces_and_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = RealFs::new(tmp.path()).unwrap();
        fs.create_dir("d").unwrap();
        let files: Vec<(String, Option<Vec<u8>>)> = (0..SYNCFS_FILES_MIN + 10)
            .map(|i| {
                (
                    format!("{i}.json"),
                    Some(format!("{{\"n\": {i}}}").into_bytes()),
                )
            })
            .collect();
        super::super::write_atomic_batch(&fs, "d", &files).unwrap();
        let again = vec![
            ("0.json".to_string(), Some(b"new".to_vec())),
            ("1.json".to_string(), None),
        ];
        super::super::write_atomic_batch(&fs, "d", &again).unwrap();
        assert_eq!(fs.read("d/0.json").unwrap().unwrap().to_vec(), b"new");
        assert!(fs.read("d/1.json").unwrap().is_none());
        assert_eq!(&*fs.read("d/7.json").unwrap().unwrap(), b"{\"n\": 7}");
        let names = fs.list("d").unwrap();
        assert_eq!(names.len(), SYNCFS_FILES_MIN + 9, "no temp file left");
    }
}

#[cfg(test)]
mod map_tests {
    use super::*;

    #[test]
    fn copy_forward_copies_every_length() {
        let src: Vec<u8> = (0..100u8).collect();
        for n in 0..src.len() {
            let mut dst = vec![0xffu8; n];
            copy_forward(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n]);
        }
    }

    #[test]
    fn allocate_grows_the_file_with_zeros_and_never_shrinks_it() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs::new(dir.path()).unwrap();
        let mut f = fs.open("seg", OpenMode::CreateNew).unwrap();
        f.write_all_at(0, b"head").unwrap();
        f.allocate(10_000).unwrap();
        assert_eq!(f.len().unwrap(), 10_000);
        f.allocate(100).unwrap();
        assert_eq!(f.len().unwrap(), 10_000);
        let bytes = fs.read_unmapped("seg").unwrap().unwrap();
        assert_eq!(&bytes[..4], b"head");
        assert!(bytes[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_store_through_the_map_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs::new(dir.path()).unwrap();
        let mut f = fs.open("seg", OpenMode::CreateNew).unwrap();
        f.write_all_at(0, &[0u8; 8192]).unwrap();
        let mut map = f.map(8192).unwrap().expect("RealFs maps");
        map.write_at(4000, b"through the map").unwrap();
        f.sync_data().unwrap();
        let bytes = fs.read_unmapped("seg").unwrap().unwrap();
        assert_eq!(&bytes[4000..4015], b"through the map");
        assert_eq!(bytes.len(), 8192);
    }
}

#[cfg(test)]
mod boot_id_tests {
    use super::*;

    #[test]
    fn uuid_text_parses() {
        let id = parse_uuid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").expect("valid");
        assert_eq!(id[0], 0x0f);
        assert_eq!(id[15], 0xf0);
        assert_eq!(parse_uuid("nope"), None);
        if std::path::Path::new("/proc/sys/kernel/random/boot_id").exists() {
            assert!(RealFs::new(".").is_ok_and(|fs| fs.boot_id().is_some()));
        }
    }
}
