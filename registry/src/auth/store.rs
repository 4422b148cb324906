//! Users, organisations, teams, repository grants and refresh tokens in the registry
//! database (migration `0002_auth.sql`); the same `$n` SQL on SQLite and PostgreSQL.
//!
//! Permission rules (spec section 5, DTR): grants are additive and the highest wins;
//! a user administers the namespace of their own name; organisation owners administer
//! the organisation's namespace; namespace-wide team grants apply to every repository
//! `ns/...`, existing or not yet pushed.

use sqlx::Row as _;

use crate::meta::{Db, now};
use crate::with_pool;

/// A repository access level (DTR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Browse and pull.
    ReadOnly = 1,
    /// Also push and delete tags.
    ReadWrite = 2,
    /// Also manage access, visibility, delete the repository (`*`).
    Admin = 3,
}

impl Level {
    /// The DTR name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::ReadOnly => "read-only",
            Level::ReadWrite => "read-write",
            Level::Admin => "admin",
        }
    }

    /// Parses a DTR name.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "read-only" => Some(Level::ReadOnly),
            "read-write" => Some(Level::ReadWrite),
            "admin" => Some(Level::Admin),
            _ => None,
        }
    }

    fn from_i64(v: i64) -> Option<Level> {
        match v {
            1 => Some(Level::ReadOnly),
            2 => Some(Level::ReadWrite),
            3 => Some(Level::Admin),
            _ => None,
        }
    }

    fn as_i64(self) -> i64 {
        self as i64
    }
}

/// A user account.
#[derive(Clone)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name (also their namespace).
    pub name: String,
    /// argon2id PHC string.
    pub(crate) password_hash: String,
    /// System administrator.
    pub admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// An organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    /// Row id.
    pub id: i64,
    /// Name (its namespace).
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A member of an organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgMember {
    /// User name.
    pub user: String,
    /// Owner of the organisation.
    pub owner: bool,
}

/// A team of an organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    /// Row id.
    pub id: i64,
    /// Organisation id.
    pub org_id: i64,
    /// Organisation name.
    pub org: String,
    /// Team name (unique in the organisation).
    pub name: String,
    /// Free text.
    pub description: String,
}

/// A repository as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoInfo {
    /// Row id.
    pub id: i64,
    /// Full name.
    pub name: String,
    /// Anonymous pull allowed.
    pub public: bool,
    /// Short description.
    pub short_description: String,
    /// Long description.
    pub long_description: String,
}

/// A grant to a named user or team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// User or team name.
    pub name: String,
    /// The level.
    pub level: Level,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A named thing does not exist.
    #[error("{kind} {name} does not exist")]
    NotFound {
        /// `user`, `organization`, `team`, `repository`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The operation would break an invariant (the last administrator).
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn not_found(kind: &'static str, name: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

/// The longest user, organisation or team name.
pub const MAX_ACCOUNT_NAME: usize = 64;

/// Whether `name` may be a user or organisation name: one repository-name component
/// (`[a-z0-9]+([._-][a-z0-9]+)*`), since it is also a namespace.
pub fn valid_account_name(name: &str) -> bool {
    name.len() <= MAX_ACCOUNT_NAME && !name.contains('/') && crate::names::valid_name(name)
}

/// Whether `name` may be a team name (letters, digits, `.`, `_`, `-`, at most 64).
pub fn valid_team_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ACCOUNT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The namespace of a repository name (`org` of `org/app`; none for `alpine`).
pub fn namespace_of(repo: &str) -> Option<&str> {
    repo.split_once('/').map(|(ns, _)| ns)
}

const USER_COLS: &str = "id, name, password_hash, admin, created_at";

fn user_row<R: sqlx::Row>(r: &R) -> User
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    User {
        id: r.get("id"),
        name: r.get("name"),
        password_hash: r.get("password_hash"),
        admin: r.get("admin"),
        created_at: r.get("created_at"),
    }
}

/// The authentication and RBAC tables.
#[derive(Clone, Debug)]
pub struct AuthStore {
    db: Db,
}

impl AuthStore {
    /// Over the registry database (already migrated by [`Db::open`]).
    pub fn new(db: Db) -> AuthStore {
        AuthStore { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    // ------------------------------------------------------------------ users

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT COUNT(*) FROM users").fetch_one(pool).await?.get::<i64, _>(0))
        })
    }

    /// Creates a user (`Conflict` if the name is a user or an organisation already).
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        admin: bool,
    ) -> Result<User, StoreError> {
        let _w = self.db.write().await;
        let created = now();
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            let taken = sqlx::query("SELECT 1 FROM users WHERE name = $1 UNION ALL SELECT 1 FROM organizations WHERE name = $1")
                .bind(name).fetch_optional(&mut *tx).await?.is_some();
            if taken {
                return Err(StoreError::Conflict(format!("the name {name} is taken")));
            }
            let id: i64 = sqlx::query("INSERT INTO users (name, password_hash, admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(name).bind(password_hash).bind(admin).bind(created)
                .fetch_one(&mut *tx).await?.get(0);
            tx.commit().await?;
            Ok(User { id, name: name.to_owned(), password_hash: password_hash.to_owned(), admin, created_at: created })
        })
    }

    /// A user by name.
    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let q = format!("SELECT {USER_COLS} FROM users WHERE name = $1");
        with_pool!(self.db, pool => {
            Ok(sqlx::query(&q).bind(name).fetch_optional(pool).await?.map(|r| user_row(&r)))
        })
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let q = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        with_pool!(self.db, pool => {
            Ok(sqlx::query(&q).bind(id).fetch_optional(pool).await?.map(|r| user_row(&r)))
        })
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let q = format!("SELECT {USER_COLS} FROM users ORDER BY name LIMIT 100000");
        with_pool!(self.db, pool => {
            Ok(sqlx::query(&q).fetch_all(pool).await?.iter().map(user_row).collect())
        })
    }

    /// Deletes a user (their grants, memberships and refresh tokens go with them).
    /// Refused for the last system administrator.
    pub async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query("SELECT admin FROM users WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?;
            let Some(row) = row else { return Err(not_found("user", name)) };
            if row.get::<bool, _>(0) {
                let admins: i64 = sqlx::query("SELECT COUNT(*) FROM users WHERE admin").fetch_one(&mut *tx).await?.get(0);
                if admins <= 1 {
                    return Err(StoreError::Refused("the last system administrator cannot be removed".into()));
                }
            }
            sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Replaces a password hash and revokes the user's refresh tokens.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<(), StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            let id: Option<i64> = sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1 RETURNING id")
                .bind(name).bind(password_hash).fetch_optional(&mut *tx).await?.map(|r| r.get(0));
            let Some(id) = id else { return Err(not_found("user", name)) };
            sqlx::query("UPDATE refresh_tokens SET revoked = $2 WHERE user_id = $1").bind(id).bind(true).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Makes a user a system administrator or not (never removing the last one).
    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<(), StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query("SELECT admin FROM users WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?;
            let Some(row) = row else { return Err(not_found("user", name)) };
            if row.get::<bool, _>(0) && !admin {
                let admins: i64 = sqlx::query("SELECT COUNT(*) FROM users WHERE admin").fetch_one(&mut *tx).await?.get(0);
                if admins <= 1 {
                    return Err(StoreError::Refused("the last system administrator cannot be demoted".into()));
                }
            }
            sqlx::query("UPDATE users SET admin = $2 WHERE name = $1").bind(name).bind(admin).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    // ------------------------------------------------------------------ organisations

    /// Creates an organisation (`Conflict` if a user or organisation has the name).
    pub async fn create_org(&self, name: &str) -> Result<Org, StoreError> {
        let _w = self.db.write().await;
        let created = now();
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            let taken = sqlx::query("SELECT 1 FROM users WHERE name = $1 UNION ALL SELECT 1 FROM organizations WHERE name = $1")
                .bind(name).fetch_optional(&mut *tx).await?.is_some();
            if taken {
                return Err(StoreError::Conflict(format!("the name {name} is taken")));
            }
            let id: i64 = sqlx::query("INSERT INTO organizations (name, created_at) VALUES ($1, $2) RETURNING id")
                .bind(name).bind(created).fetch_one(&mut *tx).await?.get(0);
            tx.commit().await?;
            Ok(Org { id, name: name.to_owned(), created_at: created })
        })
    }

    /// An organisation by name.
    pub async fn org(&self, name: &str) -> Result<Option<Org>, StoreError> {
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT id, name, created_at FROM organizations WHERE name = $1").bind(name)
                .fetch_optional(pool).await?.map(|r| Org { id: r.get(0), name: r.get(1), created_at: r.get(2) }))
        })
    }

    async fn org_required(&self, name: &str) -> Result<Org, StoreError> {
        self.org(name)
            .await?
            .ok_or_else(|| not_found("organization", name))
    }

    async fn user_required(&self, name: &str) -> Result<User, StoreError> {
        self.user(name)
            .await?
            .ok_or_else(|| not_found("user", name))
    }

    /// Every organisation, by name.
    pub async fn orgs(&self) -> Result<Vec<Org>, StoreError> {
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT id, name, created_at FROM organizations ORDER BY name LIMIT 100000")
                .fetch_all(pool).await?.iter().map(|r| Org { id: r.get(0), name: r.get(1), created_at: r.get(2) }).collect())
        })
    }

    /// Deletes an organisation with its teams, memberships and team grants.
    pub async fn delete_org(&self, name: &str) -> Result<(), StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let n = sqlx::query("DELETE FROM organizations WHERE name = $1").bind(name).execute(pool).await?.rows_affected();
            if n == 0 { Err(not_found("organization", name)) } else { Ok(()) }
        })
    }

    /// Adds a member (or changes their owner flag).
    pub async fn set_org_member(
        &self,
        org: &str,
        user: &str,
        owner: bool,
    ) -> Result<(), StoreError> {
        let o = self.org_required(org).await?;
        let u = self.user_required(user).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            sqlx::query("INSERT INTO organization_members (org_id, user_id, owner) VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) DO UPDATE SET owner = excluded.owner")
                .bind(o.id).bind(u.id).bind(owner).execute(pool).await?;
            Ok(())
        })
    }

    /// Removes a member from the organisation and its teams.
    pub async fn remove_org_member(&self, org: &str, user: &str) -> Result<(), StoreError> {
        let o = self.org_required(org).await?;
        let u = self.user_required(user).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM team_members WHERE user_id = $2 AND team_id IN (SELECT id FROM teams WHERE org_id = $1)")
                .bind(o.id).bind(u.id).execute(&mut *tx).await?;
            let n = sqlx::query("DELETE FROM organization_members WHERE org_id = $1 AND user_id = $2")
                .bind(o.id).bind(u.id).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            if n == 0 { Err(not_found("member", user)) } else { Ok(()) }
        })
    }

    /// Members of an organisation.
    pub async fn org_members(&self, org: &str) -> Result<Vec<OrgMember>, StoreError> {
        let o = self.org_required(org).await?;
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT u.name, m.owner FROM organization_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.name")
                .bind(o.id).fetch_all(pool).await?.iter().map(|r| OrgMember { user: r.get(0), owner: r.get(1) }).collect())
        })
    }

    /// The user's membership of an organisation: `None` (not a member), `Some(owner)`.
    pub async fn org_membership(
        &self,
        org: &str,
        user_id: i64,
    ) -> Result<Option<bool>, StoreError> {
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT m.owner FROM organization_members m JOIN organizations o ON o.id = m.org_id WHERE o.name = $1 AND m.user_id = $2")
                .bind(org).bind(user_id).fetch_optional(pool).await?.map(|r| r.get::<bool, _>(0)))
        })
    }

    // ------------------------------------------------------------------ teams

    /// Creates a team in an organisation.
    pub async fn create_team(
        &self,
        org: &str,
        name: &str,
        description: &str,
    ) -> Result<Team, StoreError> {
        let o = self.org_required(org).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let id: Option<i64> = sqlx::query("INSERT INTO teams (org_id, name, description, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, name) DO NOTHING RETURNING id")
                .bind(o.id).bind(name).bind(description).bind(now()).fetch_optional(pool).await?.map(|r| r.get(0));
            match id {
                Some(id) => Ok(Team { id, org_id: o.id, org: o.name.clone(), name: name.to_owned(), description: description.to_owned() }),
                None => Err(StoreError::Conflict(format!("team {org}/{name} exists"))),
            }
        })
    }

    /// A team by organisation and name.
    pub async fn team(&self, org: &str, name: &str) -> Result<Option<Team>, StoreError> {
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT t.id, t.org_id, o.name, t.name, t.description FROM teams t JOIN organizations o ON o.id = t.org_id WHERE o.name = $1 AND t.name = $2")
                .bind(org).bind(name).fetch_optional(pool).await?
                .map(|r| Team { id: r.get(0), org_id: r.get(1), org: r.get(2), name: r.get(3), description: r.get(4) }))
        })
    }

    async fn team_required(&self, org: &str, name: &str) -> Result<Team, StoreError> {
        self.team(org, name)
            .await?
            .ok_or_else(|| not_found("team", &format!("{org}/{name}")))
    }

    /// Teams of an organisation.
    pub async fn teams(&self, org: &str) -> Result<Vec<Team>, StoreError> {
        let o = self.org_required(org).await?;
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT id, org_id, name, description FROM teams WHERE org_id = $1 ORDER BY name")
                .bind(o.id).fetch_all(pool).await?.iter()
                .map(|r| Team { id: r.get(0), org_id: r.get(1), org: o.name.clone(), name: r.get(2), description: r.get(3) }).collect())
        })
    }

    /// Deletes a team and its grants.
    pub async fn delete_team(&self, org: &str, name: &str) -> Result<(), StoreError> {
        let t = self.team_required(org, name).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            sqlx::query("DELETE FROM teams WHERE id = $1").bind(t.id).execute(pool).await?;
            Ok(())
        })
    }

    /// Adds a user to a team (and to its organisation, as a plain member).
    pub async fn add_team_member(
        &self,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<(), StoreError> {
        let t = self.team_required(org, team).await?;
        let u = self.user_required(user).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO organization_members (org_id, user_id, owner) VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) DO NOTHING")
                .bind(t.org_id).bind(u.id).bind(false).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT (team_id, user_id) DO NOTHING")
                .bind(t.id).bind(u.id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Removes a user from a team.
    pub async fn remove_team_member(
        &self,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<(), StoreError> {
        let t = self.team_required(org, team).await?;
        let u = self.user_required(user).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let n = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
                .bind(t.id).bind(u.id).execute(pool).await?.rows_affected();
            if n == 0 { Err(not_found("team member", user)) } else { Ok(()) }
        })
    }

    /// Members of a team.
    pub async fn team_members(&self, org: &str, team: &str) -> Result<Vec<String>, StoreError> {
        let t = self.team_required(org, team).await?;
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT u.name FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 ORDER BY u.name")
                .bind(t.id).fetch_all(pool).await?.iter().map(|r| r.get(0)).collect())
        })
    }

    // ------------------------------------------------------------------ repositories

    /// A repository.
    pub async fn repository(&self, name: &str) -> Result<Option<RepoInfo>, StoreError> {
        const Q: &str = "SELECT r.id, r.name, r.public, i.short_description, i.long_description FROM repositories r LEFT JOIN repository_info i ON i.repository_id = r.id WHERE r.name = $1";
        with_pool!(self.db, pool => {
            Ok(sqlx::query(Q).bind(name).fetch_optional(pool).await?.map(|r| RepoInfo {
                id: r.get(0), name: r.get(1), public: r.get(2),
                short_description: r.get::<Option<String>, _>(3).unwrap_or_default(),
                long_description: r.get::<Option<String>, _>(4).unwrap_or_default(),
            }))
        })
    }

    async fn repository_required(&self, name: &str) -> Result<RepoInfo, StoreError> {
        self.repository(name)
            .await?
            .ok_or_else(|| not_found("repository", name))
    }

    /// Creates a repository (`Conflict` if it exists).
    pub async fn create_repository(
        &self,
        name: &str,
        public: bool,
        short: &str,
        long: &str,
    ) -> Result<RepoInfo, StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            let id: Option<i64> = sqlx::query("INSERT INTO repositories (name, public, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id")
                .bind(name).bind(public).bind(now()).fetch_optional(&mut *tx).await?.map(|r| r.get(0));
            let Some(id) = id else { return Err(StoreError::Conflict(format!("repository {name} exists"))) };
            sqlx::query("INSERT INTO repository_info (repository_id, short_description, long_description) VALUES ($1, $2, $3)")
                .bind(id).bind(short).bind(long).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(RepoInfo { id, name: name.to_owned(), public, short_description: short.to_owned(), long_description: long.to_owned() })
        })
    }

    /// Changes visibility and descriptions of an existing repository.
    pub async fn update_repository(
        &self,
        name: &str,
        public: Option<bool>,
        short: Option<&str>,
        long: Option<&str>,
    ) -> Result<RepoInfo, StoreError> {
        let repo = self.repository_required(name).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            if let Some(p) = public {
                sqlx::query("UPDATE repositories SET public = $2 WHERE id = $1").bind(repo.id).bind(p).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO repository_info (repository_id, short_description, long_description) VALUES ($1, $2, $3) ON CONFLICT (repository_id) DO UPDATE SET short_description = excluded.short_description, long_description = excluded.long_description")
                .bind(repo.id)
                .bind(short.unwrap_or(&repo.short_description))
                .bind(long.unwrap_or(&repo.long_description))
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.repository_required(name).await
    }

    /// Deletes a repository: its tags, manifests, blob links and grants (blob bytes are
    /// left to garbage collection).
    pub async fn delete_repository(&self, name: &str) -> Result<(), StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let n = sqlx::query("DELETE FROM repositories WHERE name = $1").bind(name).execute(pool).await?.rows_affected();
            if n == 0 { Err(not_found("repository", name)) } else { Ok(()) }
        })
    }

    /// Repositories whose name starts with `prefix` (`""`: all), by name, at most `limit`.
    pub async fn repositories(
        &self,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<RepoInfo>, StoreError> {
        const Q: &str = "SELECT r.id, r.name, r.public, i.short_description, i.long_description FROM repositories r LEFT JOIN repository_info i ON i.repository_id = r.id WHERE substr(r.name, 1, length($1)) = $1 ORDER BY r.name LIMIT $2";
        with_pool!(self.db, pool => {
            Ok(sqlx::query(Q).bind(prefix).bind(limit).fetch_all(pool).await?.iter().map(|r| RepoInfo {
                id: r.get(0), name: r.get(1), public: r.get(2),
                short_description: r.get::<Option<String>, _>(3).unwrap_or_default(),
                long_description: r.get::<Option<String>, _>(4).unwrap_or_default(),
            }).collect())
        })
    }

    // ------------------------------------------------------------------ grants

    /// Grants a user a level on a repository (creating the repository, private).
    pub async fn set_repo_user_access(
        &self,
        repo: &str,
        user: &str,
        level: Level,
    ) -> Result<(), StoreError> {
        let u = self.user_required(user).await?;
        let rid = self.db.ensure_repository(repo).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            sqlx::query("INSERT INTO repository_user_access (repository_id, user_id, level) VALUES ($1, $2, $3) ON CONFLICT (repository_id, user_id) DO UPDATE SET level = excluded.level")
                .bind(rid).bind(u.id).bind(level.as_i64()).execute(pool).await?;
            Ok(())
        })
    }

    /// Revokes a user's grant on a repository.
    pub async fn remove_repo_user_access(&self, repo: &str, user: &str) -> Result<(), StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let n = sqlx::query("DELETE FROM repository_user_access WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND user_id = (SELECT id FROM users WHERE name = $2)")
                .bind(repo).bind(user).execute(pool).await?.rows_affected();
            if n == 0 { Err(not_found("grant", user)) } else { Ok(()) }
        })
    }

    /// Users granted access to a repository.
    pub async fn repo_user_access(&self, repo: &str) -> Result<Vec<Grant>, StoreError> {
        with_pool!(self.db, pool => {
            let rows = sqlx::query("SELECT u.name, a.level FROM repository_user_access a JOIN users u ON u.id = a.user_id JOIN repositories r ON r.id = a.repository_id WHERE r.name = $1 ORDER BY u.name")
                .bind(repo).fetch_all(pool).await?;
            Ok(rows.iter().filter_map(|r| Some(Grant { name: r.get(0), level: Level::from_i64(r.get(1))? })).collect())
        })
    }

    /// Grants a team (of the organisation `org`) a level on a repository.
    pub async fn set_repo_team_access(
        &self,
        repo: &str,
        org: &str,
        team: &str,
        level: Level,
    ) -> Result<Team, StoreError> {
        let t = self.team_required(org, team).await?;
        let rid = self.db.ensure_repository(repo).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            sqlx::query("INSERT INTO repository_team_access (repository_id, team_id, level) VALUES ($1, $2, $3) ON CONFLICT (repository_id, team_id) DO UPDATE SET level = excluded.level")
                .bind(rid).bind(t.id).bind(level.as_i64()).execute(pool).await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(t)
    }

    /// Revokes a team's grant on a repository.
    pub async fn remove_repo_team_access(
        &self,
        repo: &str,
        org: &str,
        team: &str,
    ) -> Result<(), StoreError> {
        let t = self.team_required(org, team).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let n = sqlx::query("DELETE FROM repository_team_access WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND team_id = $2")
                .bind(repo).bind(t.id).execute(pool).await?.rows_affected();
            if n == 0 { Err(not_found("grant", team)) } else { Ok(()) }
        })
    }

    /// Team grants on a repository (teams of any organisation).
    pub async fn repo_team_access(&self, repo: &str) -> Result<Vec<(Team, Level)>, StoreError> {
        with_pool!(self.db, pool => {
            let rows = sqlx::query("SELECT t.id, t.org_id, o.name, t.name, t.description, a.level FROM repository_team_access a JOIN teams t ON t.id = a.team_id JOIN organizations o ON o.id = t.org_id JOIN repositories r ON r.id = a.repository_id WHERE r.name = $1 ORDER BY o.name, t.name")
                .bind(repo).fetch_all(pool).await?;
            Ok(rows.iter().filter_map(|r| Some((
                Team { id: r.get(0), org_id: r.get(1), org: r.get(2), name: r.get(3), description: r.get(4) },
                Level::from_i64(r.get(5))?,
            ))).collect())
        })
    }

    /// Grants a team of the organisation `ns` a level on every repository `ns/...`.
    pub async fn set_namespace_team_access(
        &self,
        ns: &str,
        team: &str,
        level: Level,
    ) -> Result<Team, StoreError> {
        let t = self.team_required(ns, team).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            sqlx::query("INSERT INTO namespace_team_access (namespace, team_id, level) VALUES ($1, $2, $3) ON CONFLICT (namespace, team_id) DO UPDATE SET level = excluded.level")
                .bind(ns).bind(t.id).bind(level.as_i64()).execute(pool).await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(t)
    }

    /// Revokes a namespace-wide team grant.
    pub async fn remove_namespace_team_access(
        &self,
        ns: &str,
        team: &str,
    ) -> Result<(), StoreError> {
        let t = self.team_required(ns, team).await?;
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let n = sqlx::query("DELETE FROM namespace_team_access WHERE namespace = $1 AND team_id = $2")
                .bind(ns).bind(t.id).execute(pool).await?.rows_affected();
            if n == 0 { Err(not_found("grant", team)) } else { Ok(()) }
        })
    }

    /// Namespace-wide team grants of `ns`.
    pub async fn namespace_team_access(&self, ns: &str) -> Result<Vec<(Team, Level)>, StoreError> {
        with_pool!(self.db, pool => {
            let rows = sqlx::query("SELECT t.id, t.org_id, o.name, t.name, t.description, a.level FROM namespace_team_access a JOIN teams t ON t.id = a.team_id JOIN organizations o ON o.id = t.org_id WHERE a.namespace = $1 ORDER BY t.name")
                .bind(ns).fetch_all(pool).await?;
            Ok(rows.iter().filter_map(|r| Some((
                Team { id: r.get(0), org_id: r.get(1), org: r.get(2), name: r.get(3), description: r.get(4) },
                Level::from_i64(r.get(5))?,
            ))).collect())
        })
    }

    // ------------------------------------------------------------------ decisions

    /// The highest level a (non-administrator) user holds on `repo` through grants, team
    /// grants, namespace grants, organisation ownership or their own namespace. Does not
    /// include public visibility.
    pub async fn repo_level(&self, user: &User, repo: &str) -> Result<Option<Level>, StoreError> {
        let ns = namespace_of(repo).unwrap_or("");
        if !ns.is_empty() && ns == user.name {
            return Ok(Some(Level::Admin));
        }
        const Q: &str = "SELECT CAST(MAX(level) AS BIGINT) FROM (
            SELECT a.level AS level FROM repository_user_access a JOIN repositories r ON r.id = a.repository_id WHERE r.name = $1 AND a.user_id = $2
            UNION ALL
            SELECT a.level FROM repository_team_access a JOIN repositories r ON r.id = a.repository_id JOIN team_members m ON m.team_id = a.team_id WHERE r.name = $1 AND m.user_id = $2
            UNION ALL
            SELECT a.level FROM namespace_team_access a JOIN team_members m ON m.team_id = a.team_id WHERE a.namespace = $3 AND m.user_id = $2
            UNION ALL
            SELECT 3 FROM organization_members om JOIN organizations o ON o.id = om.org_id WHERE o.name = $3 AND om.user_id = $2 AND om.owner
        ) x";
        with_pool!(self.db, pool => {
            let v: Option<i64> = sqlx::query(Q).bind(repo).bind(user.id).bind(ns).fetch_one(pool).await?.get(0);
            Ok(v.and_then(Level::from_i64))
        })
    }

    /// The highest level a user holds on a namespace as a whole (own namespace, owner of
    /// the organisation, namespace team grants): what lets them create repositories.
    pub async fn namespace_level(
        &self,
        user: &User,
        ns: &str,
    ) -> Result<Option<Level>, StoreError> {
        if ns == user.name {
            return Ok(Some(Level::Admin));
        }
        const Q: &str = "SELECT CAST(MAX(level) AS BIGINT) FROM (
            SELECT a.level AS level FROM namespace_team_access a JOIN team_members m ON m.team_id = a.team_id WHERE a.namespace = $1 AND m.user_id = $2
            UNION ALL
            SELECT 3 FROM organization_members om JOIN organizations o ON o.id = om.org_id WHERE o.name = $1 AND om.user_id = $2 AND om.owner
        ) x";
        with_pool!(self.db, pool => {
            let v: Option<i64> = sqlx::query(Q).bind(ns).bind(user.id).fetch_one(pool).await?.get(0);
            Ok(v.and_then(Level::from_i64))
        })
    }

    /// Repositories a non-administrator may read (public ones included), sorted by byte
    /// order (the catalog's order).
    pub async fn readable_repositories(
        &self,
        user: Option<&User>,
    ) -> Result<Vec<String>, StoreError> {
        const ANON: &str = "SELECT name FROM repositories WHERE public LIMIT 1000000";
        const Q: &str = "SELECT r.name FROM repositories r WHERE r.public
            OR substr(r.name, 1, length($2) + 1) = $2 || '/'
            OR EXISTS (SELECT 1 FROM repository_user_access a WHERE a.repository_id = r.id AND a.user_id = $1)
            OR EXISTS (SELECT 1 FROM repository_team_access a JOIN team_members m ON m.team_id = a.team_id WHERE a.repository_id = r.id AND m.user_id = $1)
            OR EXISTS (SELECT 1 FROM namespace_team_access a JOIN team_members m ON m.team_id = a.team_id WHERE m.user_id = $1 AND substr(r.name, 1, length(a.namespace) + 1) = a.namespace || '/')
            OR EXISTS (SELECT 1 FROM organization_members om JOIN organizations o ON o.id = om.org_id WHERE om.user_id = $1 AND om.owner AND substr(r.name, 1, length(o.name) + 1) = o.name || '/')
            LIMIT 1000000";
        let mut names: Vec<String> = with_pool!(self.db, pool => {
            match user {
                None => sqlx::query(ANON).fetch_all(pool).await?.iter().map(|r| r.get(0)).collect(),
                Some(u) => sqlx::query(Q).bind(u.id).bind(&u.name).fetch_all(pool).await?.iter().map(|r| r.get(0)).collect(),
            }
        });
        names.sort_unstable();
        Ok(names)
    }

    // ------------------------------------------------------------------ refresh tokens

    /// Stores the hash of a new refresh token.
    pub async fn insert_refresh_token(
        &self,
        token_hash: &str,
        user_id: i64,
        client_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            sqlx::query("INSERT INTO refresh_tokens (token_hash, user_id, client_id, created_at, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(token_hash).bind(user_id).bind(client_id).bind(now()).bind(expires_at).bind(false)
                .execute(pool).await?;
            Ok(())
        })
    }

    /// The user a live (unexpired, unrevoked) refresh token belongs to.
    pub async fn refresh_token_user(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<User>, StoreError> {
        const Q: &str = "SELECT u.id, u.name, u.password_hash, u.admin, u.created_at FROM refresh_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 AND NOT t.revoked AND t.expires_at > $2";
        with_pool!(self.db, pool => {
            Ok(sqlx::query(Q).bind(token_hash).bind(now).fetch_optional(pool).await?.map(|r| user_row(&r)))
        })
    }

    /// Revokes every refresh token of a user; returns how many were live.
    pub async fn revoke_refresh_tokens(&self, user: &str) -> Result<u64, StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            Ok(sqlx::query("UPDATE refresh_tokens SET revoked = $2 WHERE NOT revoked AND user_id = (SELECT id FROM users WHERE name = $1)")
                .bind(user).bind(true).execute(pool).await?.rows_affected())
        })
    }

    /// Forgets refresh tokens expired before `before`.
    pub async fn purge_refresh_tokens(&self, before: i64) -> Result<u64, StoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            Ok(sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1").bind(before).execute(pool).await?.rows_affected())
        })
    }
}
