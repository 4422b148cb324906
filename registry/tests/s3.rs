//! The S3 blob store against a real S3 server (moto): multipart uploads driven part by
//! part across requests and store instances, resumption after a dropped writer, small and
//! empty blobs, ranged reads, deletes, aborts, error mapping; then the whole registry on
//! S3 storage over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod s3_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use notary_registry::names::Digest;
use notary_registry::server::{self, Config, StorageConfig};
use notary_registry::storage::s3::{S3Store, Secret};
use notary_registry::storage::{BlobStore, StorageError, UploadWriter};
use notary_tests::Moto;
use s3_common::{PART, absolute, curl, data, push_image, s3_options, sha256};

const BUCKET: &str = "blobs";

fn moto() -> Moto {
    let m = Moto::start();
    m.create_bucket(BUCKET);
    m
}

/// A new store instance (as another process would have).
fn store(m: &Moto) -> Arc<dyn BlobStore> {
    Arc::new(S3Store::open(&s3_options(m, BUCKET)).unwrap())
}

fn digest(bytes: &[u8]) -> Digest {
    Digest::parse(&sha256(bytes)).unwrap()
}

async fn write_in(w: &mut Box<dyn UploadWriter>, bytes: &[u8], chunks: &[usize]) {
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].min(rest.len());
        w.write(bytes::Bytes::copy_from_slice(&rest[..n]))
            .await
            .unwrap();
        rest = &rest[n..];
        i += 1;
    }
}

/// One "request": a fresh store instance reopens the upload at `offset`, appends, flushes.
async fn request(
    m: &Moto,
    id: &str,
    state: &str,
    offset: u64,
    bytes: &[u8],
    chunks: &[usize],
) -> String {
    let s = store(m);
    let mut w = s.open_upload(id, state, offset).await.unwrap();
    write_in(&mut w, bytes, chunks).await;
    w.flush().await.unwrap()
}

async fn read_all(
    s: &dyn BlobStore,
    key: &str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StorageError> {
    let mut stream = s.read(key, offset, len).await?;
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.map_err(StorageError::Io)?);
    }
    Ok(out)
}

/// Keys under `prefix` in the bucket (moto answers unsigned requests).
fn list_keys(m: &Moto, prefix: &str) -> Vec<String> {
    let r = curl(
        "GET",
        &format!("{}/{BUCKET}?list-type=2&prefix={prefix}", m.url),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_owned)
        .collect()
}

/// Multipart uploads in progress in the bucket.
fn multipart_uploads(m: &Moto) -> usize {
    let r = curl("GET", &format!("{}/{BUCKET}?uploads", m.url), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().matches("<UploadId>").count()
}

/// Waits (bounded) until nothing is left under the upload's own prefix.
async fn tails_gone(m: &Moto, id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if list_keys(m, &format!("reg/uploads/{id}/")).is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn multipart_upload_in_odd_chunks_across_requests_and_store_instances() {
    let m = moto();
    let blob = data(3 * PART + (2 << 20) + 12_345, 1);
    let id = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let mut state = store(&m).start_upload(id).await.unwrap();
    assert!(
        !state.contains("mp"),
        "nothing is created at start: {state}"
    );
    let cuts = [0, 3_000_001, 9_000_000, 15_500_000, blob.len()];
    for w in cuts.windows(2) {
        state = request(
            &m,
            id,
            &state,
            w[0] as u64,
            &blob[w[0]..w[1]],
            &[65_537, 1_000_003, 7, 333_333],
        )
        .await;
    }
    let st: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        st["p"].as_array().unwrap().len(),
        3,
        "three full parts sent: {state}"
    );
    assert!(st["mp"].is_string());
    assert_eq!(st["tl"], (2 << 20) + 12_345);
    assert_eq!(multipart_uploads(&m), 1);

    let s = store(&m);
    let key = s
        .commit_upload(id, &state, &digest(&blob), blob.len() as u64)
        .await
        .unwrap();
    assert_eq!(key, format!("blobs/0a/{id}"));
    assert_eq!(multipart_uploads(&m), 0, "completed in place");
    assert_eq!(
        list_keys(&m, "reg/blobs/"),
        [format!("reg/{key}")],
        "one object, never copied"
    );
    // The whole blob (more than one read window) and ranges across part and window edges.
    assert!(
        read_all(s.as_ref(), &key, 0, blob.len() as u64)
            .await
            .unwrap()
            == blob
    );
    for (off, len) in [
        (0usize, 1usize),
        (PART - 1, 2),
        (2 * PART - 3, PART + 6),
        ((16 << 20) - 5, 10),
        (blob.len() - 1, 1),
        (123, 0),
    ] {
        let got = read_all(s.as_ref(), &key, off as u64, len as u64)
            .await
            .unwrap();
        assert!(got == blob[off..off + len], "range {off}+{len}");
    }
    assert!(
        tails_gone(&m, id).await,
        "tail objects are deleted after the commit"
    );
}

#[tokio::test]
async fn upload_resumes_after_a_writer_is_dropped_mid_request_in_a_fresh_store() {
    let m = moto();
    let id = "resume0123456789";
    let first = data(6 << 20, 2);
    let s1 = store(&m);
    let state0 = s1.start_upload(id).await.unwrap();
    let mut w = s1.open_upload(id, &state0, 0).await.unwrap();
    write_in(&mut w, &first, &[1 << 20]).await;
    let state1 = w.flush().await.unwrap();
    // A request that is cut: 5 MiB more (a second part goes out) and never flushed, the
    // writer and the store dropped as a killed process would.
    write_in(&mut w, &data(5 << 20, 99), &[777_777]).await;
    drop(w);
    drop(s1);

    let rest = data((4 << 20) + 17, 3);
    let state2 = request(&m, id, &state1, first.len() as u64, &rest, &[4096, 999_999]).await;
    let whole = [first, rest].concat();
    let s = store(&m);
    let key = s
        .commit_upload(id, &state2, &digest(&whole), whole.len() as u64)
        .await
        .unwrap();
    assert!(
        read_all(s.as_ref(), &key, 0, whole.len() as u64)
            .await
            .unwrap()
            == whole
    );
}

#[tokio::test]
async fn opening_at_a_length_other_than_the_state_is_refused() {
    let m = moto();
    let id = "lengthmismatch01";
    let s = store(&m);
    let st0 = s.start_upload(id).await.unwrap();
    let st1 = request(&m, id, &st0, 0, b"hello", &[2]).await;
    let r = s.open_upload(id, &st1, 4).await;
    assert!(matches!(r, Err(StorageError::Other(_))));
    let r = s.commit_upload(id, &st1, &digest(b"hell"), 4).await;
    assert!(matches!(r, Err(StorageError::Other(_))));
}

#[tokio::test]
async fn zero_byte_blob_is_one_put() {
    let m = moto();
    let s = store(&m);
    let id = "empty0000000000000";
    let state = s.start_upload(id).await.unwrap();
    let key = s.commit_upload(id, &state, &digest(b""), 0).await.unwrap();
    assert_eq!(read_all(s.as_ref(), &key, 0, 0).await.unwrap(), b"");
    assert_eq!(multipart_uploads(&m), 0);
    assert_eq!(list_keys(&m, "reg/blobs/"), [format!("reg/{key}")]);
}

#[tokio::test]
async fn small_blob_across_requests_never_starts_a_multipart_upload() {
    let m = moto();
    let id = "small000000000000";
    let blob = data(300_001, 4);
    let mut state = store(&m).start_upload(id).await.unwrap();
    for (a, b) in [(0usize, 1000usize), (1000, 1001), (1001, 300_001)] {
        state = request(&m, id, &state, a as u64, &blob[a..b], &[333]).await;
        assert_eq!(multipart_uploads(&m), 0);
    }
    assert!(!state.contains("\"mp\""), "{state}");
    let s = store(&m);
    let key = s
        .commit_upload(id, &state, &digest(&blob), blob.len() as u64)
        .await
        .unwrap();
    assert!(
        read_all(s.as_ref(), &key, 0, blob.len() as u64)
            .await
            .unwrap()
            == blob
    );
    assert!(read_all(s.as_ref(), &key, 1000, 1).await.unwrap() == blob[1000..1001]);
    assert!(tails_gone(&m, id).await);
}

#[tokio::test]
async fn a_flush_never_overwrites_the_tail_the_database_points_at() {
    let m = moto();
    let id = "racing00000000000";
    let head = data(100, 5);
    let s = store(&m);
    let st0 = s.start_upload(id).await.unwrap();
    let st1 = request(&m, id, &st0, 0, &head, &[100]).await;
    // Two requests continue from the same recorded state (a lost race, or a replica
    // killed after its flush but before its database update): the one recorded flushes
    // first, the other later with as many bytes. Each wrote its own tail object.
    let won = request(&m, id, &st1, 100, b"yyyy", &[4]).await;
    let _lost = request(&m, id, &st1, 100, b"xxxx", &[4]).await;
    let whole = [&head[..], b"yyyy"].concat();
    let key = s
        .commit_upload(id, &won, &digest(&whole), whole.len() as u64)
        .await
        .unwrap();
    assert!(
        read_all(s.as_ref(), &key, 0, whole.len() as u64)
            .await
            .unwrap()
            == whole
    );
}

#[tokio::test]
async fn a_state_of_another_upload_is_refused() {
    let m = moto();
    let s = store(&m);
    let a = "uploadaaaaaaaaaa";
    let st0 = s.start_upload(a).await.unwrap();
    let st_a = request(&m, a, &st0, 0, b"secret bytes of a", &[5]).await;
    // Upload b handed a's state never reads, completes or deletes a's objects.
    let b = "uploadbbbbbbbbbb";
    assert!(matches!(
        s.open_upload(b, &st_a, 17).await,
        Err(StorageError::Other(_))
    ));
    assert!(matches!(
        s.commit_upload(b, &st_a, &digest(b"secret bytes of a"), 17)
            .await,
        Err(StorageError::Other(_))
    ));
    s.abort_upload(b, &st_a).await.unwrap();
    let key = s
        .commit_upload(a, &st_a, &digest(b"secret bytes of a"), 17)
        .await
        .unwrap();
    assert_eq!(
        read_all(s.as_ref(), &key, 0, 17).await.unwrap(),
        b"secret bytes of a"
    );
}

#[tokio::test]
async fn commit_is_idempotent_when_the_database_update_was_lost() {
    let m = moto();
    for (id, n) in [
        ("idem-small-000001", 1000usize),
        ("idem-multipart-01", PART + 10),
    ] {
        let blob = data(n, 6);
        let s = store(&m);
        let st0 = s.start_upload(id).await.unwrap();
        let st = request(&m, id, &st0, 0, &blob, &[1 << 20]).await;
        let k1 = s
            .commit_upload(id, &st, &digest(&blob), n as u64)
            .await
            .unwrap();
        // The registry died before recording the blob; the client retries the PUT.
        let k2 = s
            .commit_upload(id, &st, &digest(&blob), n as u64)
            .await
            .unwrap();
        assert_eq!(k1, k2);
        assert!(read_all(s.as_ref(), &k1, 0, n as u64).await.unwrap() == blob);
    }
}

#[tokio::test]
async fn missing_objects_are_not_found() {
    let m = moto();
    let s = store(&m);
    assert!(matches!(
        read_all(s.as_ref(), "blobs/zz/nothing", 0, 10).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        read_all(s.as_ref(), "blobs/zz/nothing", 0, 0).await,
        Err(StorageError::NotFound)
    ));
    assert!(
        matches!(
            s.read("uploads/x/tail-00", 0, 1).await,
            Err(StorageError::Other(_))
        ),
        "only blob keys are readable"
    );
    s.health().await.unwrap();
}

#[tokio::test]
async fn delete_removes_objects_in_one_batch_and_ignores_missing_ones() {
    let m = moto();
    let s = store(&m);
    let mut keys = Vec::new();
    for i in 0..5u64 {
        let id = format!("delete{i:011}");
        let blob = data(10 + i as usize, i);
        let st = s.start_upload(&id).await.unwrap();
        let st = request(&m, &id, &st, 0, &blob, &[4]).await;
        keys.push(
            s.commit_upload(&id, &st, &digest(&blob), blob.len() as u64)
                .await
                .unwrap(),
        );
    }
    keys.push("blobs/zz/never-existed".into());
    s.delete(&keys).await.unwrap();
    for k in &keys {
        assert!(matches!(
            read_all(s.as_ref(), k, 0, 1).await,
            Err(StorageError::NotFound)
        ));
    }
    assert!(list_keys(&m, "reg/blobs/").is_empty());
    assert!(s.delete(&["../etc/passwd".to_owned()]).await.is_err());
}

#[tokio::test]
async fn abort_discards_the_multipart_upload_and_the_tail() {
    let m = moto();
    let s = store(&m);
    let id = "abort00000000000";
    let st0 = s.start_upload(id).await.unwrap();
    let st = request(&m, id, &st0, 0, &data(PART + 100, 7), &[1 << 20]).await;
    assert_eq!(multipart_uploads(&m), 1);
    assert_eq!(list_keys(&m, &format!("reg/uploads/{id}/")).len(), 1);
    s.abort_upload(id, &st).await.unwrap();
    assert_eq!(multipart_uploads(&m), 0);
    assert!(list_keys(&m, &format!("reg/uploads/{id}/")).is_empty());
    assert!(list_keys(&m, "reg/blobs/").is_empty());
}

#[tokio::test]
async fn unreachable_storage_is_unavailable() {
    // Nothing listens there.
    let o = notary_registry::storage::s3::S3Options {
        bucket: BUCKET.into(),
        endpoint: Some(format!("http://127.0.0.1:{}", notary_tests::free_port())),
        access_key_id: Some("k".into()),
        secret_access_key: Some(Secret::new("s".into())),
        allow_http: true,
        ..Default::default()
    };
    let s = S3Store::open(&o).unwrap();
    assert!(matches!(
        s.health().await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(matches!(
        s.read("blobs/zz/x", 0, 1).await,
        Err(StorageError::Unavailable(_))
    ));
}

#[test]
fn s3_settings_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("s3-secret");
    std::fs::write(&secret_file, "from-file\n").unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"storage": {"kind": "s3", "bucket": "b1", "endpoint": "http://127.0.0.1:9",
            "secret_access_key": "in-config", "part_size": 6291456}})
        .to_string(),
    )
    .unwrap();
    let mut c = Config::from_file(&cfg).unwrap();
    assert!(
        !format!("{c:?}").contains("in-config"),
        "secrets never printed"
    );
    let env = |k: &str| match k {
        "NOTARY_REGISTRY_LISTEN" => Some("127.0.0.1:7000".to_owned()),
        "NOTARY_REGISTRY_S3_BUCKET" => Some("b2".to_owned()),
        "NOTARY_REGISTRY_S3_ACCESS_KEY_ID" => Some("AKID".to_owned()),
        "NOTARY_REGISTRY_S3_ALLOW_HTTP" => Some("true".to_owned()),
        "NOTARY_REGISTRY_S3_PREFIX" => Some("team/".to_owned()),
        _ => None,
    };
    c.apply_env(env).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
    let o = server::s3_options(&c.storage).unwrap().unwrap();
    assert_eq!(
        (o.bucket.as_str(), o.access_key_id.as_deref(), o.allow_http),
        ("b2", Some("AKID"), true)
    );
    assert_eq!(
        o.secret_access_key.as_ref().map(Secret::expose),
        Some("in-config")
    );
    assert_eq!(o.part_size, Some(6 << 20));
    let s = S3Store::open(&o).unwrap();
    assert_eq!(s.describe(), "s3 bucket b2 at http://127.0.0.1:9");

    // The secret from a file, when the configuration names one.
    let mut c = Config::default();
    let env = |k: &str| match k {
        "NOTARY_REGISTRY_S3_BUCKET" => Some("b3".to_owned()),
        "NOTARY_REGISTRY_S3_SECRET_ACCESS_KEY_FILE" => Some(secret_file.display().to_string()),
        _ => None,
    };
    c.apply_env(env).unwrap();
    let o = server::s3_options(&c.storage).unwrap().unwrap();
    assert_eq!(
        o.secret_access_key.as_ref().map(Secret::expose),
        Some("from-file")
    );
    assert!(!format!("{o:?}").contains("from-file"));
    // A part size S3 would refuse is an error at start, not at the first large upload.
    let mut o2 = o.clone();
    o2.part_size = Some(1 << 20);
    assert!(S3Store::open(&o2).is_err());
    let bad = |k: &str| match k {
        "NOTARY_REGISTRY_S3_BUCKET" => Some("b".to_owned()),
        "NOTARY_REGISTRY_S3_ALLOW_HTTP" => Some("maybe".to_owned()),
        _ => None,
    };
    assert!(Config::default().apply_env(bad).is_err());
    assert!(matches!(
        Config::default().storage,
        StorageConfig::Filesystem { .. }
    ));
}

// ---------------------------------------------------------------------------- API

/// A registry served in-process (its own runtime thread) on 127.0.0.1:0.
struct Served {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(storage: StorageConfig) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        plain_http: true,
        no_auth: true,
        storage,
        ..Config::default()
    };
    let listener = std::net::TcpListener::bind(config.listen).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let reg = server::build(&config).await.unwrap();
            server::serve(server::app(reg), listener, None, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    Served {
        url,
        stop: Some(stop),
        thread: Some(thread),
        _dir: dir,
    }
}

fn s3_storage(m: &Moto) -> StorageConfig {
    StorageConfig::S3 {
        bucket: BUCKET.into(),
        endpoint: Some(m.url.clone()),
        region: None,
        access_key_id: Some("k".into()),
        secret_access_key: Some(Secret::new("s".into())),
        secret_access_key_file: None,
        prefix: Some("api".into()),
        allow_http: true,
        part_size: Some(PART),
    }
}

#[test]
fn registry_on_s3_pushes_chunked_and_pulls_back_identical() {
    let m = moto();
    let reg = serve(s3_storage(&m));
    let base = reg.url.clone();
    // A layer pushed in three chunks of odd sizes (two full parts and a tail).
    let layer = data(2 * PART + 1_234_567, 8);
    let r = curl(
        "POST",
        &format!("{base}/v2/team/app/blobs/uploads/"),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let mut loc = absolute(&base, &r.header("location"));
    let mut at = 0usize;
    for n in [3_333_333usize, 6_000_001] {
        let range = format!("{at}-{}", at + n - 1);
        let r = curl(
            "PATCH",
            &loc,
            &[("Content-Range", &range)],
            Some(&layer[at..at + n]),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.header("range"), format!("0-{}", at + n - 1));
        loc = absolute(&base, &r.header("location"));
        at += n;
    }
    let d = sha256(&layer);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = curl(
        "PUT",
        &format!("{loc}{sep}digest={d}"),
        &[],
        Some(&layer[at..]),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let (mdigest, manifest, l) = push_image(&base, "team/app", "v1", &layer);
    assert_eq!(
        l, d,
        "the layer was already there: pushed again, one copy served"
    );
    let r = curl(
        "GET",
        &format!("{base}/v2/team/app/manifests/v1"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, manifest);
    assert_eq!(r.header("docker-content-digest"), mdigest);
    let r = curl("GET", &format!("{base}/v2/team/app/blobs/{d}"), &[], None);
    assert_eq!(r.status, 200);
    assert!(r.body == layer, "identical bytes");
    let r = curl(
        "GET",
        &format!("{base}/v2/team/app/blobs/{d}"),
        &[("Range", "bytes=5242879-5242880")],
        None,
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, layer[5_242_879..5_242_881]);
    let r = curl("GET", &format!("{base}/health"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = curl(
        "GET",
        &format!("{base}/api/v0/meta/cluster_status"),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["replica_id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["replica_health"][&id], "OK");
}

/// Measures (prints, asserts nothing about speed) a 50 MB monolithic push and a pull
/// through the registry on moto S3 and on the filesystem, with curl.
/// `cargo test -p notary-registry --test s3 -- --ignored --nocapture throughput`
#[test]
#[ignore = "a measurement, run by hand"]
fn throughput_50mb_s3_vs_filesystem() {
    let m = moto();
    let blob = data(50_000_000, 9);
    let d = sha256(&blob);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, &blob).unwrap();
    for (name, storage) in [
        ("filesystem", StorageConfig::default()),
        ("moto s3", s3_storage(&m)),
    ] {
        let reg = serve(storage);
        for round in 0..2 {
            let repo = format!("bench/r{round}");
            let r = curl(
                "POST",
                &format!("{}/v2/{repo}/blobs/uploads/", reg.url),
                &[],
                None,
            );
            let loc = absolute(&reg.url, &r.header("location"));
            let sep = if loc.contains('?') { '&' } else { '?' };
            let t = Instant::now();
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "PUT",
                    "-H",
                    "Expect:",
                    "-H",
                    "Content-Type: application/octet-stream",
                    "--data-binary",
                ])
                .arg(format!("@{}", file.display()))
                .arg(format!("{loc}{sep}digest={d}"))
                .output()
                .unwrap();
            let push = t.elapsed();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
            let t = Instant::now();
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{size_download}",
                ])
                .arg(format!("{}/v2/{repo}/blobs/{d}", reg.url))
                .output()
                .unwrap();
            let pull = t.elapsed();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "200 50000000");
            println!(
                "{name} round {round}: push {:.2} s ({:.0} MB/s), pull {:.2} s ({:.0} MB/s)",
                push.as_secs_f64(),
                50.0 / push.as_secs_f64(),
                pull.as_secs_f64(),
                50.0 / pull.as_secs_f64()
            );
        }
    }
}
