//! Docker token authentication (spec §7.5): the user's credentials and where they may go.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use zeroize::Zeroizing;

use super::settings::home;

/// `Basic` credentials for `host`: `NOTARY_AUTH` (base64 `user:pass`), else the docker
/// configuration (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): `auths`, or a
/// credential helper (`credHelpers`, `credsStore`).
pub(super) fn credentials_for(host: &str) -> Option<Zeroizing<String>> {
    if let Ok(a) = std::env::var("NOTARY_AUTH") {
        if !a.is_empty() {
            return Some(Zeroizing::new(a));
        }
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".docker"));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    let keys = [
        host.to_owned(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    for k in &keys {
        if let Some(a) = cfg["auths"][k.as_str()]["auth"]
            .as_str()
            .filter(|a| !a.is_empty())
        {
            return Some(Zeroizing::new(a.to_owned()));
        }
    }
    let helper = cfg["credHelpers"][host]
        .as_str()
        .or_else(|| cfg["credsStore"].as_str())?;
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    {
        use std::io::Write as _;
        child.stdin.take()?.write_all(host.as_bytes()).ok()?;
    }
    let out = child.wait_with_output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let (u, p) = (v["Username"].as_str()?, v["Secret"].as_str()?);
    Some(Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")),
    ))
}

/// The identity (OAuth2 refresh) token `docker login` stored for `host`, when the
/// registry's token service handed one out instead of keeping the password (`NOTARY_AUTH`
/// takes precedence).
pub(super) fn identity_token_for(host: &str) -> Option<Zeroizing<String>> {
    if std::env::var("NOTARY_AUTH").is_ok_and(|a| !a.is_empty()) {
        return None;
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".docker"));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    [
        host.to_owned(),
        format!("https://{host}"),
        format!("http://{host}"),
    ]
    .iter()
    .find_map(|k| {
        cfg["auths"][k.as_str()]["identitytoken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(|t| Zeroizing::new(t.to_owned()))
    })
}

/// Whether Basic credentials may be sent to this token realm: only over https, or over
/// plain http to a loopback host (127.0.0.0/8, ::1, `localhost`).
pub(super) fn realm_accepts_credentials(realm: &str) -> bool {
    let Ok(uri) = realm.parse::<ureq::http::Uri>() else {
        return false;
    };
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => uri.host().is_some_and(is_loopback_host),
        _ => false,
    }
}

/// `localhost`, 127.0.0.0/8, `::1` (also IPv4-mapped), with or without IPv6 brackets.
fn is_loopback_host(host: &str) -> bool {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        })
}

/// The parameters of a `WWW-Authenticate: Bearer …` challenge.
pub(super) fn bearer_challenge(h: &str) -> Option<BTreeMap<String, String>> {
    let rest = h
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| h.trim().strip_prefix("bearer "))?;
    let mut out = BTreeMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.insert(
            k.trim().trim_start_matches(',').trim().to_owned(),
            v.to_owned(),
        );
        s = next.trim_start_matches(',').trim_start();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_to_https_or_loopback_realms_only() {
        for ok in [
            "https://auth.example.com/token",
            "HTTPS://auth.example.com:8443/token?x=1",
            "http://127.0.0.1:5001/token",
            "http://127.8.9.10/token",
            "http://localhost:5001/token",
            "http://LOCALHOST/token",
            "http://[::1]:5001/token",
            "http://[::ffff:127.0.0.1]/token",
        ] {
            assert!(realm_accepts_credentials(ok), "{ok}");
        }
        for bad in [
            "http://auth.example.com/token",
            "http://notary-test.invalid:5001/token",
            "http://10.0.0.1/token",
            "http://[fd00::2]/token",
            "http://127.0.0.1@evil.example/token",
            "http://localhost.evil.example/token",
            "http://localhost./token",
            "ftp://127.0.0.1/token",
            "//auth.example.com/token",
            "/token",
            "",
        ] {
            assert!(!realm_accepts_credentials(bad), "{bad}");
        }
    }
}
