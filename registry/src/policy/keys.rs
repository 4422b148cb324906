//! Which user owns which signing key of a repository (`signer_keys`): what a team
//! requirement is checked against ("a signature from any key registered to a member").
//!
//! Bindings are made (a) after each successful Notary publish, by
//! [`record_update`]: a key that produced a valid signature on a role this publish
//! changed is bound to the publishing user, unless it is bound already — the publisher
//! demonstrably holds it (a fresh signature over a new version), whereas a key merely
//! *listed* in a new delegation may belong to anyone (the repository administrator adds
//! other people's keys with `docker trust signer add`); and (b) explicitly through the
//! admin API (`/api/v0/repositories/{ns}/{repo}/signers`).

use std::collections::{BTreeMap, BTreeSet};

use notary_core::update::Repository;
use sqlx::Row as _;

use crate::meta::{Db, now};
use crate::with_pool;

/// Most bindings listed for one repository.
pub const MAX_LISTED: i64 = 10_000;

/// One binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerKey {
    /// Repository (without the registry host).
    pub repository: String,
    /// Key id as the trust data lists it (hex SHA-256).
    pub key_id: String,
    /// The GUN it was seen in (`""` when bound through the admin API without one).
    pub gun: String,
    /// The role it signed or was bound for.
    pub role: String,
    /// Its owner.
    pub user: String,
    /// Who made the binding.
    pub added_by: String,
    /// When (Unix seconds).
    pub added_at: i64,
}

/// Whether `id` looks like a TUF key id (64 lowercase hex digits).
pub fn valid_key_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The repository a GUN names: the GUN without its registry host, as Docker splits
/// references (a first component with `.` or `:`, or `localhost`, is a host).
pub fn repository_of_gun(gun: &str) -> &str {
    match gun.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => gun,
    }
}

/// Keys with a valid signature on each targets role of `repo`, by role (key ids as the
/// role's delegating metadata lists them).
pub fn role_signers(repo: &Repository) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, _) in repo.roles() {
        out.insert(
            name.to_string(),
            super::source::valid_signers(repo, name)
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        );
    }
    out
}

/// Records who published `after` (the verified trust data after a successful publish
/// by `user`; `before` the verified data before it, `None` for a new repository): each
/// key with a valid signature on a role whose version changed is bound to `user` for
/// the GUN's repository, unless already bound. Returns the new bindings.
pub async fn record_update(
    db: &Db,
    gun: &str,
    user: &str,
    before: Option<&Repository>,
    after: &Repository,
) -> Result<Vec<SignerKey>, sqlx::Error> {
    let repository = repository_of_gun(gun).to_owned();
    let mut fresh: BTreeMap<String, String> = BTreeMap::new();
    for (name, loaded) in after.roles() {
        let old_version = before
            .and_then(|b| b.role(name))
            .map(|r| r.metadata.version);
        if old_version == Some(loaded.metadata.version) {
            continue;
        }
        for (id, _) in super::source::valid_signers(after, name) {
            // Prefer the most specific role for the record (targets/alice over
            // targets/releases over targets).
            let role = name.to_string();
            let better = match fresh.get(&id) {
                None => true,
                Some(r) => role_rank(&role) > role_rank(r),
            };
            if better {
                fresh.insert(id, role);
            }
        }
    }
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    let at = now();
    let mut added = Vec::new();
    let _w = db.write().await;
    with_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        for (key_id, role) in &fresh {
            let n = sqlx::query("INSERT INTO signer_keys (repository, key_id, gun, role, user_name, added_by, added_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (repository, key_id) DO NOTHING")
                .bind(&repository).bind(key_id).bind(gun).bind(role).bind(user).bind(user).bind(at)
                .execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                added.push(SignerKey {
                    repository: repository.clone(),
                    key_id: key_id.clone(),
                    gun: gun.to_owned(),
                    role: role.clone(),
                    user: user.to_owned(),
                    added_by: user.to_owned(),
                    added_at: at,
                });
            }
        }
        tx.commit().await?;
    });
    for k in &added {
        tracing::info!(repository = %k.repository, key = %k.key_id, role = %k.role, user = %k.user, "signing key bound to its publisher");
    }
    Ok(added)
}

fn role_rank(role: &str) -> u8 {
    match role {
        "targets" => 0,
        "targets/releases" => 1,
        _ => 2,
    }
}

/// The bindings of a repository, by key id.
pub async fn list(db: &Db, repository: &str) -> Result<Vec<SignerKey>, sqlx::Error> {
    with_pool!(db, pool => {
        Ok(sqlx::query("SELECT repository, key_id, gun, role, user_name, added_by, added_at FROM signer_keys WHERE repository = $1 ORDER BY key_id LIMIT $2")
            .bind(repository).bind(MAX_LISTED).fetch_all(pool).await?
            .iter().map(|r| SignerKey {
                repository: r.get(0), key_id: r.get(1), gun: r.get(2), role: r.get(3),
                user: r.get(4), added_by: r.get(5), added_at: r.get(6),
            }).collect())
    })
}

/// Binds (or re-binds) a key.
pub async fn bind(db: &Db, key: &SignerKey) -> Result<(), sqlx::Error> {
    let _w = db.write().await;
    with_pool!(db, pool => {
        sqlx::query("INSERT INTO signer_keys (repository, key_id, gun, role, user_name, added_by, added_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (repository, key_id) DO UPDATE SET gun = excluded.gun, role = excluded.role, user_name = excluded.user_name, added_by = excluded.added_by, added_at = excluded.added_at")
            .bind(&key.repository).bind(&key.key_id).bind(&key.gun).bind(&key.role).bind(&key.user).bind(&key.added_by).bind(key.added_at)
            .execute(pool).await?;
        Ok(())
    })
}

/// Removes a binding; `false` if there was none.
pub async fn unbind(db: &Db, repository: &str, key_id: &str) -> Result<bool, sqlx::Error> {
    let _w = db.write().await;
    with_pool!(db, pool => {
        Ok(sqlx::query("DELETE FROM signer_keys WHERE repository = $1 AND key_id = $2")
            .bind(repository).bind(key_id).execute(pool).await?.rows_affected() > 0)
    })
}

/// Key owners and team keys of one repository, as the engine checks them.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// Key id → owner.
    pub owners: BTreeMap<String, String>,
    /// `org/team` → key ids of its members.
    pub team_keys: BTreeMap<String, BTreeSet<String>>,
    /// Teams that exist (`org/team`), among those asked about.
    pub teams: BTreeSet<String>,
}

/// Loads the key owners of `repository` and, for `teams` (`org/team`), the keys of
/// their members.
pub async fn directory(
    db: &Db,
    repository: &str,
    teams: &BTreeSet<String>,
) -> Result<Directory, sqlx::Error> {
    let mut dir = Directory::default();
    let rows: Vec<(String, String, Option<String>, Option<String>)> = with_pool!(db, pool => {
        sqlx::query("SELECT sk.key_id, sk.user_name, o.name, t.name FROM signer_keys sk LEFT JOIN users u ON u.name = sk.user_name LEFT JOIN team_members m ON m.user_id = u.id LEFT JOIN teams t ON t.id = m.team_id LEFT JOIN organizations o ON o.id = t.org_id WHERE sk.repository = $1 LIMIT 100000")
            .bind(repository).fetch_all(pool).await?
            .iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
    });
    for (key, user, org, team) in rows {
        dir.owners.insert(key.clone(), user);
        if let (Some(o), Some(t)) = (org, team) {
            let name = format!("{o}/{t}");
            if teams.contains(&name) {
                dir.team_keys.entry(name).or_default().insert(key);
            }
        }
    }
    for name in teams {
        let Some((org, team)) = name.split_once('/') else {
            continue;
        };
        let exists = with_pool!(db, pool => {
            sqlx::query("SELECT 1 FROM teams t JOIN organizations o ON o.id = t.org_id WHERE o.name = $1 AND t.name = $2")
                .bind(org).bind(team).fetch_optional(pool).await?.is_some()
        });
        if exists {
            dir.teams.insert(name.clone());
        }
    }
    Ok(dir)
}

/// The teams (`org/team`) a user belongs to.
pub async fn user_teams(db: &Db, user: &str) -> Result<BTreeSet<String>, sqlx::Error> {
    with_pool!(db, pool => {
        Ok(sqlx::query("SELECT o.name, t.name FROM users u JOIN team_members m ON m.user_id = u.id JOIN teams t ON t.id = m.team_id JOIN organizations o ON o.id = t.org_id WHERE u.name = $1 LIMIT 10000")
            .bind(user).fetch_all(pool).await?
            .iter().map(|r| format!("{}/{}", r.get::<String, _>(0), r.get::<String, _>(1))).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guns_to_repositories() {
        assert_eq!(repository_of_gun("127.0.0.1:5000/org/app"), "org/app");
        assert_eq!(repository_of_gun("localhost/org/app"), "org/app");
        assert_eq!(repository_of_gun("registry.example.com/app"), "app");
        assert_eq!(repository_of_gun("org/app"), "org/app");
        assert_eq!(repository_of_gun("app"), "app");
    }

    #[test]
    fn key_ids() {
        assert!(valid_key_id(&"a".repeat(64)));
        assert!(!valid_key_id(&"A".repeat(64)));
        assert!(!valid_key_id("abc"));
        assert!(!valid_key_id(&format!("{}/", "a".repeat(63))));
    }
}
