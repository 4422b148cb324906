//! Staged changes and publishing: `notary publish`, `status`, `reset`, `witness`.

use std::collections::BTreeMap;

use anyhow::bail;
use notary_core::changelist::{self, Change};
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::update::UpdateError;
use notary_core::{Gun, PrivateKey, PublicKey, RoleName};
use time::OffsetDateTime;

use super::{Outcome, gun_arg, scopes, table, update_error};
use crate::client::{
    Changelist, KeyStore, MetadataCache, Passphrases, Server, Settings, fetch_repo,
};

/// Publishes the staged changes of a trusted collection.
#[derive(clap::Args, Debug)]
pub struct Publish {
    /// The collection.
    pub gun: String,
}

/// Shows the staged changes.
#[derive(clap::Args, Debug)]
pub struct Status {
    /// The collection.
    pub gun: String,
}

/// Drops staged changes.
#[derive(clap::Args, Debug)]
pub struct Reset {
    /// The collection.
    pub gun: String,
    /// Drop every staged change.
    #[arg(long)]
    pub all: bool,
    /// Numbers of the changes to drop (as `status` shows them).
    #[arg(short = 'n', long = "number", value_delimiter = ',')]
    pub number: Vec<usize>,
}

/// Marks roles to be re-signed at the next publish.
#[derive(clap::Args, Debug)]
pub struct Witness {
    /// The collection.
    pub gun: String,
    /// Roles to witness.
    #[arg(required = true)]
    pub roles: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub publish: bool,
}

/// `notary status`.
pub(super) fn status(s: &Settings, a: Status) -> anyhow::Result<Outcome> {
    let Status { gun } = a;
    let gun = gun_arg(&gun)?;
    let changes = Changelist::new(s, &gun).list()?;
    if changes.is_empty() {
        println!("No unpublished changes for {gun}");
    } else {
        println!("Unpublished changes for {gun}:\n");
        let rows: Vec<Vec<String>> = changes
            .iter()
            .enumerate()
            .map(|(i, (_, c))| {
                vec![
                    i.to_string(),
                    c.action.clone(),
                    c.role.clone(),
                    c.kind.clone(),
                    c.path.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["#", "ACTION", "SCOPE", "TYPE", "PATH"], &rows)
        );
    }
    Ok(Outcome::Done)
}

/// `notary reset`.
pub(super) fn reset(s: &Settings, a: Reset) -> anyhow::Result<Outcome> {
    let Reset { gun, all, number } = a;
    let gun = gun_arg(&gun)?;
    if !all && number.is_empty() {
        bail!("must specify either --all or a list of changes to reset with -n");
    }
    let changes = Changelist::new(s, &gun).list()?;
    for n in &number {
        if *n >= changes.len() {
            bail!(
                "no change number {n} (status shows 0 to {})",
                changes.len().saturating_sub(1)
            );
        }
    }
    for (i, (f, _)) in changes.iter().enumerate() {
        if all || number.contains(&i) {
            std::fs::remove_file(f)?;
        }
    }
    println!("Successfully reset specified changes for repository {gun}");
    Ok(Outcome::Done)
}

/// `notary witness`.
pub(super) fn witness(s: &Settings, a: Witness) -> anyhow::Result<Outcome> {
    let Witness {
        gun,
        roles,
        publish: p,
    } = a;
    let gun = gun_arg(&gun)?;
    let cl = Changelist::new(s, &gun);
    let roles = scopes(&roles)?;
    for role in &roles {
        cl.add(&Change::Witness { role: role.clone() })?;
    }
    println!("The following roles were successfully marked for witnessing on the next publish:");
    for r in &roles {
        println!("\t- {r}");
    }
    Ok(Outcome::Staged { gun, publish: p })
}

/// Loads, decrypted, the local keys able to sign for the roles of `editor` that need
/// signing (targets roles, and the snapshot if this client holds its key).
pub(crate) fn signing_keys(
    store: &KeyStore,
    pass: &mut Passphrases,
    editor: &RepoEditor,
    roles: &[RoleName],
) -> anyhow::Result<Vec<PrivateKey>> {
    let root = editor.root();
    let mut ids: Vec<PublicKey> = Vec::new();
    let mut want = |keyids: &[notary_core::KeyId],
                    keys: &BTreeMap<notary_core::KeyId, PublicKey>| {
        for id in keyids {
            if let Some(k) = keys.get(id) {
                ids.push(k.clone());
            }
        }
    };
    for name in ["targets", "snapshot"] {
        if let Some(r) = root.roles.get(name) {
            want(&r.keyids, &root.keys);
        }
    }
    for role in roles.iter().filter(|r| **r != RoleName::targets()) {
        if let Some(parent) = role.parent() {
            if let Some(t) = editor.targets(&parent) {
                if let Some(entry) = t.delegation(role) {
                    want(&entry.keyids, &t.delegations.keys);
                }
            }
        }
    }
    let mut out = Vec::new();
    for k in ids {
        let id = k.canonical_id()?.to_string();
        if let Some(kf) = store.load(&id, pass)? {
            out.push(kf.key);
        }
    }
    Ok(out)
}

/// `notary publish` (spec §10.4).
pub(super) fn publish(s: &Settings, gun: &Gun, auto: bool) -> anyhow::Result<()> {
    if auto {
        println!("Auto-publishing changes to {gun}");
    } else {
        println!("Pushing changes to {gun}");
    }
    let server = Server::new(s)?;
    let cache = MetadataCache::new(s, gun);
    let cl = Changelist::new(s, gun);
    let changes = cl.list()?;
    let now = OffsetDateTime::now_utc();
    let (mut editor, initial) = match fetch_repo(&server, &cache, gun, now, s.pinning.clone(), true)
    {
        Ok(repo) => {
            cache.store(&repo)?;
            (RepoEditor::from_repository(&repo), false)
        }
        Err(UpdateError::NoTrustData { .. }) => {
            let (Some(root), Some(targets)) = (cache.get("root"), cache.get("targets")) else {
                bail!(
                    "{} does not have trust data for {gun}: initialize it with `notary init {gun}`",
                    s.server_host()
                );
            };
            let snapshot = cache.get("snapshot");
            (
                RepoEditor::from_unpublished(
                    gun.clone(),
                    &root,
                    &targets,
                    snapshot.as_deref(),
                    now,
                )?,
                true,
            )
        }
        Err(e) => return Err(update_error(s, e)),
    };
    // The files were read above; decoding and applying them is pure (notary-core).
    let typed = changes
        .iter()
        .map(|(_, raw)| raw.decode())
        .collect::<Result<Vec<_>, _>>()?;
    let mut touched = vec![RoleName::targets()];
    touched.extend(changelist::apply(&mut editor, &typed)?);
    if changes.is_empty() && !initial {
        println!("No changes to publish for {gun}");
        return Ok(());
    }
    let store = KeyStore::new(s);
    let mut pass = Passphrases::default();
    let keys = signing_keys(&store, &mut pass, &editor, &touched)?;
    let mut signed = editor.sign(&KeyRing::from_keys(&keys), now)?;
    if initial {
        if let Some(root) = cache.get("root") {
            signed.files.entry(RoleName::root()).or_insert(root);
        }
    }
    server.publish(gun, &signed.files)?;
    cl.clear()?;
    println!("Successfully published changes for repository {gun}");
    Ok(())
}
