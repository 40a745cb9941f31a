//! How a file is put on the partner's server so that their poller never takes a partial one: the
//! partner JSON's `Upload`.
//!
//! ```json
//! "Upload": "hidden-temp"                                         // the default
//! "Upload": { "Convention": "suffix", "Suffix": ".partial" }      // "suffix" alone: ".partial"
//! "Upload": { "Convention": "staging-dir", "Directory": "staging" }
//! "Upload": "direct"
//! ```
//!
//! | convention | written to | then |
//! |---|---|---|
//! | `hidden-temp` | `.name.<tag>.part` beside the final name | rename |
//! | `suffix` | `name.<tag><suffix>` beside the final name | rename |
//! | `staging-dir` | `<Directory>/.name.<tag>.part` | rename across directories |
//! | `direct` | the final name itself | nothing: the partner can see a growing file |
//!
//! `<tag>` is 8 random hex digits (`sfw-` and 8 hex digits under `suffix`, where the name is
//! visible and a date such as `20240115` must not look like ours), or `sfr-` and 16 hex digits for
//! a resumable file (see `publish::resume`). The sweep of stale temporary files knows each
//! convention's names.

use serde_json::{Map, Value};

use crate::config::{check_suffix, field, normalise_directory, only_known, ConfigError};

/// The upload convention of a partner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Upload {
    /// A hidden temporary name beside the final one, then a rename (atomic where the server
    /// offers `posix-rename@openssh.com`).
    #[default]
    HiddenTemp,
    /// A visible name ending with this suffix beside the final one (a poller ignores `*.partial`),
    /// then a rename.
    Suffix(String),
    /// A hidden temporary name in this directory (relative to the login directory, like
    /// `RemoteDirectory`), then a rename across directories into place.
    StagingDir(String),
    /// Straight under the final name: for accounts that may not rename. The partner can see the
    /// file grow; on failure it is removed. No resume.
    Direct,
}

const DEFAULT_SUFFIX: &str = ".partial";
const KNOWN: &[&str] = &["Convention", "Suffix", "Directory"];

impl Upload {
    /// The name used in the partner JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Upload::HiddenTemp => "hidden-temp",
            Upload::Suffix(_) => "suffix",
            Upload::StagingDir(_) => "staging-dir",
            Upload::Direct => "direct",
        }
    }

    /// The partner JSON's `Upload`: a convention name or an object with `Convention` and its
    /// setting. Errors name the field.
    pub(crate) fn from_json(value: Option<&Value>) -> Result<Upload, ConfigError> {
        match value {
            None | Some(Value::Null) => Ok(Upload::HiddenTemp),
            Some(Value::String(name)) => Upload::named(name, &Map::new()),
            Some(Value::Object(obj)) => {
                only_known("Upload", obj, KNOWN)?;
                match obj.get("Convention") {
                    Some(Value::String(name)) => Upload::named(name, obj),
                    _ => Err(field(
                        "Upload.Convention",
                        "is required in an Upload object: \"hidden-temp\", \"suffix\", \
                         \"staging-dir\" or \"direct\"",
                    )),
                }
            }
            Some(_) => Err(field(
                "Upload",
                "must be a convention name (\"hidden-temp\", \"suffix\", \"staging-dir\", \
                 \"direct\") or an object \
                 { \"Convention\": ..., \"Suffix\": ..., \"Directory\": ... }",
            )),
        }
    }

    fn named(name: &str, obj: &Map<String, Value>) -> Result<Upload, ConfigError> {
        let setting = |key: &'static str| -> Result<Option<&str>, ConfigError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(field(
                    if key == "Suffix" {
                        "Upload.Suffix"
                    } else {
                        "Upload.Directory"
                    },
                    "must be a string",
                )),
            }
        };
        let (suffix, directory) = (setting("Suffix")?, setting("Directory")?);
        let unused = |key: &'static str, present: bool| match present {
            true => Err(field(
                "Upload",
                format!("{key} does not apply to the {name:?} convention"),
            )),
            false => Ok(()),
        };
        match name.trim() {
            "hidden-temp" => {
                unused("Suffix", suffix.is_some())?;
                unused("Directory", directory.is_some())?;
                Ok(Upload::HiddenTemp)
            }
            "direct" => {
                unused("Suffix", suffix.is_some())?;
                unused("Directory", directory.is_some())?;
                Ok(Upload::Direct)
            }
            "suffix" => {
                unused("Directory", directory.is_some())?;
                let suffix = suffix.unwrap_or(DEFAULT_SUFFIX);
                check_suffix("Upload.Suffix", suffix, DEFAULT_SUFFIX)?;
                Ok(Upload::Suffix(suffix.to_owned()))
            }
            "staging-dir" => {
                unused("Suffix", suffix.is_some())?;
                match normalise_directory("Upload.Directory", directory.map(str::to_owned))? {
                    Some(dir) => Ok(Upload::StagingDir(dir)),
                    None => Err(field(
                        "Upload.Directory",
                        "is required for the staging-dir convention: the partner's staging \
                         directory, relative to the login directory (or absolute)",
                    )),
                }
            }
            other => Err(field(
                "Upload",
                format!(
                    "unknown convention {other:?}: use \"hidden-temp\", \"suffix\", \
                     \"staging-dir\" or \"direct\""
                ),
            )),
        }
    }

    /// Where a file whose final directory is `dir` is written first: `None` for [`Upload::Direct`]
    /// (the final name itself). `tag` makes it unique (random, or a resume key).
    pub(crate) fn temp_path(&self, dir: &str, file_name: &str, tag: &str) -> Option<String> {
        let stem = name_stem(file_name);
        match self {
            Upload::HiddenTemp => Some(join2(dir, &format!(".{stem}.{tag}.part"))),
            Upload::Suffix(suffix) => {
                let tag = match tag.starts_with("sfr-") {
                    true => tag.to_owned(),
                    false => format!("sfw-{tag}"),
                };
                Some(join2(dir, &format!("{stem}.{tag}{suffix}")))
            }
            Upload::StagingDir(staging) => Some(join2(staging, &format!(".{stem}.{tag}.part"))),
            Upload::Direct => None,
        }
    }

    /// The directory our temporary files for `dir` go to (what a sweep lists).
    pub(crate) fn temp_dir<'a>(&'a self, dir: &'a str) -> &'a str {
        match self {
            Upload::StagingDir(staging) => staging,
            _ => dir,
        }
    }

    /// Whether `name` (an entry of [`Upload::temp_dir`]) is one of our temporary names under this
    /// convention; a plain `hidden-temp` name always is (the writability probe's).
    pub(crate) fn is_temp_name(&self, name: &str) -> bool {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        // `stem.<tag>`, the tag accepted by `plain` or `sfr-<16 hex>` (resumable).
        let tagged = |inner: &str, plain: &dyn Fn(&str) -> bool| {
            let Some((stem, tag)) = inner.rsplit_once('.') else {
                return false;
            };
            !stem.is_empty() && (plain(tag) || tag.strip_prefix("sfr-").is_some_and(|t| hex(t, 16)))
        };
        let hidden = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".part"))
            .is_some_and(|inner| tagged(inner, &|t| hex(t, 8)));
        let sfw = |t: &str| t.strip_prefix("sfw-").is_some_and(|t| hex(t, 8));
        match self {
            Upload::Suffix(suffix) => {
                hidden
                    || name
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|inner| tagged(inner, &sfw))
            }
            _ => hidden,
        }
    }
}

/// The part of `file_name` a temporary name starts with: at most 200 bytes.
pub(crate) fn name_stem(file_name: &str) -> &str {
    let mut end = file_name.len().min(200);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    &file_name[..end]
}

/// `name` under `dir`. In the login directory (`.`) a name that a server could read as something
/// else — `~user` (a home directory) or `C:` (a drive) — is sent as `./name`: always a name in the
/// login directory.
pub(crate) fn join2(dir: &str, name: &str) -> String {
    match dir {
        "." | "" if name.starts_with('~') || name.contains(':') => format!("./{name}"),
        "." | "" => name.to_owned(),
        "/" => format!("/{name}"),
        _ => format!("{dir}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Upload, String> {
        Upload::from_json(Some(&v)).map_err(|e| e.to_string())
    }

    #[test]
    fn conventions_parse_with_their_settings_and_field_named_errors() {
        assert_eq!(parse(json!("direct")).unwrap(), Upload::Direct);
        assert_eq!(
            parse(json!("suffix")).unwrap(),
            Upload::Suffix(".partial".into())
        );
        assert_eq!(
            parse(json!({"Convention": "suffix", "Suffix": ".tmp"})).unwrap(),
            Upload::Suffix(".tmp".into())
        );
        assert_eq!(
            parse(json!({"Convention": "staging-dir", "Directory": "staging/"})).unwrap(),
            Upload::StagingDir("staging".into())
        );
        for (bad, names) in [
            (json!("rename"), "Upload"),
            (json!("staging-dir"), "Upload.Directory"),
            (
                json!({"Convention": "suffix", "Suffix": "a/b"}),
                "Upload.Suffix",
            ),
            (
                json!({"Convention": "suffix", "Suffix": ""}),
                "Upload.Suffix",
            ),
            (json!({"Convention": "direct", "Suffix": ".x"}), "Upload"),
            (
                json!({"Convention": "staging-dir", "Directory": "../up"}),
                "Upload.Directory",
            ),
            (json!({"Suffix": ".x"}), "Upload.Convention"),
            (
                json!({"Convention": "suffix", "Sufix": ".x"}),
                "unknown field",
            ),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert!(e.contains(names), "{bad}: {e}");
        }
    }

    #[test]
    fn each_convention_names_and_recognises_its_temporary_files() {
        let cases = [
            (Upload::HiddenTemp, "in/.a.csv.0badcafe.part"),
            (
                Upload::Suffix(".partial".into()),
                "in/a.csv.sfw-0badcafe.partial",
            ),
            (
                Upload::StagingDir("stage".into()),
                "stage/.a.csv.0badcafe.part",
            ),
        ];
        for (upload, want) in cases {
            let path = upload.temp_path("in", "a.csv", "0badcafe").unwrap();
            assert_eq!(path, want);
            let name = path.rsplit('/').next().unwrap();
            assert!(upload.is_temp_name(name), "{upload:?} {name}");
            let resumable = upload
                .temp_path("in", "a.csv", "sfr-0123456789abcdef")
                .unwrap();
            assert!(upload.is_temp_name(resumable.rsplit('/').next().unwrap()));
        }
        assert_eq!(Upload::Direct.temp_path("in", "a.csv", "0badcafe"), None);
        assert_eq!(Upload::StagingDir("stage".into()).temp_dir("in"), "stage");
        let suffix = Upload::Suffix(".partial".into());
        for foreign in [
            "a.csv.partial",
            "a.csv",
            "a.csv.1234.partial",
            "PAYROLL.20240115.partial",
            "a.csv.0badcafe.partial",
            ".a.deadbeef.partial.x",
            ".report.csv.part",
            "report.csv.deadbeef.part",
            "..deadbeef.part",
            ".a.sfr-0123.part",
            ".bashrc",
        ] {
            assert!(!suffix.is_temp_name(foreign), "{foreign}");
            assert!(!Upload::HiddenTemp.is_temp_name(foreign), "{foreign}");
        }
        // The probe's hidden name is ours under every convention.
        assert!(suffix.is_temp_name(".sftp-forward-probe.deadbeef.part"));
    }

    #[test]
    fn temp_names_stay_within_255_bytes() {
        let long = "é".repeat(127); // 254 bytes
        for upload in [Upload::HiddenTemp, Upload::Suffix("x".repeat(32))] {
            let p = upload
                .temp_path(".", &long, "sfr-0123456789abcdef")
                .unwrap();
            assert!(p.len() <= 255, "{}", p.len());
        }
    }

    #[test]
    fn joins_under_the_remote_directory() {
        assert_eq!(join2(".", "a"), "a");
        assert_eq!(join2("/", "a"), "/a");
        assert_eq!(join2("upload/in", "a"), "upload/in/a");
        assert_eq!(join2(".", "~acme"), "./~acme");
        assert_eq!(join2(".", "C:"), "./C:");
        assert_eq!(join2(".", "report:v2.csv"), "./report:v2.csv");
        assert_eq!(join2("in", "~acme"), "in/~acme");
    }
}
