//! `notary-server`: thin binary over the library. Accepts Go's flags (`-config FILE`).
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use notary_server::config::Config;

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
    /// Data directory for embedded defaults.
    #[arg(
        long,
        env = "NOTARY_SERVER_DATA_DIR",
        default_value = "notary-server-data"
    )]
    data_dir: PathBuf,
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
    notary_signer::go_flags(
        std::env::args(),
        &["config", "logf", "listen", "data-dir", "debug", "version"],
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(go_style_args());
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::embedded(&args.data_dir),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    let level = if args.debug {
        "debug".to_owned()
    } else if config.logging.level.is_empty() {
        "info".to_owned()
    } else {
        config.logging.level.clone()
    };
    notary_signer::runtime::init_logging(
        &format!("notary_server={level},tower_http=warn"),
        args.logf == "json",
    );
    let tls = match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (Some(c), Some(k)) => {
            if args.config.is_none() {
                notary_server::ensure_self_signed(c, k)?;
                eprintln!(
                    "notary-server: TLS certificate (trust it as the CA): {}",
                    c.display()
                );
            }
            Some((c.clone(), k.clone()))
        }
        _ => None,
    };
    let passphrase = notary_server::key_passphrase(&args.data_dir)?;
    let addr = args.listen.clone().unwrap_or_else(|| config.listen_addr());
    let state = notary_server::build_state(config, passphrase).await?;
    let listener =
        std::net::TcpListener::bind(&addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to learn the port.
    println!("notary-server listening on {scheme}://{local}");
    tracing::info!(%local, scheme, "listening");
    let shutdown = notary_signer::runtime::shutdown_signal();
    notary_server::serve(state, listener, tls, shutdown).await
}
