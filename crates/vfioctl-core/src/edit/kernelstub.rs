//! Editing `/etc/kernelstub/configuration` (Pop!_OS): a JSON object whose `user` section
//! holds the kernel parameters kernelstub writes into the boot entry, as an array of
//! strings in `user.kernel_options`.
//!
//! Only that array is rewritten, in the layout it had (one string per line at the same
//! indentation, or on one line); the rest of the file stays byte for byte. When the `user`
//! section or its `kernel_options` is missing, the whole file is written again with
//! 4-space indentation (keys in alphabetical order), `user` starting as a copy of
//! `default`, which is how kernelstub starts it.

use serde_json::{Map, Value};

use super::text::splice;
use super::{cmdline, CmdlineEdit, EditError};

fn err(reason: impl Into<String>) -> EditError {
    EditError::Unsupported { what: "/etc/kernelstub/configuration".into(), reason: reason.into() }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The end of the JSON value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => super::text::close_double(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut k = i;
            while k < b.len() {
                match b[k] {
                    b'"' => {
                        k = value_end(b, k)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(k + 1);
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            None
        }
        _ => {
            let k = b[i..].iter().position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace());
            Some(k.map_or(b.len(), |k| i + k))
        }
    }
}

/// An object member: key (decoded), where the key starts, the value's span.
type Member = (String, usize, (usize, usize));

/// The members of the object at `i`.
fn members(text: &str, i: usize) -> Option<Vec<Member>> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut k = skip_ws(b, i + 1);
    while b.get(k) == Some(&b'"') {
        let ke = value_end(b, k)?;
        let key: String = serde_json::from_str(&text[k..ke]).ok()?;
        let c = skip_ws(b, ke);
        if b.get(c) != Some(&b':') {
            return None;
        }
        let vs = skip_ws(b, c + 1);
        let ve = value_end(b, vs)?;
        out.push((key, k, (vs, ve)));
        k = skip_ws(b, ve);
        if b.get(k) == Some(&b',') {
            k = skip_ws(b, k + 1);
        }
    }
    Some(out)
}

/// The leading whitespace of the line holding byte `i`.
fn indent_at(text: &str, i: usize) -> &str {
    let start = text[..i].rfind('\n').map_or(0, |p| p + 1);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// The array `new` written like the array `old` (found at `at` in `text`).
fn render(text: &str, at: usize, key_at: usize, user_at: usize, old: &str, new: &[String]) -> String {
    let items: Vec<String> = new.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    if items.is_empty() {
        return "[]".into();
    }
    let inner = old.get(1..old.len().saturating_sub(1)).unwrap_or("");
    if !inner.contains('\n') && !inner.trim().is_empty() {
        return format!("[{}]", items.join(", "));
    }
    let key_indent = indent_at(text, key_at);
    let close = if old.ends_with(']') { indent_at(text, at + old.len() - 1) } else { key_indent };
    let close = if close.len() < key_indent.len() || !old.trim_end_matches(']').ends_with([' ', '\t', '\n']) {
        key_indent
    } else {
        close
    };
    let elem = match inner.find(|c: char| !c.is_whitespace()) {
        Some(p) if inner[..p].contains('\n') => indent_at(text, at + 1 + p).to_string(),
        _ => {
            let unit = key_indent.len().saturating_sub(indent_at(text, user_at).len());
            format!("{key_indent}{}", " ".repeat(if unit == 0 { 4 } else { unit }))
        }
    };
    format!("[\n{elem}{}\n{close}]", items.join(&format!(",\n{elem}")))
}

fn pretty(v: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    let mut s = String::from_utf8(buf).unwrap_or_default();
    s.push('\n');
    s
}

/// The kernel parameters kernelstub writes into the boot entry: `user.kernel_options`
/// (the `default` section's while there is no `user` one, as kernelstub starts it).
pub fn cmdline(text: &str) -> Result<String, EditError> {
    let doc: Value = serde_json::from_str(text).map_err(|x| err(format!("not valid JSON: {x}")))?;
    let section = ["user", "default"].into_iter().find_map(|s| doc.get(s).and_then(|u| u.get("kernel_options")));
    match section {
        None => Ok(String::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(" "))
            .ok_or_else(|| err("kernel_options holds something other than strings")),
        Some(_) => Err(err("kernel_options is not an array")),
    }
}

/// Applies the kernel command line edit to `user.kernel_options`. `None` (no file yet) is
/// an error: kernelstub writes its configuration on its first run.
pub fn edit(current: Option<&str>, e: &CmdlineEdit) -> Result<String, EditError> {
    let text = current.ok_or_else(|| err("the file does not exist: run kernelstub once to create it"))?;
    let mut doc: Value = serde_json::from_str(text).map_err(|x| err(format!("not valid JSON: {x}")))?;
    let root = doc.as_object_mut().ok_or_else(|| err("not a JSON object"))?;
    let old: Vec<String> = match root.get("user").and_then(|u| u.get("kernel_options")) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| err("user.kernel_options holds something other than strings"))?,
        Some(_) => return Err(err("user.kernel_options is not an array")),
        None => Vec::new(),
    };
    let joined = old.join(" ");
    let new = cmdline::split_tokens(&super::text::apply(&joined, e, false, "/etc/kernelstub/configuration")?);
    let present = root.get("user").and_then(|u| u.get("kernel_options")).is_some();
    if present && new == cmdline::split_tokens(&joined) {
        return Ok(text.to_string());
    }
    if present {
        let start = skip_ws(text.as_bytes(), 0);
        let user = members(text, start).and_then(|m| m.into_iter().rfind(|(k, _, _)| k == "user"));
        if let Some((_, user_at, (us, _))) = user {
            if let Some((_, key_at, (a, b))) =
                members(text, us).and_then(|m| m.into_iter().rfind(|(k, _, _)| k == "kernel_options"))
            {
                let array = render(text, a, key_at, user_at, &text[a..b], &new);
                return Ok(splice(text, vec![(a, b, array)]));
            }
        }
    }
    // Rewrite the whole file.
    let default = root.get("default").cloned();
    let user = root.entry("user").or_insert_with(|| default.unwrap_or_else(|| Value::Object(Map::new())));
    let Some(user) = user.as_object_mut() else { return Err(err("user is not an object")) };
    user.insert("kernel_options".into(), Value::Array(new.into_iter().map(Value::String).collect()));
    Ok(pretty(&doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::e;

    const POP: &str = r#"{
  "default": {
    "kernel_options": [
      "quiet",
      "splash"
    ],
    "esp_path": "/boot/efi",
    "setup_loader": false,
    "manage_mode": false,
    "force_update": false,
    "live_mode": false,
    "config_rev":3
  },
  "user": {
    "kernel_options": [
      "quiet",
      "loglevel=0",
      "systemd.show_status=false",
      "splash"
    ],
    "esp_path": "/boot/efi",
    "setup_loader": false,
    "manage_mode": true,
    "force_update": false,
    "live_mode": false,
    "config_rev":3
  }
}
"#;

    fn twice(text: &str, ed: &CmdlineEdit) -> String {
        fuzzgen::idempotent(edit, Some(text), ed)
    }

    #[test]
    fn pop_os_configuration() {
        let out = twice(POP, &e(&["amd_iommu=on", "iommu=pt"], &["loglevel=0"]));
        assert_eq!(
            out,
            POP.replace(
                "      \"loglevel=0\",\n      \"systemd.show_status=false\",\n      \"splash\"\n",
                "      \"systemd.show_status=false\",\n      \"splash\",\n      \"amd_iommu=on\",\n      \"iommu=pt\"\n"
            )
        );
        assert_eq!(twice(POP, &e(&["quiet"], &[])), POP);
    }

    #[test]
    fn one_line_empty_and_missing_arrays() {
        let text = "{\"user\": {\"kernel_options\": [\"quiet\", \"splash\"], \"x\": 1}}";
        assert_eq!(
            twice(text, &e(&["iommu=pt"], &[])),
            "{\"user\": {\"kernel_options\": [\"quiet\", \"splash\", \"iommu=pt\"], \"x\": 1}}"
        );
        let text = "{\n    \"user\": {\n        \"kernel_options\": [],\n        \"x\": 1\n    }\n}\n";
        assert_eq!(
            twice(text, &e(&["iommu=pt"], &[])),
            "{\n    \"user\": {\n        \"kernel_options\": [\n            \"iommu=pt\"\n        ],\n        \"x\": 1\n    }\n}\n"
        );
        let text = "{\"default\": {\"kernel_options\": [\"quiet\"], \"esp_path\": \"/boot/efi\"}}";
        assert_eq!(
            twice(text, &e(&["iommu=pt"], &[])),
            "{\n    \"default\": {\n        \"esp_path\": \"/boot/efi\",\n        \"kernel_options\": [\n            \"quiet\"\n        ]\n    },\n    \"user\": {\n        \"esp_path\": \"/boot/efi\",\n        \"kernel_options\": [\n            \"iommu=pt\"\n        ]\n    }\n}\n"
        );
        assert!(edit(Some("{\"user\": {\"kernel_options\": \"quiet\"}}"), &e(&["x"], &[])).is_err());
        assert!(edit(Some("not json"), &e(&["x"], &[])).is_err());
        assert!(edit(None, &e(&["x"], &[])).is_err());
    }

    #[test]
    fn never_panics() {
        let words = ["{\"user\":{\"kernel_options\":[", "\"quiet\"", "]}}", "[", "]", "\"", ",", "{", "}", "\\u00e9"];
        for s in fuzzgen::strings(13, 3000, 16, &words) {
            for ed in fuzzgen::edits() {
                if let Ok(once) = edit(Some(&s), &ed) {
                    assert_eq!(edit(Some(&once), &ed).as_deref(), Ok(once.as_str()), "{s:?} {ed:?}");
                }
            }
        }
    }
}
