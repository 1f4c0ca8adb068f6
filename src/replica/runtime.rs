//! The bucket, behind a synchronous handle: `object_store` is async, so
//! its futures run on a current-thread tokio runtime that lives on a
//! thread of this module's own, and each call reaches it over a channel
//! and waits for its answer on another. `block_on` runs only on that
//! thread, which never runs a caller's runtime, so a caller inside its
//! own tokio runtime cannot deadlock or panic it.
//!
//! **Invariant:** no `async` leaves this file.

use crate::error::{Error, ErrorKind, Result};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

type Job = Box<dyn FnOnce(Arc<dyn ObjectStore>) -> BoxFuture<'static, ()> + Send>;

/// What a create-only put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The object was written.
    Created,
    /// An object of that name was already there; nothing was written.
    Exists,
}

/// A bucket (and prefix) reached through the runtime thread.
pub struct Bucket {
    /// The URL as messages show it: credentials in it hidden.
    url: String,
    prefix: Path,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

/// Settings the replica gives every bucket unless told otherwise: a dead
/// bucket fails a request in seconds rather than minutes, and the shipper
/// retries on its next tick instead (`docs/replication.md`).
const DEFAULT_SETTINGS: [(&str, &str); 2] = [("timeout", "30s"), ("connect_timeout", "5s")];

impl Bucket {
    /// Opens `url` with `settings` (over the process environment's
    /// `AWS_*`, `AZURE_*` and `GOOGLE_*` variables) and starts its thread.
    pub fn open(url: &str, settings: &[(String, String)]) -> Result<Bucket> {
        let parsed = check_url(url)?;
        // Every message names the URL, and a URL may hold a secret.
        let shown = crate::options::redacted(url);
        let mut all: Vec<(String, String)> = DEFAULT_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.extend(std::env::vars().filter_map(|(k, v)| {
            let known = ["AWS_", "AZURE_", "GOOGLE_"]
                .iter()
                .any(|p| k.starts_with(p));
            known.then(|| (k.to_ascii_lowercase(), v))
        }));
        all.extend(settings.iter().cloned());
        let (store, prefix) = build_store(&parsed, all).map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidInput,
                format!(
                    "cannot use replica URL {shown}: {}",
                    hide_password(url, &e.to_string())
                ),
                e,
            )
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::with_source(ErrorKind::Io, "cannot start the replica's runtime", e)
            })?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("statewal-replica-io".into())
            .spawn(move || {
                // The runtime is driven only here, one job at a time, until
                // every sender is gone.
                for job in queue {
                    runtime.block_on(job(store.clone()));
                }
            })
            .map_err(|e| {
                Error::with_source(ErrorKind::Io, "cannot start the replica's I/O thread", e)
            })?;
        Ok(Bucket {
            url: shown,
            prefix,
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// The URL it was opened with, credentials hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` on the runtime thread and waits for its result.
    fn call<T, F>(&self, what: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn ObjectStore>) -> BoxFuture<'static, object_store::Result<T>>
            + Send
            + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |store| {
            let fut = f(store);
            Box::pin(async move {
                let _ = tx.send(fut.await);
            })
        });
        let gone = || Error::new(ErrorKind::Internal, "the replica's I/O thread is gone");
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        match rx.recv().map_err(|_| gone())? {
            Ok(v) => Ok(v),
            Err(e) => Err(bucket_error(&self.url, &what, e)),
        }
    }

    fn path(&self, name: &str) -> Path {
        let full = match self.prefix.as_ref() {
            "" => name.to_string(),
            p => format!("{p}/{name}"),
        };
        Path::from(full)
    }

    /// Writes `bytes` as `name` unless an object of that name exists.
    pub fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<Put> {
        let path = self.path(name);
        let what = format!("put {name}");
        self.call(what, move |store| {
            Box::pin(async move {
                let mode = PutMode::Create.into();
                match store.put_opts(&path, PutPayload::from(bytes), mode).await {
                    Ok(_) => Ok(Put::Created),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::Exists),
                    Err(e) => Err(e),
                }
            })
        })
    }

    /// The bytes of `name`; `None` if there is no such object.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        self.call(format!("get {name}"), move |store| {
            Box::pin(async move {
                match store.get(&path).await {
                    Ok(got) => Ok(Some(got.bytes().await?.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        })
    }

    /// Every object name under the prefix (relative to it), with its size.
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_modified()?
            .into_iter()
            .map(|(name, size, _)| (name, size))
            .collect())
    }

    /// [`Bucket::list`], with each object's last-modified time (Unix
    /// milliseconds, the bucket's clock).
    pub fn list_modified(&self) -> Result<Vec<(String, u64, u64)>> {
        Ok(self
            .list_meta()?
            .into_iter()
            .map(|o| {
                let ms = o.modified.duration_since(SystemTime::UNIX_EPOCH);
                let ms = ms.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                (o.name, o.size, ms)
            })
            .collect())
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name, relative to the prefix.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the bucket says it was written (its clock, not ours).
    pub modified: SystemTime,
}

impl Bucket {
    /// Every object under the prefix with its size and the time the bucket
    /// gives it, ordered by name.
    pub fn list_meta(&self) -> Result<Vec<Listed>> {
        let prefix = self.prefix.clone();
        self.call("list".into(), move |store| {
            Box::pin(async move {
                let mut out = Vec::new();
                let under = (!prefix.as_ref().is_empty()).then_some(&prefix);
                let mut stream = store.list(under);
                while let Some(meta) = stream.next().await {
                    let meta = meta?;
                    let full = meta.location.as_ref();
                    let rel = match prefix.as_ref() {
                        "" => full,
                        p => full
                            .strip_prefix(p)
                            .and_then(|r| r.strip_prefix('/'))
                            .unwrap_or(full),
                    };
                    let ms = meta.last_modified.timestamp_millis();
                    let modified = match u64::try_from(ms) {
                        Ok(ms) => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
                        // Before 1970: older than any window.
                        Err(_) => SystemTime::UNIX_EPOCH,
                    };
                    out.push(Listed {
                        name: rel.to_string(),
                        size: meta.size,
                        modified,
                    });
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            })
        })
    }

    /// Bytes `range` of `name`; `None` if there is no such object.
    pub fn get_range(&self, name: &str, range: std::ops::Range<u64>) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        self.call(format!("get {name}"), move |store| {
            Box::pin(async move {
                match store.get_range(&path, range).await {
                    Ok(bytes) => Ok(Some(bytes.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        })
    }

    /// Deletes `name`; an object already gone counts as deleted (a retry
    /// after a lost answer, or a prune that ran twice).
    pub fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        self.call(format!("delete {name}"), move |store| {
            Box::pin(async move {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
        })
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the job under way
        // (if any) is done.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `url` parsed, if it names one of the replica's four backends; nothing
/// is reached or started.
pub fn check_url(url: &str) -> Result<url::Url> {
    use object_store::ObjectStoreScheme as Scheme;
    let invalid = |why: String| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "cannot use replica URL {:?}: {}",
                crate::options::redacted(url),
                hide_password(url, &why)
            ),
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match Scheme::parse(&parsed)
        .map_err(|e| invalid(e.to_string()))?
        .0
    {
        Scheme::Local | Scheme::AmazonS3 | Scheme::GoogleCloudStorage | Scheme::MicrosoftAzure => {
            Ok(parsed)
        }
        _ => Err(invalid("use s3://, gs://, az:// or file://".into())),
    }
}

/// How often, and for how long, one request is retried before the tick
/// fails (object_store's default is 10 retries within 3 minutes): the
/// shipper retries the whole tick at its next interval anyway, and a close
/// waits for its last tick.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
        ..Default::default()
    }
}

/// `object_store::parse_url_opts`, with the replica's retry settings
/// (which that function has no option for). Only the four schemes the
/// replica documents are taken.
fn build_store(
    url: &url::Url,
    options: Vec<(String, String)>,
) -> object_store::Result<(Arc<dyn ObjectStore>, Path)> {
    use object_store::ObjectStoreScheme as Scheme;
    let (scheme, path) = Scheme::parse(url)?;
    let prefix = Path::parse(path)?;
    macro_rules! built {
        ($builder:ty) => {{
            let builder = options.into_iter().fold(
                <$builder>::new().with_url(url.to_string()),
                |b, (key, value)| match key.to_ascii_lowercase().parse() {
                    Ok(k) => b.with_config(k, value),
                    Err(_) => b,
                },
            );
            Arc::new(builder.with_retry(retry()).build()?) as Arc<dyn ObjectStore>
        }};
    }
    let store = match scheme {
        Scheme::Local => Arc::new(object_store::local::LocalFileSystem::new()) as _,
        Scheme::AmazonS3 => built!(object_store::aws::AmazonS3Builder),
        Scheme::GoogleCloudStorage => built!(object_store::gcp::GoogleCloudStorageBuilder),
        Scheme::MicrosoftAzure => built!(object_store::azure::MicrosoftAzureBuilder),
        other => {
            return Err(object_store::Error::NotSupported {
                source: format!(
                    "{other:?} is not a replica backend: use s3://, gs://, az:// or file://"
                )
                .into(),
            });
        }
    };
    Ok((store, prefix))
}

/// `message` (object_store's, which may quote the URL) with the URL's
/// password, if it has one, hidden.
fn hide_password(url: &str, message: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .as_ref()
        .and_then(|u| u.password())
    {
        Some(secret) if !secret.is_empty() => message.replace(secret, "***"),
        _ => message.to_string(),
    }
}

fn bucket_error(url: &str, what: &str, e: object_store::Error) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            ErrorKind::Unsupported
        }
        _ => ErrorKind::Io,
    };
    Error::with_source(kind, format!("replica {url}: {what} failed: {e}"), e)
}
