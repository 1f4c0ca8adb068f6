//! A scratch directory that goes away when the user presses Ctrl-C.
//!
//! `bench` writes gigabytes of throwaway files; killed by SIGINT's default
//! action it left them all behind under the system temp dir. While a
//! [`RemoveOnInterrupt`] guard lives, SIGINT and SIGTERM remove the
//! directory and end the process with 128 + the signal's number, as a
//! shell reports a command a signal ended.

use signal_hook::consts::signal::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use statewal::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

/// Removes the directory on SIGINT or SIGTERM until dropped.
pub struct RemoveOnInterrupt {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RemoveOnInterrupt {
    /// Starts watching for the signals on a thread of its own.
    pub fn new(dir: &Path) -> Result<RemoveOnInterrupt> {
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot install the Ctrl-C handler: {e}"),
            )
        })?;
        let handle = signals.handle();
        let dir = dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            // The iterator ends when the guard closes the handle.
            if let Some(sig) = signals.forever().next() {
                remove(&dir, sig);
            }
        });
        Ok(RemoveOnInterrupt {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for RemoveOnInterrupt {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Removes `dir` while the other threads may still be writing into it, and
/// exits. Renaming it first makes their paths dangle, so they cannot fill it
/// again while it is being removed.
fn remove(dir: &Path, sig: i32) -> ! {
    let doomed = PathBuf::from(format!("{}.interrupted", dir.display()));
    let target = if std::fs::rename(dir, &doomed).is_ok() {
        doomed
    } else {
        dir.to_path_buf()
    };
    // A writer may still be creating files in it; a few attempts outlast it.
    let mut removed = false;
    for _ in 0..10 {
        if std::fs::remove_dir_all(&target).is_ok() || !target.exists() {
            removed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A writer that started its directory just before the rename may have
    // made the name again.
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
    if removed {
        eprintln!("statewal: interrupted; removed {}", dir.display());
    } else {
        eprintln!(
            "statewal: interrupted; could not remove {} (remove it by hand)",
            target.display()
        );
    }
    std::process::exit(128 + sig);
}
