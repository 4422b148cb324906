//! Targets: `notary add`, `addhash`, `remove` (staged), `list`, `lookup`, `verify`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use notary_core::{FileMeta, Gun};

use super::{Outcome, gun_arg, load, scopes, table};
use notary_core::changelist::Change;

use crate::client::{Changelist, Settings};

/// Adds the file as a target to the trusted collection.
#[derive(clap::Args, Debug)]
pub struct Add {
    /// The collection.
    pub gun: String,
    /// Target name.
    pub target: String,
    /// The file whose hashes and size are signed.
    pub file: PathBuf,
    /// Delegation roles to add this target to (default: targets).
    #[arg(short = 'r', long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Path to a file of JSON to attach as custom data.
    #[arg(long)]
    pub custom: Option<PathBuf>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub publish: bool,
}

/// Adds a target by its hashes and size.
#[derive(clap::Args, Debug)]
pub struct Addhash {
    /// The collection.
    pub gun: String,
    /// Target name.
    pub target: String,
    /// Size in bytes (`0x` prefixes allowed).
    pub size: String,
    /// Hex SHA-256.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Hex SHA-512.
    #[arg(long)]
    pub sha512: Option<String>,
    /// Delegation roles to add this target to (default: targets).
    #[arg(short = 'r', long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Path to a file of JSON to attach as custom data.
    #[arg(long)]
    pub custom: Option<PathBuf>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub publish: bool,
}

/// Removes a target from the trusted collection.
#[derive(clap::Args, Debug)]
pub struct Remove {
    /// The collection.
    pub gun: String,
    /// Target name.
    pub target: String,
    /// Roles to remove the target from (default: targets).
    #[arg(short = 'r', long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub publish: bool,
}

/// Lists the targets of a trusted collection.
#[derive(clap::Args, Debug)]
pub struct List {
    /// The collection.
    pub gun: String,
    /// Roles to list (those first win for duplicate names).
    #[arg(short = 'r', long, value_delimiter = ',')]
    pub roles: Vec<String>,
}

/// Looks up a target.
#[derive(clap::Args, Debug)]
pub struct Lookup {
    /// The collection.
    pub gun: String,
    /// Target name.
    pub target: String,
}

/// Verifies that data is a signed target; echoes it on success.
#[derive(clap::Args, Debug)]
pub struct Verify {
    /// The collection.
    pub gun: String,
    /// Target name.
    pub target: String,
    /// Input file (default stdin).
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
    /// Output file (default stdout).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// No output on success.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `notary add`.
pub(super) fn add(s: &Settings, a: Add) -> anyhow::Result<Outcome> {
    let Add {
        gun,
        target,
        file,
        roles,
        custom,
        publish: p,
    } = a;
    let gun = gun_arg(&gun)?;
    let mut meta = hash_file(&file)?;
    meta.custom = read_custom(&custom)?;
    stage_targets(s, &gun, &target, &meta, &roles)?;
    println!("Addition of target \"{target}\" to repository \"{gun}\" staged for next publish.");
    Ok(Outcome::Staged { gun, publish: p })
}

/// `notary addhash`.
pub(super) fn addhash(s: &Settings, a: Addhash) -> anyhow::Result<Outcome> {
    let Addhash {
        gun,
        target,
        size,
        sha256,
        sha512,
        roles,
        custom,
        publish: p,
    } = a;
    let gun = gun_arg(&gun)?;
    let length = parse_size(&size)?;
    let mut hashes = BTreeMap::new();
    let mut names = Vec::new();
    for (name, value, len) in [("sha256", &sha256, 32), ("sha512", &sha512, 64)] {
        if let Some(h) = value {
            let b = hex::decode(h)
                .ok()
                .filter(|b| b.len() == len)
                .with_context(|| format!("invalid {name} hex contents provided"))?;
            hashes.insert(name.to_owned(), notary_core::metadata::Bytes(b));
            names.push(name);
        }
    }
    if hashes.is_empty() {
        bail!("Must specify a GUN, target, byte size of target data, and at least one hash");
    }
    let meta = FileMeta {
        custom: read_custom(&custom)?,
        hashes,
        length,
    };
    stage_targets(s, &gun, &target, &meta, &roles)?;
    println!(
        "Addition of target \"{target}\" by {} hash to repository \"{gun}\" staged for next publish.",
        names.join(", ")
    );
    Ok(Outcome::Staged { gun, publish: p })
}

/// `notary remove`.
pub(super) fn remove(s: &Settings, a: Remove) -> anyhow::Result<Outcome> {
    let Remove {
        gun,
        target,
        roles,
        publish: p,
    } = a;
    let gun = gun_arg(&gun)?;
    let cl = Changelist::new(s, &gun);
    for role in scopes(&roles)? {
        cl.add(&Change::RemoveTarget {
            role,
            name: target.clone(),
        })?;
    }
    println!("Removal of {target} from {gun} staged for next publish.");
    Ok(Outcome::Staged { gun, publish: p })
}

/// `notary list`.
pub(super) fn list(s: &Settings, a: List) -> anyhow::Result<Outcome> {
    let List { gun, roles } = a;
    let gun = gun_arg(&gun)?;
    let repo = load(s, &gun)?;
    let wanted = if roles.is_empty() {
        Vec::new()
    } else {
        scopes(&roles)?
    };
    let mut rows = Vec::new();
    for e in repo.list() {
        if !wanted.is_empty()
            && !wanted
                .iter()
                .any(|w| e.role == w || e.role.as_str().starts_with(&format!("{w}/")))
        {
            continue;
        }
        let digest = e
            .meta
            .hashes
            .get("sha256")
            .map(|h| hex::encode(&h.0))
            .unwrap_or_default();
        rows.push(vec![
            e.name.to_owned(),
            digest,
            e.meta.length.to_string(),
            e.role.to_string(),
        ]);
    }
    rows.sort();
    if rows.is_empty() {
        println!("\nNo targets present in this repository.\n");
    } else {
        print!(
            "{}",
            table(&["NAME", "DIGEST", "SIZE (BYTES)", "ROLE"], &rows)
        );
    }
    Ok(Outcome::Done)
}

/// `notary lookup`.
pub(super) fn lookup(s: &Settings, a: Lookup) -> anyhow::Result<Outcome> {
    let Lookup { gun, target } = a;
    let gun = gun_arg(&gun)?;
    let repo = load(s, &gun)?;
    let e = repo
        .lookup(&target)
        .with_context(|| format!("No trust data for {target}"))?;
    let digest = e
        .meta
        .hashes
        .get("sha256")
        .map(|h| hex::encode(&h.0))
        .unwrap_or_default();
    println!("{} sha256:{digest} {}", e.name, e.meta.length);
    Ok(Outcome::Done)
}

/// `notary verify`.
pub(super) fn verify(s: &Settings, a: Verify) -> anyhow::Result<Outcome> {
    let Verify {
        gun,
        target,
        input,
        output,
        quiet,
    } = a;
    let gun = gun_arg(&gun)?;
    let mut data = Vec::new();
    match &input {
        Some(p) => {
            data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        }
        None => {
            std::io::stdin().read_to_end(&mut data)?;
        }
    }
    let repo = load(s, &gun)?;
    let e = repo
        .lookup(&target)
        .with_context(|| format!("No trust data for {target}"))?;
    let actual = FileMeta::from_bytes(&data);
    if e.meta.length != actual.length {
        bail!("data not present in the trusted collection, length mismatch");
    }
    let mut checked = 0;
    for (alg, want) in &e.meta.hashes {
        if let Some(got) = actual.hashes.get(alg) {
            if got != want {
                bail!("data not present in the trusted collection, {alg} checksum did not match");
            }
            checked += 1;
        }
    }
    if checked == 0 {
        bail!("data not present in the trusted collection, no supported hash");
    }
    if !quiet {
        match &output {
            Some(p) => {
                std::fs::write(p, &data).with_context(|| format!("writing {}", p.display()))?
            }
            None => std::io::stdout().write_all(&data)?,
        }
    }
    Ok(Outcome::Done)
}

fn read_custom(path: &Option<PathBuf>) -> anyhow::Result<Option<serde_json::Value>> {
    match path {
        None => Ok(None),
        Some(p) => {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("{}: not JSON", p.display()))?,
            ))
        }
    }
}

fn stage_targets(
    s: &Settings,
    gun: &Gun,
    target: &str,
    meta: &FileMeta,
    roles: &[String],
) -> anyhow::Result<()> {
    let cl = Changelist::new(s, gun);
    for role in scopes(roles)? {
        cl.add(&Change::AddTarget {
            role,
            name: target.to_owned(),
            meta: meta.clone(),
        })?;
    }
    Ok(())
}

/// Length, SHA-256 and SHA-512 of a file, streamed (any size), with a progress line on
/// a terminal for files over 64 MiB.
fn hash_file(path: &std::path::Path) -> anyhow::Result<FileMeta> {
    use ring::digest::{Context, SHA256, SHA512};
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let show = total > 64 << 20 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (mut a, mut b) = (Context::new(&SHA256), Context::new(&SHA512));
    let mut buf = vec![0u8; 1 << 20];
    let mut length = 0u64;
    let mut shown = 101;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        b.update(&buf[..n]);
        length += n as u64;
        if show {
            let pct = (length * 100 / total.max(1)) as usize;
            if pct != shown {
                shown = pct;
                eprint!("\rHashing {}: {pct}%", path.display());
            }
        }
    }
    if show {
        eprintln!();
    }
    let mut hashes = BTreeMap::new();
    hashes.insert(
        "sha256".to_owned(),
        notary_core::metadata::Bytes(a.finish().as_ref().to_vec()),
    );
    hashes.insert(
        "sha512".to_owned(),
        notary_core::metadata::Bytes(b.finish().as_ref().to_vec()),
    );
    Ok(FileMeta {
        custom: None,
        hashes,
        length,
    })
}

/// Sizes as Go's `strconv.ParseInt(s, 0, 64)`: decimal, `0x`, `0o`/`0`, `0b`.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("invalid size {s:?}");
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (b, 2)
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (o, 8)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    u64::from_str_radix(digits, radix).map_err(|_| bad())
}
