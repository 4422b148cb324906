//! The administration subcommands of `notary-registry` (`user`, `org`, `team`, `repo`).
//! Each one is a call of the admin API: against a running registry with `--url`
//! (Basic credentials, the password read from stdin or `NOTARY_REGISTRY_PASSWORD`), or
//! in process against the data directory's database, as the local administrator.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Body;
use axum::http::{Method, Request};
use clap::{Args, Subcommand};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use notary_registry::admin::LocalAdmin;
use notary_registry::admin::client::Client;
use notary_registry::server::Config;

/// How to reach the registry.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// URL of a running registry (`https://host:5000`); without it, the data
    /// directory's database is changed directly.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// User to authenticate as with `--url`.
    #[arg(long = "user", default_value = "admin", global = true)]
    pub login: String,
    /// Read that user's password from the first line of stdin (else
    /// `NOTARY_REGISTRY_PASSWORD`).
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// CA certificate for an HTTPS `--url` (default `DATA_DIR/tls/ca.crt`).
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
}

/// `user ...`.
#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user (the password is read from stdin with --new-password-stdin,
    /// otherwise generated and printed).
    Add {
        name: String,
        /// Make them a system administrator.
        #[arg(long)]
        admin: bool,
        /// Read the new password from the next line of stdin.
        #[arg(long)]
        new_password_stdin: bool,
    },
    /// List users.
    List,
    /// Delete a user.
    Remove { name: String },
    /// Set a user's password (same rules as `add`); revokes their refresh tokens.
    Passwd {
        name: String,
        /// Read the new password from the next line of stdin.
        #[arg(long)]
        new_password_stdin: bool,
    },
    /// Make a user a system administrator (`--revoke`: no longer one).
    Admin {
        name: String,
        #[arg(long)]
        revoke: bool,
    },
}

/// `org ...`.
#[derive(Args, Debug)]
pub struct OrgArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: OrgCommand,
}

#[derive(Subcommand, Debug)]
enum OrgCommand {
    /// Create an organisation.
    Add {
        name: String,
        /// Make these users owners.
        #[arg(long)]
        owner: Vec<String>,
    },
    /// List organisations.
    List,
}

/// `team ...`.
#[derive(Args, Debug)]
pub struct TeamArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: TeamCommand,
}

#[derive(Subcommand, Debug)]
enum TeamCommand {
    /// Create a team in an organisation.
    Add {
        org: String,
        team: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List an organisation's teams.
    List { org: String },
    /// Add a user to a team.
    MemberAdd {
        org: String,
        team: String,
        user: String,
    },
    /// Remove a user from a team.
    MemberRemove {
        org: String,
        team: String,
        user: String,
    },
}

/// `repo ...`.
#[derive(Args, Debug)]
pub struct RepoArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Subcommand, Debug)]
enum RepoCommand {
    /// List repositories (of one namespace).
    List { namespace: Option<String> },
    /// Make a repository public (anonymous pull) or private (`--private`); creates it.
    SetPublic {
        name: String,
        #[arg(long)]
        private: bool,
    },
    /// Grant a user or a team (of the namespace's organisation) read-only, read-write
    /// or admin on a repository, or with --namespace on every repository of a namespace.
    Grant {
        /// Repository (or namespace with --namespace).
        name: String,
        /// read-only, read-write or admin.
        level: String,
        /// The user granted (or revoked).
        #[arg(
            long = "account",
            conflicts_with = "team",
            required_unless_present = "team"
        )]
        user: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// NAME is a namespace: a namespace-wide team grant.
        #[arg(long, requires = "team")]
        namespace: bool,
    },
    /// Revoke a grant.
    Revoke {
        name: String,
        /// The user granted (or revoked).
        #[arg(
            long = "account",
            conflicts_with = "team",
            required_unless_present = "team"
        )]
        user: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long, requires = "team")]
        namespace: bool,
    },
}

/// stdin, read a line at a time as the options ask for passwords.
struct Stdin;

impl Stdin {
    fn line(what: &str) -> anyhow::Result<Zeroizing<String>> {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .with_context(|| format!("reading {what} from stdin"))?;
        let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
        if trimmed.is_empty() {
            anyhow::bail!("no {what} on stdin");
        }
        Ok(trimmed)
    }
}

/// Where admin calls go.
pub(crate) enum Api {
    Local(axum::Router),
    Remote(Client),
}

impl Api {
    pub(crate) async fn open(config: &Config, target: &Target) -> anyhow::Result<Api> {
        match &target.url {
            Some(url) => {
                let ca = match &target.cacert {
                    Some(p) => {
                        Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                    }
                    None => std::fs::read(config.data_dir.join("tls").join("ca.crt")).ok(),
                };
                let password = if target.password_stdin {
                    Stdin::line("the password")?
                } else {
                    Zeroizing::new(std::env::var("NOTARY_REGISTRY_PASSWORD").map_err(|_| {
                        anyhow::anyhow!(
                            "with --url, pass --password-stdin or set NOTARY_REGISTRY_PASSWORD"
                        )
                    })?)
                };
                let client = Client::new(url, ca.as_deref())?.basic(&target.login, &password);
                Ok(Api::Remote(client))
            }
            None => {
                notary_daemon::fs::private_dir(&config.data_dir)
                    .with_context(|| format!("creating {}", config.data_dir.display()))?;
                let db = notary_registry::meta::Db::open(&config.database_url())
                    .await
                    .context("opening the registry database")?;
                let svc = notary_registry::auth::AuthService::new(
                    config.auth.clone(),
                    db.clone(),
                    &config.data_dir,
                    !config.plain_http,
                )?;
                let admin = notary_registry::admin::router(Arc::clone(&svc));
                Ok(Api::Local(
                    notary_registry::policy::api::local_router(db).fallback_service(admin),
                ))
            }
        }
    }

    /// Calls the API; a non-2xx answer becomes an error with the server's message.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, bytes) = match self {
            Api::Remote(c) => {
                let r = match &body {
                    Some(b) => c.json(method, path, b).await?,
                    None => c.request(method, path, &[], bytes::Bytes::new()).await?,
                };
                (r.status, r.body)
            }
            Api::Local(router) => {
                let mut req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header("content-type", "application/json")
                    .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))?;
                req.extensions_mut().insert(LocalAdmin);
                let resp = router.clone().oneshot(req).await?;
                let status = resp.status().as_u16();
                (status, resp.into_body().collect().await?.to_bytes())
            }
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let msg = v["errors"][0]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            anyhow::bail!("{status}: {msg}");
        }
        Ok(v)
    }
}

pub(crate) fn seg(s: &str) -> String {
    // Names are validated by the server; keep the path intact either way.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn new_password(from_stdin: bool) -> anyhow::Result<(Zeroizing<String>, bool)> {
    if from_stdin {
        Ok((Stdin::line("the new password")?, false))
    } else {
        Ok((notary_registry::auth::random_password()?, true))
    }
}

/// `notary-registry user ...`.
pub async fn user(config: &Config, args: UserArgs) -> anyhow::Result<()> {
    let api = Api::open(config, &args.target).await?;
    match args.command {
        UserCommand::Add {
            name,
            admin,
            new_password_stdin,
        } => {
            let (pw, generated) = new_password(new_password_stdin)?;
            api.call(
                Method::POST,
                "/api/v0/users",
                Some(json!({"name": name, "password": pw.as_str(), "isAdmin": admin})),
            )
            .await?;
            if generated {
                println!("created user {name} with password {}", pw.as_str());
            } else {
                println!("created user {name}");
            }
        }
        UserCommand::List => {
            let v = api.call(Method::GET, "/api/v0/users", None).await?;
            for u in v["users"].as_array().into_iter().flatten() {
                let admin = if u["isAdmin"].as_bool() == Some(true) {
                    "admin"
                } else {
                    ""
                };
                println!("{}\t{admin}", u["name"].as_str().unwrap_or(""));
            }
        }
        UserCommand::Remove { name } => {
            api.call(
                Method::DELETE,
                &format!("/api/v0/users/{}", seg(&name)),
                None,
            )
            .await?;
            println!("removed user {name}");
        }
        UserCommand::Passwd {
            name,
            new_password_stdin,
        } => {
            let (pw, generated) = new_password(new_password_stdin)?;
            api.call(
                Method::PUT,
                &format!("/api/v0/users/{}/password", seg(&name)),
                Some(json!({"password": pw.as_str()})),
            )
            .await?;
            if generated {
                println!("new password for {name}: {}", pw.as_str());
            } else {
                println!("password of {name} changed");
            }
        }
        UserCommand::Admin { name, revoke } => {
            api.call(
                Method::PUT,
                &format!("/api/v0/users/{}/admin", seg(&name)),
                Some(json!({"isAdmin": !revoke})),
            )
            .await?;
            println!(
                "{name} is {}a system administrator",
                if revoke { "no longer " } else { "" }
            );
        }
    }
    Ok(())
}

/// `notary-registry org ...`.
pub async fn org(config: &Config, args: OrgArgs) -> anyhow::Result<()> {
    let api = Api::open(config, &args.target).await?;
    match args.command {
        OrgCommand::Add { name, owner } => {
            api.call(
                Method::POST,
                "/api/v0/organizations",
                Some(json!({"name": name})),
            )
            .await?;
            for o in owner {
                api.call(
                    Method::PUT,
                    &format!("/api/v0/organizations/{}/members/{}", seg(&name), seg(&o)),
                    Some(json!({"isOwner": true})),
                )
                .await?;
            }
            println!("created organization {name}");
        }
        OrgCommand::List => {
            let v = api.call(Method::GET, "/api/v0/organizations", None).await?;
            for o in v["organizations"].as_array().into_iter().flatten() {
                println!("{}", o["name"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

/// `notary-registry team ...`.
pub async fn team(config: &Config, args: TeamArgs) -> anyhow::Result<()> {
    let api = Api::open(config, &args.target).await?;
    match args.command {
        TeamCommand::Add {
            org,
            team,
            description,
        } => {
            api.call(
                Method::POST,
                &format!("/api/v0/organizations/{}/teams", seg(&org)),
                Some(json!({"name": team, "description": description})),
            )
            .await?;
            println!("created team {org}/{team}");
        }
        TeamCommand::List { org } => {
            let v = api
                .call(
                    Method::GET,
                    &format!("/api/v0/organizations/{}/teams", seg(&org)),
                    None,
                )
                .await?;
            for t in v["teams"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    t["name"].as_str().unwrap_or(""),
                    t["description"].as_str().unwrap_or("")
                );
            }
        }
        TeamCommand::MemberAdd { org, team, user } => {
            api.call(
                Method::PUT,
                &format!(
                    "/api/v0/organizations/{}/teams/{}/members/{}",
                    seg(&org),
                    seg(&team),
                    seg(&user)
                ),
                None,
            )
            .await?;
            println!("added {user} to {org}/{team}");
        }
        TeamCommand::MemberRemove { org, team, user } => {
            api.call(
                Method::DELETE,
                &format!(
                    "/api/v0/organizations/{}/teams/{}/members/{}",
                    seg(&org),
                    seg(&team),
                    seg(&user)
                ),
                None,
            )
            .await?;
            println!("removed {user} from {org}/{team}");
        }
    }
    Ok(())
}

/// `notary-registry repo ...`.
pub async fn repo(config: &Config, args: RepoArgs) -> anyhow::Result<()> {
    let api = Api::open(config, &args.target).await?;
    match args.command {
        RepoCommand::List { namespace } => {
            let path = match &namespace {
                Some(ns) => format!("/api/v0/repositories/{}", seg(ns)),
                None => "/api/v0/repositories".to_owned(),
            };
            let v = api.call(Method::GET, &path, None).await?;
            for r in v["repositories"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    r["fullName"].as_str().unwrap_or(""),
                    r["visibility"].as_str().unwrap_or("")
                );
            }
        }
        RepoCommand::SetPublic { name, private } => {
            let visibility = if private { "private" } else { "public" };
            let path = format!("/api/v0/repositories/{}", seg(&name));
            let patch = api
                .call(
                    Method::PATCH,
                    &path,
                    Some(json!({"visibility": visibility})),
                )
                .await;
            match patch {
                Ok(_) => {}
                // Not there yet: create it with that visibility.
                Err(e) if e.to_string().starts_with("404") => {
                    let (ns, repo) = name.rsplit_once('/').ok_or(e)?;
                    api.call(
                        Method::POST,
                        &format!("/api/v0/repositories/{}", seg(ns)),
                        Some(json!({"name": repo, "visibility": visibility})),
                    )
                    .await?;
                }
                Err(e) => return Err(e),
            }
            println!("{name} is {visibility}");
        }
        RepoCommand::Grant {
            name,
            level,
            user,
            team,
            namespace,
        } => {
            let path = grant_path(&name, user.as_deref(), team.as_deref(), namespace);
            api.call(Method::PUT, &path, Some(json!({"accessLevel": level})))
                .await?;
            println!(
                "granted {level} on {name} to {}",
                user.or(team).unwrap_or_default()
            );
        }
        RepoCommand::Revoke {
            name,
            user,
            team,
            namespace,
        } => {
            let path = grant_path(&name, user.as_deref(), team.as_deref(), namespace);
            api.call(Method::DELETE, &path, None).await?;
            println!(
                "revoked the grant on {name} of {}",
                user.or(team).unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn grant_path(name: &str, user: Option<&str>, team: Option<&str>, namespace: bool) -> String {
    match (user, team) {
        (_, Some(t)) if namespace => format!(
            "/api/v0/repositoryNamespaces/{}/teamAccess/{}",
            seg(name),
            seg(t)
        ),
        (_, Some(t)) => format!("/api/v0/repositories/{}/teamAccess/{}", seg(name), seg(t)),
        (Some(u), None) => format!("/api/v0/repositories/{}/userAccess/{}", seg(name), seg(u)),
        (None, None) => format!("/api/v0/repositories/{}", seg(name)),
    }
}
