//! YAML for `kubectl apply -f`, written from JSON values.
//!
//! Block style, keys in the order of the value (sorted, as serde_json keeps them), a string
//! left plain only when no YAML 1.1 or 1.2 reader could take it for anything but a string
//! (`kubectl` reads YAML 1.1, where `on`, `no` and `y` are booleans); every other string is
//! double-quoted with JSON's escapes, which are also YAML's. Numbers, booleans and null are
//! written as JSON writes them. Empty maps and lists are `{}` and `[]`.
//!
//! Why not a crate: `serde_yaml` is archived (RUSTSEC-2024-0320) and `serde_yml` was found
//! unsound (RUSTSEC-2025-0068); writing is the only half needed, and it is this file.

use serde_json::Value;

/// The value as a YAML document (no `---`), ending in a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

/// A map's entries at `depth` spaces.
fn map(out: &mut String, m: &serde_json::Map<String, Value>, depth: usize) {
    for (k, v) in m {
        indent(out, depth);
        out.push_str(&string(k));
        out.push(':');
        value_after_key(out, v, depth);
    }
}

/// What follows `key:`: a scalar on the same line, or a block on the next ones. Lists under
/// a key start at the key's own indentation, as kubectl writes them.
fn value_after_key(out: &mut String, v: &Value, depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map(out, m, depth + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(out, a, depth);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// A list's items at `depth` spaces: `- scalar`, or `- key: …` with the map's other keys
/// under the first one.
fn seq(out: &mut String, a: &[Value], depth: usize) {
    for v in a {
        indent(out, depth);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                for (i, (k, item)) in m.iter().enumerate() {
                    if i > 0 {
                        indent(out, depth + 2);
                    }
                    out.push_str(&string(k));
                    out.push(':');
                    value_after_key(out, item, depth + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                seq(out, inner, depth + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // null, booleans and numbers: JSON's text is YAML's.
        other => other.to_string(),
    }
}

/// YAML 1.1 words that are not strings to some reader (booleans, null).
const SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"];

/// A string, plain when that is unambiguous, else double-quoted.
fn string(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        // JSON's escapes (\" \\ \n \t \uXXXX …) are valid in YAML's double-quoted style.
        Value::String(s.to_string()).to_string()
    }
}

/// A plain scalar that reads back as this string in YAML 1.1 and 1.2: starts with a
/// letter, holds only letters, digits and `_ . / -`, and is no boolean or null word. (So
/// `16Gi`, `1002:66AF` and `host passthrough` are quoted; `host-passthrough` is not.)
fn plain_ok(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else { return false };
    first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !SPECIAL.iter().any(|w| w.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_style_with_lists_at_the_keys_indentation() {
        let v = json!({
            "apiVersion": "kubevirt.io/v1",
            "spec": {"gpus": [{"deviceName": "vfioctl.io/1002_66AF", "name": "gpu-0d-00-0"}],
                     "empty": {}, "none": [], "n": 8191, "b": false, "list": ["a", 1, ["x"]]}
        });
        let want = r#"apiVersion: kubevirt.io/v1
spec:
  b: false
  empty: {}
  gpus:
  - deviceName: vfioctl.io/1002_66AF
    name: gpu-0d-00-0
  list:
  - a
  - 1
  -
    - x
  "n": 8191
  none: []
"#;
        assert_eq!(to_yaml(&v), want);
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for (s, want) in [
            ("on", "\"on\""),
            ("No", "\"No\""),
            ("y", "\"y\""),
            ("16Gi", "\"16Gi\""),
            ("1002:66AF", "\"1002:66AF\""),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("-x", "\"-x\""),
            ("say \"hi\"\n", "\"say \\\"hi\\\"\\n\""),
            ("host-passthrough", "host-passthrough"),
            ("kubevirt.io/v1", "kubevirt.io/v1"),
            ("vm-root", "vm-root"),
        ] {
            assert_eq!(string(s), want, "{s:?}");
        }
        assert_eq!(to_yaml(&json!({"on": "off"})), "\"on\": \"off\"\n");
        assert_eq!(to_yaml(&json!("x")), "x\n");
    }
}
