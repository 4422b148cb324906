//! `notary-registry`: with no arguments, serves a working registry from a local data
//! directory (HTTPS with a generated CA, authentication on).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use notary_registry::server::{self, Config};

#[derive(Parser, Debug)]
#[command(name = "notary-registry", version, about = "OCI registry with content trust")]
struct Cli {
    /// JSON configuration file (defaults are embedded; NOTARY_REGISTRY_* variables override it).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (default 0.0.0.0:5000).
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (default ./notary-registry-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS (tests, or behind a TLS proxy).
    #[arg(long, global = true)]
    plain_http: bool,
    /// Serve without authentication (local benchmarks and throwaway use only).
    #[arg(long, global = true)]
    no_auth: bool,
    /// Database URL (SQLite path or postgres://...).
    #[arg(long, global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the registry (the default).
    Serve,
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(l) = cli.listen {
        config.listen = l;
    }
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    if cli.plain_http {
        config.plain_http = true;
    }
    if cli.no_auth {
        config.no_auth = true;
    }
    if let Some(d) = &cli.database {
        config.database = Some(d.clone());
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load(&cli)?;
    notary_daemon::init_logging(&config.log_level, config.log_json);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    server::prometheus();
    let registry = server::build(&config).await?;
    let tls = if config.plain_http {
        None
    } else {
        Some(server::tls_files(&config)?)
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    notary_registry::cluster::advertise(&registry, &format!("{scheme}://{addr}")).await;
    // The first stdout line: tests and scripts read the bound address from it.
    println!("notary-registry listening on {scheme}://{addr}");
    tracing::info!(%addr, scheme, storage = %registry.store.describe(), "serving");
    server::serve(
        server::app(registry),
        listener,
        tls,
        notary_daemon::shutdown_signal(),
    )
    .await
}
