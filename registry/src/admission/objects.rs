//! Where Kubernetes objects keep their container images: the pod spec of a Pod, the pod
//! template of the workload kinds, and in each the `containers`, `initContainers` and
//! `ephemeralContainers` lists. Objects are read as JSON (no typed workload structs), so
//! fields this code does not know survive and JSON patch paths come out directly.

use serde_json::Value;

/// The kinds whose objects hold pod specs, with the path of the pod spec.
pub fn pod_spec_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    const POD: &[&str] = &["spec"];
    const TEMPLATE: &[&str] = &["spec", "template", "spec"];
    const CRONJOB: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];
    match (group, kind) {
        ("", "Pod") => Some(POD),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some(TEMPLATE),
        ("batch", "CronJob") => Some(CRONJOB),
        _ => None,
    }
}

/// The container lists of a pod spec and how messages name their entries.
const LISTS: [(&str, &str); 3] = [
    ("containers", "container"),
    ("initContainers", "init container"),
    ("ephemeralContainers", "ephemeral container"),
];

/// One container's image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    /// How messages name the container (`container web`, `init container setup`).
    pub container: String,
    /// The image as written.
    pub image: String,
    /// The JSON pointer tokens of the `image` field from the object's root.
    pub pointer: Vec<String>,
}

/// Why the images could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// More images than the configured bound.
    #[error("the object names more than {0} container images")]
    TooMany(usize),
    /// A field of the wrong JSON type.
    #[error("{0}")]
    Malformed(String),
}

/// The images of `object` (its JSON, from the root) whose pod spec is at `spec_path`:
/// at most `limit` of them. A missing pod spec or list is empty; a container without an
/// `image` is skipped (the API server refuses such objects itself).
pub fn images(
    object: &Value,
    spec_path: &[&str],
    limit: usize,
) -> Result<Vec<ContainerImage>, ObjectError> {
    let mut spec = object;
    for (i, key) in spec_path.iter().enumerate() {
        match spec.get(key) {
            Some(Value::Null) | None => return Ok(Vec::new()),
            Some(v @ Value::Object(_)) => spec = v,
            Some(_) => {
                return Err(ObjectError::Malformed(format!(
                    "{} is not an object",
                    spec_path[..=i].join(".")
                )));
            }
        }
    }
    let mut out = Vec::new();
    for (list, label) in LISTS {
        let entries = match spec.get(list) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(ObjectError::Malformed(format!(
                    "{}.{list} is not a list",
                    spec_path.join(".")
                )));
            }
        };
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(fields) = entry else {
                return Err(ObjectError::Malformed(format!(
                    "{}.{list}[{index}] is not an object",
                    spec_path.join(".")
                )));
            };
            let image = match fields.get("image") {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(ObjectError::Malformed(format!(
                        "{}.{list}[{index}].image is not a string",
                        spec_path.join(".")
                    )));
                }
            };
            if out.len() == limit {
                return Err(ObjectError::TooMany(limit));
            }
            let name = match fields.get("name") {
                Some(Value::String(n)) if !n.is_empty() => n.chars().take(253).collect(),
                _ => format!("#{index}"),
            };
            let mut pointer: Vec<String> = spec_path.iter().map(|s| (*s).to_owned()).collect();
            pointer.extend([list.to_owned(), index.to_string(), "image".to_owned()]);
            out.push(ContainerImage {
                container: format!("{label} {name}"),
                image,
                pointer,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds() {
        assert_eq!(pod_spec_path("", "Pod"), Some(&["spec"][..]));
        assert_eq!(
            pod_spec_path("apps", "StatefulSet").map(|p| p.len()),
            Some(3)
        );
        assert_eq!(pod_spec_path("batch", "CronJob").map(|p| p.len()), Some(5));
        assert_eq!(pod_spec_path("", "ConfigMap"), None);
        // A custom resource that happens to be called Deployment is not ours to read.
        assert_eq!(pod_spec_path("example.com", "Deployment"), None);
    }

    #[test]
    fn all_three_lists_with_pointers() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "setup", "image": "a"}],
            "containers": [{"name": "web", "image": "b"}, {"name": "side"}, {"image": "c"}],
            "ephemeralContainers": [{"name": "debug", "image": "d"}],
        }});
        let found = images(&pod, &["spec"], 10).unwrap();
        let summary: Vec<_> = found
            .iter()
            .map(|c| (c.container.as_str(), c.image.as_str(), c.pointer.join("/")))
            .collect();
        assert_eq!(
            summary,
            [
                ("container web", "b", "spec/containers/0/image".to_owned()),
                ("container #2", "c", "spec/containers/2/image".to_owned()),
                (
                    "init container setup",
                    "a",
                    "spec/initContainers/0/image".to_owned()
                ),
                (
                    "ephemeral container debug",
                    "d",
                    "spec/ephemeralContainers/0/image".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn bounded_and_typed() {
        let pod = json!({"spec": {"containers": [{"image": "a"}, {"image": "b"}, {"image": "c"}]}});
        assert_eq!(images(&pod, &["spec"], 2), Err(ObjectError::TooMany(2)));
        assert_eq!(images(&pod, &["spec"], 3).unwrap().len(), 3);
        let bad = json!({"spec": {"containers": [{"image": 5}]}});
        assert!(matches!(
            images(&bad, &["spec"], 3),
            Err(ObjectError::Malformed(_))
        ));
        let bad = json!({"spec": {"containers": {"image": "a"}}});
        assert!(matches!(
            images(&bad, &["spec"], 3),
            Err(ObjectError::Malformed(_))
        ));
        let bad = json!({"spec": {"template": "x"}});
        assert!(matches!(
            images(&bad, &["spec", "template", "spec"], 3),
            Err(ObjectError::Malformed(_))
        ));
        assert_eq!(images(&json!({}), &["spec"], 3).unwrap(), []);
    }
}
