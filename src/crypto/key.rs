//! The store's key: 32 random bytes, written as one line of base64, and
//! the three places it comes from (a file, the environment, a command).

use crate::error::{Error, ErrorKind, Result};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The environment variable that holds the key itself.
pub const KEY_ENV: &str = "STATEWAL_KEY";
/// The environment variable that names a key file.
pub const KEY_FILE_ENV: &str = "STATEWAL_KEY_FILE";

/// How long a `--key-command` may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A key's public name: 32 bits derived from the key by HKDF-SHA256, so
/// that a file can say which key sealed it without saying anything about
/// the key. Shown as 8 lowercase hex digits. Never 0, which in a segment
/// header means "not encrypted".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The store's 256-bit key. Its bytes are zeroed when it is dropped, and
/// neither `Debug` nor any error shows them: only its [`KeyId`].
#[derive(Clone)]
pub struct Key {
    bytes: Zeroizing<[u8; 32]>,
    id: KeyId,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ id: {} }}", self.id)
    }
}

impl PartialEq for Key {
    /// Keys are equal when their ids are (a 2^-32 chance for two keys).
    fn eq(&self, other: &Key) -> bool {
        self.id == other.id
    }
}

impl Key {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Key> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        super::fill_random(bytes.as_mut())?;
        Ok(Key::from_bytes(bytes))
    }

    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Key {
        let mut id = [0u8; 4];
        hkdf::Hkdf::<sha2::Sha256>::new(None, bytes.as_ref())
            .expand(b"statewal key id", &mut id)
            .expect("4 bytes is a valid HKDF-SHA256 length");
        let id = u32::from_le_bytes(id).max(1);
        Key {
            bytes,
            id: KeyId(id),
        }
    }

    /// Parses the key's text: one line of standard base64 (with padding)
    /// encoding exactly 32 bytes; surrounding whitespace is ignored. `from`
    /// says where the text came from, for the error, which never quotes
    /// the text.
    pub fn parse(text: &str, from: &str) -> Result<Key> {
        let line = text.trim();
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the key from {from} {why}: a key is one line of base64 encoding 32 \
                     random bytes (`statewal keygen PATH` writes one)"
                ),
            )
        };
        if line.is_empty() {
            return Err(bad("is empty"));
        }
        if line.contains(['\n', '\r']) {
            return Err(bad("is more than one line"));
        }
        // Decoded into a buffer that never moves, so that no copy of the
        // key is left behind unzeroized; a key's line is 44 characters.
        if line.len() > 64 {
            return Err(bad(&format!("is {} bytes long, not 44", line.len())));
        }
        let mut decoded = Zeroizing::new([0u8; 48]);
        let n = base64::engine::general_purpose::STANDARD
            .decode_slice(line, decoded.as_mut())
            .map_err(|_| bad("is not base64"))?;
        if n != 32 {
            return Err(bad(&format!("decodes to {n} bytes, not 32")));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&decoded[..32]);
        Ok(Key::from_bytes(bytes))
    }

    /// The key's text: what [`Key::parse`] reads, with a newline.
    pub fn to_line(&self) -> Zeroizing<String> {
        // Room for the newline from the start: no reallocation leaves a
        // copy of the text behind.
        let mut s = Zeroizing::new(String::with_capacity(45));
        base64::engine::general_purpose::STANDARD.encode_string(self.bytes.as_ref(), &mut s);
        s.push('\n');
        s
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// HKDF-SHA256 of the key with `salt` and `info`: a 256-bit subkey.
    pub(crate) fn derive(&self, salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), self.bytes.as_ref())
            .expand(info, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    }

    /// Reads the key from a file whose mode gives no access to its group
    /// or others (0600 or 0400): any other is refused, naming the mode.
    pub fn from_file(path: &Path) -> Result<Key> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("read the key file", path, e))?;
        if !meta.is_file() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("the key file {} is not a regular file", path.display()),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the key file {} has mode {mode:04o}: other users could read it; \
                         it must be readable by its owner only (chmod 600 {})",
                        path.display(),
                        path.display()
                    ),
                ));
            }
        }
        if meta.len() > 1024 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the key file {} holds {} bytes: a key is one line of 44",
                    path.display(),
                    meta.len()
                ),
            ));
        }
        // Into a buffer large enough from the start (the file is at most
        // 1024 bytes, checked above; the read stops past that), so that no
        // reallocation leaves a copy of the key behind.
        use std::io::Read;
        let mut raw = Zeroizing::new(Vec::with_capacity(1026));
        std::fs::File::open(path)
            .and_then(|f| f.take(1025).read_to_end(&mut raw))
            .map_err(|e| Error::io("read the key file", path, e))?;
        let text = std::str::from_utf8(&raw).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the key file {} is not text: a key is one line of base64",
                    path.display()
                ),
            )
        })?;
        Key::parse(text, &format!("the key file {}", path.display()))
    }

    /// Runs `command` through `sh -c` and reads the key from its standard
    /// output; its standard error goes to ours. A command that fails, or
    /// runs longer than a minute (then it is killed), is an error.
    pub fn from_command(command: &str) -> Result<Key> {
        Key::from_command_within(command, COMMAND_TIMEOUT)
    }

    pub(crate) fn from_command_within(command: &str, timeout: Duration) -> Result<Key> {
        use std::io::Read;
        use std::process::{Command, Stdio};
        // Not the command's text: it may hold a token, or the key itself.
        let shown = "the key command".to_string();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::with_source(ErrorKind::Io, format!("cannot run {shown}"), e))?;
        let mut stdout = child.stdout.take().expect("piped");
        // Read on a thread of its own, so that the timeout below also
        // covers a command that never closes its output.
        let reader = std::thread::spawn(move || {
            // Never reallocated (the read stops at 4096 bytes): no copy
            // of the key is left behind.
            let mut out = Zeroizing::new(Vec::with_capacity(4097));
            let _ = (&mut stdout).take(4096).read_to_end(&mut out);
            out
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| {
                Error::with_source(ErrorKind::Io, format!("cannot wait for {shown}"), e)
            })? {
                break status;
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{shown} did not finish within {timeout:?}; it was killed"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = reader.join().unwrap_or_default();
        if !status.success() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{shown} failed ({status}); its error output is above"),
            ));
        }
        let text = std::str::from_utf8(&out).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the output of {shown} is not text: a key is one line of base64"),
            )
        })?;
        Key::parse(text, &format!("the output of {shown}"))
    }

    /// Writes a new random key to `path`, created with mode 0600; an
    /// existing file is never replaced. Returns the key.
    pub fn generate_file(path: &Path) -> Result<Key> {
        use std::io::Write;
        let key = Key::generate()?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} already exists: keygen never replaces a key (a store sealed with it \
                         would be lost)",
                        path.display()
                    ),
                )
            } else {
                Error::io("create the key file", path, e)
            }
        })?;
        file.write_all(key.to_line().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write the key file", path, e))?;
        Ok(key)
    }
}

/// Where a key comes from, as the CLI's flags and the environment give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--key-file PATH` or `STATEWAL_KEY_FILE`.
    File(PathBuf),
    /// `STATEWAL_KEY`: the key itself (never shown).
    Env,
    /// `--key-command CMD`.
    Command(String),
}

impl KeySource {
    /// Loads the key.
    pub fn load(&self) -> Result<Key> {
        match self {
            KeySource::File(path) => Key::from_file(path),
            KeySource::Env => {
                let text = Zeroizing::new(std::env::var(KEY_ENV).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("{KEY_ENV} is not set, or is not text"),
                    )
                })?);
                Key::parse(&text, KEY_ENV)
            }
            KeySource::Command(cmd) => Key::from_command(cmd),
        }
    }
}
