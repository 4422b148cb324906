//! The trust directory, in Go Notary's layout and formats so Go's `notary` can work on
//! the same directory: `private/<key id>.key` ([`KeyStore`]), `tuf/<gun>/metadata/`
//! ([`MetadataCache`]) and `tuf/<gun>/changelist/` ([`Changelist`]). Directories are
//! 0700 and files 0600, written through exclusively created temporary files.

mod cache;
mod changelist;
mod keys;

pub use cache::MetadataCache;
pub use changelist::Changelist;
pub use keys::KeyStore;

use std::path::Path;

use anyhow::Context as _;

/// Creates `dir` (and parents) with mode 0700.
pub fn mkdir_private(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes a file atomically with mode 0600 (metadata cache, changelist: like Go, not
/// flushed to disk; losing them costs a download or a re-staged change).
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    write_file(path, data, false)
}

/// Like [`write_private`], flushed to disk before it replaces anything (key files).
pub fn write_private_durable(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    write_file(path, data, true)
}

/// Makes sure `dir` exists and only its owner can enter it (0700), tightening an
/// existing directory with looser bits (the private key directory).
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    mkdir_private(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || {
                    format!(
                        "{} is accessible by other users and could not be restricted to its owner",
                        dir.display()
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// Writes `data` to a new temporary file next to `path` (created exclusively, mode 0600,
/// random name), then renames it over `path`.
fn write_file(path: &Path, data: &[u8], durable: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    mkdir_private(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let rng = ring::rand::SystemRandom::new();
    let (tmp, mut f) = {
        let mut attempt = 0;
        loop {
            let mut r = [0u8; 8];
            ring::rand::SecureRandom::fill(&rng, &mut r)
                .map_err(|_| anyhow::anyhow!("no randomness for a temporary file name"))?;
            let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(r)));
            let mut opts = std::fs::OpenOptions::new();
            // create_new: O_CREAT|O_EXCL, never follows or reuses what is already there.
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("writing {}", tmp.display()));
                }
            }
        }
    };
    let written = f
        .write_all(data)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) });
    drop(f);
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file planted where a temporary file could be expected (here: a symlink at the
    /// name the CLI used to use) is never opened: temporary files are created
    /// exclusively under random names.
    #[test]
    fn temp_files_are_created_exclusively() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let target = dir.path().join("abc.key");
        std::os::unix::fs::symlink(
            &victim,
            target.with_extension(format!("tmp{}", std::process::id())),
        )
        .unwrap();
        let loose = dir.path().join("m.json");
        let planted = loose.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&planted, b"").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_private_durable(&target, b"secret").unwrap();
        write_private(&loose, b"{}").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        for f in [&target, &loose] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
}
