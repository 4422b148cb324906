//! `notary-registry policy ...`: signed-image policies through the admin API, against a
//! running registry (`--url`) or in process on the data directory's database (a running
//! registry on the same database picks the change up within a second).

use axum::http::Method;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use notary_registry::policy::model::{DigestPulls, Gates, Mode, PolicySpec, SignerSpec};
use notary_registry::server::Config;

use crate::cli::{Api, Target, seg};

/// `policy ...`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: PolicyCommand,
}

/// Which policy.
#[derive(Args, Debug, Clone)]
struct ScopeArgs {
    /// Repository (`org/app`).
    repo: Option<String>,
    /// A namespace's policy instead.
    #[arg(long, conflicts_with_all = ["repo", "global"])]
    namespace: Option<String>,
    /// The global policy instead.
    #[arg(long, conflicts_with_all = ["repo", "namespace"])]
    global: bool,
}

impl ScopeArgs {
    fn path(&self) -> anyhow::Result<String> {
        match (&self.repo, &self.namespace, self.global) {
            (_, _, true) => Ok("/api/v0/policies/global".to_owned()),
            (_, Some(ns), _) => Ok(format!("/api/v0/policies/namespaces/{}", seg(ns))),
            (Some(r), _, _) => Ok(format!("/api/v0/policies/repositories/{}", seg(r))),
            (None, None, false) => anyhow::bail!("name a repository, --namespace NS or --global"),
        }
    }

    fn describe(&self) -> String {
        match (&self.repo, &self.namespace, self.global) {
            (_, _, true) => "the global policy".to_owned(),
            (_, Some(ns), _) => format!("the policy of namespace {ns}"),
            (Some(r), _, _) => format!("the policy of {r}"),
            _ => "the policy".to_owned(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Set (replace) a policy.
    Set(Box<SetArgs>),
    /// Show a policy (`--effective`: the one that applies to the repository).
    Show {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        effective: bool,
    },
    /// Show the changes of a policy, newest first.
    History {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Remove a policy.
    Delete {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Show recorded decisions, oldest first.
    Audit {
        /// Only this repository.
        #[arg(long)]
        repository: Option<String>,
        /// Only refusals.
        #[arg(long)]
        denied: bool,
        /// Entries after this id.
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// `policy set`.
#[derive(Args, Debug)]
struct SetArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// disabled, permissive (warn only) or enforced.
    #[arg(long)]
    mode: String,
    /// Gates it applies to: pull,push,deploy (default all).
    #[arg(long)]
    gates: Option<String>,
    /// A team that must sign (`team`, `org/team`, optionally `:N` signatures);
    /// repeatable, all required.
    #[arg(long = "require-team")]
    require_team: Vec<String>,
    /// A delegation role that must sign (`targets/releases`, optionally `:N`);
    /// repeatable, all required.
    #[arg(long = "require-role")]
    require_role: Vec<String>,
    /// Signatures each required team or role must contribute (unless `:N` says).
    #[arg(long, default_value_t = 1)]
    min: u32,
    /// Tag patterns the policy covers (`v*`; comma-separated or repeated; default all).
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Tag patterns exempt from the policy.
    #[arg(long = "exempt-tag", value_delimiter = ',')]
    exempt_tag: Vec<String>,
    /// Users the policy does not apply to.
    #[arg(long = "exempt-user", value_delimiter = ',')]
    exempt_user: Vec<String>,
    /// Teams whose members the policy does not apply to.
    #[arg(long = "exempt-team", value_delimiter = ',')]
    exempt_team: Vec<String>,
    /// Digest pulls: signed (only signed digests) or always.
    #[arg(long = "digest-pulls", default_value = "signed")]
    digest_pulls: String,
    /// Refuse when trust data has expired.
    #[arg(long = "deny-expired")]
    deny_expired: bool,
    /// A push may not move a signed tag.
    #[arg(long = "immutable-signed-tags")]
    immutable_signed_tags: bool,
    /// Callers who may push do not read quarantined tags either.
    #[arg(long = "no-writer-reads")]
    no_writer_reads: bool,
}

fn with_count(spec: &str, default: u32) -> anyhow::Result<(String, u32)> {
    match spec.rsplit_once(':') {
        Some((name, n)) => Ok((
            name.to_owned(),
            n.parse()
                .map_err(|_| anyhow::anyhow!("{spec}: the count after ':' is a number"))?,
        )),
        None => Ok((spec.to_owned(), default)),
    }
}

fn mode(s: &str) -> anyhow::Result<Mode> {
    match s {
        "disabled" => Ok(Mode::Disabled),
        "permissive" => Ok(Mode::Permissive),
        "enforced" => Ok(Mode::Enforced),
        other => anyhow::bail!("--mode {other}: disabled, permissive or enforced"),
    }
}

fn print_policy(v: &Value) {
    let scope = &v["scope"];
    let name = scope["name"].as_str().unwrap_or("");
    println!(
        "{} {}\tversion {}\tchanged by {} at {}",
        scope["kind"].as_str().unwrap_or(""),
        if name.is_empty() { "-" } else { name },
        v["version"],
        v["updatedBy"].as_str().unwrap_or(""),
        v["updatedAt"].as_str().unwrap_or("")
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&v["policy"]).unwrap_or_default()
    );
}

/// `notary-registry policy ...`.
pub async fn policy(config: &Config, args: PolicyArgs) -> anyhow::Result<()> {
    let api = Api::open(config, &args.target).await?;
    match args.command {
        PolicyCommand::Set(set) => {
            let SetArgs {
                scope,
                mode: m,
                gates,
                require_team,
                require_role,
                min,
                tags,
                exempt_tag,
                exempt_user,
                exempt_team,
                digest_pulls,
                deny_expired,
                immutable_signed_tags,
                no_writer_reads,
            } = *set;
            let mut spec = PolicySpec::new(mode(&m)?);
            if let Some(g) = gates {
                spec.gates = Gates::parse_list(&g).map_err(anyhow::Error::msg)?;
            }
            for t in &require_team {
                let (name, n) = with_count(t, min)?;
                spec.signers.push(SignerSpec::team(&name, n));
            }
            for r in &require_role {
                let (name, n) = with_count(r, min)?;
                spec.signers.push(SignerSpec::role(&name, n));
            }
            spec.tags = tags;
            spec.exempt_tags = exempt_tag;
            spec.exempt_users = exempt_user;
            spec.exempt_teams = exempt_team;
            spec.digest_pulls = match digest_pulls.as_str() {
                "signed" => DigestPulls::Signed,
                "always" => DigestPulls::Always,
                other => anyhow::bail!("--digest-pulls {other}: signed or always"),
            };
            spec.deny_expired = deny_expired;
            spec.immutable_signed_tags = immutable_signed_tags;
            spec.writers_read_quarantined = !no_writer_reads;
            spec.validate().map_err(anyhow::Error::msg)?;
            let v = api
                .call(
                    Method::PUT,
                    &scope.path()?,
                    Some(serde_json::to_value(&spec)?),
                )
                .await?;
            println!("{} set (version {})", scope.describe(), v["version"]);
        }
        PolicyCommand::Show { scope, effective } => {
            let mut path = scope.path()?;
            if effective {
                if scope.repo.is_none() {
                    anyhow::bail!("--effective needs a repository");
                }
                path.push_str("?effective=true");
            }
            let v = api.call(Method::GET, &path, None).await?;
            print_policy(&v);
        }
        PolicyCommand::History { scope, limit } => {
            let v = api
                .call(
                    Method::GET,
                    &format!("{}/history?limit={limit}", scope.path()?),
                    None,
                )
                .await?;
            for h in v["history"].as_array().into_iter().flatten() {
                let mode = h["policy"]["mode"].as_str().unwrap_or("-");
                println!(
                    "v{}\t{}\t{}\t{}\t{}",
                    h["version"],
                    h["changedAt"].as_str().unwrap_or(""),
                    h["changedBy"].as_str().unwrap_or(""),
                    h["action"].as_str().unwrap_or(""),
                    if h["action"] == "delete" {
                        "-".to_owned()
                    } else {
                        format!("mode {mode}, {}", h["policy"])
                    }
                );
            }
        }
        PolicyCommand::Delete { scope } => {
            api.call(Method::DELETE, &scope.path()?, None).await?;
            println!("{} removed", scope.describe());
        }
        PolicyCommand::Audit {
            repository,
            denied,
            after,
            limit,
        } => {
            let mut q = vec![format!("limit={limit}")];
            if let Some(r) = &repository {
                q.push(format!("repository={}", seg(r)));
            }
            if denied {
                q.push("allowed=false".into());
            }
            if let Some(a) = after {
                q.push(format!("after={a}"));
            }
            let v = api
                .call(Method::GET, &format!("/api/v0/audit?{}", q.join("&")), None)
                .await?;
            for e in v["entries"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}{}\t{}\t{}\t{}",
                    e["id"],
                    e["at"].as_str().unwrap_or(""),
                    e["gate"].as_str().unwrap_or(""),
                    e["user"].as_str().unwrap_or("-"),
                    e["repository"].as_str().unwrap_or(""),
                    e["tag"]
                        .as_str()
                        .map(|t| format!(":{t}"))
                        .unwrap_or_default(),
                    e["digest"].as_str().unwrap_or("-"),
                    if e["allowed"] == json!(true) {
                        if e["warned"] == json!(true) {
                            "warned"
                        } else {
                            "allowed"
                        }
                    } else {
                        "denied"
                    },
                    e["reason"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
