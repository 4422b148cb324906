//! Environment overrides in viper's style (`PREFIX_SECTION_KEY`), typed: a value that does
//! not parse is an error naming the variable, never silently ignored.

use std::str::FromStr;

/// Reads overrides through a lookup function (the process environment, or a test's map).
pub struct Overrides<F> {
    lookup: F,
    prefix: &'static str,
}

/// A variable whose value does not parse.
#[derive(Debug)]
pub struct BadValue {
    /// The variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for BadValue {}

impl<F: Fn(&str) -> Option<String>> Overrides<F> {
    /// Overrides named `PREFIX_…` read through `lookup`.
    pub fn new(prefix: &'static str, lookup: F) -> Self {
        Overrides { lookup, prefix }
    }

    /// The variable's full name for a key such as `SERVER_HTTP_ADDR`.
    pub fn var(&self, key: &str) -> String {
        format!("{}_{key}", self.prefix)
    }

    /// The raw value of `PREFIX_KEY`, if set.
    pub fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(&self.var(key))
    }

    /// Sets `slot` from `PREFIX_KEY` when the variable is set.
    pub fn string(&self, key: &str, slot: &mut String) {
        if let Some(v) = self.get(key) {
            *slot = v;
        }
    }

    /// Sets `slot` from `PREFIX_KEY` (a path; empty clears it).
    pub fn path(&self, key: &str, slot: &mut Option<std::path::PathBuf>) {
        if let Some(v) = self.get(key) {
            *slot = (!v.is_empty()).then(|| v.into());
        }
    }

    /// Sets `slot` from `PREFIX_KEY`, parsed; a value that does not parse is an error.
    pub fn parsed<T: FromStr>(&self, key: &str, slot: &mut T) -> Result<(), BadValue>
    where
        T::Err: std::fmt::Display,
    {
        if let Some(v) = self.get(key) {
            *slot = v.parse().map_err(|e: T::Err| BadValue {
                var: self.var(key),
                value: v.clone(),
                expected: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// A comma- or space-separated list from `PREFIX_KEY`.
    pub fn list(&self, key: &str, slot: &mut Vec<String>) {
        if let Some(v) = self.get(key) {
            *slot = v
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_overrides() {
        let env = |k: &str| match k {
            "X_A" => Some("5".to_owned()),
            "X_B" => Some("five".to_owned()),
            "X_L" => Some("a/, b/".to_owned()),
            _ => None,
        };
        let o = Overrides::new("X", env);
        let mut n = 0u64;
        o.parsed("A", &mut n).unwrap();
        assert_eq!(n, 5);
        let e = o.parsed("B", &mut n).unwrap_err();
        assert!(e.to_string().contains("X_B=\"five\""));
        let mut l = Vec::new();
        o.list("L", &mut l);
        assert_eq!(l, ["a/", "b/"]);
    }
}
