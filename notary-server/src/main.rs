//! `notary-server`: thin binary over the library. Accepts Go's flags (`-config FILE`).
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use notary_server::daemon::{
    self,
    config::{Backend, Config, TrustKind},
    tls::TlsFiles,
};

#[derive(Parser)]
#[command(
    name = "notary-server",
    version,
    about = "Notary v1 metadata server (Go Notary 0.7 compatible)"
)]
struct Args {
    /// Go notary-server JSON configuration. Without it the server runs on embedded
    /// defaults: SQLite and keys under --data-dir, TLS with a generated certificate.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory for embedded defaults (default `notary-server-data`). With
    /// `-config`, only where a local trust service keeps its passphrase file when
    /// `NOTARY_SERVER_KEY_PASSPHRASE` is not set (default: beside the SQLite database).
    #[arg(long, env = "NOTARY_SERVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address (overrides the configuration), e.g. 127.0.0.1:0.
    #[arg(long)]
    listen: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    logf: String,
    /// Debug logging (Go's `-debug`; no pprof endpoint here).
    #[arg(long)]
    debug: bool,
}

/// Go's flag package takes `-config` (and `-config=F`); clap wants `--config`.
fn go_style_args() -> Vec<String> {
    notary_daemon::go_flags(
        std::env::args(),
        &["config", "logf", "listen", "data-dir", "debug", "version"],
    )
}

fn data_dir(args: &Args) -> PathBuf {
    args.data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("notary-server-data"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(go_style_args());
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::embedded(&data_dir(&args)),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    let level = if args.debug {
        "debug"
    } else {
        config.logging.level.map_or("info", |l| l.directive())
    };
    notary_daemon::init_logging(
        &format!("notary_server={level},tower_http=warn"),
        args.logf == "json",
    );
    let tls = TlsFiles::from_config(&config);
    if let Some(files) = &tls {
        if args.config.is_none() {
            daemon::ensure_self_signed(&files.cert, &files.key)?;
            eprintln!(
                "notary-server: TLS certificate (trust it as the CA): {}",
                files.cert.display()
            );
        }
    }
    // Keys of a local trust service are sealed with a passphrase: from the environment,
    // else kept in the data directory (embedded defaults) or beside a SQLite database
    // (a config file); PostgreSQL replicas must share it through the environment.
    let passphrase = match config.trust_service.kind {
        TrustKind::Remote => zeroize::Zeroizing::new(String::new()),
        TrustKind::Local => {
            let dir = match (&args.config, config.storage.backend) {
                (None, _) => Some(data_dir(&args)),
                (Some(_), _) if args.data_dir.is_some() => args.data_dir.clone(),
                (Some(_), Backend::Sqlite) => std::path::Path::new(
                    config
                        .storage
                        .db_url
                        .trim_start_matches("sqlite://")
                        .trim_start_matches("sqlite:"),
                )
                .parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        std::path::PathBuf::from(".")
                    } else {
                        p.to_path_buf()
                    }
                }),
                (Some(_), _) => None,
            };
            daemon::key_passphrase(dir.as_deref(), config.storage.backend == Backend::Memory)?
        }
    };
    let addr = args.listen.clone().unwrap_or_else(|| config.listen_addr());
    let state = daemon::build_state(config, passphrase).await?;
    let listener =
        std::net::TcpListener::bind(&addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to learn the port.
    println!("notary-server listening on {scheme}://{local}");
    tracing::info!(%local, scheme, "listening");
    let shutdown = notary_daemon::shutdown_signal();
    daemon::serve(state, listener, tls, shutdown).await
}
