//! Done markers: a small file written beside each delivered file, after its rename and never
//! before, that a partner's poller waits for. The partner JSON's `DoneMarker`:
//!
//! ```json
//! "DoneMarker": ".done"                                   // empty name.done
//! "DoneMarker": { "Suffix": ".ok", "Content": "summary" } // name.ok holding "name size sha256\n"
//! ```
//!
//! A `summary` needs the file's SHA-256, computed while it streams out: such a partner's files go
//! as one stream each (not striped, not resumed).

use serde_json::Value;

use crate::config::{check_suffix, field, only_known, ConfigError};

/// What a done marker holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerContent {
    /// Nothing: its existence is the signal.
    Empty,
    /// One line: the file's name, its size in bytes and its SHA-256 (hex), space-separated.
    Summary,
}

/// The partner's done marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoneMarker {
    /// Appended to the file's name: `.done`, `.ok`, ...
    pub suffix: String,
    pub content: MarkerContent,
}

const KNOWN: &[&str] = &["Suffix", "Content"];

impl DoneMarker {
    /// The partner JSON's `DoneMarker`: a suffix, or an object with `Suffix` and `Content`.
    pub(crate) fn from_json(value: Option<&Value>) -> Result<Option<DoneMarker>, ConfigError> {
        let (suffix, content) = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => (s.as_str(), MarkerContent::Empty),
            Some(Value::Object(obj)) => {
                only_known("DoneMarker", obj, KNOWN)?;
                let suffix = match obj.get("Suffix") {
                    None | Some(Value::Null) => ".done",
                    Some(Value::String(s)) => s.as_str(),
                    Some(_) => return Err(field("DoneMarker.Suffix", "must be a string")),
                };
                let content =
                    match obj.get("Content") {
                        None | Some(Value::Null) => MarkerContent::Empty,
                        Some(Value::String(c)) if c == "empty" => MarkerContent::Empty,
                        Some(Value::String(c)) if c == "summary" => MarkerContent::Summary,
                        Some(_) => return Err(field(
                            "DoneMarker.Content",
                            "must be \"empty\" or \"summary\" (the file's name, size and SHA-256)",
                        )),
                    };
                (suffix, content)
            }
            Some(_) => {
                return Err(field(
                    "DoneMarker",
                    "must be a suffix such as \".done\" or an object { \"Suffix\": \".ok\", \
                     \"Content\": \"empty\" | \"summary\" }",
                ))
            }
        };
        check_suffix("DoneMarker.Suffix", suffix, ".done")?;
        Ok(Some(DoneMarker {
            suffix: suffix.to_owned(),
            content,
        }))
    }

    /// Whether the file's SHA-256 is needed (and so the file goes as one stream).
    pub fn needs_digest(&self) -> bool {
        self.content == MarkerContent::Summary
    }

    /// The marker's name for a file named `file_name`.
    pub fn name_for(&self, file_name: &str) -> String {
        format!("{file_name}{}", self.suffix)
    }

    /// The marker's bytes for a file of `size` bytes with SHA-256 `digest` (hex).
    pub fn content(&self, file_name: &str, size: u64, digest: Option<&str>) -> Vec<u8> {
        match self.content {
            MarkerContent::Empty => Vec::new(),
            MarkerContent::Summary => {
                format!("{file_name} {size} {}\n", digest.unwrap_or("-")).into_bytes()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Option<DoneMarker>, String> {
        DoneMarker::from_json(Some(&v)).map_err(|e| e.to_string())
    }

    #[test]
    fn markers_parse_with_field_named_errors() {
        let m = parse(json!(".ok")).unwrap().unwrap();
        assert_eq!(
            (m.suffix.as_str(), m.content),
            (".ok", MarkerContent::Empty)
        );
        let m = parse(json!({"Content": "summary"})).unwrap().unwrap();
        assert_eq!(m.suffix, ".done");
        assert!(m.needs_digest());
        assert_eq!(
            m.content("a.csv", 3, Some("ab12")),
            b"a.csv 3 ab12\n".to_vec()
        );
        assert_eq!(m.name_for("a.csv"), "a.csv.done");
        for (bad, names) in [
            (json!(""), "DoneMarker.Suffix"),
            (json!("a/b"), "DoneMarker.Suffix"),
            (json!({"Content": "sha1"}), "DoneMarker.Content"),
            (json!({"Sufix": ".ok"}), "unknown field"),
            (json!(7), "DoneMarker"),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert!(e.contains(names), "{bad}: {e}");
        }
    }
}
