//! The `verify_repo` example, run as a user would (cargo builds examples for tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/verify_repo");
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

fn fixtures(rel: &str) -> String {
    format!(
        "{}/../fixtures/go-notary-0.7/{rel}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn prints_each_verified_target_as_json() {
    let out = Command::new(example())
        .args([
            "--gun",
            "example.com/test/app",
            "--dir",
            &fixtures("repo-app/server-snapshot"),
            "--now",
            "2026-11-23T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let v2 = lines.iter().find(|l| l["name"] == "v2.0").unwrap();
    assert_eq!(v2["role"], "targets/releases");
    assert_eq!(v2["length"], 19);
    assert_eq!(
        v2["sha256"],
        "087044a20069e6e4dcf60276d27cb80c8f10af81abc15ae8191ae2c612a3b2fb"
    );
}

#[test]
fn failure_names_the_file_and_exits_non_zero() {
    let out = Command::new(example())
        .args([
            "--gun",
            "example.com/test/app",
            "--dir",
            &fixtures("repo-app/server-snapshot"),
            "--now",
            "2027-11-23T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.contains("timestamp.json") && text.contains("expired"),
        "{text}"
    );
}

#[test]
fn root_ca_pinning_refuses_an_unrelated_ca() {
    let out = Command::new(example())
        .args([
            "--gun",
            "example.com/test/app",
            "--dir",
            &fixtures("repo-app/server-snapshot"),
            "--now",
            "2026-11-23T00:00:00Z",
            "--root-ca",
            &fixtures("tls/root-ca.crt"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("root.json"));
}
