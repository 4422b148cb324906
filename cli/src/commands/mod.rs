//! The `notary` commands of Go Notary 0.7 (spec §11): same names, flags, messages,
//! tables and exit codes, on the same trust directory. One module per noun; this one
//! parses, dispatches, and publishes once after any command given `-p`.

mod delegation;
mod key;
mod publish;
mod repo;
mod target;

use std::io::Write as _;

use anyhow::bail;
use clap::Subcommand;
use notary_core::update::UpdateError;
use notary_core::{Gun, RoleName};
use time::OffsetDateTime;

use crate::client::{GlobalOpts, MetadataCache, Server, Settings, fetch_repo};

pub(crate) use key::public_key_file;
pub(crate) use publish::signing_keys;

/// The repository commands (Go's `notary` command set).
#[derive(Subcommand, Debug)]
pub enum RepoCmd {
    /// Initializes a local trusted collection.
    Init(repo::Init),
    /// Adds the file as a target to the trusted collection.
    Add(target::Add),
    /// Adds a target by its hashes and size.
    Addhash(target::Addhash),
    /// Removes a target from the trusted collection.
    Remove(target::Remove),
    /// Publishes the staged changes of a trusted collection.
    Publish(publish::Publish),
    /// Lists the targets of a trusted collection.
    List(target::List),
    /// Looks up a target.
    Lookup(target::Lookup),
    /// Verifies that data is a signed target; echoes it on success.
    Verify(target::Verify),
    /// Shows the staged changes.
    Status(publish::Status),
    /// Drops staged changes.
    Reset(publish::Reset),
    /// Deletes the local trust data of a collection (and the server's with --remote).
    Delete(repo::Delete),
    /// Marks roles to be re-signed at the next publish.
    Witness(publish::Witness),
    /// Key operations.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Delegation operations.
    #[command(subcommand)]
    Delegation(delegation::DelegationCmd),
    /// Prints the version.
    Version,
}

/// What a command did, for the dispatcher.
pub(crate) enum Outcome {
    /// Finished.
    Done,
    /// The user did not confirm (exit status 1, as Go).
    Declined,
    /// Changes to `gun` are staged (or, for `init`, its first metadata made locally);
    /// `publish` is `-p`.
    Staged {
        /// The collection.
        gun: Gun,
        /// Publish right away.
        publish: bool,
    },
}

/// Runs one command; returns the exit status.
pub fn run(cmd: RepoCmd, g: &GlobalOpts) -> anyhow::Result<i32> {
    let s = Settings::load(g)?;
    let outcome = match cmd {
        RepoCmd::Version => {
            println!(
                "notary\n Version:    {}\n Git commit: notary-rs\n",
                env!("CARGO_PKG_VERSION")
            );
            Outcome::Done
        }
        RepoCmd::Init(a) => repo::init(&s, a)?,
        RepoCmd::Delete(a) => repo::delete(&s, a)?,
        RepoCmd::Add(a) => target::add(&s, a)?,
        RepoCmd::Addhash(a) => target::addhash(&s, a)?,
        RepoCmd::Remove(a) => target::remove(&s, a)?,
        RepoCmd::List(a) => target::list(&s, a)?,
        RepoCmd::Lookup(a) => target::lookup(&s, a)?,
        RepoCmd::Verify(a) => target::verify(&s, a)?,
        RepoCmd::Publish(a) => {
            publish::publish(&s, &gun_arg(&a.gun)?, false)?;
            Outcome::Done
        }
        RepoCmd::Status(a) => publish::status(&s, a)?,
        RepoCmd::Reset(a) => publish::reset(&s, a)?,
        RepoCmd::Witness(a) => publish::witness(&s, a)?,
        RepoCmd::Key(c) => key::run(c, &s)?,
        RepoCmd::Delegation(c) => delegation::run(c, &s)?,
    };
    match outcome {
        Outcome::Done => Ok(0),
        Outcome::Declined => Ok(1),
        Outcome::Staged { gun, publish } => {
            if publish {
                publish::publish(&s, &gun, true)?;
            }
            Ok(0)
        }
    }
}

/// A GUN from the command line.
pub(crate) fn gun_arg(s: &str) -> anyhow::Result<Gun> {
    Gun::new(s).map_err(|e| anyhow::anyhow!("invalid GUN {s:?}: {e}"))
}

/// A targets role (`targets` or a delegation) from the command line.
pub(crate) fn role_arg(s: &str) -> anyhow::Result<RoleName> {
    let r = RoleName::new(s).map_err(|e| anyhow::anyhow!("invalid role {s:?}: {e}"))?;
    if !r.is_targets_like() {
        bail!("invalid role {s}: only targets and delegations (targets/…) hold targets");
    }
    Ok(r)
}

/// The `-r` roles of a command, `targets` when none are given.
pub(crate) fn scopes(roles: &[String]) -> anyhow::Result<Vec<RoleName>> {
    if roles.is_empty() {
        return Ok(vec![RoleName::targets()]);
    }
    roles.iter().map(|r| role_arg(r)).collect()
}

/// Go's tabwriter output: columns padded by 4 spaces, a dashed rule under the header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}", w = widths[i] + 4));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push_str(&line(header.iter().map(|h| "-".repeat(h.len())).collect()));
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// Reads the answer to a yes/no question (after flushing the question) from stdin.
pub(crate) fn confirmed() -> anyhow::Result<bool> {
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Go's `truncateWithEllipsis(s, width, true)`: long values keep their end.
pub(crate) fn truncate_left(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return s.to_owned();
    }
    let keep: String = chars[chars.len() - (width - 3)..].iter().collect();
    format!("...{keep}")
}

/// Downloads and verifies the repository (spec §10.2), caching what was fetched.
pub(crate) fn load(s: &Settings, gun: &Gun) -> anyhow::Result<notary_core::Repository> {
    let server = Server::new(s)?;
    let cache = MetadataCache::new(s, gun);
    let repo = fetch_repo(
        &server,
        &cache,
        gun,
        OffsetDateTime::now_utc(),
        s.pinning.clone(),
        false,
    )
    .map_err(|e| update_error(s, e))?;
    for w in repo.warnings() {
        eprintln!("WARN: {w}");
    }
    cache.store(&repo)?;
    Ok(repo)
}

/// The update engine's error, with Go's message for a collection the server lacks.
pub(crate) fn update_error(s: &Settings, e: UpdateError) -> anyhow::Error {
    match e {
        UpdateError::NoTrustData { gun } => {
            anyhow::anyhow!("{} does not have trust data for {gun}", s.server_host())
        }
        other => anyhow::Error::new(other),
    }
}
