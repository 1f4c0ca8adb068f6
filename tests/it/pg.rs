//! A private PostgreSQL server for the tests, and a fresh database per test.
//!
//! One server per test binary run: the first test that asks starts it
//! (`initdb` into a temporary directory, `postgres` on a free 127.0.0.1
//! port; as root through `runuser -u postgres`, which owns the directory),
//! polls until it takes connections, and stops it when the process exits.
//! When `STATEWAL_TEST_DATABASE_URL` is set, its server is used instead
//! (`.ci/run` starts one per CI run). Where there are no PostgreSQL
//! binaries the tests are skipped with a printed reason, unless
//! `STATEWAL_REQUIRE_POSTGRES=1`, which makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::services::{self, free_port, path_str};

/// Where the binaries are looked for, unless `STATEWAL_PG_BIN` says.
const PG_BIN_DEFAULT: &str = "/usr/lib/postgresql/15/bin";

/// How long a starting server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A database of its own for one test, dropped with it.
pub struct TestDb {
    /// A `postgres://` URL of the database.
    pub url: String,
    name: String,
    admin: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A fresh, empty database, or `None` (with the reason printed) when no
/// server can be had and `STATEWAL_REQUIRE_POSTGRES` is not `1`.
pub fn database() -> Option<TestDb> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    let admin = services::or_skip(SERVER.get_or_init(server), "STATEWAL_REQUIRE_POSTGRES")?;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "statewal_t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut c = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test server {admin}: {e}"));
    c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    Some(TestDb {
        url: with_database(&admin, &name),
        name,
        admin,
    })
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        "" => format!("{base}/{name}"),
        q => format!("{base}/{name}?{q}"),
    }
}

/// The admin URL of the server the tests use: the given one, or a
/// private cluster started now.
fn server() -> Result<String, String> {
    if let Ok(url) = std::env::var("STATEWAL_TEST_DATABASE_URL")
        && !url.is_empty()
    {
        return Ok(url);
    }
    let cluster = Cluster::start(&binaries()?)?;
    let url = cluster.url.clone();
    services::stop_at_exit(Box::new(move || cluster.stop()));
    Ok(url)
}

/// The directory of the PostgreSQL binaries, if they are there.
fn binaries() -> Result<PathBuf, String> {
    let bin = PathBuf::from(
        std::env::var("STATEWAL_PG_BIN").unwrap_or_else(|_| PG_BIN_DEFAULT.to_string()),
    );
    for tool in ["initdb", "postgres"] {
        if !bin.join(tool).is_file() {
            return Err(format!(
                "no PostgreSQL binaries ({} is missing)",
                bin.join(tool).display()
            ));
        }
    }
    Ok(bin)
}

/// A server of one test's own, which the test may stop and start again
/// (the shared server must never go down under other tests). Stopped and
/// removed when dropped.
pub struct PrivateServer {
    cluster: Option<Cluster>,
    /// The admin URL; its `postgres` database is the test's to use.
    pub url: String,
}

impl PrivateServer {
    /// Stops the server now (fast shutdown: connections are cut).
    pub fn stop(&self) {
        self.cluster.as_ref().expect("running").halt();
    }

    /// Starts the stopped server again on the same port and directory.
    pub fn start(&self) {
        self.cluster
            .as_ref()
            .expect("a cluster")
            .launch()
            .unwrap_or_else(|e| panic!("restarting the private server: {e}"));
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.take() {
            c.stop();
        }
    }
}

/// A private server for a test that stops or restarts it, or `None` (with
/// the reason printed) as [`database`] does. Its own `initdb`, so it costs
/// a second or two: for the few tests that need it.
pub fn private_server() -> Option<PrivateServer> {
    match binaries().and_then(|bin| Cluster::start(&bin)) {
        Ok(cluster) => Some(PrivateServer {
            url: cluster.url.clone(),
            cluster: Some(cluster),
        }),
        Err(why) if std::env::var("STATEWAL_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("PostgreSQL is required (STATEWAL_REQUIRE_POSTGRES=1): {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why} (set STATEWAL_REQUIRE_POSTGRES=1 to fail instead)");
            None
        }
    }
}

/// A server started by the tests, in a temporary directory of its own.
struct Cluster {
    root: PathBuf,
    url: String,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl Cluster {
    fn start(bin: &Path) -> Result<Cluster, String> {
        let root = services::temp_root("pg")?;
        // Owned by `postgres` when running as root: the server refuses to
        // run as root, and its directory must be its own.
        let as_root = unsafe { libc::geteuid() } == 0;
        let port = free_port()?;
        let cluster = Cluster {
            root,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin: bin.to_path_buf(),
            port,
            as_root,
        };
        if as_root {
            chown_postgres(&cluster.root)?;
        }
        let data = cluster.root.join("data");
        let initdb = run_as(as_root, &bin.join("initdb"))
            .args(["-D", path_str(&data), "-U", "postgres", "--auth=trust"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }
        cluster.launch()?;
        watchdog(&cluster.root);
        Ok(cluster)
    }

    /// Starts `postgres` on the cluster's directory and port, and waits
    /// until it takes connections.
    fn launch(&self) -> Result<(), String> {
        let data = self.root.join("data");
        let log = self.root.join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        if self.as_root {
            chown_postgres(&log)?;
        }
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut child = run_as(self.as_root, &self.bin.join("postgres"))
            .args(["-D", path_str(&data), "-p", &self.port.to_string()])
            .args(["-k", path_str(&self.root)])
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test server: losing it to a power cut loses nothing that
            // matters, and fsync would make every test wait for the disk.
            // What a put promises rests on COMMIT returning, which this does
            // not change (docs/postgres.md).
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        services::wait_ready("postgres", &mut child, &log, READY_TIMEOUT, || {
            postgres::Client::connect(&self.url, postgres::NoTls).is_ok()
        })?;
        // runuser waits for postgres; it is reaped by whoever outlives it.
        std::mem::forget(child);
        Ok(())
    }

    /// Fast shutdown (SIGINT to the postmaster), then the directory goes.
    fn stop(self) {
        self.halt();
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// Fast shutdown (SIGINT to the postmaster), waiting until it is gone.
    fn halt(&self) {
        let pid_file = self.root.join("data/postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if let Some(pid) = pid {
            services::terminate(pid, libc::SIGINT, Duration::from_secs(10));
        }
    }
}

/// Killed, this process runs no `atexit`: a watchdog then stops the server
/// and removes its directory.
fn watchdog(root: &Path) {
    services::watchdog(&format!(
        "if [ -f {root}/data/postmaster.pid ]; then \
           kill -INT $(head -n 1 {root}/data/postmaster.pid) 2>/dev/null; sleep 5; \
         fi; rm -rf {root}",
        root = path_str(root),
    ));
}

fn run_as(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn chown_postgres(path: &Path) -> Result<(), String> {
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns a pointer to static storage or null; it is
    // read at once, before any other call could reuse it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root, but there is no postgres user to run the server as".into());
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown postgres {}: {e}", path.display()))
}
