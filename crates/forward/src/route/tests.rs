//! Route and RemotePath: placeholders, normalisation, rejections, properties.

use super::*;
use proptest::prelude::*;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

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
    let template = prop::sample::select(EXAMPLE_TEMPLATES);
    let prefix = prop::option::of(prop::sample::select(vec!["incoming/", "in", "/", ".."]));
    let zone = prop::option::of(prop::sample::select(vec![
        "America/Denver",
        "Asia/Kolkata",
        "Pacific/Chatham",
    ]));
    let max = prop::option::of(1usize..=MAX_SEGMENT_BYTES);
    (template, prefix, zone, max).prop_map(|(template, prefix, zone, max)| {
        let mut naming = serde_json::Map::new();
        if let Some(zone) = zone {
            naming.insert("TimeZone".into(), zone.into());
        }
        if let Some(max) = max {
            naming.insert("MaxNameLength".into(), max.into());
        }
        Route::new(template, prefix)
            .expect("templates above are valid")
            .with_naming(&Naming::from_json(&naming).expect("valid naming"))
    })
}

type Inputs = (Option<SystemTime>, Option<SystemTime>, Option<String>);

/// Any instants from 1900 to 2200 and any version id (hostile too), each possibly missing.
fn any_inputs() -> impl Strategy<Value = Inputs> {
    let instant = (-2_208_988_800i64..7_258_118_400, 0u32..1_000_000_000).prop_map(|(s, n)| {
        let epoch = SystemTime::UNIX_EPOCH;
        if s >= 0 {
            epoch + Duration::new(s as u64, n)
        } else {
            epoch - Duration::new(s.unsigned_abs(), n)
        }
    });
    (
        prop::option::of(instant.clone()),
        prop::option::of(instant),
        prop::option::of(hostile_string()),
    )
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
    fn mapped_paths_stay_under_the_base(
        route in any_route(),
        key in hostile_string(),
        (now, modified, version) in any_inputs(),
    ) {
        let inputs = RouteInputs { now, modified, version_id: version.as_deref(), etag: None };
        if let Ok(path) = route.render(&key, &inputs) {
            assert_safe(&path)?;
            if let Some(max) = route.max_name_length() {
                prop_assert!(path.file_name().chars().count() <= max);
            }
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
