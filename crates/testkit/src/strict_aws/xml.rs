//! Just enough XML for moto's EC2 answers: elements found by counting nested tags (moto writes
//! no CDATA and no `>` inside attribute values), texts, and in-place edits.

use std::ops::Range;

/// An element of an XML text: its byte ranges with and without its tags.
pub(super) struct Elem {
    pub name: String,
    pub outer: Range<usize>,
    pub inner: Range<usize>,
}

/// The element whose open tag starts at byte `lt`, found by counting nested tags (enough for the
/// XML moto writes: no CDATA, no `>` inside attribute values).
pub(super) fn element_at(xml: &str, lt: usize) -> Option<Elem> {
    let mut depth = 0usize;
    let (mut name, mut open_end) = (String::new(), 0);
    let mut i = lt;
    while let Some(off) = xml[i..].find('<') {
        let start = i + off;
        let end = start + xml[start..].find('>')? + 1;
        let tag = &xml[start + 1..end - 1];
        i = end;
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if tag.starts_with('/') {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(Elem {
                    name,
                    outer: lt..end,
                    inner: open_end..start,
                });
            }
        } else if tag.ends_with('/') {
            if depth == 0 {
                let name = tag
                    .trim_end_matches('/')
                    .split_whitespace()
                    .next()?
                    .to_owned();
                return Some(Elem {
                    name,
                    outer: lt..end,
                    inner: end..end,
                });
            }
        } else {
            if depth == 0 {
                name = tag.split_whitespace().next()?.to_owned();
                open_end = end;
            }
            depth += 1;
        }
    }
    None
}

/// The first element named `name` anywhere in `xml`.
pub(super) fn find(xml: &str, name: &str) -> Option<Elem> {
    let mut from = 0;
    while let Some(off) = xml[from..].find(&format!("<{name}")) {
        let lt = from + off;
        let next = xml.as_bytes().get(lt + 1 + name.len()).copied();
        if matches!(next, Some(b'>' | b'/' | b' ')) {
            return element_at(xml, lt);
        }
        from = lt + 1;
    }
    None
}

/// The direct children of `parent`.
pub(super) fn children(xml: &str, parent: &Elem) -> Vec<Elem> {
    let mut out = Vec::new();
    let mut i = parent.inner.start;
    while let Some(off) = xml[i..parent.inner.end].find('<') {
        match element_at(xml, i + off) {
            Some(e) if e.outer.end <= parent.inner.end => {
                i = e.outer.end;
                out.push(e);
            }
            _ => break,
        }
    }
    out
}

/// The direct child of `parent` named `name`.
pub(super) fn child(xml: &str, parent: &Elem, name: &str) -> Option<Elem> {
    children(xml, parent).into_iter().find(|e| e.name == name)
}

/// The text of the first element named `tag`.
pub(super) fn first_text(xml: &str, tag: &str) -> Option<String> {
    find(xml, tag).map(|e| xml[e.inner].to_owned())
}

/// The texts of every `<tag>…</tag>` (flat search).
pub(super) fn texts(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(t, _)| t.trim().to_owned()))
        .collect()
}

/// `xml` with each range replaced (ranges must not overlap).
pub(super) fn splice(xml: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = xml.to_owned();
    for (r, text) in edits {
        out.replace_range(r, &text);
    }
    out
}

/// The value of the tag `key` in an EC2 item's `tagSet`.
pub(super) fn tag_value(xml: &str, item: &Elem, key: &str) -> Option<String> {
    let set = child(xml, item, "tagSet")?;
    children(xml, &set).into_iter().find_map(|t| {
        let k = child(xml, &t, "key")?;
        (xml[k.inner.clone()] == *key)
            .then(|| child(xml, &t, "value").map(|v| xml[v.inner].to_owned()))
            .flatten()
    })
}
