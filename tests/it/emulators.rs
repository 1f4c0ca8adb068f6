//! Object-storage emulators for the tests: S3 (moto) and Azure Blob
//! (Azurite), each on a free 127.0.0.1 port in a temporary directory.
//!
//! There is no GCS emulator: none from the package registries serves the
//! XML API that object_store speaks to GCS (the evidence is in
//! docs/decisions.md, "issue 11: emulators and object_store"), so GCS is
//! tested without a service, by what object_store sends
//! (`emulators_smoke::gcs_requests`).
//!
//! One server of each kind per test binary run: the first test that asks
//! starts it, polls until it answers, makes the bucket (or container) the
//! tests share, and the server is stopped when the process exits
//! (`services.rs`). Each call hands out a prefix of its own in that bucket,
//! so tests never see each other's objects. The result is an object_store
//! URL and the options `object_store::parse_url_opts` needs beside it
//! (endpoint, fake credentials, plain HTTP), the way the replica will be
//! configured.
//!
//! The programs are looked for in `$STATEWAL_EMULATORS_DIR/bin` (where
//! `.ci/emulators install DIR` links them), then in
//! `~/.cache/statewal-emulators/bin`, then on `PATH`. A missing one skips its
//! tests with a printed reason, unless `STATEWAL_REQUIRE_EMULATORS=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::services::{self, path_str};

/// Where a run finds its emulator programs, as `.ci/run` sets it.
const DIR_VAR: &str = "STATEWAL_EMULATORS_DIR";
/// `1` turns a missing or broken emulator from a skip into a failure.
const REQUIRE_VAR: &str = "STATEWAL_REQUIRE_EMULATORS";
/// The bucket (S3) or container (Azure) each emulator serves.
const BUCKET: &str = "statewal-test";
/// How long an emulator may take to answer; moto's first start imports a lot.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Azurite's well-known development account and key (they are public,
/// printed in Azure's documentation, and accepted by nothing but Azurite).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A place of its own on a running emulator.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// An object_store URL naming a fresh prefix: `s3://statewal-test/t…`.
    pub url: String,
    /// The `parse_url_opts` options that reach the emulator.
    pub options: Vec<(String, String)>,
}

/// S3 on moto's server, or `None` (reason printed) when it cannot run.
pub fn s3() -> Option<Endpoint> {
    static SERVER: OnceLock<Result<Endpoint, String>> = OnceLock::new();
    let base = services::or_skip(SERVER.get_or_init(start_s3), REQUIRE_VAR)?;
    Some(fresh_prefix(base))
}

/// Azure Blob on Azurite, or `None` (reason printed).
pub fn azure() -> Option<Endpoint> {
    static SERVER: OnceLock<Result<Endpoint, String>> = OnceLock::new();
    let base = services::or_skip(SERVER.get_or_init(start_azure), REQUIRE_VAR)?;
    Some(fresh_prefix(base))
}

fn fresh_prefix(mut e: Endpoint) -> Endpoint {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    e.url = format!("{}/t{}-{n}", e.url, std::process::id());
    e
}

fn start_s3() -> Result<Endpoint, String> {
    let program = find("moto_server")?;
    let port = services::free_port()?;
    let root = services::temp_root("moto")?;
    let mut cmd = Command::new(program);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let server = Server::start("moto_server", cmd, port, root)?;
    // moto takes an unsigned PUT: object_store makes no buckets.
    match services::http_status(port, "PUT", &format!("/{BUCKET}")) {
        Some(200) => {}
        other => return Err(format!("moto_server: creating bucket {BUCKET}: {other:?}")),
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    server.stop_at_exit();
    Ok(Endpoint {
        url: format!("s3://{BUCKET}"),
        options: options(&[
            ("aws_endpoint", &endpoint),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ]),
    })
}

fn start_azure() -> Result<Endpoint, String> {
    let program = find("azurite-blob")?;
    let port = services::free_port()?;
    let root = services::temp_root("azurite")?;
    let mut cmd = Command::new(program);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args(["--location", path_str(&root), "--silent"])
        .args(["--skipApiVersionCheck", "--disableTelemetry"]);
    let server = Server::start("azurite-blob", cmd, port, root)?;
    create_container(port)?;
    server.stop_at_exit();
    Ok(Endpoint {
        url: format!("az://{BUCKET}"),
        options: options(&[
            // Path-style, as Azurite serves it: the account is the first
            // segment of every path.
            (
                "azure_storage_endpoint",
                &format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
            ),
            ("azure_storage_account_name", AZURITE_ACCOUNT),
            ("azure_storage_account_key", AZURITE_KEY),
            ("azure_allow_http", "true"),
        ]),
    })
}

/// Azurite signs even a container's creation (SharedKey), and object_store
/// makes no containers, so Node (which Azurite runs on anyway) signs it.
fn create_container(port: u16) -> Result<(), String> {
    const SCRIPT: &str = r#"
const [port, account, key, container] = process.argv.slice(1);
const crypto = require('crypto'), http = require('http');
const date = new Date().toUTCString(), version = '2021-08-06';
const path = `/${account}/${container}`;
const toSign = ['PUT', '', '', '', '', '', '', '', '', '', '', '',
  `x-ms-date:${date}\nx-ms-version:${version}\n/${account}${path}\nrestype:container`].join('\n');
const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(toSign).digest('base64');
const req = http.request({ host: '127.0.0.1', port, method: 'PUT', path: `${path}?restype=container`,
  headers: { 'x-ms-date': date, 'x-ms-version': version, 'Content-Length': 0,
             Authorization: `SharedKey ${account}:${sig}` } },
  res => { let body = ''; res.on('data', d => body += d);
           res.on('end', () => { if (res.statusCode !== 201) { console.error(res.statusCode, body); process.exit(1); } }); });
req.on('error', e => { console.error(String(e)); process.exit(1); });
req.end();
"#;
    let out = Command::new("node")
        .args([
            "-e",
            SCRIPT,
            &port.to_string(),
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            BUCKET,
        ])
        .output()
        .map_err(|e| format!("running node to create the Azurite container: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "azurite-blob: creating container {BUCKET}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `name` in the emulators' `bin/` (`$STATEWAL_EMULATORS_DIR`, then
/// `~/.cache/statewal-emulators`), else on `PATH`.
fn find(name: &str) -> Result<PathBuf, String> {
    let dirs = [
        std::env::var_os(DIR_VAR).map(|d| PathBuf::from(d).join("bin")),
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/statewal-emulators/bin")),
    ];
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .flatten()
        .chain(on_path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!("no {name} in ${DIR_VAR}/bin, ~/.cache/statewal-emulators/bin or PATH (.ci/emulators install DIR)")
        })
}

/// A running emulator: its process, and the directory it alone uses
/// (its data, if it keeps any, and its log).
struct Server {
    child: Child,
    root: PathBuf,
}

impl Server {
    /// Starts `cmd`, its output to a log in `root`, and waits until `port`
    /// answers HTTP.
    fn start(what: &str, mut cmd: Command, port: u16, root: PathBuf) -> Result<Server, String> {
        let log = root.join("server.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&root);
                format!("starting {what}: {e}")
            })?;
        let mut server = Server { child, root };
        services::wait_ready(what, &mut server.child, &log, READY_TIMEOUT, || {
            services::http_status(port, "GET", "/").is_some()
        })?;
        Ok(server)
    }

    /// Stopped at exit, or by a watchdog when this process is killed; the
    /// watchdog does nothing once the exit handler removed the directory.
    fn stop_at_exit(self) {
        let pid = self.child.id();
        let root = path_str(&self.root);
        services::watchdog(&format!(
            "if [ -d {root} ]; then kill -TERM {pid} 2>/dev/null; sleep 2; \
             kill -KILL {pid} 2>/dev/null; rm -rf {root}; fi"
        ));
        services::stop_at_exit(Box::new(move || drop(self)));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first so the server can close its files; then for sure.
        let pid = i32::try_from(self.child.id()).expect("pids fit in i32");
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
