//! `notary-signer`: Go-compatible flags (`-config FILE`), plus `reseal`.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use notary_signer::config::Config;
use notary_signer::keys::Passphrases;

#[derive(Parser)]
#[command(
    name = "notary-signer",
    version,
    about = "Notary signer: timestamp/snapshot keys sealed at rest, signing over mutually authenticated gRPC (Go Notary 0.7 compatible)"
)]
struct Args {
    /// Go notary-signer JSON configuration.
    #[arg(long)]
    config: PathBuf,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    logf: String,
    /// Debug logging (Go's `-debug`; no pprof endpoint here).
    #[arg(long)]
    debug: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Re-seal every key under another passphrase alias, one key at a time, while
    /// signers keep running. Set NOTARY_SIGNER_<NEW_ALIAS> here and on every signer (the
    /// old alias variables too), run this, then make NEW_ALIAS the default alias.
    Reseal {
        /// The alias to seal every key under.
        new_alias: String,
    },
}

/// Go's flag package takes `-config` (and `-config=F`); clap wants `--config`.
fn go_style_args() -> Vec<String> {
    notary_daemon::go_flags(std::env::args(), &["config", "logf", "debug", "version"])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(go_style_args());
    let mut config = Config::load(&args.config)?;
    config.apply_env(|k| std::env::var(k).ok());
    let level = if args.debug {
        "debug".to_owned()
    } else if config.logging.level.is_empty() {
        "info".to_owned()
    } else {
        config.logging.level.clone()
    };
    notary_daemon::init_logging(&format!("notary_signer={level}"), args.logf == "json");
    if let Some(Command::Reseal { new_alias }) = args.command {
        if config.storage.backend == "memory" {
            anyhow::bail!("the memory backend keeps no sealed keys");
        }
        if config.storage.default_alias.is_empty() {
            config.storage.default_alias = new_alias.clone();
        }
        let keys = notary_signer::key_service(&config, Passphrases::from_env()).await?;
        let n = keys
            .reseal_all(&new_alias, |i, total| {
                eprint!("\rresealing keys: {i}/{total}")
            })
            .await?;
        eprintln!();
        println!("re-sealed {n} key(s) under alias {new_alias}");
        return Ok(());
    }
    config.validate()?;
    let tls = notary_signer::tls_config(&config)?;
    let keys = notary_signer::key_service(&config, Passphrases::from_env()).await?;
    let (listener, addr) = notary_signer::bind(&config.listen_addr()).await?;
    println!("notary-signer listening on {addr}");
    tracing::info!(%addr, backend = %config.storage.backend, "notary-signer started");
    let shutdown = notary_daemon::shutdown_signal();
    notary_signer::serve(keys, tls, listener, shutdown)
        .await
        .context("notary-signer")
}
