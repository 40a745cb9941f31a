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

use std::fmt;
use std::str::FromStr;

/// Longest allowed path segment (file or directory name), in bytes: the common `NAME_MAX`.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Longest allowed relative path, in bytes, segments joined with `/`: the common `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;

/// The template used when none is configured: the whole key, unchanged.
pub const DEFAULT_TEMPLATE: &str = "{key}";

/// How object keys map to remote paths: a template plus an optional prefix to strip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The template as configured, kept for messages.
    template: String,
    /// The template split into literal text and placeholders; contains at least one placeholder.
    parts: Vec<Part>,
    /// Removed from the front of keys that start with it; never empty.
    strip_prefix: Option<String>,
}

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(Placeholder),
}

/// The values a template can refer to, all taken from the normalised key after prefix stripping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    /// `{key}`: the whole key.
    Key,
    /// `{basename}`: its last segment.
    Basename,
    /// `{dirname}`: everything before the last segment; empty for a top-level key.
    Dirname,
}

impl Placeholder {
    fn from_name(name: &str) -> Option<Placeholder> {
        match name {
            "key" => Some(Placeholder::Key),
            "basename" => Some(Placeholder::Basename),
            "dirname" => Some(Placeholder::Dirname),
            _ => None,
        }
    }
}

impl Route {
    /// Builds a route from a template and an optional prefix to strip from keys.
    ///
    /// The template may use the placeholders `{key}` (the key after prefix stripping), `{basename}` (its
    /// last segment) and `{dirname}` (everything before the last segment, may be empty), with literal
    /// text around them, e.g. `"inbound/{dirname}/{basename}"`. There is no escape for literal braces.
    ///
    /// An empty `strip_prefix` is the same as none.
    ///
    /// # Errors
    ///
    /// [`RouteError::Template`] on an unknown placeholder, an unbalanced brace, a template without any
    /// placeholder, or literal text that would make every mapped path unsafe (such as a `..` segment or a
    /// backslash).
    pub fn new(template: &str, strip_prefix: Option<&str>) -> Result<Route, RouteError> {
        let template_error = |problem| RouteError::Template {
            template: template.to_owned(),
            problem,
        };
        let parts = parse_template(template).map_err(template_error)?;

        // Literal text is fixed, so a problem in it would fail every key: report it now, against the
        // template, instead of once per object. A stand-in value for each placeholder is enough to see it.
        let probe: String = parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_str(),
                Part::Placeholder(_) => "x",
            })
            .collect();
        check_path(&probe)
            .map_err(|problem| template_error(TemplateProblem::UnsafeLiteral { problem }))?;

        Ok(Route {
            template: template.to_owned(),
            parts,
            strip_prefix: strip_prefix
                .filter(|prefix| !prefix.is_empty())
                .map(str::to_owned),
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

    /// Maps an (already URL-decoded) object key to a safe relative path.
    ///
    /// The prefix is stripped if the key starts with it (other keys are used unchanged), the key is
    /// normalised (empty and `.` segments dropped), the template is expanded, and the expanded path is
    /// checked by the same rules as [`RemotePath::parse`].
    ///
    /// # Errors
    ///
    /// [`RouteError::NothingLeftAfterStrip`] or [`RouteError::EmptyKey`] when the key has no segments,
    /// [`RouteError::UnsafeKey`] when the expanded path breaks a rule of [`RemotePath`].
    pub fn map(&self, key: &str) -> Result<RemotePath, RouteError> {
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

        let mut expanded = String::new();
        for part in &self.parts {
            expanded.push_str(match part {
                Part::Literal(text) => text,
                Part::Placeholder(Placeholder::Key) => &whole,
                Part::Placeholder(Placeholder::Basename) => basename,
                Part::Placeholder(Placeholder::Dirname) => &dirname,
            });
        }

        check_path(&expanded).map_err(|problem| RouteError::UnsafeKey {
            key: key.to_owned(),
            path: expanded,
            problem,
        })
    }
}

impl Default for Route {
    /// The whole key, nothing stripped.
    fn default() -> Route {
        Route {
            template: DEFAULT_TEMPLATE.to_owned(),
            parts: vec![Part::Placeholder(Placeholder::Key)],
            strip_prefix: None,
        }
    }
}

/// Splits a template into literal text and placeholders.
fn parse_template(template: &str) -> Result<Vec<Part>, TemplateProblem> {
    let mut parts = Vec::new();
    let mut pos = 0;
    while let Some(found) = template[pos..].find(['{', '}']) {
        let open = pos + found;
        if open > pos {
            parts.push(Part::Literal(template[pos..open].to_owned()));
        }
        if template[open..].starts_with('}') {
            return Err(TemplateProblem::UnmatchedCloseBrace { offset: open });
        }
        let name_start = open + 1;
        let close = match template[name_start..].find(['{', '}']) {
            Some(len) if template[name_start + len..].starts_with('}') => name_start + len,
            // End of template, or another '{' before this one is closed.
            _ => return Err(TemplateProblem::UnclosedBrace { offset: open }),
        };
        let name = &template[name_start..close];
        let placeholder =
            Placeholder::from_name(name).ok_or_else(|| TemplateProblem::UnknownPlaceholder {
                name: name.to_owned(),
                offset: open,
            })?;
        parts.push(Part::Placeholder(placeholder));
        pos = close + 1;
    }
    if pos < template.len() {
        parts.push(Part::Literal(template[pos..].to_owned()));
    }

    if parts
        .iter()
        .any(|part| matches!(part, Part::Placeholder(_)))
    {
        Ok(parts)
    } else {
        Err(TemplateProblem::NoPlaceholder)
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
}

impl RouteError {
    /// Always `false`: routing depends only on the key and the configuration, so retrying cannot help.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// What is wrong with a route template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateProblem {
    /// A `{name}` that is not `{key}`, `{basename}` or `{dirname}`; `offset` is the byte index of its `{`.
    UnknownPlaceholder { name: String, offset: usize },
    /// A `{` with no `}` before the end or before the next `{`.
    UnclosedBrace { offset: usize },
    /// A `}` with no `{` before it.
    UnmatchedCloseBrace { offset: usize },
    /// Only literal text: every key would map to the same path.
    NoPlaceholder,
    /// The literal text alone breaks a path rule, so no key could ever map.
    UnsafeLiteral { problem: PathProblem },
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateProblem::UnknownPlaceholder { name, offset } => write!(
                f,
                "unknown placeholder {{{name}}} at byte {offset} (known: {{key}}, {{basename}}, {{dirname}})"
            ),
            TemplateProblem::UnclosedBrace { offset } => {
                write!(f, "'{{' at byte {offset} is not closed")
            }
            TemplateProblem::UnmatchedCloseBrace { offset } => {
                write!(f, "'}}' at byte {offset} has no matching '{{'")
            }
            TemplateProblem::NoPlaceholder => f.write_str(
                "no placeholder; use at least one of {key}, {basename}, {dirname}",
            ),
            TemplateProblem::UnsafeLiteral { problem } => {
                write!(f, "literal text makes every path unsafe: {problem}")
            }
        }
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path, PathBuf};

    fn route(template: &str) -> Route {
        Route::new(template, None).expect("valid template")
    }

    fn mapped(route: &Route, key: &str) -> String {
        route.map(key).expect("key maps").to_string()
    }

    fn key_problem(route: &Route, key: &str) -> PathProblem {
        match route.map(key) {
            Err(RouteError::UnsafeKey { problem, .. }) => problem,
            other => panic!("expected UnsafeKey for {key:?}, got {other:?}"),
        }
    }

    fn template_problem(template: &str) -> TemplateProblem {
        match Route::new(template, None) {
            Err(RouteError::Template { problem, .. }) => problem,
            other => panic!("expected Template error for {template:?}, got {other:?}"),
        }
    }

    // --- placeholders -------------------------------------------------------------------------

    #[test]
    fn default_maps_the_whole_key() {
        assert_eq!(
            mapped(&Route::default(), "reports/2024/a.csv"),
            "reports/2024/a.csv"
        );
        assert_eq!(Route::default(), route("{key}"));
    }

    #[test]
    fn basename_is_the_last_segment() {
        assert_eq!(mapped(&route("{basename}"), "a/b/c.csv"), "c.csv");
    }

    #[test]
    fn dirname_is_everything_before_the_last_segment() {
        assert_eq!(mapped(&route("{dirname}"), "a/b/c.csv"), "a/b");
    }

    #[test]
    fn literal_text_around_placeholders() {
        let r = route("inbound/{dirname}/{basename}.part1");
        assert_eq!(mapped(&r, "a/b/c.csv"), "inbound/a/b/c.csv.part1");
    }

    #[test]
    fn empty_dirname_of_a_top_level_key_collapses() {
        assert_eq!(
            mapped(&route("inbound/{dirname}/{basename}"), "c.csv"),
            "inbound/c.csv"
        );
    }

    #[test]
    fn dirname_alone_of_a_top_level_key_is_empty() {
        assert_eq!(
            key_problem(&route("{dirname}"), "c.csv"),
            PathProblem::Empty
        );
    }

    #[test]
    fn placeholders_see_the_normalised_key() {
        // A trailing '/' must not make the basename empty.
        assert_eq!(mapped(&route("{basename}"), "a/b/c.csv/"), "c.csv");
        assert_eq!(mapped(&route("x/{dirname}"), "/a//./b/c.csv"), "x/a/b");
    }

    #[test]
    fn checks_apply_to_the_expanded_path_only() {
        // The template drops the unsafe part of the key; what is written is safe, so it maps.
        assert_eq!(mapped(&route("{basename}"), "../../etc/passwd"), "passwd");
        // ...but a basename that is itself '..' is refused.
        assert_eq!(
            key_problem(&route("{basename}"), "a/.."),
            PathProblem::ParentSegment
        );
    }

    // --- normalisation ------------------------------------------------------------------------

    #[test]
    fn leading_trailing_and_doubled_slashes_are_dropped() {
        let r = Route::default();
        assert_eq!(mapped(&r, "/a/b.csv"), "a/b.csv");
        assert_eq!(mapped(&r, "a/b/"), "a/b");
        assert_eq!(mapped(&r, "a//b///c"), "a/b/c");
    }

    #[test]
    fn dot_segments_are_dropped_but_dotted_names_kept() {
        let r = Route::default();
        assert_eq!(mapped(&r, "./a/./b.csv"), "a/b.csv");
        assert_eq!(mapped(&r, ".hidden/...x/a..b"), ".hidden/...x/a..b");
    }

    // --- rejections ---------------------------------------------------------------------------

    #[test]
    fn parent_segments_are_refused() {
        let r = Route::default();
        for key in ["..", "../a", "a/../b", "a/..", "/../a", "a/./../b"] {
            assert_eq!(key_problem(&r, key), PathProblem::ParentSegment, "{key:?}");
        }
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        let r = Route::default();
        for ch in [
            '\0', '\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}',
        ] {
            let key = format!("a/b{ch}c.csv");
            assert_eq!(
                key_problem(&r, &key),
                PathProblem::ControlCharacter { ch },
                "{key:?}"
            );
        }
    }

    #[test]
    fn backslashes_are_refused() {
        assert_eq!(
            key_problem(&Route::default(), "a\\..\\b"),
            PathProblem::Backslash
        );
        assert_eq!(
            key_problem(&Route::default(), "dir\\file"),
            PathProblem::Backslash
        );
    }

    #[test]
    fn keys_without_segments_are_refused() {
        let r = Route::default();
        for key in ["", "/", "//", ".", "./", "/./."] {
            assert!(
                matches!(r.map(key), Err(RouteError::EmptyKey { .. })),
                "{key:?}"
            );
        }
    }

    #[test]
    fn segment_length_is_limited_in_bytes() {
        let r = Route::default();
        let longest = "a".repeat(MAX_SEGMENT_BYTES);
        assert_eq!(mapped(&r, &format!("d/{longest}")), format!("d/{longest}"));
        let too_long = "a".repeat(MAX_SEGMENT_BYTES + 1);
        assert_eq!(
            key_problem(&r, &too_long),
            PathProblem::SegmentTooLong { len: 256 }
        );
        // 128 two-byte characters are 256 bytes, though only 128 chars.
        assert_eq!(
            key_problem(&r, &"é".repeat(128)),
            PathProblem::SegmentTooLong { len: 256 }
        );
    }

    #[test]
    fn total_length_is_limited_in_bytes() {
        // 17 segments of 240 bytes and 16 separators: exactly 4096 bytes.
        let at_limit = vec!["a".repeat(240); 17].join("/");
        assert_eq!(at_limit.len(), MAX_PATH_BYTES);
        assert_eq!(mapped(&Route::default(), &at_limit), at_limit);
        let over = format!("{at_limit}b");
        assert_eq!(
            key_problem(&Route::default(), &over),
            PathProblem::TooLong { len: 4097 }
        );
        // Length counts the normalised path, not the doubled slashes of the key.
        assert!(Route::default().map(&format!("//{at_limit}//")).is_ok());
    }

    #[test]
    fn literal_text_is_checked_after_expansion() {
        // Only unsafe for a top-level key, where {dirname} is empty: caught at map time.
        let r = route("{dirname}..");
        assert_eq!(mapped(&r, "a/b.csv"), "a..");
        assert_eq!(key_problem(&r, "b.csv"), PathProblem::ParentSegment);
    }

    #[test]
    fn error_names_the_key_with_control_characters_escaped() {
        let err = Route::default().map("in\nbox/a\0.csv").unwrap_err();
        let message = err.to_string();
        assert!(message.contains(r#""in\nbox/a\0.csv""#), "{message}");
        assert!(
            !message.contains('\n') && !message.contains('\0'),
            "{message}"
        );
        assert!(message.contains(r"control character '\n'"), "{message}");
    }

    #[test]
    fn route_errors_are_permanent() {
        let err = Route::default().map("..").unwrap_err();
        assert!(!err.is_transient());
    }

    // --- unicode ------------------------------------------------------------------------------

    #[test]
    fn unicode_and_spaces_are_preserved_byte_for_byte() {
        let r = Route::default();
        for key in [
            "données/報告 2024.csv",
            "🚚/📦 shipment.json",
            "e\u{301}/e\u{301}.txt", // decomposed é stays decomposed
            "Ω/\u{202e}txt.exe",     // a format character, not a control character
        ] {
            assert_eq!(mapped(&r, key).as_bytes(), key.as_bytes(), "{key:?}");
        }
        assert_eq!(
            mapped(&route("{basename}"), "données/報告 2024.csv"),
            "報告 2024.csv"
        );
    }

    // --- prefix stripping ---------------------------------------------------------------------

    #[test]
    fn prefix_is_stripped_when_present() {
        let r = Route::new("{key}", Some("incoming/")).unwrap();
        assert_eq!(mapped(&r, "incoming/a/b.csv"), "a/b.csv");
        assert_eq!(r.strip_prefix(), Some("incoming/"));
    }

    #[test]
    fn keys_without_the_prefix_are_mapped_unchanged() {
        let r = Route::new("{key}", Some("incoming/")).unwrap();
        assert_eq!(mapped(&r, "other/a.csv"), "other/a.csv");
        assert_eq!(mapped(&r, "incoming"), "incoming");
    }

    #[test]
    fn prefix_is_stripped_as_plain_text() {
        let r = Route::new("{key}", Some("in")).unwrap();
        assert_eq!(mapped(&r, "incoming/a.csv"), "coming/a.csv");
    }

    #[test]
    fn nothing_left_after_stripping_is_refused() {
        let r = Route::new("out/{key}", Some("incoming/")).unwrap();
        for key in ["incoming/", "incoming//", "incoming/./"] {
            match r.map(key) {
                Err(RouteError::NothingLeftAfterStrip { key: k, prefix }) => {
                    assert_eq!((k.as_str(), prefix.as_str()), (key, "incoming/"));
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
        let message = r.map("incoming/").unwrap_err().to_string();
        assert!(
            message.contains("nothing left after stripping"),
            "{message}"
        );
    }

    #[test]
    fn prefix_stripping_happens_before_placeholders() {
        let r = Route::new("{dirname}", Some("incoming/")).unwrap();
        assert_eq!(mapped(&r, "incoming/a/b/c.csv"), "a/b");
    }

    #[test]
    fn empty_prefix_is_no_prefix() {
        let r = Route::new("{key}", Some("")).unwrap();
        assert_eq!(r, Route::default());
        assert!(matches!(r.map(""), Err(RouteError::EmptyKey { .. })));
    }

    // --- template errors ----------------------------------------------------------------------

    #[test]
    fn unknown_placeholders_are_refused() {
        assert_eq!(
            template_problem("in/{name}"),
            TemplateProblem::UnknownPlaceholder {
                name: "name".into(),
                offset: 3
            }
        );
        assert_eq!(
            template_problem("{}"),
            TemplateProblem::UnknownPlaceholder {
                name: String::new(),
                offset: 0
            }
        );
        // Names are exact.
        assert!(matches!(
            template_problem("{Key}"),
            TemplateProblem::UnknownPlaceholder { .. }
        ));
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        assert_eq!(
            template_problem("{key"),
            TemplateProblem::UnclosedBrace { offset: 0 }
        );
        assert_eq!(
            template_problem("a/{key/{basename}"),
            TemplateProblem::UnclosedBrace { offset: 2 }
        );
        assert_eq!(
            template_problem("{{key}}"),
            TemplateProblem::UnclosedBrace { offset: 0 }
        );
        assert_eq!(
            template_problem("{key}}"),
            TemplateProblem::UnmatchedCloseBrace { offset: 5 }
        );
        assert_eq!(
            template_problem("}{key}"),
            TemplateProblem::UnmatchedCloseBrace { offset: 0 }
        );
    }

    #[test]
    fn templates_without_placeholders_are_refused() {
        assert_eq!(template_problem(""), TemplateProblem::NoPlaceholder);
        assert_eq!(
            template_problem("inbound/file.csv"),
            TemplateProblem::NoPlaceholder
        );
    }

    #[test]
    fn literal_text_that_fails_every_key_is_refused_up_front() {
        let unsafe_literal = |problem| TemplateProblem::UnsafeLiteral { problem };
        assert_eq!(
            template_problem("../{key}"),
            unsafe_literal(PathProblem::ParentSegment)
        );
        assert_eq!(
            template_problem("{dirname}/../{basename}"),
            unsafe_literal(PathProblem::ParentSegment)
        );
        assert_eq!(
            template_problem("in\\{key}"),
            unsafe_literal(PathProblem::Backslash)
        );
        assert_eq!(
            template_problem("in\t{key}"),
            unsafe_literal(PathProblem::ControlCharacter { ch: '\t' })
        );
    }

    #[test]
    fn template_error_names_template_and_problem() {
        let message = Route::new("in/{name}", None).unwrap_err().to_string();
        assert!(message.contains(r#""in/{name}""#), "{message}");
        assert!(message.contains("unknown placeholder {name}"), "{message}");
    }

    #[test]
    fn leading_slash_and_dots_in_the_template_are_normalised() {
        assert_eq!(
            mapped(&route("/./inbound//{key}"), "a.csv"),
            "inbound/a.csv"
        );
    }

    // --- RemotePath ---------------------------------------------------------------------------

    #[test]
    fn remote_path_accessors() {
        let path = RemotePath::parse("inbound/2024/a.csv").unwrap();
        assert_eq!(path.segments(), ["inbound", "2024", "a.csv"]);
        assert_eq!(path.file_name(), "a.csv");
        assert_eq!(path.parent(), ["inbound", "2024"]);
        assert_eq!(path.as_str(), "inbound/2024/a.csv");
        assert_eq!(path.to_string(), "inbound/2024/a.csv");

        let top = RemotePath::parse("a.csv").unwrap();
        assert_eq!(top.file_name(), "a.csv");
        assert!(top.parent().is_empty());
    }

    #[test]
    fn remote_path_parse_uses_the_same_rules() {
        assert_eq!(
            RemotePath::parse("/in//./a.csv/").unwrap().as_str(),
            "in/a.csv"
        );
        for (rel, expected) in [
            ("", PathProblem::Empty),
            ("/", PathProblem::Empty),
            ("in/../a", PathProblem::ParentSegment),
            ("a\0b", PathProblem::ControlCharacter { ch: '\0' }),
            ("a\\b", PathProblem::Backslash),
        ] {
            match RemotePath::parse(rel) {
                Err(RouteError::UnsafePath { path, problem }) => {
                    assert_eq!((path.as_str(), problem), (rel, expected));
                }
                other => panic!("{rel:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn remote_path_from_str() {
        let path: RemotePath = "in/a.csv".parse().unwrap();
        assert_eq!(path, RemotePath::parse("in/a.csv").unwrap());
        assert!("..".parse::<RemotePath>().is_err());
    }

    // --- properties ---------------------------------------------------------------------------

    /// Strings built from pieces that tend to break path handling, mixed with arbitrary text.
    fn hostile_string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => Just("/".to_owned()),
            2 => Just(".".to_owned()),
            2 => Just("..".to_owned()),
            1 => Just("\\".to_owned()),
            1 => Just("\0".to_owned()),
            1 => prop::sample::select(vec!['\n', '\r', '\t', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'])
                .prop_map(String::from),
            1 => prop::sample::select(vec!["報告", "données", "😀", " ", "e\u{301}", "\u{202e}"])
                .prop_map(str::to_owned),
            1 => Just("incoming/".to_owned()),
            3 => "[a-z0-9._-]{1,4}",
            1 => any::<char>().prop_map(String::from),
        ];
        prop_oneof![
            4 => prop::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat()),
            1 => any::<String>(),
        ]
    }

    fn any_route() -> impl Strategy<Value = Route> {
        let template = prop::sample::select(vec![
            "{key}",
            "{basename}",
            "{dirname}",
            "inbound/{dirname}/{basename}",
            "/out/./{key}.done",
            "{dirname}..",
            "{basename}/{dirname}",
        ]);
        let prefix = prop::option::of(prop::sample::select(vec!["incoming/", "in", "/", ".."]));
        (template, prefix).prop_map(|(template, prefix)| {
            Route::new(template, prefix).expect("templates above are valid")
        })
    }

    /// Resolves `.` and `..` lexically, as a careless server or a later `join` might.
    fn lexically_normalised(path: &Path) -> PathBuf {
        let mut out = PathBuf::new();
        for component in path.components() {
            match component {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    }

    fn assert_safe(path: &RemotePath) -> Result<(), TestCaseError> {
        let joined = path.as_str();
        prop_assert!(!joined.starts_with('/'));
        prop_assert!(!path.segments().is_empty());
        prop_assert_eq!(
            joined.split('/').collect::<Vec<_>>(),
            path.segments().to_vec()
        );
        for segment in path.segments() {
            prop_assert!(!segment.is_empty() && segment != "." && segment != "..");
            prop_assert!(segment.len() <= MAX_SEGMENT_BYTES);
        }
        prop_assert!(joined.len() <= MAX_PATH_BYTES);
        prop_assert!(!joined.chars().any(|ch| ch == '\\' || ch.is_control()));

        let base = Path::new("/base");
        let resolved = lexically_normalised(&base.join(joined));
        prop_assert!(
            resolved.starts_with(base) && resolved != base,
            "{:?}",
            resolved
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn mapped_paths_stay_under_the_base(route in any_route(), key in hostile_string()) {
            if let Ok(path) = route.map(&key) {
                assert_safe(&path)?;
                // What comes out parses back unchanged.
                prop_assert_eq!(RemotePath::parse(path.as_str()).ok(), Some(path));
            }
        }

        #[test]
        fn parsed_paths_stay_under_the_base(rel in hostile_string()) {
            if let Ok(path) = RemotePath::parse(&rel) {
                assert_safe(&path)?;
            }
        }

        #[test]
        fn default_route_agrees_with_parse(key in hostile_string()) {
            prop_assert_eq!(Route::default().map(&key).ok(), RemotePath::parse(&key).ok());
        }
    }
}
