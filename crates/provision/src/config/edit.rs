//! `partner add` / `partner remove`: the config file is the list of partners, so these edit its
//! `partners` (every other field untouched) after checking the result as `apply` would: a bad or
//! overlapping partner is refused before the file is written or AWS is called.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{RawConfig, RawPartner, Spec};
use crate::error::{Error, Result};

/// What to change.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Declare this partner (or replace the entry of the same name).
    Add(RawPartner),
    /// Remove the partner of this name.
    Remove(String),
}

/// What the edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edited {
    /// The partner was added.
    Added(String),
    /// The partner's entry was replaced by the new one.
    Replaced(String),
    /// The partner was removed.
    Removed(String),
    /// The partner is already declared exactly so: the file is unchanged.
    Same(String),
    /// No partner of that name is declared: the file is unchanged.
    Absent(String),
}

impl Edited {
    /// Whether the file changed.
    pub fn changed(&self) -> bool {
        matches!(
            self,
            Edited::Added(_) | Edited::Replaced(_) | Edited::Removed(_)
        )
    }
}

impl fmt::Display for Edited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edited::Added(n) => write!(f, "partner {n} added to the config file"),
            Edited::Replaced(n) => write!(f, "partner {n} replaced in the config file"),
            Edited::Removed(n) => write!(f, "partner {n} removed from the config file"),
            Edited::Same(n) => write!(f, "partner {n} is already declared as given"),
            Edited::Absent(n) => write!(f, "partner {n} is not declared: nothing to remove"),
        }
    }
}

/// Applies `edit` to the config file at `path`, checking the result with [`Spec::from_raw`]
/// first (`default_zip` as `apply` uses it); the file is rewritten only when it changes.
pub fn edit_file(path: &Path, edit: Edit, default_zip: PathBuf) -> Result<Edited> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // A new file: the partner list starts here.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{}".to_owned(),
        Err(source) => {
            return Err(Error::File {
                what: "config file",
                path: path.to_owned(),
                source,
            })
        }
    };
    let invalid = |e: serde_json::Error| {
        Error::invalid(format!("config file {}", path.display()), e.to_string())
    };
    let mut doc: Map<String, Value> = serde_json::from_str(&text).map_err(invalid)?;
    let single: Vec<&str> = ["secret", "secret_file", "partner_address"]
        .into_iter()
        .filter(|k| doc.contains_key(*k))
        .collect();
    if !single.is_empty() && matches!(edit, Edit::Add(_)) {
        return Err(Error::invalid(
            "partners",
            format!(
                "{} describes a single-partner stack ({}): move that partner into \"partners\" \
                 with a name, a prefix and \"secret\" set to its secret, and remove the top-level \
                 fields; then add partners (docs/PROVISION.md, \"From a single partner to several\")",
                path.display(),
                single.join(", ")
            ),
        ));
    }
    let mut list: Vec<RawPartner> = match doc.get("partners") {
        Some(v) => serde_json::from_value(v.clone()).map_err(invalid)?,
        None => Vec::new(),
    };
    let outcome = match edit {
        Edit::Add(p) => match list.iter_mut().find(|q| q.name == p.name) {
            Some(q) if *q == p => Edited::Same(p.name),
            Some(q) => {
                *q = p;
                Edited::Replaced(q.name.clone())
            }
            None => {
                let name = p.name.clone();
                list.push(p);
                Edited::Added(name)
            }
        },
        Edit::Remove(name) => match list.iter().position(|q| q.name == name) {
            Some(i) => {
                list.remove(i);
                Edited::Removed(name)
            }
            None => Edited::Absent(name),
        },
    };
    if !outcome.changed() {
        return Ok(outcome);
    }
    if list.is_empty() {
        return Err(Error::invalid(
            "partners",
            "removing the last partner would leave the stack without one: declare another \
             first, or destroy the stack",
        ));
    }
    doc.insert(
        "partners".into(),
        serde_json::to_value(&list).map_err(invalid)?,
    );
    let new_text = serde_json::to_string_pretty(&doc).map_err(invalid)? + "\n";
    // Checked as apply will read it: nothing is written when apply would refuse it.
    Spec::from_raw(RawConfig::from_text(&new_text, path)?, default_zip)?;
    std::fs::write(path, new_text).map_err(|source| Error::File {
        what: "config file",
        path: path.to_owned(),
        source,
    })?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(name: &str, prefix: &str) -> RawPartner {
        RawPartner {
            name: name.into(),
            prefix: Some(prefix.into()),
            ..RawPartner::default()
        }
    }

    #[test]
    fn add_and_remove_edit_only_the_partners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stack.json");
        std::fs::write(&path, r#"{"stack": "acme", "batch_size": 7}"#).unwrap();
        let zip = PathBuf::from("z.zip");
        let add = |p| edit_file(&path, Edit::Add(p), zip.clone()).unwrap();
        assert_eq!(add(partner("bank", "bank/")), Edited::Added("bank".into()));
        assert_eq!(add(partner("bank", "bank/")), Edited::Same("bank".into()));
        assert_eq!(add(partner("shop", "shop/")), Edited::Added("shop".into()));
        let e = edit_file(&path, Edit::Add(partner("bank2", "bank/x/")), zip.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlap"), "{e}");
        let raw = RawConfig::from_file(&path).unwrap();
        assert_eq!(raw.batch_size, Some(7));
        let names: Vec<String> = raw.partners.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["bank", "shop"]);
        let remove = |n: &str| edit_file(&path, Edit::Remove(n.into()), zip.clone()).unwrap();
        assert_eq!(remove("nobody"), Edited::Absent("nobody".into()));
        assert_eq!(remove("shop"), Edited::Removed("shop".into()));
        let e = edit_file(&path, Edit::Remove("bank".into()), zip.clone()).unwrap_err();
        assert!(e.to_string().contains("last partner"), "{e}");
        // A single-partner file is not silently turned into something else.
        std::fs::write(&path, r#"{"stack": "acme", "secret": "s"}"#).unwrap();
        let e = edit_file(&path, Edit::Add(partner("bank", "bank/")), zip.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("single-partner stack (secret)"), "{e}");
    }
}
