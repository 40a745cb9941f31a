//! A control file per batch: one small file written after every file of a batch is in place,
//! listing them, for partners whose poller waits for a trigger rather than for each file. The
//! partner JSON's `ControlFile`:
//!
//! ```json
//! "ControlFile": "batch-{now:%Y%m%d%H%M%S%3f}.ctl"                 // lists name and size
//! "ControlFile": { "Name": "ctl/{now:%Y%m%d%H%M%S%3f}.trg", "Content": "summary" }
//! ```
//!
//! `Name` is a path under `RemoteDirectory` whose only placeholder is `{now:FORMAT}` (in the
//! partner's `TimeZone`): it names the batch, not an object. `Content` is `"list"` (the default:
//! one line per file, its path under `RemoteDirectory` and its size in bytes), `"summary"` (the
//! same with the file's SHA-256, so the files go as one stream each, never striped or resumed) or
//! `"empty"` (the file's existence is the trigger).
//!
//! A control file never replaces another one: a name already taken fails the batch's files as
//! transient, and their next attempt (a new name, a new time) lists them again.

use std::time::SystemTime;

use serde_json::Value;

use crate::config::{field, only_known, ConfigError};
use crate::route::{Input, Naming, RemotePath, Route, RouteInputs};

/// What a control file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlContent {
    /// Nothing: its existence is the trigger.
    Empty,
    /// One line per file: its path under `RemoteDirectory` and its size.
    List,
    /// One line per file: its path, its size and its SHA-256 (hex).
    Summary,
}

/// The partner's per-batch control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlFile {
    /// The name's template (only `{now}`), in the partner's time zone.
    name: Route,
    pub content: ControlContent,
}

/// One delivered file of the batch, as a control file lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlEntry {
    /// The file's path under `RemoteDirectory`.
    pub path: String,
    /// Its size on the partner.
    pub size: u64,
    /// Its SHA-256 (hex), when taken.
    pub sha256: Option<String>,
}

const KNOWN: &[&str] = &["Name", "Content"];

impl ControlFile {
    /// The partner JSON's `ControlFile`: a name template, or an object with `Name` and `Content`.
    /// `naming` gives the time zone of `{now}`.
    pub(crate) fn from_json(
        value: Option<&Value>,
        naming: &Naming,
    ) -> Result<Option<ControlFile>, ConfigError> {
        let (name, content) =
            match value {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::String(s)) => (s.as_str(), ControlContent::List),
                Some(Value::Object(obj)) => {
                    only_known("ControlFile", obj, KNOWN)?;
                    let name =
                        match obj.get("Name") {
                            Some(Value::String(s)) => s.as_str(),
                            _ => return Err(field(
                                "ControlFile.Name",
                                "is required: a path such as \"batch-{now:%Y%m%d%H%M%S%3f}.ctl\"",
                            )),
                        };
                    let content =
                        match obj.get("Content") {
                            None | Some(Value::Null) => ControlContent::List,
                            Some(Value::String(c)) if c == "list" => ControlContent::List,
                            Some(Value::String(c)) if c == "summary" => ControlContent::Summary,
                            Some(Value::String(c)) if c == "empty" => ControlContent::Empty,
                            Some(_) => return Err(field(
                                "ControlFile.Content",
                                "must be \"list\" (path and size per file), \"summary\" (also its \
                             SHA-256) or \"empty\"",
                            )),
                        };
                    (name, content)
                }
                Some(_) => {
                    return Err(field(
                        "ControlFile",
                        "must be a name such as \"batch-{now:%Y%m%d%H%M%S%3f}.ctl\" or an object \
                     { \"Name\": ..., \"Content\": \"list\" | \"summary\" | \"empty\" }",
                    ))
                }
            };
        let route =
            Route::new(name.trim(), None).map_err(|e| field("ControlFile.Name", e.to_string()))?;
        if route.shows_key() || route.uses(Input::Modified) || route.uses(Input::Version) {
            return Err(field(
                "ControlFile.Name",
                "names the batch, not an object: its only placeholder may be {now:FORMAT} (e.g. \
                 \"batch-{now:%Y%m%d%H%M%S%3f}.ctl\"), so that each batch has its own name",
            ));
        }
        Ok(Some(ControlFile {
            name: route.in_zone_of(naming),
            content,
        }))
    }

    /// Whether each file's SHA-256 is needed (and so each file goes as one stream).
    pub fn needs_digest(&self) -> bool {
        self.content == ControlContent::Summary
    }

    /// The name of the control file of a batch finished at `now`, under `RemoteDirectory`.
    pub fn path_at(&self, now: SystemTime) -> Result<RemotePath, crate::RouteError> {
        let inputs = RouteInputs {
            now: Some(now),
            ..RouteInputs::default()
        };
        // The template shows no part of the key (checked when parsed).
        self.name.render("batch", &inputs)
    }

    /// The control file's bytes for these files.
    pub fn content(&self, entries: &[ControlEntry]) -> Vec<u8> {
        let line = |e: &ControlEntry| match self.content {
            ControlContent::Empty => String::new(),
            ControlContent::List => format!("{} {}\n", e.path, e.size),
            ControlContent::Summary => format!(
                "{} {} {}\n",
                e.path,
                e.size,
                e.sha256.as_deref().unwrap_or("-")
            ),
        };
        entries.iter().map(line).collect::<String>().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn parse(v: Value) -> Result<Option<ControlFile>, String> {
        ControlFile::from_json(Some(&v), &Naming::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn control_files_parse_with_field_named_errors() {
        let c = parse(json!("b-{now:%Y%m%d%H%M%S}.ctl")).unwrap().unwrap();
        assert_eq!(c.content, ControlContent::List);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 + 61);
        assert_eq!(c.path_at(at).unwrap().as_str(), "b-19700102000101.ctl");
        let entries = [
            ControlEntry {
                path: "in/a.csv".into(),
                size: 3,
                sha256: Some("ab".into()),
            },
            ControlEntry {
                path: "b.csv".into(),
                size: 0,
                sha256: None,
            },
        ];
        assert_eq!(c.content(&entries), b"in/a.csv 3\nb.csv 0\n".to_vec());
        let s = parse(json!({"Name": "ctl/{now:%s}.trg", "Content": "summary"}))
            .unwrap()
            .unwrap();
        assert!(s.needs_digest());
        assert_eq!(s.content(&entries[..1]), b"in/a.csv 3 ab\n".to_vec());
        let e = parse(json!({"Name": "{now:%s}", "Content": "empty"}))
            .unwrap()
            .unwrap();
        assert!(e.content(&entries).is_empty());
        for (bad, names) in [
            (json!("batch.ctl"), "ControlFile.Name"),
            (json!("{basename}-{now:%s}.ctl"), "only placeholder"),
            (json!("../{now:%s}.ctl"), "ControlFile.Name"),
            (json!({"Content": "list"}), "ControlFile.Name"),
            (
                json!({"Name": "{now:%s}", "Content": "sha1"}),
                "ControlFile.Content",
            ),
            (json!({"Name": "{now:%s}", "Nmae": 1}), "unknown field"),
            (json!(7), "ControlFile"),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert!(e.contains(names), "{bad}: {e}");
        }
    }
}
