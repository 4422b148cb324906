//! Process plumbing shared by the notary-rs daemons (`notary-server`, `notary-signer`,
//! `notary-registry`): Go `flag`-style arguments, logging setup, the shutdown signal,
//! SQLite connection options, owner-only files and directories, and environment
//! overrides. Nothing here knows about TUF.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod env;
pub mod fs;

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// Rewrites Go `flag`-style arguments (`-config FILE`, `-config=FILE`, `-debug`) for clap
/// (`--config …`): single-dash long names listed in `names` get a second dash.
pub fn go_flags(args: impl IntoIterator<Item = String>, names: &[&str]) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            let long = a.strip_prefix('-').filter(|r| !r.starts_with('-'));
            match long {
                Some(rest) if names.contains(&rest.split('=').next().unwrap_or_default()) => {
                    format!("-{a}")
                }
                _ => a,
            }
        })
        .collect()
}

/// Installs the global `tracing` subscriber: `RUST_LOG` if set, else `directives`;
/// JSON lines when `json`, colours only on a terminal.
pub fn init_logging(directives: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// SQLite options every daemon uses: a file path or `sqlite:` URL, created if missing
/// (owner-only: the parent directory is created 0700 and the file 0600), WAL with
/// `synchronous=NORMAL`, 10 s busy timeout.
pub fn sqlite_options(path_or_url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    let url = if path_or_url.starts_with("sqlite:") {
        path_or_url.to_owned()
    } else {
        format!("sqlite://{path_or_url}")
    };
    let opts = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    let file = opts.get_filename().to_path_buf();
    if !file.as_os_str().is_empty() && file.as_os_str() != ":memory:" {
        fs::prepare_private_file(&file).map_err(sqlx::Error::Io)?;
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_flags_rewrites_single_dash_long_names() {
        let args = [
            "bin",
            "-config=a.json",
            "-debug",
            "--logf",
            "json",
            "-x",
            "reseal",
            "-config",
            "b",
        ]
        .map(str::to_owned);
        assert_eq!(
            go_flags(args, &["config", "debug"]),
            [
                "bin",
                "--config=a.json",
                "--debug",
                "--logf",
                "json",
                "-x",
                "reseal",
                "--config",
                "b"
            ]
        );
    }

    #[test]
    fn sqlite_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/x.db");
        sqlite_options(db.to_str().unwrap()).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        assert_eq!(mode(&db), 0o600);
    }
}
