//! Any key through the remote-path templates the function offers (and a few prefixes, partner
//! time zones and name limits): the mapped path is always safe, within the limit, and parses back
//! to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "safe.rs"]
mod safe;

const TEMPLATES: &[&str] = forward::route::EXAMPLE_TEMPLATES;
/// Partner naming rules the route is put under.
const NAMINGS: &[&str] = &[
    "{}",
    r#"{"TimeZone": "America/Denver", "MaxNameLength": 24}"#,
    r#"{"TimeZone": "Pacific/Chatham", "RemotePathTemplate": "{stem|upper}_{version:4}.{ext}"}"#,
];
const PREFIXES: &[Option<&str>] = &[None, Some("incoming/"), Some("in"), Some("/"), Some("..")];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let template = TEMPLATES[choice as usize % TEMPLATES.len()];
    let prefix = PREFIXES[(choice as usize / TEMPLATES.len()) % PREFIXES.len()];
    let Some((&second, rest)) = rest.split_first() else {
        return;
    };
    let Ok(key) = std::str::from_utf8(rest) else {
        return;
    };
    let naming: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(NAMINGS[second as usize % NAMINGS.len()]).expect("valid JSON");
    let naming = forward::route::Naming::from_json(&naming).expect("valid naming");
    let route = forward::Route::new(template, prefix)
        .expect("valid template")
        .with_naming(&naming);
    // Times from the key's length and the choice bytes: from 1970 to about 2106.
    let at = |n: u64| std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(n);
    let inputs = forward::RouteInputs {
        now: Some(at(u64::from(choice) * 16_777_259 + key.len() as u64)),
        modified: Some(at(u64::from(second) * 16_777_259)),
        version_id: Some(key),
        etag: None,
    };
    if let Ok(path) = route.render(key, &inputs) {
        safe::assert_safe(&path);
        if let Some(max) = route.max_name_length() {
            assert!(path.file_name().chars().count() <= max);
        }
        assert_eq!(forward::RemotePath::parse(path.as_str()).ok(), Some(path));
    }
});
