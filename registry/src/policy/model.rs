//! The policy object (spec 4.8) as stored (JSON in the `policies` table) and as the
//! admin API exchanges it, its validation, and the scopes it applies to.
//!
//! ```json
//! {"mode": "enforced", "gates": ["pull", "push", "deploy"],
//!  "signers": [{"team": "qa"}, {"team": "security"}, {"role": "targets/releases", "min": 1}],
//!  "tags": ["v*"], "exemptTags": ["latest"], "exemptUsers": ["mirror"],
//!  "exemptTeams": ["ops"], "digestPulls": "signed", "denyExpired": true,
//!  "immutableSignedTags": false, "writersReadQuarantined": true}
//! ```

use serde::{Deserialize, Serialize};

use crate::auth::store::{valid_account_name, valid_team_name};

/// Most required signers in one policy.
pub const MAX_SIGNERS: usize = 16;
/// Most tag patterns (and, separately, exempt tag patterns, users, teams).
pub const MAX_PATTERNS: usize = 64;
/// Longest tag pattern.
pub const MAX_PATTERN_LEN: usize = 128;
/// Largest `min` of a signer.
pub const MAX_MIN_SIGNATURES: u32 = 16;

/// How a policy acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Not evaluated.
    Disabled,
    /// Evaluated; refusals become `Warning` headers and audit entries.
    Permissive,
    /// Evaluated; refusals are refusals.
    Enforced,
}

impl Mode {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::Permissive => "permissive",
            Mode::Enforced => "enforced",
        }
    }
}

/// Which gates the policy applies to (`["pull", "push", "deploy"]` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gates {
    /// Manifest GET / HEAD.
    pub pull: bool,
    /// Manifest PUT and DELETE.
    pub push: bool,
    /// Kubernetes admission.
    pub deploy: bool,
}

impl Gates {
    /// Every gate.
    pub fn all() -> Gates {
        Gates {
            pull: true,
            push: true,
            deploy: true,
        }
    }

    /// Whether `gate` is on.
    pub fn covers(self, gate: super::Gate) -> bool {
        match gate {
            super::Gate::Pull => self.pull,
            super::Gate::Push => self.push,
            super::Gate::Deploy => self.deploy,
        }
    }

    /// Parses `pull,push,deploy` (any subset, comma-separated).
    pub fn parse_list(s: &str) -> Result<Gates, String> {
        Gates::try_from(
            s.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
    }
}

impl TryFrom<Vec<String>> for Gates {
    type Error = String;
    fn try_from(v: Vec<String>) -> Result<Self, String> {
        let mut g = Gates {
            pull: false,
            push: false,
            deploy: false,
        };
        for name in &v {
            match name.as_str() {
                "pull" => g.pull = true,
                "push" => g.push = true,
                "deploy" => g.deploy = true,
                other => {
                    return Err(format!(
                        "unknown gate {:?}: gates are pull, push and deploy",
                        other.chars().take(32).collect::<String>()
                    ));
                }
            }
        }
        Ok(g)
    }
}

impl From<Gates> for Vec<String> {
    fn from(g: Gates) -> Vec<String> {
        [("pull", g.pull), ("push", g.push), ("deploy", g.deploy)]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| n.to_owned())
            .collect()
    }
}

impl Serialize for Gates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Vec::<String>::from(*self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Gates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        if v.len() > 3 {
            return Err(serde::de::Error::custom("at most three gates"));
        }
        Gates::try_from(v).map_err(serde::de::Error::custom)
    }
}

/// One required signer: a team (any key registered to one of its members) or a
/// delegation role, with the signatures it must contribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignerSpec {
    /// `team` (of the repository's organisation) or `org/team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// A targets role (`targets`, `targets/releases`, `targets/ci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Distinct keys that must have signed (default 1).
    #[serde(default = "one")]
    pub min: u32,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// A signer requirement, validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Signer {
    /// A team: `(organisation or None for the repository's namespace, team)`.
    Team(Option<String>, String),
    /// A delegation role.
    Role(String),
}

impl SignerSpec {
    /// A team requirement.
    pub fn team(name: &str, min: u32) -> SignerSpec {
        SignerSpec {
            team: Some(name.to_owned()),
            role: None,
            min,
        }
    }

    /// A role requirement.
    pub fn role(name: &str, min: u32) -> SignerSpec {
        SignerSpec {
            team: None,
            role: Some(name.to_owned()),
            min,
        }
    }

    /// What it requires.
    pub fn signer(&self) -> Option<Signer> {
        match (&self.team, &self.role) {
            (Some(t), None) => Some(match t.split_once('/') {
                Some((org, team)) => Signer::Team(Some(org.to_owned()), team.to_owned()),
                None => Signer::Team(None, t.clone()),
            }),
            (None, Some(r)) => Some(Signer::Role(r.clone())),
            _ => None,
        }
    }

    /// How a message names it (`team qa`, `role targets/releases`).
    pub fn label(&self) -> String {
        match (&self.team, &self.role) {
            (Some(t), _) => format!("team {t}"),
            (None, Some(r)) => format!("role {r}"),
            (None, None) => "nobody".to_owned(),
        }
    }
}

/// Which digest pulls the pull gate lets through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestPulls {
    /// Only digests that some tag within the policy is signed for (or children of such
    /// an index).
    #[default]
    Signed,
    /// Every digest (DTR; Docker content trust pulls by digest after resolving).
    Always,
}

impl DigestPulls {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestPulls::Signed => "signed",
            DigestPulls::Always => "always",
        }
    }
}

/// A policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Disabled, permissive or enforced.
    pub mode: Mode,
    /// Gates it applies to (default: all).
    #[serde(default = "Gates::all")]
    pub gates: Gates,
    /// Required signers, all of them (AND, as MKE). Empty: any valid signature in
    /// `targets/releases` or `targets`.
    #[serde(default)]
    pub signers: Vec<SignerSpec>,
    /// Tag patterns (`*`, `?`) the policy applies to; empty: every tag.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Tag patterns exempt from the policy.
    #[serde(default)]
    pub exempt_tags: Vec<String>,
    /// Users the policy does not apply to.
    #[serde(default)]
    pub exempt_users: Vec<String>,
    /// Teams (`team` of the repository's organisation, or `org/team`) whose members the
    /// policy does not apply to.
    #[serde(default)]
    pub exempt_teams: Vec<String>,
    /// Digest pulls: `signed` or `always`.
    #[serde(default)]
    pub digest_pulls: DigestPulls,
    /// Refuse when the trust data (or a role that matters) has expired.
    #[serde(default)]
    pub deny_expired: bool,
    /// A push may not move a tag that is signed for another digest.
    #[serde(default)]
    pub immutable_signed_tags: bool,
    /// Callers who may push to the repository can still read its quarantined tags (so
    /// that `notary image sign` can fetch what it signs); served with a `Warning`.
    #[serde(default = "yes")]
    pub writers_read_quarantined: bool,
}

impl PolicySpec {
    /// A policy of `mode` with the defaults.
    pub fn new(mode: Mode) -> PolicySpec {
        PolicySpec {
            mode,
            gates: Gates::all(),
            signers: Vec::new(),
            tags: Vec::new(),
            exempt_tags: Vec::new(),
            exempt_users: Vec::new(),
            exempt_teams: Vec::new(),
            digest_pulls: DigestPulls::Signed,
            deny_expired: false,
            immutable_signed_tags: false,
            writers_read_quarantined: true,
        }
    }

    /// Checks sizes and names; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.signers.len() > MAX_SIGNERS {
            return Err(format!("at most {MAX_SIGNERS} signers"));
        }
        for s in &self.signers {
            match s.signer() {
                Some(Signer::Team(org, team)) => {
                    if org.as_deref().is_some_and(|o| !valid_account_name(o))
                        || !valid_team_name(&team)
                    {
                        return Err(format!(
                            "invalid team {:?}",
                            short(s.team.as_deref().unwrap_or(""))
                        ));
                    }
                }
                Some(Signer::Role(r)) => {
                    if !valid_role(&r) {
                        return Err(format!(
                            "invalid role {:?}: targets or targets/<name> (lowercase letters, digits, '-', '_', '/')",
                            short(&r)
                        ));
                    }
                }
                None => return Err("each signer names exactly one of team or role".into()),
            }
            if s.min < 1 || s.min > MAX_MIN_SIGNATURES {
                return Err(format!("min is 1 to {MAX_MIN_SIGNATURES}"));
            }
        }
        for (what, list) in [("tags", &self.tags), ("exemptTags", &self.exempt_tags)] {
            if list.len() > MAX_PATTERNS {
                return Err(format!("at most {MAX_PATTERNS} {what}"));
            }
            for p in list {
                if p.is_empty()
                    || p.len() > MAX_PATTERN_LEN
                    || !p.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*' | b'?')
                    })
                {
                    return Err(format!(
                        "invalid tag pattern {:?} in {what}: tag characters, '*' and '?', at most {MAX_PATTERN_LEN}",
                        short(p)
                    ));
                }
            }
        }
        if self.exempt_users.len() > MAX_PATTERNS || self.exempt_teams.len() > MAX_PATTERNS {
            return Err(format!(
                "at most {MAX_PATTERNS} exempt users and {MAX_PATTERNS} exempt teams"
            ));
        }
        if let Some(u) = self.exempt_users.iter().find(|u| !valid_account_name(u)) {
            return Err(format!("invalid user name {:?} in exemptUsers", short(u)));
        }
        for t in &self.exempt_teams {
            let ok = match t.split_once('/') {
                Some((org, team)) => valid_account_name(org) && valid_team_name(team),
                None => valid_team_name(t),
            };
            if !ok {
                return Err(format!("invalid team {:?} in exemptTeams", short(t)));
            }
        }
        Ok(())
    }

    /// Whether `tag` is subject to the policy.
    pub fn in_scope(&self, tag: &str) -> bool {
        (self.tags.is_empty() || self.tags.iter().any(|p| glob(p, tag)))
            && !self.exempt_tags.iter().any(|p| glob(p, tag))
    }

    /// Whether the policy makes decisions at `gate`.
    pub fn active(&self, gate: super::Gate) -> bool {
        self.mode != Mode::Disabled && self.gates.covers(gate)
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Whether `r` is a targets role name Notary accepts.
pub fn valid_role(r: &str) -> bool {
    r.len() < 256
        && (r == "targets"
            || (r.starts_with("targets/")
                && r.len() > "targets/".len()
                && !r.ends_with('/')
                && !r.contains("//")
                && r.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'/')
                })))
}

/// Shell-style matching of `*` (any run, possibly empty) and `?` (one character);
/// everything else literal. Linear in practice: backtracks only to the last `*`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What a policy is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every repository without a more specific policy.
    Global,
    /// Every repository `ns/...` without a repository policy.
    Namespace(String),
    /// One repository.
    Repository(String),
}

impl Scope {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Namespace(_) => "namespace",
            Scope::Repository(_) => "repository",
        }
    }

    /// The `name` column.
    pub fn name(&self) -> &str {
        match self {
            Scope::Global => "",
            Scope::Namespace(n) | Scope::Repository(n) => n,
        }
    }

    /// From the columns.
    pub fn from_columns(kind: &str, name: &str) -> Option<Scope> {
        match kind {
            "global" => Some(Scope::Global),
            "namespace" => Some(Scope::Namespace(name.to_owned())),
            "repository" => Some(Scope::Repository(name.to_owned())),
            _ => None,
        }
    }

    /// How a person names it.
    pub fn describe(&self) -> String {
        match self {
            Scope::Global => "the global policy".to_owned(),
            Scope::Namespace(n) => format!("the policy of namespace {n}"),
            Scope::Repository(r) => format!("the policy of repository {r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("v*", "v1.2"));
        assert!(glob("*", ""));
        assert!(glob("v?.*", "v1.0"));
        assert!(!glob("v?.*", "v10.0"));
        assert!(glob("*-rc*", "1.0-rc2"));
        assert!(!glob("latest", "latest2"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn glob_with_many_stars_stays_fast() {
        // A hostile pattern must not explode: backtracking is bounded by the last star.
        let p = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let t = "a".repeat(128);
        assert!(!glob(p, &t));
    }

    #[test]
    fn json_shape_round_trips_and_validates() {
        let v = serde_json::json!({
            "mode": "enforced", "gates": ["pull", "deploy"],
            "signers": [{"team": "qa"}, {"role": "targets/releases", "min": 2}],
            "tags": ["v*"], "exemptTags": ["latest"], "digestPulls": "always", "denyExpired": true
        });
        let p: PolicySpec = serde_json::from_value(v).unwrap();
        assert!(p.gates.pull && !p.gates.push && p.gates.deploy);
        assert_eq!(p.signers[1].min, 2);
        assert!(p.writers_read_quarantined);
        p.validate().unwrap();
        assert!(p.in_scope("v1") && !p.in_scope("latest") && !p.in_scope("dev"));
        let back: PolicySpec = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn invalid_policies_are_refused() {
        let bad = [
            serde_json::json!({"mode": "strict"}),
            serde_json::json!({"mode": "enforced", "gates": ["pull", "pull2"]}),
            serde_json::json!({"mode": "enforced", "unknown": 1}),
        ];
        for b in bad {
            assert!(serde_json::from_value::<PolicySpec>(b).is_err());
        }
        let mut p = PolicySpec::new(Mode::Enforced);
        p.signers.push(SignerSpec {
            team: Some("qa".into()),
            role: Some("targets".into()),
            min: 1,
        });
        assert!(p.validate().is_err());
        p.signers = vec![SignerSpec::role("releases", 1)];
        assert!(p.validate().is_err());
        p.signers = vec![SignerSpec::team("qa", 0)];
        assert!(p.validate().is_err());
        p.signers = vec![SignerSpec::team("Bad Team", 1)];
        assert!(p.validate().is_err());
        p.signers = vec![SignerSpec::team("qa", 1); MAX_SIGNERS + 1];
        assert!(p.validate().is_err());
        p.signers.clear();
        p.tags = vec!["v*/x".into()];
        assert!(p.validate().is_err());
        p.tags = vec!["v".repeat(MAX_PATTERN_LEN + 1)];
        assert!(p.validate().is_err());
        p.tags.clear();
        p.exempt_users = vec!["UPPER".into()];
        assert!(p.validate().is_err());
    }

    #[test]
    fn roles() {
        assert!(valid_role("targets"));
        assert!(valid_role("targets/releases"));
        assert!(valid_role("targets/a/b"));
        assert!(!valid_role("targets/"));
        assert!(!valid_role("targets//a"));
        assert!(!valid_role("root"));
        assert!(!valid_role("targets/A"));
    }
}
