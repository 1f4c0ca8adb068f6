//! Each backend a replica can ship to (S3, Azure Blob, `file://`), through
//! `object_store` from synchronous code on a runtime the test owns, as the
//! replica will use it: put, list by prefix, get, create-only put,
//! multipart upload and delete, each checked for what it returns, so an
//! emulator that serves them wrongly fails here and not deep in a
//! replication test. GCS, which no emulator here serves, is checked by the
//! requests object_store sends.
//!
//! The emulators are the harness's (`emulators.rs`); `file://` runs
//! everywhere.

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::emulators;

#[test]
fn s3_round_trip() {
    if let Some(e) = emulators::s3() {
        check(&e.url, &e.options);
    }
}

/// No emulator from the registries serves GCS's XML API (docs/decisions.md),
/// so GCS is checked without a service: a `gs://bucket/prefix` URL with the
/// emulator-style options builds a store, and what it sends for a put and a
/// create-only put is what GCS's XML API takes: the bucket, then the whole
/// object name as one escaped segment (object_store escapes every byte but
/// letters and digits), no OAuth token, and
/// `x-goog-if-generation-match: 0` for create-only.
#[test]
fn gcs_requests() {
    let (port, seen) = capture(2);
    let key = format!(
        r#"{{"gcs_base_url":"http://127.0.0.1:{port}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#
    );
    let url = url::Url::parse("gs://statewal-test/replica/a1").unwrap();
    let (store, prefix) =
        object_store::parse_url_opts(&url, [("google_service_account_key", key)]).unwrap();
    assert_eq!(prefix.as_ref(), "replica/a1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = prefix.clone().join("0001.wal");
    rt.block_on(async {
        store
            .put(&name, PutPayload::from_static(b"rec"))
            .await
            .unwrap();
        let create = PutMode::Create.into();
        store
            .put_opts(&name, PutPayload::from_static(b"rec"), create)
            .await
            .unwrap();
    });
    let seen = seen.join().unwrap();
    let path = "/statewal%2Dtest/replica%2Fa1%2F0001%2Ewal";
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("PUT", path),
            "request {i}"
        );
        assert_eq!(req.body, b"rec", "request {i}");
        assert!(
            req.header("authorization").is_none_or(|a| a == "Bearer"),
            "request {i}: an OAuth token was sent: {:?}",
            req.header("authorization")
        );
    }
    assert_eq!(seen[0].header("x-goog-if-generation-match"), None);
    assert_eq!(seen[1].header("x-goog-if-generation-match"), Some("0"));
}

#[test]
fn azure_round_trip() {
    if let Some(e) = emulators::azure() {
        check(&e.url, &e.options);
    }
}

#[test]
fn file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    check(&url, &[]);
}

/// Opens `url` the way the replica will (`parse_url_opts`) and runs the
/// round trip under the URL's prefix on a current-thread runtime.
fn check(url: &str, options: &[(String, String)]) {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let (store, prefix) = object_store::parse_url_opts(&parsed, options.iter().cloned())
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(round_trip(&*store, &prefix, url));
}

/// Bigger than S3's 5 MiB minimum for every part but the last.
const PART_BYTES: usize = 5 * 1024 * 1024;

async fn round_trip(store: &dyn ObjectStore, prefix: &Path, url: &str) {
    let dir = prefix.clone().join("smoke");
    let a = dir.clone().join("a.wal");
    let b = dir.clone().join("b.wal");
    let outside = prefix.clone().join("other").join("c.wal");
    for (path, bytes) in [(&a, "alpha"), (&b, "beta"), (&outside, "gamma")] {
        store
            .put(path, PutPayload::from_static(bytes.as_bytes()))
            .await
            .unwrap_or_else(|e| panic!("{url}: put {path}: {e}"));
    }

    // Listing by prefix gives exactly what is under it, with sizes.
    assert_eq!(
        listed(store, &dir).await,
        [(a.to_string(), 5), (b.to_string(), 4)],
        "{url}: list {dir}"
    );

    let got = store
        .get(&a)
        .await
        .unwrap_or_else(|e| panic!("{url}: get {a}: {e}"));
    assert_eq!(got.meta.size, 5, "{url}: get {a}: size");
    assert_eq!(&got.bytes().await.unwrap()[..], b"alpha", "{url}: get {a}");

    // A create-only put over an existing object fails and changes nothing:
    // what the replica leans on so that an uploaded object never changes.
    match store
        .put_opts(
            &a,
            PutPayload::from_static(b"other"),
            PutMode::Create.into(),
        )
        .await
    {
        Err(object_store::Error::AlreadyExists { .. }) => {}
        other => panic!("{url}: create-only put over {a}: expected AlreadyExists, got {other:?}"),
    }
    let again = store.get(&a).await.unwrap().bytes().await.unwrap();
    assert_eq!(&again[..], b"alpha", "{url}: {a} after a refused create");
    let fresh = dir.clone().join("fresh.wal");
    store
        .put_opts(
            &fresh,
            PutPayload::from_static(b"new"),
            PutMode::Create.into(),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: create-only put of new {fresh}: {e}"));

    // A multipart upload of two parts reads back whole and in order.
    let big = dir.clone().join("big.wal");
    let first: Vec<u8> = (0..PART_BYTES).map(|i| (i % 251) as u8).collect();
    let last = b"tail of the segment".to_vec();
    let mut upload = store
        .put_multipart(&big)
        .await
        .unwrap_or_else(|e| panic!("{url}: multipart start {big}: {e}"));
    upload.put_part(first.clone().into()).await.unwrap();
    upload.put_part(last.clone().into()).await.unwrap();
    upload
        .complete()
        .await
        .unwrap_or_else(|e| panic!("{url}: multipart complete {big}: {e}"));
    let whole = store.get(&big).await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.len(), first.len() + last.len(), "{url}: {big} size");
    assert!(
        whole[..first.len()] == first[..] && whole[first.len()..] == last[..],
        "{url}: {big} content"
    );

    // Deleted is gone, for get and for list.
    store
        .delete(&a)
        .await
        .unwrap_or_else(|e| panic!("{url}: delete {a}: {e}"));
    match store.get(&a).await {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("{url}: get {a} after delete: expected NotFound, got {other:?}"),
    }
    let names: Vec<String> = listed(store, &dir)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [b.to_string(), big.to_string(), fresh.to_string()],
        "{url}: list {dir} after delete"
    );

    for path in [&b, &fresh, &big, &outside] {
        store.delete(path).await.unwrap();
    }
    assert!(
        listed(store, prefix).await.is_empty(),
        "{url}: {prefix} left"
    );
}

/// One HTTP request as a server saw it.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        values.next().map(|(_, v)| v.as_str())
    }
}

/// A listener on 127.0.0.1 that answers `count` requests with 200 and an
/// ETag, and hands back what they were.
fn capture(count: usize) -> (u16, std::thread::JoinHandle<Vec<Request>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < count {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut words = line.split_whitespace();
            let method = words.next().unwrap_or_default().to_string();
            let path = words.next().unwrap_or_default().to_string();
            let mut headers = Vec::new();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
            let len = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut stream = reader.into_inner();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            seen.push(Request {
                method,
                path,
                headers,
                body,
            });
        }
        seen
    });
    (port, handle)
}

/// What `list` gives under `prefix`, as sorted (name, size) pairs.
async fn listed(store: &dyn ObjectStore, prefix: &Path) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = store
        .list(Some(prefix))
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {e}"));
    all.sort();
    all
}
