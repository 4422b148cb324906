//! Two `notary-registry` processes on one PostgreSQL and one S3 (moto): content pushed
//! through one is served by the other; an upload started on a replica that is then
//! SIGKILLed is finished on the other; cluster status sees both, then the dead one as
//! unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod s3_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use notary_tests::{Moto, Postgres, Proc, workspace_bin};
use s3_common::{PART, absolute, curl, data, push_image, sha256};

struct Replica {
    proc: Proc,
    url: String,
}

fn start_replica(dir: &Path, name: &str, database: &str, config: &Path) -> Replica {
    let mut cmd = Command::new(workspace_bin("notary-registry"));
    cmd.args(["--listen", "127.0.0.1:0", "--plain-http", "--no-auth", "-c"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join(name))
        .args(["--database", database])
        // The access key id from the environment, the secret from a file (config).
        .env("NOTARY_REGISTRY_S3_ACCESS_KEY_ID", "test-key")
        .env("NOTARY_REGISTRY_LOG_LEVEL", "info");
    let mut proc = Proc::spawn(cmd, dir.join(format!("{name}.log")));
    let banner = proc.banner();
    let addr = banner.rsplit("://").next().unwrap().trim().to_owned();
    Replica {
        proc,
        url: format!("http://{addr}"),
    }
}

fn cluster_status(r: &Replica) -> serde_json::Value {
    let s = curl(
        "GET",
        &format!("{}/api/v0/meta/cluster_status", r.url),
        &[],
        None,
    );
    assert_eq!(s.status, 200, "{}", s.text());
    s.json()
}

#[test]
fn two_replicas_share_content_and_uploads_and_report_each_other() {
    let pg = Postgres::start();
    let database = pg.database("registry");
    let moto = Moto::start();
    moto.create_bucket("ha-blobs");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, "test-secret\n").unwrap();
    let config = dir.path().join("registry.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "storage": {"kind": "s3", "bucket": "ha-blobs", "endpoint": moto.url, "allow_http": true,
                        "secret_access_key_file": secret, "prefix": "cluster", "part_size": PART},
            "cluster_heartbeat_secs": 1,
        })
        .to_string(),
    )
    .unwrap();
    let mut a = start_replica(dir.path(), "a", &database, &config);
    let b = start_replica(dir.path(), "b", &database, &config);

    // Pushed through A, pulled through B.
    let layer = data(1_500_000, 11);
    let (mdigest, manifest, ldigest) = push_image(&a.url, "ha/app", "v1", &layer);
    let r = curl(
        "GET",
        &format!("{}/v2/ha/app/manifests/v1", b.url),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, manifest);
    assert_eq!(r.header("docker-content-digest"), mdigest);
    let r = curl(
        "GET",
        &format!("{}/v2/ha/app/blobs/{ldigest}", b.url),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(r.body == layer);
    assert_eq!(sha256(&r.body), ldigest);
    let r = curl("GET", &format!("{}/v2/ha/app/tags/list", b.url), &[], None);
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));

    let id_a = cluster_status(&a)["replica_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id_b = cluster_status(&b)["replica_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(id_a, id_b);

    // A chunked upload: two chunks on A (a full part goes to S3, the rest is a tail)...
    let blob = data(2 * PART + 777_777, 12);
    let r = curl(
        "POST",
        &format!("{}/v2/ha/app/blobs/uploads/", a.url),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let location = r.header("location");
    let mut at = 0usize;
    for n in [6_000_000usize, 1_048_579] {
        let range = format!("{at}-{}", at + n - 1);
        let r = curl(
            "PATCH",
            &absolute(&a.url, &location),
            &[("Content-Range", &range)],
            Some(&blob[at..at + n]),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        at += n;
    }
    // ...A dies (SIGKILL)...
    a.proc.kill();
    // ...and the same Location goes on through B: its status, one more chunk, the close.
    let on_b = absolute(&b.url, &location);
    let r = curl("GET", &on_b, &[], None);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("range"), format!("0-{}", at - 1));
    let n = 3_000_005;
    let range = format!("{at}-{}", at + n - 1);
    let r = curl(
        "PATCH",
        &on_b,
        &[("Content-Range", &range)],
        Some(&blob[at..at + n]),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    at += n;
    let d = sha256(&blob);
    let sep = if on_b.contains('?') { '&' } else { '?' };
    let r = curl(
        "PUT",
        &format!("{on_b}{sep}digest={d}"),
        &[],
        Some(&blob[at..]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = curl("GET", &format!("{}/v2/ha/app/blobs/{d}", b.url), &[], None);
    assert_eq!(r.status, 200);
    assert!(
        r.body == blob,
        "the blob finished on B is the bytes sent to A and B"
    );

    // B lists both replicas, and soon reports A unreachable (A no longer heartbeats).
    let s = cluster_status(&b);
    let ids: Vec<&str> = s["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&id_a.as_str()) && ids.contains(&id_b.as_str()),
        "{s}"
    );
    let entry_b = s["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id_b.as_str())
        .unwrap();
    assert_eq!(
        entry_b["address"],
        b.url.as_str(),
        "the bound address, not the configured :0"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = cluster_status(&b);
        if s["replica_health"][&id_a] == "unreachable" {
            break s;
        }
        assert!(Instant::now() < deadline, "A still reported healthy: {s}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(s["replica_health"][&id_b], "OK", "{s}");
    let issues = s["current_issues"].as_array().unwrap();
    assert!(
        issues
            .iter()
            .any(|i| i["description"].as_str().unwrap().contains(&id_a)),
        "{s}"
    );
    assert!(
        !s.to_string().contains("test-secret"),
        "no secret in the status"
    );
    let log = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
    assert!(!log.contains("test-secret"), "no secret in the logs");
}
