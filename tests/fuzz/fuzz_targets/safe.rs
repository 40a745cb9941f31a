// The property both targets check on every remote path they obtain: it stays under
// RemoteDirectory and holds no `..` segment, NUL or other control character, no backslash.
pub fn assert_safe(path: &forward::RemotePath) {
    let s = path.as_str();
    assert!(!s.is_empty() && !s.starts_with('/'), "{s:?}");
    assert!(
        s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."),
        "{s:?}"
    );
    assert!(!s.chars().any(|c| c.is_control() || c == '\\'), "{s:?}");
}
