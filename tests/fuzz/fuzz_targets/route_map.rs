//! Any key through the remote-path templates the function offers (and a few prefixes): the mapped
//! path is always safe, and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "safe.rs"]
mod safe;

const TEMPLATES: &[&str] = &[
    "{key}",
    "{basename}",
    "{dirname}",
    "inbound/{dirname}/{basename}",
    "/out/./{key}.done",
    "{dirname}..",
];
const PREFIXES: &[Option<&str>] = &[None, Some("incoming/"), Some("in"), Some("/"), Some("..")];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(key) = std::str::from_utf8(rest) else {
        return;
    };
    let template = TEMPLATES[choice as usize % TEMPLATES.len()];
    let prefix = PREFIXES[(choice as usize / TEMPLATES.len()) % PREFIXES.len()];
    let route = forward::Route::new(template, prefix).expect("valid template");
    if let Ok(path) = route.map(key) {
        safe::assert_safe(&path);
        assert_eq!(forward::RemotePath::parse(path.as_str()).ok(), Some(path));
    }
});
