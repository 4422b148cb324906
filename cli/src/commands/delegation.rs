//! `notary delegation …`: staging delegation changes, listing delegations.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;

use super::public_key_file;
use super::{Outcome, confirmed, gun_arg, load, role_arg, table};
use notary_core::changelist::{Change, DelegationEdit};

use crate::client::{Changelist, Settings};
/// `notary delegation …`
#[derive(Subcommand, Debug)]
pub enum DelegationCmd {
    /// Stages a delegation: keys (certificate or public key PEM files) and paths.
    Add {
        /// The collection.
        gun: String,
        /// Delegation role, e.g. targets/releases.
        role: String,
        /// Certificate or public key files.
        keys: Vec<PathBuf>,
        /// Paths the role may sign (prefixes).
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        /// Every path.
        #[arg(long)]
        all_paths: bool,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Stages the removal of keys or paths from a delegation, or (given only the role)
    /// of the whole delegation.
    Remove {
        /// The collection.
        gun: String,
        /// Delegation role.
        role: String,
        /// Canonical key IDs to remove.
        key_ids: Vec<String>,
        /// Paths to remove.
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        /// Remove every path.
        #[arg(long)]
        all_paths: bool,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Stages the removal of keys from every delegation of a collection.
    Purge {
        /// The collection.
        gun: String,
        /// Canonical key IDs.
        #[arg(long = "key", value_delimiter = ',', required = true)]
        keys: Vec<String>,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Lists the delegations of a collection.
    List {
        /// The collection.
        gun: String,
    },
}

/// Runs `notary delegation …`.
pub(super) fn run(cmd: DelegationCmd, s: &Settings) -> anyhow::Result<Outcome> {
    let outcome = match cmd {
        DelegationCmd::Add {
            gun,
            role,
            keys,
            paths,
            all_paths,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            let role = role_arg(&role)?;
            if !role.is_delegation() {
                bail!("{role} is not a delegation role (targets/<name>)");
            }
            let mut pubs = Vec::new();
            for f in &keys {
                pubs.push(public_key_file(f)?);
            }
            let mut paths = paths;
            if all_paths {
                paths = vec![String::new()];
            }
            if pubs.is_empty() && paths.is_empty() {
                bail!("need at least one key or path for delegation {role}");
            }
            let cl = Changelist::new(s, &gun);
            // As Go stages it: the keys (threshold 1), then the paths.
            let mut ids = Vec::new();
            if !pubs.is_empty() {
                for k in &pubs {
                    ids.push(k.canonical_id()?.to_string());
                }
                cl.add(&Change::CreateDelegation {
                    role: role.clone(),
                    edit: DelegationEdit {
                        threshold: Some(1),
                        add_keys: pubs,
                        ..DelegationEdit::default()
                    },
                })?;
            }
            if !paths.is_empty() {
                cl.add(&Change::CreateDelegation {
                    role: role.clone(),
                    edit: DelegationEdit {
                        add_paths: paths.clone(),
                        ..DelegationEdit::default()
                    },
                })?;
            }
            let mut msg = format!("\nAddition of delegation role {role}");
            if !ids.is_empty() {
                msg.push_str(&format!(" with keys [{}]", ids.join(" ")));
            }
            if !paths.is_empty() {
                let shown: Vec<String> = paths
                    .iter()
                    .map(|p| {
                        if p.is_empty() {
                            "\"\" <all paths>".to_owned()
                        } else {
                            p.clone()
                        }
                    })
                    .collect();
                msg.push_str(&format!(", with paths [{}]", shown.join("\n")));
            }
            println!("{msg}, to repository \"{gun}\" staged for next publish.\n");
            Outcome::Staged { gun, publish: p }
        }
        DelegationCmd::Remove {
            gun,
            role,
            key_ids,
            paths,
            all_paths,
            yes,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            let role = role_arg(&role)?;
            let cl = Changelist::new(s, &gun);
            if key_ids.is_empty() && paths.is_empty() && !all_paths {
                if !yes {
                    println!(
                        "Are you sure you want to remove all data for this delegation? (yes/no)"
                    );
                    if !confirmed()? {
                        println!("Aborting action.");
                        return Ok(Outcome::Declined);
                    }
                }
                cl.add(&Change::DeleteDelegation { role: role.clone() })?;
                println!(
                    "\nForced removal (including all keys and paths) of delegation role {role} to repository \"{gun}\" staged for next publish.\n"
                );
            } else {
                cl.add(&Change::UpdateDelegation {
                    role: role.clone(),
                    edit: DelegationEdit {
                        remove_keys: key_ids.clone(),
                        remove_paths: paths.clone(),
                        clear_paths: all_paths,
                        ..DelegationEdit::default()
                    },
                })?;
                let mut msg = format!("\nRemoval of delegation role {role}");
                if !key_ids.is_empty() {
                    msg.push_str(&format!(" with keys [{}]", key_ids.join(" ")));
                }
                if all_paths {
                    msg.push_str(", with all paths");
                } else if !paths.is_empty() {
                    msg.push_str(&format!(", with paths [{}]", paths.join("\n")));
                }
                println!("{msg}, to repository \"{gun}\" staged for next publish.\n");
            }
            Outcome::Staged { gun, publish: p }
        }
        DelegationCmd::Purge {
            gun,
            keys,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            Changelist::new(s, &gun).add(&Change::PurgeDelegationKeys {
                key_ids: keys.clone(),
            })?;
            println!(
                "Removal of the following keys from all delegations in {gun} staged for next publish:"
            );
            for k in &keys {
                println!("\t- {k}");
            }
            Outcome::Staged { gun, publish: p }
        }
        DelegationCmd::List { gun } => {
            let gun = gun_arg(&gun)?;
            let repo = load(s, &gun)?;
            let mut entries: Vec<(String, Vec<String>, Vec<String>, u32)> = Vec::new();
            for (_, loaded) in repo.roles() {
                for d in &loaded.metadata.delegations.roles {
                    let mut ids = Vec::new();
                    for id in &d.keyids {
                        match loaded.metadata.delegations.keys.get(id) {
                            Some(k) => ids.push(k.canonical_id()?.to_string()),
                            None => ids.push(id.to_string()),
                        }
                    }
                    let paths: Vec<String> = d
                        .paths
                        .iter()
                        .map(|p| {
                            if p.is_empty() {
                                "\"\" <all paths>".to_owned()
                            } else {
                                p.clone()
                            }
                        })
                        .collect();
                    entries.push((d.name.to_string(), paths, ids, d.threshold));
                }
            }
            entries.sort();
            if entries.is_empty() {
                println!("\nNo delegations present in this repository.\n");
            } else {
                // Multi-valued cells continue on the next lines, as Go's tabwriter shows them.
                let mut rows = Vec::new();
                for (name, paths, ids, threshold) in entries {
                    let n = paths.len().max(ids.len()).max(1);
                    for i in 0..n {
                        rows.push(vec![
                            if i == 0 { name.clone() } else { String::new() },
                            paths.get(i).cloned().unwrap_or_default(),
                            ids.get(i).cloned().unwrap_or_default(),
                            if i == 0 {
                                threshold.to_string()
                            } else {
                                String::new()
                            },
                        ]);
                    }
                }
                println!();
                print!(
                    "{}",
                    table(&["ROLE", "PATHS", "KEY IDS", "THRESHOLD"], &rows)
                );
                println!();
            }
            Outcome::Done
        }
    };
    Ok(outcome)
}
