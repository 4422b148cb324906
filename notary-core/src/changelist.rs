//! Staged changes (Go Notary's changelist, spec §10.4) as typed values, and the pure
//! function that applies them to a [`RepoEditor`].
//!
//! What it does: reads and writes one change file's JSON exactly as Go's
//! `changelist.TUFChange` marshals it (`action`, `role`, `type`, `path`, base64 `data`),
//! with the inner `data` in Go's shapes (`data.FileMeta` for targets,
//! `changelist.TUFDelegation` for delegations); turns it into a [`Change`]; applies a list
//! of changes in order with [`apply`].
//!
//! What it does not do: any IO. Listing, naming (`<%020d nanos>_<uuid>.change`), writing
//! and deleting change files is the caller's job.
//!
//! ```
//! use notary_core::changelist::{Change, RawChange};
//! use notary_core::RoleName;
//! let raw: RawChange = serde_json::from_str(
//!     r#"{"action":"update","role":"targets","type":"witness","path":"","data":null}"#,
//! ).unwrap();
//! assert_eq!(raw.decode().unwrap(), Change::Witness { role: RoleName::targets() });
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::metadata::FileMeta;
use crate::names::{NameError, RoleName};
use crate::repo::{EditError, RepoEditor};

/// The scope Go uses for `notary delegation purge`: every delegation.
pub const ALL_DELEGATIONS: &str = "targets/*";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One change file as stored, in Go's field order (`changelist.TUFChange`). Kept untyped
/// so that `notary status`/`reset` can show and drop any change, including kinds this
/// client cannot apply.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RawChange {
    /// `create`, `update`, `delete`.
    pub action: String,
    /// The scope: `targets`, `targets/x`, `targets/*`, `root`.
    pub role: String,
    /// `target`, `delegation`, `witness`, `role`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Target name (or `""`).
    pub path: String,
    /// Base64 of the inner JSON, or null.
    pub data: Option<String>,
}

/// A staged change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add or replace a target (`create target`; Go's `update target` reads the same).
    AddTarget {
        /// Targets role that signs it.
        role: RoleName,
        /// Target name.
        name: String,
        /// Length, hashes, custom data.
        meta: FileMeta,
    },
    /// Remove a target (`delete target`).
    RemoveTarget {
        /// Targets role.
        role: RoleName,
        /// Target name.
        name: String,
    },
    /// Re-sign a role at the next publish (`update witness`).
    Witness {
        /// The role.
        role: RoleName,
    },
    /// Create a delegation or add keys and paths to it (`create delegation`, as
    /// `notary delegation add` stages it).
    CreateDelegation {
        /// The delegation.
        role: RoleName,
        /// What changes.
        edit: DelegationEdit,
    },
    /// Edit a delegation (`update delegation`, as `notary delegation remove` stages it).
    UpdateDelegation {
        /// The delegation.
        role: RoleName,
        /// What changes.
        edit: DelegationEdit,
    },
    /// Remove a delegation with all its keys and paths (`delete delegation`).
    DeleteDelegation {
        /// The delegation.
        role: RoleName,
    },
    /// Remove keys (canonical IDs) from every delegation (`update delegation` on scope
    /// `targets/*`, `notary delegation purge`).
    PurgeDelegationKeys {
        /// Canonical key IDs.
        key_ids: Vec<String>,
    },
}

/// The data of a delegation change: Go's `changelist.TUFDelegation`, fields in Go's order,
/// empty ones omitted (`omitempty`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct DelegationEdit {
    /// Rename (Go never stages it; refused when applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// New threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Keys to add.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "go_key_list")]
    pub add_keys: Vec<PublicKey>,
    /// Keys to remove (canonical or metadata key IDs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_keys: Vec<String>,
    /// Paths to add (`""` = every path).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_paths: Vec<String>,
    /// Paths to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_paths: Vec<String>,
    /// Drop every path first.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub clear_paths: bool,
}

impl DelegationEdit {
    fn removes(&self) -> bool {
        !self.remove_keys.is_empty() || !self.remove_paths.is_empty() || self.clear_paths
    }

    fn adds(&self) -> bool {
        !self.add_keys.is_empty() || !self.add_paths.is_empty() || self.threshold.is_some()
    }
}

/// Keys as Go's `data.TUFKey` marshals them in a changelist: `keytype`, then `keyval`
/// with `public` before `private` (null).
fn go_key_list<S: serde::Serializer>(keys: &[PublicKey], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct KeyVal {
        public: String,
        private: Option<()>,
    }
    #[derive(Serialize)]
    struct Key<'a> {
        keytype: &'a str,
        keyval: KeyVal,
    }
    s.collect_seq(keys.iter().map(|k| Key {
        keytype: k.key_type().as_str(),
        keyval: KeyVal {
            public: B64.encode(k.public_bytes()),
            private: None,
        },
    }))
}

/// A target's meta as Go's `data.FileMeta` marshals it: `length`, `hashes`, `custom`.
#[derive(Serialize)]
struct GoFileMeta<'a> {
    length: u64,
    hashes: BTreeMap<&'a str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<&'a serde_json::Value>,
}

/// Why a stored change cannot be turned into a [`Change`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// An action/type pair this client does not apply.
    #[error("staged change {action} {kind} on {role} is not supported by this notary yet")]
    Unsupported {
        /// Action.
        action: String,
        /// Type.
        kind: String,
        /// Scope.
        role: String,
    },
    /// The scope is not a role name.
    #[error("bad scope {role:?} in the changelist: {source}")]
    BadScope {
        /// Scope.
        role: String,
        /// Cause.
        source: NameError,
    },
    /// A change that needs data has none.
    #[error("{kind} change without data")]
    MissingData {
        /// Type.
        kind: String,
    },
    /// `data` is not base64.
    #[error("changelist data is not base64")]
    Base64,
    /// `data` is not the JSON its type needs.
    #[error("bad {kind} data in the changelist: {source}")]
    BadData {
        /// Type.
        kind: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Why applying changes failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Go's TUFDelegation `new_name`, which Go's client never stages.
    #[error("renaming delegation {role} is not supported")]
    Rename {
        /// The delegation.
        role: RoleName,
    },
    /// The editor refused a change.
    #[error(transparent)]
    Edit(#[from] EditError),
}

impl RawChange {
    fn data_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ChangeError> {
        let data = self
            .data
            .as_deref()
            .ok_or_else(|| ChangeError::MissingData {
                kind: self.kind.clone(),
            })?;
        let bytes = B64.decode(data).map_err(|_| ChangeError::Base64)?;
        serde_json::from_slice(&bytes).map_err(|source| ChangeError::BadData {
            kind: self.kind.clone(),
            source,
        })
    }

    /// The typed change (the rules of Go's `applyChangelist`: scope `targets/*` with type
    /// `delegation` is a purge; `create` and `update` of targets and delegations add).
    pub fn decode(&self) -> Result<Change, ChangeError> {
        if self.role == ALL_DELEGATIONS && self.kind == "delegation" {
            let edit: DelegationEdit = self.data_json()?;
            return Ok(Change::PurgeDelegationKeys {
                key_ids: edit.remove_keys,
            });
        }
        let role = RoleName::new(&self.role).map_err(|source| ChangeError::BadScope {
            role: self.role.clone(),
            source,
        })?;
        Ok(match (self.action.as_str(), self.kind.as_str()) {
            ("create" | "update", "target") => Change::AddTarget {
                role,
                name: self.path.clone(),
                meta: self.data_json()?,
            },
            ("delete", "target") => Change::RemoveTarget {
                role,
                name: self.path.clone(),
            },
            ("update", "witness") => Change::Witness { role },
            ("create", "delegation") => Change::CreateDelegation {
                role,
                edit: self.data_json()?,
            },
            ("update", "delegation") => Change::UpdateDelegation {
                role,
                edit: self.data_json()?,
            },
            ("delete", "delegation") => Change::DeleteDelegation { role },
            (action, kind) => {
                return Err(ChangeError::Unsupported {
                    action: action.to_owned(),
                    kind: kind.to_owned(),
                    role: self.role.clone(),
                });
            }
        })
    }
}

impl Change {
    /// The change as Go stores it (byte for byte what Go's `notary` writes for it, once
    /// serialised with `serde_json::to_vec`).
    pub fn to_raw(&self) -> Result<RawChange, serde_json::Error> {
        let raw =
            |action: &str, role: &str, kind: &str, path: &str, data: Option<Vec<u8>>| RawChange {
                action: action.to_owned(),
                role: role.to_owned(),
                kind: kind.to_owned(),
                path: path.to_owned(),
                data: data.map(|d| B64.encode(d)),
            };
        Ok(match self {
            Change::AddTarget { role, name, meta } => {
                let go = GoFileMeta {
                    length: meta.length,
                    hashes: meta
                        .hashes
                        .iter()
                        .map(|(k, v)| (k.as_str(), B64.encode(&v.0)))
                        .collect(),
                    custom: meta.custom.as_ref(),
                };
                raw(
                    "create",
                    role.as_str(),
                    "target",
                    name,
                    Some(serde_json::to_vec(&go)?),
                )
            }
            Change::RemoveTarget { role, name } => {
                raw("delete", role.as_str(), "target", name, None)
            }
            Change::Witness { role } => raw("update", role.as_str(), "witness", "", None),
            Change::CreateDelegation { role, edit } => raw(
                "create",
                role.as_str(),
                "delegation",
                "",
                Some(serde_json::to_vec(edit)?),
            ),
            Change::UpdateDelegation { role, edit } => raw(
                "update",
                role.as_str(),
                "delegation",
                "",
                Some(serde_json::to_vec(edit)?),
            ),
            Change::DeleteDelegation { role } => {
                raw("delete", role.as_str(), "delegation", "", None)
            }
            Change::PurgeDelegationKeys { key_ids } => raw(
                "update",
                ALL_DELEGATIONS,
                "delegation",
                "",
                Some(serde_json::to_vec(&DelegationEdit {
                    remove_keys: key_ids.clone(),
                    ..DelegationEdit::default()
                })?),
            ),
        })
    }
}

/// Applies `changes` in order to `editor` (Go's `applyChangelist`). Returns the roles the
/// changes touched, in order (a purge touches none by name), so the caller knows whose
/// keys will sign. Stops at the first change the editor refuses; the editor is then
/// partly changed and should be dropped.
pub fn apply(editor: &mut RepoEditor, changes: &[Change]) -> Result<Vec<RoleName>, ApplyError> {
    let mut touched = Vec::new();
    for change in changes {
        match change {
            Change::PurgeDelegationKeys { key_ids } => {
                editor.purge_delegation_keys(key_ids)?;
            }
            Change::AddTarget { role, name, meta } => {
                editor.add_target(role, name, meta.clone())?;
                touched.push(role.clone());
            }
            Change::RemoveTarget { role, name } => {
                editor.remove_target(role, name)?;
                touched.push(role.clone());
            }
            Change::Witness { role } => {
                editor.witness(role)?;
                touched.push(role.clone());
            }
            Change::CreateDelegation { role, edit } | Change::UpdateDelegation { role, edit } => {
                if edit.new_name.is_some() {
                    return Err(ApplyError::Rename { role: role.clone() });
                }
                if edit.removes() {
                    editor.edit_delegation(
                        role,
                        &edit.remove_keys,
                        &edit.remove_paths,
                        edit.clear_paths,
                    )?;
                }
                if edit.adds() {
                    // Without a new threshold the delegation keeps its own (1 if new).
                    let threshold = match edit.threshold {
                        Some(t) => t,
                        None => editor
                            .targets(&role.parent().unwrap_or_else(RoleName::targets))
                            .and_then(|t| t.delegation(role))
                            .map_or(1, |e| e.threshold),
                    };
                    editor.add_delegation(
                        role,
                        edit.add_keys.clone(),
                        edit.add_paths.clone(),
                        threshold,
                    )?;
                }
                touched.push(role.clone());
            }
            Change::DeleteDelegation { role } => {
                editor.remove_delegation(role)?;
                touched.push(role.clone());
            }
        }
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Algorithm, PrivateKey};
    use crate::metadata::Bytes;
    use crate::names::Gun;

    /// Change files written by Go's `notary` 0.7 (`add -r targets/x` by hash, `remove`,
    /// `witness`, `delegation add --paths`, `--all-paths`, `delegation remove` of keys
    /// and of all paths, `delegation remove` of the whole role, `delegation purge`).
    const GO_CHANGES: [&str; 10] = [
        r#"{"action":"create","role":"targets/x","type":"target","path":"t2","data":"eyJsZW5ndGgiOjEwLCJoYXNoZXMiOnsic2hhMjU2IjoicXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxbz0ifX0="}"#,
        r#"{"action":"delete","role":"targets","type":"target","path":"t1","data":null}"#,
        r#"{"action":"update","role":"targets/x","type":"witness","path":"","data":null}"#,
        r#"{"action":"create","role":"targets/x","type":"delegation","path":"","data":"eyJhZGRfcGF0aHMiOlsicDEiLCJwMiJdfQ=="}"#,
        r#"{"action":"create","role":"targets/y","type":"delegation","path":"","data":"eyJhZGRfcGF0aHMiOlsiIl19"}"#,
        r#"{"action":"update","role":"targets/x","type":"delegation","path":"","data":"eyJjbGVhcl9wYXRocyI6dHJ1ZX0="}"#,
        r#"{"action":"update","role":"targets/x","type":"delegation","path":"","data":"eyJyZW1vdmVfa2V5cyI6WyJhYmMiLCJkZWYiXX0="}"#,
        r#"{"action":"delete","role":"targets/z","type":"delegation","path":"","data":null}"#,
        r#"{"action":"update","role":"targets/*","type":"delegation","path":"","data":"eyJyZW1vdmVfa2V5cyI6WyJhYmMiLCJkZWYiXX0="}"#,
        // `delegation add` with a key: `{"threshold":1,"add_keys":[{"keytype":…,"keyval":
        // {"public":…,"private":null}}]}`.
        r#"{"action":"create","role":"targets/x","type":"delegation","path":"","data":"eyJ0aHJlc2hvbGQiOjEsImFkZF9rZXlzIjpbeyJrZXl0eXBlIjoiZWNkc2EteDUwOSIsImtleXZhbCI6eyJwdWJsaWMiOiJMUzB0TFMxQ1JVZEpUaUJEUlZKVVNVWkpRMEZVUlMwdExTMHRDazFKU1VKaVJFTkRRVkpQWjBGM1NVSkJaMGxWWTJ4d2JqZ3ZUMmxaWW00eWVYZDBRbGhCZW1WMlV6QXlVazFWZDBObldVbExiMXBKZW1vd1JVRjNTWGNLUkVSRlMwMUJaMGRCTVZWRlFYZDNRbVZFUVdWR2R6QjVUbXBGZVUxRVNYZE5ha1V5VGxSR1lVWjNNSGxPZWtGNFRVUkZkMDFxUlRKT1ZFWmhUVUYzZUFwRGFrRkpRbWRPVmtKQlRVMUJXR2QzVjFSQlZFSm5ZM0ZvYTJwUFVGRkpRa0puWjNGb2EycFBVRkZOUWtKM1RrTkJRVlFyYzNOVGIxZFJaMVZRYlc1VENsUmtVVFF2VkhsSVIxVkZWR0ZXVVhKUWRGbG5UVTF5VDNGRlowTjZiazQxY0ZWdFEwTlhTWEpxUm1kREwweHVRM1ZKYm1oTWRtRlpMMkpKTkZBeVREUUtUR0ZJY0ZaWlVtRnZNVTEzVlZSQlpFSm5UbFpJVVRSRlJtZFJWV05YYzNGdGIwUm9ObUozT1VrMEswcERkMlZ0U0ZZeGQxRnJRWGRJZDFsRVZsSXdhZ3BDUW1kM1JtOUJWV05YYzNGdGIwUm9ObUozT1VrMEswcERkMlZ0U0ZZeGQxRnJRWGRFZDFsRVZsSXdWRUZSU0M5Q1FWVjNRWGRGUWk5NlFVdENaMmR4Q21ocmFrOVFVVkZFUVdkT1NFRkVRa1ZCYVVKc09FTlRMM0JMZW5rMEsxQjBZaTlXY1cwMVlpOTVXVFJIYVZrNGJtZEVjR1ZFV2xFNVV5dHRVVk5uU1djS1VITlBia3h4T1habWEwOHpNbXRsWWpoWGFVcDNjWGRITlRreWJrOUhVRmxHWnpGaU9XZzJORVJEV1QwS0xTMHRMUzFGVGtRZ1EwVlNWRWxHU1VOQlZFVXRMUzB0TFFvPSIsInByaXZhdGUiOm51bGx9fV19"}"#,
    ];

    fn role(s: &str) -> RoleName {
        RoleName::new(s).unwrap()
    }

    #[test]
    fn go_change_files_round_trip_byte_for_byte() {
        for line in GO_CHANGES {
            let raw: RawChange = serde_json::from_str(line).unwrap();
            let change = raw.decode().unwrap();
            let again = change.to_raw().unwrap();
            assert_eq!(again, raw, "{line}");
            assert_eq!(serde_json::to_string(&again).unwrap(), line);
        }
    }

    #[test]
    fn go_change_files_decode_to_typed_changes() {
        let decoded: Vec<Change> = GO_CHANGES
            .iter()
            .map(|l| {
                serde_json::from_str::<RawChange>(l)
                    .unwrap()
                    .decode()
                    .unwrap()
            })
            .collect();
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_owned(), Bytes(vec![0xaa; 32]));
        assert_eq!(
            decoded[0],
            Change::AddTarget {
                role: role("targets/x"),
                name: "t2".into(),
                meta: FileMeta {
                    custom: None,
                    hashes,
                    length: 10
                },
            }
        );
        assert_eq!(
            decoded[1],
            Change::RemoveTarget {
                role: RoleName::targets(),
                name: "t1".into()
            }
        );
        assert_eq!(
            decoded[4],
            Change::CreateDelegation {
                role: role("targets/y"),
                edit: DelegationEdit {
                    add_paths: vec![String::new()],
                    ..DelegationEdit::default()
                }
            }
        );
        assert_eq!(
            decoded[5],
            Change::UpdateDelegation {
                role: role("targets/x"),
                edit: DelegationEdit {
                    clear_paths: true,
                    ..DelegationEdit::default()
                }
            }
        );
        assert_eq!(
            decoded[8],
            Change::PurgeDelegationKeys {
                key_ids: vec!["abc".into(), "def".into()]
            }
        );
        match &decoded[9] {
            Change::CreateDelegation { edit, .. } => {
                assert_eq!(edit.threshold, Some(1));
                assert_eq!(edit.add_keys.len(), 1);
                assert_eq!(edit.add_keys[0].key_type().as_str(), "ecdsa-x509");
                assert!(
                    edit.add_keys[0]
                        .public_bytes()
                        .starts_with(b"-----BEGIN CERTIFICATE-----")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn target_data_in_go_field_order_with_custom() {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha512".to_owned(), Bytes(vec![2]));
        hashes.insert("sha256".to_owned(), Bytes(vec![1]));
        let c = Change::AddTarget {
            role: RoleName::targets(),
            name: "t".into(),
            meta: FileMeta {
                custom: Some(serde_json::json!({"a": [1, 2]})),
                hashes,
                length: 6,
            },
        };
        let raw = c.to_raw().unwrap();
        let data = B64.decode(raw.data.as_deref().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(data).unwrap(),
            r#"{"length":6,"hashes":{"sha256":"AQ==","sha512":"Ag=="},"custom":{"a":[1,2]}}"#
        );
        assert_eq!(raw.decode().unwrap(), c);
    }

    #[test]
    fn unsupported_and_malformed_changes_are_errors() {
        let raw = |action: &str, role: &str, kind: &str, data: Option<&str>| RawChange {
            action: action.into(),
            role: role.into(),
            kind: kind.into(),
            path: String::new(),
            data: data.map(str::to_owned),
        };
        assert!(matches!(
            raw("create", "root", "role", None).decode(),
            Err(ChangeError::Unsupported { .. })
        ));
        assert!(matches!(
            raw("create", "bogus role", "target", None).decode(),
            Err(ChangeError::BadScope { .. })
        ));
        assert!(matches!(
            raw("create", "targets", "target", None).decode(),
            Err(ChangeError::MissingData { .. })
        ));
        assert!(matches!(
            raw("create", "targets", "target", Some("%%%")).decode(),
            Err(ChangeError::Base64)
        ));
        assert!(matches!(
            raw("create", "targets", "target", Some("e30=")).decode(),
            Err(ChangeError::BadData { .. })
        ));
    }

    fn editor() -> RepoEditor {
        let now = time::OffsetDateTime::now_utc();
        let k = || PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let root = k();
        RepoEditor::create(
            Gun::new("example.com/changelist").unwrap(),
            &root,
            k().public().clone(),
            k().public().clone(),
            k().public().clone(),
            now,
        )
        .unwrap()
    }

    fn meta(b: u8) -> FileMeta {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_owned(), Bytes(vec![b; 32]));
        FileMeta {
            custom: None,
            hashes,
            length: 1,
        }
    }

    #[test]
    fn apply_edits_targets_and_delegations_in_order() {
        let mut ed = editor();
        let dkey = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let dkey_pub = dkey.public().clone();
        let rel = role("targets/releases");
        let changes = vec![
            Change::AddTarget {
                role: RoleName::targets(),
                name: "a".into(),
                meta: meta(1),
            },
            Change::AddTarget {
                role: RoleName::targets(),
                name: "b".into(),
                meta: meta(2),
            },
            Change::RemoveTarget {
                role: RoleName::targets(),
                name: "a".into(),
            },
            Change::CreateDelegation {
                role: rel.clone(),
                edit: DelegationEdit {
                    threshold: Some(1),
                    add_keys: vec![dkey_pub.clone()],
                    ..DelegationEdit::default()
                },
            },
            Change::CreateDelegation {
                role: rel.clone(),
                edit: DelegationEdit {
                    add_paths: vec!["rel/".into()],
                    ..DelegationEdit::default()
                },
            },
            Change::AddTarget {
                role: rel.clone(),
                name: "rel/1".into(),
                meta: meta(3),
            },
            Change::Witness {
                role: RoleName::targets(),
            },
        ];
        let touched = apply(&mut ed, &changes).unwrap();
        assert_eq!(
            touched,
            vec![
                RoleName::targets(),
                RoleName::targets(),
                RoleName::targets(),
                rel.clone(),
                rel.clone(),
                rel.clone(),
                RoleName::targets()
            ]
        );
        let top = ed.targets(&RoleName::targets()).unwrap();
        assert_eq!(top.targets.keys().collect::<Vec<_>>(), vec!["b"]);
        let d = top.delegation(&rel).unwrap();
        assert_eq!((d.threshold, d.paths.clone()), (1, vec!["rel/".to_owned()]));
        assert_eq!(d.keyids, vec![dkey_pub.key_id()]);
        assert!(ed.targets(&rel).unwrap().targets.contains_key("rel/1"));

        // A target outside the delegation's paths is refused.
        let outside = [Change::AddTarget {
            role: rel.clone(),
            name: "other".into(),
            meta: meta(4),
        }];
        assert!(matches!(
            apply(&mut ed.clone(), &outside),
            Err(ApplyError::Edit(EditError::PathNotAllowed { .. }))
        ));

        // Removing paths, purging the key, deleting the delegation.
        let canonical = dkey_pub.canonical_id().unwrap().to_string();
        let touched = apply(
            &mut ed,
            &[
                Change::UpdateDelegation {
                    role: rel.clone(),
                    edit: DelegationEdit {
                        clear_paths: true,
                        ..DelegationEdit::default()
                    },
                },
                Change::PurgeDelegationKeys {
                    key_ids: vec![canonical],
                },
            ],
        )
        .unwrap();
        assert_eq!(touched, vec![rel.clone()]);
        let d = ed
            .targets(&RoleName::targets())
            .unwrap()
            .delegation(&rel)
            .unwrap();
        assert!(d.paths.is_empty() && d.keyids.is_empty(), "{d:?}");
        apply(&mut ed, &[Change::DeleteDelegation { role: rel.clone() }]).unwrap();
        assert!(
            ed.targets(&RoleName::targets())
                .unwrap()
                .delegation(&rel)
                .is_none()
        );
        assert!(ed.targets(&rel).is_none());
    }

    #[test]
    fn apply_refuses_renames_and_unknown_roles() {
        let mut ed = editor();
        let rename = [Change::UpdateDelegation {
            role: role("targets/a"),
            edit: DelegationEdit {
                new_name: Some("targets/b".into()),
                ..DelegationEdit::default()
            },
        }];
        assert!(matches!(
            apply(&mut ed, &rename),
            Err(ApplyError::Rename { .. })
        ));
        assert!(matches!(
            apply(
                &mut ed,
                &[Change::DeleteDelegation {
                    role: role("targets/none")
                }]
            ),
            Err(ApplyError::Edit(EditError::UnknownRole(_)))
        ));
    }
}
