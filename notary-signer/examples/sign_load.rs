//! Load generator for any Notary signer (ours or Go's): Sign RPCs per second over N
//! mutually authenticated connections with M requests in flight on each.
//!
//! ```text
//! cargo run --release -p notary-signer --example sign_load -- \
//!     --addr 127.0.0.1:7899 --ca root-ca.crt --cert client.crt --key client.key \
//!     --connections 8 --inflight 4 --seconds 10
//! ```
//! Prints one JSON line: `{"connections":…,"inflight":…,"signs":…,"seconds":…,"rate":…,"errors":…}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use notary_signer::client::{ClientConfig, RemoteSigner};

#[derive(Parser)]
struct Args {
    /// Signer address, host:port (the host must match its certificate).
    #[arg(long)]
    addr: String,
    /// CA of the signer's certificate.
    #[arg(long)]
    ca: std::path::PathBuf,
    /// Client certificate.
    #[arg(long)]
    cert: std::path::PathBuf,
    /// Client key.
    #[arg(long)]
    key: std::path::PathBuf,
    /// Connections (each its own HTTP/2 connection).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Duration.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Key algorithm.
    #[arg(long, default_value = "ecdsa")]
    algorithm: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let (host, port) = a
        .addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--addr must be host:port, not {:?}", a.addr))?;
    let cfg = ClientConfig {
        hostname: host.to_owned(),
        port: port.parse()?,
        ca_pem: std::fs::read(&a.ca)?,
        client_identity: Some((std::fs::read(&a.cert)?, std::fs::read(&a.key)?)),
        timeout: Duration::from_secs(10),
    };
    let first = RemoteSigner::new(&cfg)?;
    let key = first
        .create_key(&a.algorithm, "bench.example.com/sign-load", "timestamp")
        .await?;
    let id = key.key_id().to_string();
    // A timestamp-sized message (what notary-server sends most).
    let msg: Arc<Vec<u8>> = Arc::new(vec![b'x'; 480]);
    // Warm-up: the key is loaded (and unsealed) once.
    first.sign(&id, &msg).await?;
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let c = RemoteSigner::new(&cfg)?;
        c.health().await?;
        for _ in 0..a.inflight {
            let (c, id, msg) = (c.clone(), id.clone(), Arc::clone(&msg));
            let (done, count, errors) =
                (Arc::clone(&done), Arc::clone(&count), Arc::clone(&errors));
            tasks.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    match c.sign(&id, &msg).await {
                        Ok(_) => count.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
    }
    let start = Instant::now();
    let base = count.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
    let signs = count.load(Ordering::Relaxed) - base;
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "{{\"connections\":{},\"inflight\":{},\"signs\":{},\"seconds\":{:.2},\"rate\":{:.1},\"errors\":{}}}",
        a.connections,
        a.inflight,
        signs,
        secs,
        signs as f64 / secs,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
