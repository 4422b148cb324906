//! `notary-registry`: with no arguments, serves a working registry from a local data
//! directory (HTTPS with a generated CA, authentication on).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use notary_registry::server::{self, Config};

mod cli;
mod policy_cli;

#[derive(Parser, Debug)]
#[command(
    name = "notary-registry",
    version,
    about = "OCI registry with content trust"
)]
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
    /// Manage users (`add`, `list`, `remove`, `passwd`, `admin`).
    User(cli::UserArgs),
    /// Manage organisations (`add`, `list`).
    Org(cli::OrgArgs),
    /// Manage teams (`add`, `list`, `member-add`, `member-remove`).
    Team(cli::TeamArgs),
    /// Manage repositories and grants (`list`, `set-public`, `grant`, `revoke`).
    Repo(cli::RepoArgs),
    /// Signed-image policies (`set`, `show`, `history`, `delete`) and their audit trail
    /// (`audit`).
    Policy(policy_cli::PolicyArgs),
    /// Run one garbage collection against the data directory's database and storage
    /// (safe while the registry serves) and print its progress.
    Gc {
        /// Count what would be collected; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Grace period in seconds (default: the configuration's gc.grace_secs).
        #[arg(long)]
        grace_secs: Option<u64>,
        /// Also delete untagged manifests older than this many days (0: off).
        #[arg(long)]
        untagged_days: Option<u32>,
    },
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
        Command::User(args) => cli::user(&config, args).await,
        Command::Org(args) => cli::org(&config, args).await,
        Command::Team(args) => cli::team(&config, args).await,
        Command::Repo(args) => cli::repo(&config, args).await,
        Command::Policy(args) => policy_cli::policy(&config, args).await,
        Command::Gc {
            dry_run,
            grace_secs,
            untagged_days,
        } => gc(config, dry_run, grace_secs, untagged_days).await,
    }
}

/// Prints each report of a GC run.
struct PrintProgress;

#[async_trait::async_trait]
impl notary_registry::gc::Progress for PrintProgress {
    async fn report(
        &mut self,
        _stats: &notary_registry::gc::GcStats,
        message: &str,
        _milestone: bool,
    ) -> std::ops::ControlFlow<()> {
        println!("{message}");
        std::ops::ControlFlow::Continue(())
    }
}

async fn gc(
    config: Config,
    dry_run: bool,
    grace_secs: Option<u64>,
    untagged_days: Option<u32>,
) -> anyhow::Result<()> {
    let params = notary_registry::gc::GcParameters {
        dry_run,
        grace_secs,
        untagged_days,
        upload_expiry_secs: None,
    };
    let settings = params.apply(&config.gc).map_err(anyhow::Error::msg)?;
    let (db, store) = server::open_backends(&config).await?;
    let mut opts = settings.options();
    opts.dry_run = dry_run;
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        notary_daemon::shutdown_signal().await;
        cancel.cancel();
    });
    println!(
        "garbage collection of {} ({}){}",
        config.database_url(),
        store.describe(),
        if dry_run { ", dry run" } else { "" }
    );
    let report = notary_registry::gc::run(&db, store.as_ref(), &opts, &mut PrintProgress).await?;
    println!("{}", serde_json::to_string(&report.stats)?);
    if !report.finished {
        anyhow::bail!("interrupted: the next run continues where this one stopped");
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    server::prometheus();
    // First start: no CA of ours yet (and no configured certificate).
    let first_start = !config.plain_http
        && config.tls_cert.is_none()
        && !config.data_dir.join("tls").join("ca.crt").exists();
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
    if let Some(trust) = &registry.trust {
        trust.set_port(addr.port());
    }
    if first_start {
        // Once, after the banner; stdout may be closed by a reader that only wanted the
        // banner, so a failed write is not an error.
        let password = config.data_dir.join("admin-password");
        let text = notary_registry::trust::setup_instructions(
            &notary_registry::trust::client_host_port(addr),
            &config.data_dir.join("tls").join("ca.crt"),
            &config.data_dir,
            password.exists().then_some(password.as_path()),
        );
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    tracing::info!(%addr, scheme, storage = %registry.store.describe(), "serving");
    if let Some(hook) = notary_registry::admission::listener::start(
        &registry,
        &config,
        notary_daemon::shutdown_signal(),
    )? {
        println!(
            "admission webhook listening on https://{} (caBundle: {})",
            hook.addr,
            hook.ca_bundle.as_deref().unwrap_or("the configured CA")
        );
    }
    server::serve(
        server::app(registry),
        listener,
        tls,
        notary_daemon::shutdown_signal(),
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
