//! The template language: parsing `{field:argument|filter}` placeholders, and rendering one
//! placeholder from the key's parts and the delivery's inputs.
//!
//! | placeholder | value |
//! |---|---|
//! | `{key}` `{basename}` `{dirname}` | the key after prefix stripping, its last segment, what is before it |
//! | `{stem}` `{ext}` | the basename before / after its last `.` (`ext` is empty without one) |
//! | `{now:FORMAT}` | the delivery time, strftime-like (`%Y%m%d%H%M%S%3f`), in the route's time zone |
//! | `{modified:FORMAT}` | the object's last-modified time, the same way |
//! | `{version:N}` | the first N (1–64, default 8) hex digits of the SHA-256 of the version id, else the ETag |
//!
//! Any placeholder takes `|upper` or `|lower` after it: `{basename|upper}`, `{now:%b|lower}`.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use jiff::fmt::strtime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// The format of `{now}` and `{modified}` without an argument: `20240131235959`.
pub const DEFAULT_TIME_FORMAT: &str = "%Y%m%d%H%M%S";

/// Hex digits of `{version}` without an argument.
pub const DEFAULT_VERSION_DIGITS: usize = 8;

const KNOWN: &str = "{key}, {basename}, {dirname}, {stem}, {ext}, {now:FORMAT}, \
                     {modified:FORMAT}, {version:N}";

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Literal(String),
    Placeholder(Placeholder),
}

/// A placeholder: what it shows and how its text is cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Placeholder {
    pub(super) field: Field,
    case: Option<Case>,
}

/// The values a placeholder can show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Key,
    Basename,
    Dirname,
    Stem,
    Ext,
    /// The delivery time in this format.
    Now(String),
    /// The object's last-modified time in this format.
    Modified(String),
    /// This many hex digits of the version's hash.
    Version(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Upper,
    Lower,
}

/// What rendering a placeholder needs from outside the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The delivery time (`{now}`).
    Now,
    /// The object's last-modified time (`{modified}`).
    Modified,
    /// The object's version id or ETag (`{version}`).
    Version,
}

impl Input {
    /// The placeholder that needs it and what it is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Input::Now => "{now} needs the delivery time",
            Input::Modified => "{modified} needs the object's last-modified time",
            Input::Version => "{version} needs the object's version id or ETag",
        }
    }
}

/// The values of one delivery that placeholders draw on.
pub(super) struct Values<'a> {
    pub whole: &'a str,
    pub basename: &'a str,
    pub dirname: &'a str,
    pub now: Option<SystemTime>,
    pub modified: Option<SystemTime>,
    /// The version id, else the ETag.
    pub version: Option<&'a str>,
    pub zone: &'a TimeZone,
}

/// Why a placeholder could not be rendered for one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RenderProblem {
    Missing(Input),
    Time {
        field: &'static str,
        problem: String,
    },
}

impl Placeholder {
    /// Its text for one delivery.
    pub(super) fn render<'a>(&self, v: &Values<'a>) -> Result<Cow<'a, str>, RenderProblem> {
        let text: Cow<'a, str> = match &self.field {
            Field::Key => v.whole.into(),
            Field::Basename => v.basename.into(),
            Field::Dirname => v.dirname.into(),
            Field::Stem => split_ext(v.basename).0.into(),
            Field::Ext => split_ext(v.basename).1.into(),
            Field::Now(format) => {
                let at = v.now.ok_or(RenderProblem::Missing(Input::Now))?;
                format_time("now", format, at, v.zone)?.into()
            }
            Field::Modified(format) => {
                let at = v.modified.ok_or(RenderProblem::Missing(Input::Modified))?;
                format_time("modified", format, at, v.zone)?.into()
            }
            Field::Version(digits) => {
                let version = v.version.ok_or(RenderProblem::Missing(Input::Version))?;
                short_hash(version, *digits).into()
            }
        };
        Ok(match self.case {
            None => text,
            Some(Case::Upper) => text.to_uppercase().into(),
            Some(Case::Lower) => text.to_lowercase().into(),
        })
    }

    /// A stand-in for checking the template's literal text: key parts as `x`, times as a fixed
    /// instant formatted (so a format's own literal text is checked too).
    pub(super) fn probe(&self) -> Result<String, TemplateProblem> {
        let probe_values = Values {
            whole: "x",
            basename: "x",
            dirname: "x",
            now: Some(SystemTime::UNIX_EPOCH),
            modified: Some(SystemTime::UNIX_EPOCH),
            version: Some("x"),
            zone: &TimeZone::UTC,
        };
        self.render(&probe_values)
            .map(Cow::into_owned)
            .map_err(|problem| match problem {
                RenderProblem::Time { field, problem } => TemplateProblem::BadTimeFormat {
                    field,
                    format: match &self.field {
                        Field::Now(f) | Field::Modified(f) => f.clone(),
                        _ => String::new(),
                    },
                    problem,
                },
                RenderProblem::Missing(_) => unreachable!("every input is given"),
            })
    }

    /// The input it needs beyond the key, if any.
    pub(super) fn input(&self) -> Option<Input> {
        match self.field {
            Field::Now(_) => Some(Input::Now),
            Field::Modified(_) => Some(Input::Modified),
            Field::Version(_) => Some(Input::Version),
            _ => None,
        }
    }
}

/// `name.csv` → (`name`, `csv`); a name without a `.` (or with only a leading one) has no extension.
fn split_ext(basename: &str) -> (&str, &str) {
    match basename.rfind('.') {
        Some(dot) if dot > 0 => (&basename[..dot], &basename[dot + 1..]),
        _ => (basename, ""),
    }
}

fn format_time(
    field: &'static str,
    format: &str,
    at: SystemTime,
    zone: &TimeZone,
) -> Result<String, RenderProblem> {
    let time_problem = |problem: String| RenderProblem::Time { field, problem };
    let at = Timestamp::try_from(at).map_err(|e| time_problem(e.to_string()))?;
    strtime::format(format, &at.to_zoned_datetime(zone.clone()))
        .map_err(|e| time_problem(e.to_string()))
}

/// The first `digits` hex digits of the SHA-256 of `version`.
fn short_hash(version: &str, digits: usize) -> String {
    let hex: String = Sha256::digest(version.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex[..digits.min(hex.len())].to_owned()
}

/// Splits a template into literal text and placeholders.
pub(super) fn parse(template: &str) -> Result<Vec<Part>, TemplateProblem> {
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
        let inner_start = open + 1;
        let close = match template[inner_start..].find(['{', '}']) {
            Some(len) if template[inner_start + len..].starts_with('}') => inner_start + len,
            // End of template, or another '{' before this one is closed.
            _ => return Err(TemplateProblem::UnclosedBrace { offset: open }),
        };
        parts.push(Part::Placeholder(placeholder(
            &template[inner_start..close],
            open,
        )?));
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

/// `name[:argument][|filter]...`, the text between a placeholder's braces.
fn placeholder(inner: &str, offset: usize) -> Result<Placeholder, TemplateProblem> {
    let mut filters = inner.split('|');
    let head = filters.next().unwrap_or_default();
    let (name, argument) = match head.split_once(':') {
        Some((name, argument)) => (name, Some(argument)),
        None => (head, None),
    };
    let bad_argument = |problem: &str| TemplateProblem::BadArgument {
        name: name.to_owned(),
        offset,
        problem: problem.to_owned(),
    };
    let time_format = |argument: Option<&str>| match argument {
        None => Ok(DEFAULT_TIME_FORMAT.to_owned()),
        Some("") => Err(bad_argument(
            "the format after ':' is empty (leave out the ':' for the default %Y%m%d%H%M%S)",
        )),
        Some(format) => Ok(format.to_owned()),
    };
    let field = match name {
        "key" | "basename" | "dirname" | "stem" | "ext" if argument.is_some() => {
            return Err(bad_argument("takes no argument after ':'"))
        }
        "key" => Field::Key,
        "basename" => Field::Basename,
        "dirname" => Field::Dirname,
        "stem" => Field::Stem,
        "ext" => Field::Ext,
        "now" => Field::Now(time_format(argument)?),
        "modified" => Field::Modified(time_format(argument)?),
        "version" => Field::Version(match argument {
            None => DEFAULT_VERSION_DIGITS,
            Some(n) => n
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| bad_argument("the number of hex digits must be from 1 to 64"))?,
        }),
        _ => {
            return Err(TemplateProblem::UnknownPlaceholder {
                name: name.to_owned(),
                offset,
            })
        }
    };
    let mut case = None;
    for filter in filters {
        let wanted = match filter {
            "upper" => Case::Upper,
            "lower" => Case::Lower,
            _ => {
                return Err(TemplateProblem::UnknownFilter {
                    filter: filter.to_owned(),
                    offset,
                })
            }
        };
        if case.replace(wanted).is_some() {
            return Err(TemplateProblem::UnknownFilter {
                filter: format!("{filter} (only one of upper, lower)"),
                offset,
            });
        }
    }
    Ok(Placeholder { field, case })
}

/// What is wrong with a route template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateProblem {
    /// A `{name}` that is not a known placeholder; `offset` is the byte index of its `{`.
    UnknownPlaceholder { name: String, offset: usize },
    /// A `|filter` that is not `upper` or `lower`, or a second one.
    UnknownFilter { filter: String, offset: usize },
    /// The argument after `:` does not suit the placeholder.
    BadArgument {
        name: String,
        offset: usize,
        problem: String,
    },
    /// A `{now:…}` or `{modified:…}` format that cannot be formatted.
    BadTimeFormat {
        field: &'static str,
        format: String,
        problem: String,
    },
    /// A `{` with no `}` before the end or before the next `{`.
    UnclosedBrace { offset: usize },
    /// A `}` with no `{` before it.
    UnmatchedCloseBrace { offset: usize },
    /// Only literal text: every key would map to the same path.
    NoPlaceholder,
    /// The literal text alone breaks a path rule, so no key could ever map.
    UnsafeLiteral { problem: super::PathProblem },
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateProblem::UnknownPlaceholder { name, offset } => write!(
                f,
                "unknown placeholder {{{name}}} at byte {offset} (known: {KNOWN})"
            ),
            TemplateProblem::UnknownFilter { filter, offset } => write!(
                f,
                "placeholder at byte {offset}: unknown filter |{filter} (known: |upper, |lower)"
            ),
            TemplateProblem::BadArgument {
                name,
                offset,
                problem,
            } => write!(f, "placeholder {{{name}}} at byte {offset}: {problem}"),
            TemplateProblem::BadTimeFormat {
                field,
                format,
                problem,
            } => write!(f, "{{{field}}} format {format:?} cannot be used: {problem}"),
            TemplateProblem::UnclosedBrace { offset } => {
                write!(f, "'{{' at byte {offset} is not closed")
            }
            TemplateProblem::UnmatchedCloseBrace { offset } => {
                write!(f, "'}}' at byte {offset} has no matching '{{'")
            }
            TemplateProblem::NoPlaceholder => {
                write!(f, "no placeholder; use at least one of {KNOWN}")
            }
            TemplateProblem::UnsafeLiteral { problem } => {
                write!(f, "literal text makes every path unsafe: {problem}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::route::{
        Input, Naming, PathProblem, Route, RouteError, RouteInputs, TemplateProblem,
    };

    /// 2024-02-29T23:59:58.123456789Z.
    fn leap_day() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(1_709_251_198, 123_456_789)
    }

    fn all_inputs() -> RouteInputs<'static> {
        RouteInputs {
            now: Some(leap_day()),
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)),
            version_id: Some("abc"),
            etag: Some("0123456789abcdef"),
        }
    }

    fn render(template: &str, key: &str) -> String {
        let route = Route::new(template, None).expect("valid template");
        route
            .render(key, &all_inputs())
            .expect("renders")
            .to_string()
    }

    fn template_problem(template: &str) -> TemplateProblem {
        match Route::new(template, None) {
            Err(RouteError::Template { problem, .. }) => problem,
            other => panic!("expected a template error for {template:?}, got {other:?}"),
        }
    }

    #[test]
    fn stem_and_ext_split_the_basename_at_its_last_dot() {
        assert_eq!(
            render("{stem}_x.{ext}", "in/report.final.csv"),
            "report.final_x.csv"
        );
        // No extension: the whole name is the stem, a leading dot is not an extension.
        assert_eq!(render("{stem}-{ext}", "in/README"), "README-");
        assert_eq!(render("{stem}-{ext}", ".profile"), ".profile-");
    }

    #[test]
    fn now_and_modified_are_formatted_strftime_like() {
        assert_eq!(
            render("{now:%Y%m%d%H%M%S%3f}_{basename}", "a.csv"),
            "20240229235958123_a.csv"
        );
        assert_eq!(
            render("{modified:%Y-%m-%d}/{key}", "a.csv"),
            "1970-01-02/a.csv"
        );
        // Without a format: DEFAULT_TIME_FORMAT.
        assert_eq!(render("{now}_{key}", "a.csv"), "20240229235958_a.csv");
    }

    #[test]
    fn a_time_format_may_make_directories_but_not_escape() {
        assert_eq!(render("{now:%Y/%m}/{basename}", "x/a.csv"), "2024/02/a.csv");
        assert_eq!(
            template_problem("{now:..}/{key}"),
            TemplateProblem::UnsafeLiteral {
                problem: PathProblem::ParentSegment
            }
        );
        assert_eq!(
            template_problem("{now:%Y\\%m}{key}"),
            TemplateProblem::UnsafeLiteral {
                problem: PathProblem::Backslash
            }
        );
    }

    #[test]
    fn bad_time_formats_name_the_field_and_format() {
        let problem = template_problem("{now:%Y%!}_{key}");
        assert!(
            matches!(&problem, TemplateProblem::BadTimeFormat { field: "now", format, .. } if format == "%Y%!"),
            "{problem:?}"
        );
        let message = Route::new("{modified:%Q%}", None).unwrap_err().to_string();
        assert!(message.contains("{modified} format \"%Q%\""), "{message}");
        assert!(matches!(
            template_problem("{now:}{key}"),
            TemplateProblem::BadArgument { name, .. } if name == "now"
        ));
    }

    #[test]
    fn version_is_a_short_hash_of_the_version_id_else_the_etag() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.
        assert_eq!(render("{version:8}_{key}", "a.csv"), "ba7816bf_a.csv");
        assert_eq!(render("{version}_{key}", "a.csv"), "ba7816bf_a.csv");
        assert_eq!(
            render("{version:64}", "a.csv"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let route = Route::new("{version:4}_{key}", None).unwrap();
        let etag_only = RouteInputs {
            etag: Some("abc"),
            ..RouteInputs::default()
        };
        assert_eq!(
            route.render("a.csv", &etag_only).unwrap().as_str(),
            "ba78_a.csv"
        );
        for bad in ["{version:0}", "{version:65}", "{version:x}", "{version:}"] {
            assert!(
                matches!(template_problem(bad), TemplateProblem::BadArgument { ref name, .. } if name == "version"),
                "{bad}"
            );
        }
    }

    #[test]
    fn case_filters_apply_to_their_placeholder_only() {
        assert_eq!(render("in/{basename|upper}", "x/data.csv"), "in/DATA.CSV");
        assert_eq!(render("{stem|lower}.TXT", "x/Data.CSV"), "data.TXT");
        assert_eq!(render("{now:%b|upper}-{key}", "a"), "FEB-a");
        assert_eq!(
            template_problem("{basename|title}"),
            TemplateProblem::UnknownFilter {
                filter: "title".into(),
                offset: 0
            }
        );
        assert!(matches!(
            template_problem("{basename|upper|lower}"),
            TemplateProblem::UnknownFilter { .. }
        ));
    }

    #[test]
    fn key_parts_take_no_argument() {
        assert!(matches!(
            template_problem("in/{key:8}"),
            TemplateProblem::BadArgument { name, offset: 3, .. } if name == "key"
        ));
    }

    #[test]
    fn a_missing_input_is_named() {
        let route = Route::new("{modified:%Y}/{version}/{key}", None).unwrap();
        assert!(route.uses(Input::Modified) && route.uses(Input::Version));
        assert!(!route.uses(Input::Now));
        match route.map("a.csv") {
            Err(RouteError::MissingInput { input, .. }) => assert_eq!(input, Input::Modified),
            other => panic!("{other:?}"),
        }
        let message = route
            .render(
                "a.csv",
                &RouteInputs {
                    modified: Some(leap_day()),
                    ..RouteInputs::default()
                },
            )
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("{version} needs the object's version id or ETag"),
            "{message}"
        );
        let now_only = Route::new("{now}_{key}", None).unwrap();
        assert!(now_only.map("a.csv").is_ok());
        assert!(matches!(
            now_only.render("a.csv", &RouteInputs::default()),
            Err(RouteError::MissingInput {
                input: Input::Now,
                ..
            })
        ));
    }

    #[test]
    fn a_file_name_over_max_name_length_is_refused_naming_it() {
        let obj = serde_json::json!({ "MaxNameLength": 8 });
        let naming = Naming::from_json(obj.as_object().unwrap()).unwrap();
        let route = Route::new("dir-longer-than-eight/{basename}", None)
            .unwrap()
            .with_naming(&naming);
        // Directories do not count, characters (not bytes) do.
        assert!(route.map("x/éééé.csv").is_ok());
        let err = route.map("x/abcde.csv").unwrap_err();
        assert!(!err.is_transient());
        match &err {
            RouteError::NameTooLong {
                name, chars, max, ..
            } => assert_eq!((name.as_str(), *chars, *max), ("abcde.csv", 9, 8)),
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(
            message
                .contains("\"abcde.csv\" of 9 characters, over the partner's MaxNameLength of 8"),
            "{message}"
        );
    }
}
