//! What statewal is measured against, shared by the criterion benches and
//! `statewal bench` (which includes this file with `#[path]`).
//!
//! - `direct-atomic`: what a careful program does without a journal: each
//!   mutation writes `tasks/<id>.json` to a temp file, fsyncs it, renames it
//!   over the target and fsyncs the directory.
//! - `direct-naive`: overwrite `tasks/<id>.json` in place with no fsync, as the
//!   original TypeScript server did. Not durable.
//! - `raw-append`: the disk's limit for a durable log: the same bytes written
//!   into a file preallocated with zeros, one `fdatasync` per write (one
//!   thread) or per group of concurrent writes (N threads).
#![allow(dead_code)] // Each includer uses a different part.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// A task of about `bytes` bytes of JSON with the given id.
pub fn task_json(id: &str, bytes: usize) -> String {
    let head = format!(
        r#"{{"id":"{id}","description":"","status":"in_progress","tool":"CLAUDECODE","logs":[]}}"#
    );
    let pad = bytes.saturating_sub(head.len());
    format!(
        r#"{{"id":"{id}","description":"{}","status":"in_progress","tool":"CLAUDECODE","logs":[]}}"#,
        "x".repeat(pad)
    )
}

/// Writes `tasks/<id>.json` the careful way: temp file, fsync, rename, directory fsync.
pub fn direct_atomic_put(dir: &Path, id: &str, json: &[u8]) -> std::io::Result<()> {
    let tasks = dir.join("tasks");
    let tmp = tasks.join(format!(".{id}.json.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(json)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, tasks.join(format!("{id}.json")))?;
    File::open(&tasks)?.sync_all()
}

/// Overwrites `tasks/<id>.json` in place, no fsync.
pub fn direct_naive_put(dir: &Path, id: &str, json: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join("tasks").join(format!("{id}.json")), json)
}

/// Prepares a directory for the direct baselines.
pub fn direct_dir(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("tasks"))?;
    Ok(dir.to_path_buf())
}

/// A zero-preallocated file with group-commit appends: the disk's limit.
pub struct RawAppend {
    file: File,
    size: u64,
    state: Mutex<RawState>,
    synced: Condvar,
}

struct RawState {
    next_offset: u64,
    written: u64,
    synced: u64,
    syncing: bool,
}

impl RawAppend {
    /// Creates `path` filled with `size` zeros and synced.
    pub fn create(path: &Path, size: u64) -> std::io::Result<RawAppend> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let chunk = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        let state = RawState {
            next_offset: 0,
            written: 0,
            synced: 0,
            syncing: false,
        };
        Ok(RawAppend {
            file,
            size,
            state: Mutex::new(state),
            synced: Condvar::new(),
        })
    }

    /// Appends `bytes` and returns once they are synced, sharing the sync
    /// with concurrent callers. Wraps around at the end of the file.
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        // The write happens under the lock so that a sync started after a
        // ticket was issued always covers that ticket's bytes.
        let ticket = {
            let mut s = self.state.lock().unwrap();
            if s.next_offset + bytes.len() as u64 > self.size {
                s.next_offset = 0;
            }
            let at = s.next_offset;
            self.file.write_all_at(bytes, at)?;
            s.next_offset += bytes.len() as u64;
            s.written += 1;
            s.written
        };
        let mut s = self.state.lock().unwrap();
        loop {
            if s.synced >= ticket {
                return Ok(());
            }
            if !s.syncing {
                s.syncing = true;
                let upto = s.written;
                drop(s);
                let r = self.file.sync_data();
                s = self.state.lock().unwrap();
                s.syncing = false;
                s.synced = s.synced.max(upto);
                self.synced.notify_all();
                r?;
            } else {
                s = self.synced.wait(s).unwrap();
            }
        }
    }
}
