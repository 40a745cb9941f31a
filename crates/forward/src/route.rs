//! Route: from an S3 object key to a path under the partner's `RemoteDirectory`.
//!
//! A [`Route`] is a template such as `"inbound/{dirname}/{basename}"` plus an optional prefix to strip
//! from the key first. [`Route::map`] expands the template and checks the result, returning a
//! [`RemotePath`]: a relative path that cannot leave the directory it is joined under. The checks run on
//! the *expanded* path, so the template's literal text is checked as well as the key.
//!
//! Normalisation is deliberately small: empty segments (leading, trailing or doubled `/`) and `.`
//! segments are dropped. Everything else that could escape or confuse the remote side (`..`, NUL and
//! other control characters, backslashes, over-long names) is rejected, never rewritten, so that two
//! different keys cannot be quietly folded into one remote name by an escaping scheme. Unicode and spaces
//! pass through byte-for-byte.
//!
//! Every [`RouteError`] is permanent: a key that is refused now is refused on every retry.
//!
//! # Layout
//! - this file: [`Route`] (render a key with [`RouteInputs`]) and the path rules of [`RemotePath`]
//! - `template`: the placeholders and their parser:
//!   `{key}` `{basename}` `{dirname}` `{stem}` `{ext}` (the key's parts), `{now:FORMAT}` and
//!   `{modified:FORMAT}` (delivery / last-modified time, strftime-like, in the route's zone),
//!   `{version:N}` (N hex digits of the SHA-256 of the version id, else the ETag), each
//!   optionally `|upper` or `|lower`
//! - `naming`: the partner's `RemotePathTemplate`, `TimeZone` and `MaxNameLength` ([`Naming`])

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

mod naming;
mod template;

pub use naming::{Naming, Zone};
pub use template::{Input, TemplateProblem, DEFAULT_TIME_FORMAT, DEFAULT_VERSION_DIGITS};
use template::{Part, Values};

/// Longest allowed path segment (file or directory name), in bytes: the common `NAME_MAX`.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Longest allowed relative path, in bytes, segments joined with `/`: the common `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;

/// The template used when none is configured: the whole key, unchanged.
pub const DEFAULT_TEMPLATE: &str = "{key}";

/// Valid templates that between them use every placeholder, filter and normalisation case
/// (empty `{dirname}`, `..` after expansion, formats that make directories): what the property
/// test and the fuzz target (`tests/fuzz`) map hostile keys through.
pub const EXAMPLE_TEMPLATES: &[&str] = &[
    "{key}",
    "{basename}",
    "{dirname}",
    "inbound/{dirname}/{basename}",
    "/out/./{key}.done",
    "{dirname}..",
    "{basename}/{dirname}",
    "{now:%Y%m%d%H%M%S%3f}_{basename|upper}",
    "{modified:%Y/%m/%d}/{stem|lower}.{ext|upper}",
    "{dirname|upper}/{version:8}_{basename}",
    "{now:%Y-%m-%dT%H:%M:%S%z}/{key|lower}",
    "{stem}{now:%j}.{ext}{version:64|upper}",
];

/// How object keys map to remote paths: a template, an optional prefix to strip, the time zone
/// of time fields and an optional limit on the file name's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The template as configured, kept for messages.
    template: String,
    /// The template split into literal text and placeholders; contains at least one placeholder.
    parts: Vec<Part>,
    /// Removed from the front of keys that start with it; never empty.
    strip_prefix: Option<String>,
    /// The zone `{now}` and `{modified}` are shown in; UTC unless the partner sets `TimeZone`.
    zone: Zone,
    /// Most characters in the rendered file name (`MaxNameLength`).
    max_name_length: Option<usize>,
}

/// What a delivery tells the template beyond the key; each is needed only by the placeholder
/// that shows it, and rendering a placeholder whose input is missing fails naming it.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteInputs<'a> {
    /// The delivery time, for `{now}`.
    pub now: Option<SystemTime>,
    /// The object's last-modified time, for `{modified}`.
    pub modified: Option<SystemTime>,
    /// The object's version id, for `{version}` (preferred to the ETag).
    pub version_id: Option<&'a str>,
    /// The object's ETag without quotes, for `{version}` when there is no version id.
    pub etag: Option<&'a str>,
}

impl Route {
    /// Builds a route from a template and an optional prefix to strip from keys.
    ///
    /// The template's placeholders are listed in the [module doc](self) (`{key}`, `{basename}`,
    /// `{dirname}`, `{stem}`, `{ext}`, `{now:FORMAT}`, `{modified:FORMAT}`, `{version:N}`, each
    /// optionally `|upper` or `|lower`), with literal text around them, e.g.
    /// `"inbound/{dirname}/{basename}"`. There is no escape for literal braces. Time fields are in
    /// UTC and file names unlimited until [`Route::with_naming`] applies a partner's rules.
    ///
    /// An empty `strip_prefix` is the same as none.
    ///
    /// # Errors
    ///
    /// [`RouteError::Template`] on an unknown placeholder, filter or argument, a time format that
    /// cannot be formatted, an unbalanced brace, a template without any placeholder, or literal
    /// text that would make every mapped path unsafe (such as a `..` segment or a backslash).
    pub fn new(template: &str, strip_prefix: Option<&str>) -> Result<Route, RouteError> {
        let template_error = |problem| RouteError::Template {
            template: template.to_owned(),
            problem,
        };
        let parts = template::parse(template).map_err(template_error)?;

        // Literal text is fixed, so a problem in it would fail every key: report it now, against the
        // template, instead of once per object. A stand-in value for each placeholder is enough to see it.
        let mut probe = String::new();
        for part in &parts {
            match part {
                Part::Literal(text) => probe.push_str(text),
                Part::Placeholder(p) => probe.push_str(&p.probe().map_err(template_error)?),
            }
        }
        check_path(&probe)
            .map_err(|problem| template_error(TemplateProblem::UnsafeLiteral { problem }))?;

        Ok(Route {
            template: template.to_owned(),
            parts,
            strip_prefix: strip_prefix
                .filter(|prefix| !prefix.is_empty())
                .map(str::to_owned),
            zone: Zone::utc(),
            max_name_length: None,
        })
    }

    /// The template as configured.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The prefix removed from keys that start with it, if any.
    pub fn strip_prefix(&self) -> Option<&str> {
        self.strip_prefix.as_deref()
    }

    /// The time zone of `{now}` and `{modified}`.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The most characters a rendered file name may have, if limited.
    pub fn max_name_length(&self) -> Option<usize> {
        self.max_name_length
    }

    /// Whether the template shows `input`: a caller that cannot give it cheaply can ask first
    /// (the Lambda maps a `{modified}` template only once the object is open).
    pub fn uses(&self, input: Input) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Placeholder(p) if p.input() == Some(input)))
    }

    /// Whether the template shows any part of the key (`{key}`, `{basename}`, `{dirname}`,
    /// `{stem}`, `{ext}`): a name that is not an object's (a batch's control file) must not.
    pub fn shows_key(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Placeholder(p) if p.input().is_none()))
    }

    /// [`Route::render`] with the current time as the delivery time and no other input.
    ///
    /// # Errors
    ///
    /// As [`Route::render`]; [`RouteError::MissingInput`] for `{modified}` and `{version}`.
    pub fn map(&self, key: &str) -> Result<RemotePath, RouteError> {
        let inputs = RouteInputs {
            now: Some(SystemTime::now()),
            ..RouteInputs::default()
        };
        self.render(key, &inputs)
    }

    /// Maps an (already URL-decoded) object key to a safe relative path.
    ///
    /// The prefix is stripped if the key starts with it (other keys are used unchanged), the key is
    /// normalised (empty and `.` segments dropped), the template is expanded with `inputs`, and the
    /// expanded path is checked by the same rules as [`RemotePath::parse`], then its file name
    /// against the length limit.
    ///
    /// # Errors
    ///
    /// [`RouteError::NothingLeftAfterStrip`] or [`RouteError::EmptyKey`] when the key has no segments,
    /// [`RouteError::MissingInput`] or [`RouteError::Time`] when a placeholder cannot be shown,
    /// [`RouteError::UnsafeKey`] when the expanded path breaks a rule of [`RemotePath`],
    /// [`RouteError::NameTooLong`] when its file name is over the partner's `MaxNameLength`.
    pub fn render(&self, key: &str, inputs: &RouteInputs<'_>) -> Result<RemotePath, RouteError> {
        let (rest, stripped) = match &self.strip_prefix {
            Some(prefix) => match key.strip_prefix(prefix.as_str()) {
                Some(rest) => (rest, Some(prefix)),
                None => (key, None),
            },
            None => (key, None),
        };

        let segments: Vec<&str> = normal_segments(rest).collect();
        let Some((basename, dir)) = segments.split_last() else {
            return Err(match stripped {
                Some(prefix) => RouteError::NothingLeftAfterStrip {
                    key: key.to_owned(),
                    prefix: prefix.clone(),
                },
                None => RouteError::EmptyKey {
                    key: key.to_owned(),
                },
            });
        };
        let whole = segments.join("/");
        let dirname = dir.join("/");
        let values = Values {
            whole: &whole,
            basename,
            dirname: &dirname,
            now: inputs.now,
            modified: inputs.modified,
            version: inputs.version_id.or(inputs.etag),
            zone: self.zone.tz(),
        };

        let mut expanded = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => expanded.push_str(text),
                Part::Placeholder(p) => {
                    expanded.push_str(&p.render(&values).map_err(|problem| match problem {
                        template::RenderProblem::Missing(input) => RouteError::MissingInput {
                            key: key.to_owned(),
                            template: self.template.clone(),
                            input,
                        },
                        template::RenderProblem::Time { field, problem } => RouteError::Time {
                            key: key.to_owned(),
                            field,
                            problem,
                        },
                    })?)
                }
            }
        }

        let path = check_path(&expanded).map_err(|problem| RouteError::UnsafeKey {
            key: key.to_owned(),
            path: expanded,
            problem,
        })?;
        let chars = path.file_name().chars().count();
        match self.max_name_length {
            Some(max) if chars > max => Err(RouteError::NameTooLong {
                key: key.to_owned(),
                name: path.file_name().to_owned(),
                chars,
                max,
            }),
            _ => Ok(path),
        }
    }
}

impl Default for Route {
    /// The whole key, nothing stripped.
    fn default() -> Route {
        Route::new(DEFAULT_TEMPLATE, None).expect("the default template is valid")
    }
}

/// The segments of `path` that carry a name: empty and `.` segments are dropped.
fn normal_segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
}

/// Normalises `path` and checks every rule of [`RemotePath`].
fn check_path(path: &str) -> Result<RemotePath, PathProblem> {
    let mut segments = Vec::new();
    for segment in normal_segments(path) {
        if segment == ".." {
            return Err(PathProblem::ParentSegment);
        }
        if let Some(ch) = segment.chars().find(|&ch| ch == '\\' || ch.is_control()) {
            return Err(if ch == '\\' {
                PathProblem::Backslash
            } else {
                PathProblem::ControlCharacter { ch }
            });
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(PathProblem::SegmentTooLong { len: segment.len() });
        }
        segments.push(segment.to_owned());
    }
    if segments.is_empty() {
        return Err(PathProblem::Empty);
    }
    let joined = segments.join("/");
    if joined.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong { len: joined.len() });
    }
    Ok(RemotePath { segments, joined })
}

/// A relative path of checked segments, safe to join under the partner's `RemoteDirectory`.
///
/// Never absolute, never contains `..`, `.` or empty segments, NUL or other control characters, or
/// backslashes; has at least one segment; each segment is at most [`MAX_SEGMENT_BYTES`] bytes and the
/// whole path at most [`MAX_PATH_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePath {
    /// Never empty.
    segments: Vec<String>,
    /// `segments` joined with `/`, kept so that [`RemotePath::as_str`] can borrow it.
    joined: String,
}

impl RemotePath {
    /// Checks a path a caller already has (for example the CLI's `--remote-path`) by the same rules as
    /// [`Route::map`]: empty and `.` segments are dropped (so a leading `/` is too: the result is always
    /// relative to the remote directory), anything unsafe is refused.
    ///
    /// # Errors
    ///
    /// [`RouteError::UnsafePath`] naming the path and the rule it breaks.
    pub fn parse(rel: &str) -> Result<RemotePath, RouteError> {
        check_path(rel).map_err(|problem| RouteError::UnsafePath {
            path: rel.to_owned(),
            problem,
        })
    }

    /// The checked segments, at least one.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The last segment: the name of the file itself.
    pub fn file_name(&self) -> &str {
        // `segments` is never empty; the fallback only keeps this free of panics.
        self.segments.last().map_or("", String::as_str)
    }

    /// The directories above the file, outermost first; empty for a file directly in the remote directory.
    pub fn parent(&self) -> &[String] {
        self.segments.split_last().map_or(&[], |(_, parent)| parent)
    }

    /// The segments joined with `/`.
    pub fn as_str(&self) -> &str {
        &self.joined
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.joined)
    }
}

impl FromStr for RemotePath {
    type Err = RouteError;

    /// Same as [`RemotePath::parse`]; lets `clap` parse `--remote-path` directly.
    fn from_str(rel: &str) -> Result<RemotePath, RouteError> {
        RemotePath::parse(rel)
    }
}

/// Why a key or path cannot be used; all permanent (a bad key never becomes valid by retrying).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The route template cannot be used.
    #[error("route template {template:?}: {problem}")]
    Template {
        template: String,
        problem: TemplateProblem,
    },
    /// The key consists of the strip prefix followed by nothing but `/` and `.` segments.
    #[error("object key {key:?}: nothing left after stripping prefix {prefix:?}")]
    NothingLeftAfterStrip { key: String, prefix: String },
    /// The key has no segments at all (empty, or only `/` and `.` segments).
    #[error("object key {key:?} has no path segments")]
    EmptyKey { key: String },
    /// The key expands to a path that breaks one of the rules of [`RemotePath`].
    #[error("object key {key:?} maps to unsafe remote path {path:?}: {problem}")]
    UnsafeKey {
        key: String,
        path: String,
        problem: PathProblem,
    },
    /// A path given directly breaks one of the rules of [`RemotePath`].
    #[error("remote path {path:?}: {problem}")]
    UnsafePath { path: String, problem: PathProblem },
    /// The template shows something this delivery did not give.
    #[error("object key {key:?}: route template {template:?}: {}, which was not given", input.describe())]
    MissingInput {
        key: String,
        template: String,
        input: Input,
    },
    /// A time field could not be shown (a time outside the supported range, a format that needs
    /// what the time zone lacks).
    #[error("object key {key:?}: {{{field}}} cannot be shown: {problem}")]
    Time {
        key: String,
        field: &'static str,
        problem: String,
    },
    /// The rendered file name is longer than the partner's `MaxNameLength`.
    #[error("object key {key:?} maps to file name {name:?} of {chars} characters, over the partner's MaxNameLength of {max}")]
    NameTooLong {
        key: String,
        name: String,
        chars: usize,
        max: usize,
    },
}

impl RouteError {
    /// Always `false`: routing depends only on the key, the object and the configuration, so
    /// retrying cannot help.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Which path rule a key or path breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathProblem {
    /// No segments left after dropping empty and `.` segments.
    Empty,
    /// A `..` segment.
    ParentSegment,
    /// A control character (`char::is_control`: NUL, `\n`, `\r`, `\t`, DEL, C1 controls, ...).
    ControlCharacter { ch: char },
    /// A backslash, a separator on Windows-backed servers.
    Backslash,
    /// A segment longer than [`MAX_SEGMENT_BYTES`]; `len` is its length in bytes.
    SegmentTooLong { len: usize },
    /// A path longer than [`MAX_PATH_BYTES`]; `len` is its normalised length in bytes.
    TooLong { len: usize },
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::Empty => f.write_str("no path segments"),
            PathProblem::ParentSegment => f.write_str("contains a '..' segment"),
            PathProblem::ControlCharacter { ch } => write!(f, "contains control character {ch:?}"),
            PathProblem::Backslash => f.write_str("contains a backslash"),
            PathProblem::SegmentTooLong { len } => write!(
                f,
                "a segment is {len} bytes, over the {MAX_SEGMENT_BYTES}-byte limit"
            ),
            PathProblem::TooLong { len } => {
                write!(
                    f,
                    "path is {len} bytes, over the {MAX_PATH_BYTES}-byte limit"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
