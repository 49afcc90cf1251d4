//! Editing `/etc/default/grub`: the kernel parameters live in `GRUB_CMDLINE_LINUX` (every
//! entry, recovery included) and `GRUB_CMDLINE_LINUX_DEFAULT` (the normal entries).
//!
//! The file is a shell fragment. Only the values of uncommented assignments of those two
//! keys are touched (`export` prefix allowed), and inside them only the parameters that
//! change: quoting, line continuations, `$GRUB_CMDLINE_LINUX_DEFAULT` self-references and
//! trailing comments stay as written.
//!
//! - Parameters to remove go from every assignment of either key that holds them.
//! - A parameter to add that already appears (by name) is edited where it is: in the last
//!   `GRUB_CMDLINE_LINUX_DEFAULT` if it is there, else in the last assignment of either key
//!   that has it (so `vfio-pci.ids` in `GRUB_CMDLINE_LINUX` gains ids there).
//! - Other parameters go to the end of the last `GRUB_CMDLINE_LINUX_DEFAULT`; without one,
//!   a `GRUB_CMDLINE_LINUX_DEFAULT="…"` line is added after the last `GRUB_CMDLINE_LINUX`
//!   (or at the end of the file).
//! - Assignments inside compound commands (`if … fi`, `case`, loops) may not run: the
//!   additions go to the last one at the top level, and also into a conditional
//!   `GRUB_CMDLINE_LINUX_DEFAULT` that would replace the value (a self-referencing
//!   `"$GRUB_CMDLINE_LINUX_DEFAULT splash"` keeps them anyway).
//! - A bare value (`KEY=quiet`) gets double quotes when it needs them; a value mixing
//!   quoting styles (`"$A"' b'`) is refused when it would have to change.
//!
//! `/etc/default/grub.d/*.cfg` files are sourced after this file and may override it; they
//! are the caller's business (this editor works on any of them alike).
//!
//! Reading: [`assignments`] and [`kernel_cmdline`] give the values the shell that sources
//! the files would see (quotes removed, `$VAR` expanded, later assignments winning).

use std::collections::BTreeMap;

use super::text::{apply, apply_escaped, close_double, has_param, param_name, splice};
use super::{CmdlineEdit, EditError};

const LINUX: &str = "GRUB_CMDLINE_LINUX";
const DEFAULT: &str = "GRUB_CMDLINE_LINUX_DEFAULT";
const WHAT: &str = "/etc/default/grub";

/// One uncommented `KEY=value` assignment: the key, the value's raw span (quotes included)
/// and where its line ends (after the line break).
#[derive(Debug)]
struct Assign {
    key: String,
    value: (usize, usize),
    line_next: usize,
    /// Inside a compound command (`if … fi`, `case`, a loop, `{ … }`): it may not run.
    conditional: bool,
}

/// How deep in compound commands the text after this line is, given the depth before:
/// each `;`-separated command starting with `if`, `case`, `for`, `while`, `until` or `{`
/// opens one, `fi`, `esac`, `done` or `}` closes one.
fn depth_after(line: &str, depth: usize) -> usize {
    let mut d = depth;
    // The logical line without its quoted text and comment.
    let mut code = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') if code.is_empty() || code.ends_with([' ', '\t', ';']) => break,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                chars.next();
            }
            (None, c) => code.push(c),
            _ => {}
        }
    }
    for cmd in code.split([';', '&', '|']) {
        let first = cmd.split_whitespace().next().unwrap_or("");
        match first {
            "if" | "case" | "for" | "while" | "until" | "{" => d += 1,
            "fi" | "esac" | "done" | "}" => d = d.saturating_sub(1),
            _ => {}
        }
        if first != "{" && cmd.split_whitespace().last() == Some("{") {
            d += 1;
        }
    }
    d
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn close_single(b: &[u8], i: usize) -> Option<usize> {
    b.get(i + 1..)?.iter().position(|&c| c == b'\'').map(|p| i + 1 + p + 1)
}

/// The end of the shell word starting at `i` (quotes may span lines).
fn word_end(b: &[u8], mut i: usize, open: &mut bool) -> usize {
    while i < b.len() {
        match b[i] {
            b'"' => i = close_double(b, i).unwrap_or_else(|| eof(b, open)),
            b'\'' => i = close_single(b, i).unwrap_or_else(|| eof(b, open)),
            b'\\' => i = (i + 2).min(b.len()),
            b' ' | b'\t' | b'\n' | b'\r' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' => return i,
            _ => i += 1,
        }
    }
    i
}

/// The start of the next line after `i`, skipping quoted strings and comments.
fn line_next(b: &[u8], mut i: usize, open: &mut bool) -> usize {
    let mut word_start = true;
    while i < b.len() {
        match b[i] {
            b'\n' => return i + 1,
            b'#' if word_start => {
                return b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p + 1);
            }
            b'"' => i = close_double(b, i).unwrap_or_else(|| eof(b, open)),
            b'\'' => i = close_single(b, i).unwrap_or_else(|| eof(b, open)),
            b'\\' => i = (i + 2).min(b.len()),
            c => {
                word_start = is_blank(c) || c == b';';
                i += 1;
                continue;
            }
        }
        word_start = false;
    }
    b.len()
}

/// The end of the text, noting that a quote was left open.
fn eof(b: &[u8], open: &mut bool) -> usize {
    *open = true;
    b.len()
}

/// Every uncommented assignment, in order; an error when a quote is never closed (the
/// shell would not read the file, and nothing after it can be found).
fn scan(text: &str) -> Result<Vec<Assign>, EditError> {
    let mut open = false;
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut depth = 0;
    while pos < b.len() {
        let conditional = depth > 0;
        let mut p = pos;
        while p < b.len() && is_blank(b[p]) {
            p += 1;
        }
        if b[p..].starts_with(b"export") && b.get(p + 6).is_some_and(|&c| is_blank(c)) {
            p += 6;
            while p < b.len() && is_blank(b[p]) {
                p += 1;
            }
        }
        let ks = p;
        while p < b.len() && (b[p].is_ascii_alphanumeric() || b[p] == b'_') {
            p += 1;
        }
        let mut value = None;
        if p > ks && b.get(p) == Some(&b'=') && !b[ks].is_ascii_digit() {
            let vs = p + 1;
            let ve = word_end(b, vs, &mut open);
            value = Some((text[ks..p].to_string(), (vs, ve)));
            p = ve;
        }
        let next = line_next(b, p, &mut open).max(pos + 1);
        depth = depth_after(&text[pos..next.min(text.len())], depth);
        if let Some((key, value)) = value {
            out.push(Assign { key, value, line_next: next, conditional });
        }
        pos = next;
    }
    if open {
        return Err(EditError::Unsupported { what: WHAT.into(), reason: "a quote is never closed".into() });
    }
    if depth != 0 {
        // Compound commands that do not close as this reading sees them: it cannot tell
        // what runs, so it takes every assignment as running.
        for a in &mut out {
            a.conditional = false;
        }
    }
    Ok(out)
}

/// How a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Double,
    Single,
    Bare,
    Mixed,
}

fn style(b: &[u8], (vs, ve): (usize, usize)) -> Style {
    let raw = &b[vs..ve];
    match raw.first() {
        Some(b'"') if close_double(b, vs) == Some(ve) => Style::Double,
        Some(b'\'') if close_single(b, vs) == Some(ve) => Style::Single,
        _ if raw.iter().any(|c| matches!(c, b'"' | b'\'' | b'\\' | b'`')) => Style::Mixed,
        _ => Style::Bare,
    }
}

/// Escapes a parameter for a double-quoted shell string (a `$VAR` token already in the
/// value, such as `$GRUB_CMDLINE_LINUX_DEFAULT`, is kept as written).
fn unescape_double(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match (c, it.peek()) {
            ('\\', Some(&n)) if matches!(n, '"' | '\\' | '`' | '$') => {
                out.push(n);
                it.next();
            }
            _ => out.push(c),
        }
    }
    out
}

fn escape_double(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The new raw value, or `None` when the edit leaves it alone.
fn edit_value(text: &str, a: &Assign, e: &CmdlineEdit) -> Result<Option<String>, EditError> {
    let (vs, ve) = a.value;
    let raw = &text[vs..ve];
    let new = match style(text.as_bytes(), a.value) {
        Style::Double => {
            let inner = &raw[1..raw.len() - 1];
            format!("\"{}\"", apply_escaped(inner, e, true, WHAT, &escape_double, &unescape_double)?)
        }
        Style::Single => {
            let inner = &raw[1..raw.len() - 1];
            format!(
                "'{}'",
                apply_escaped(inner, e, false, WHAT, &|s| s.replace('\'', "'\\''"), &|s| s.replace("'\\''", "'"))?
            )
        }
        Style::Bare => {
            let v = apply_escaped(raw, e, false, WHAT, &escape_double, &unescape_double)?;
            let plain = v.chars().all(|c| c.is_ascii_alphanumeric() || "_.,:=/+-@%".contains(c));
            if v == raw || (plain && !v.is_empty()) {
                v
            } else {
                format!("\"{v}\"")
            }
        }
        Style::Mixed => {
            if apply(raw, e, false, WHAT).is_ok_and(|v| v == raw) {
                return Ok(None);
            }
            return Err(EditError::Unsupported {
                what: format!("{} in /etc/default/grub", a.key),
                reason: format!("its value {raw} mixes quoting styles; edit it by hand"),
            });
        }
    };
    Ok((new != raw).then_some(new))
}

/// Applies the kernel command line edit to `/etc/default/grub` (`None`: the file does not
/// exist, and the result holds only a `GRUB_CMDLINE_LINUX_DEFAULT` line).
pub fn edit(current: Option<&str>, e: &CmdlineEdit) -> Result<String, EditError> {
    edit_in(current, e, true)
}

/// The edit for a file sourced after the one whose value wins: the removals, and the
/// additions only in its conditional assignments of `GRUB_CMDLINE_LINUX_DEFAULT` that
/// would replace the value if they ran (not `"$GRUB_CMDLINE_LINUX_DEFAULT …"`).
pub fn edit_later(current: &str, e: &CmdlineEdit) -> Result<String, EditError> {
    edit_in(Some(current), e, false)
}

/// Whether the file assigns `GRUB_CMDLINE_LINUX_DEFAULT` unconditionally (at the top
/// level of the shell fragment), and whether it has a conditional assignment that would
/// replace the value (one not starting from `$GRUB_CMDLINE_LINUX_DEFAULT`).
pub fn sets_default(text: &str) -> (bool, bool) {
    let Ok(assigns) = scan(text) else { return (false, false) };
    let d: Vec<&Assign> = assigns.iter().filter(|a| a.key == DEFAULT).collect();
    (d.iter().any(|a| !a.conditional), d.iter().any(|a| a.conditional && !self_referencing(text, a)))
}

fn self_referencing(text: &str, a: &Assign) -> bool {
    let raw = &text[a.value.0..a.value.1];
    raw.contains("$GRUB_CMDLINE_LINUX_DEFAULT") || raw.contains("${GRUB_CMDLINE_LINUX_DEFAULT}")
}

fn edit_in(current: Option<&str>, e: &CmdlineEdit, wins: bool) -> Result<String, EditError> {
    let text = current.unwrap_or("");
    super::text::sourceable(text)?;
    let assigns: Vec<Assign> = scan(text)?.into_iter().filter(|a| a.key == LINUX || a.key == DEFAULT).collect();
    let value = |a: &Assign| {
        let raw = &text[a.value.0..a.value.1];
        match style(text.as_bytes(), a.value) {
            Style::Double | Style::Single => &raw[1..raw.len() - 1],
            _ => raw,
        }
    };
    // The assignments that run for sure; a conditional one that would replace the value
    // gets the additions too, so that the value has them whichever way the shell goes.
    let last_default = assigns.iter().rposition(|a| a.key == DEFAULT && !a.conditional);
    let mut adds: Vec<Vec<String>> = vec![Vec::new(); assigns.len()];
    let mut new_default: Vec<String> = Vec::new();
    for add in &e.add {
        for (i, a) in assigns.iter().enumerate() {
            if a.key == DEFAULT && a.conditional && !self_referencing(text, a) {
                adds[i].push(add.clone());
            }
        }
        if !wins {
            continue;
        }
        let name = param_name(add);
        let target = last_default
            .filter(|&i| has_param(value(&assigns[i]), &name))
            .or_else(|| assigns.iter().rposition(|a| !a.conditional && has_param(value(a), &name)))
            .or(last_default);
        match target {
            Some(i) => adds[i].push(add.clone()),
            None => new_default.push(add.clone()),
        }
    }
    let mut reps = Vec::new();
    for (a, add) in assigns.iter().zip(adds) {
        let ed = CmdlineEdit { add, remove: e.remove.clone() };
        if let Some(new) = edit_value(text, a, &ed)? {
            reps.push((a.value.0, a.value.1, new));
        }
    }
    let new_default = apply("", &CmdlineEdit { add: new_default, remove: Vec::new() }, false, WHAT)?;
    if !new_default.is_empty() {
        let line = format!("{DEFAULT}=\"{}\"\n", escape_double(&new_default));
        let at = assigns.iter().rposition(|a| a.key == LINUX).map_or(text.len(), |i| assigns[i].line_next);
        let before = &text[..at];
        let mut line = if at > 0 && !before.ends_with('\n') { format!("\n{line}") } else { line };
        let last = before.strip_suffix('\n').unwrap_or(before);
        if (last.len() - last.trim_end_matches('\\').len()) % 2 == 1 {
            // The line before ends in a continuation: give it an empty line to continue to.
            line.insert(0, '\n');
        }
        reps.push((at, at, line));
    }
    Ok(splice(text, reps))
}

// Reading: the command line the file gives GRUB, as the shell sourcing it would.

/// Unquotes one shell word as `/etc/default/grub` writes them: `"…"` (with `$VAR`
/// expansion of earlier assignments and `\"` escapes), `'…'` (literal), or bare.
fn shell_value(raw: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = raw.trim().chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') => break,
            (None, c) if c.is_whitespace() => break,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (Some('"') | None, '$') => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if braced && chars.peek() == Some(&'}') {
                    chars.next();
                }
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            }
            (_, c) => out.push(c),
        }
    }
    out
}

/// Whether grub-mkconfig could source `text`: a shell text (no NUL byte, no bytes that
/// are not UTF-8) whose quotes all close. Anything else is refused,
/// not read as "no command line": the shell would stop on it, and so would the boot's
/// regeneration.
pub fn readable(text: &str) -> Result<(), EditError> {
    for (n, line) in text.lines().enumerate() {
        let what = if line.contains('\0') {
            "a NUL byte"
        } else if line.contains('\u{fffd}') {
            "bytes that are not UTF-8"
        } else {
            continue;
        };
        return Err(EditError::Unsupported {
            what: "a shell file grub-mkconfig sources".into(),
            reason: format!("line {} has {what} (not a text file)", n + 1),
        });
    }
    scan(text).map(|_| ())
}

/// The assignments of a `/etc/default/grub`-style file, later ones winning, values
/// unquoted and expanded. `export KEY=…` counts too; anything else is ignored.
pub fn assignments(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = shell_value(value, &vars);
        vars.insert(key.to_string(), v);
    }
    vars
}

/// The variables the given files leave, sourced in order as grub-mkconfig does
/// (`/etc/default/grub`, then `/etc/default/grub.d/*.cfg`): the last assignment wins, and
/// a later file's `$VAR` sees the earlier files' values.
pub fn variables<'a>(files: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for text in files {
        for (k, v) in assignments(&prefix(&vars, text)) {
            vars.insert(k, v);
        }
    }
    vars
}

/// The command line GRUB gives the default Linux entry: `GRUB_CMDLINE_LINUX` then
/// `GRUB_CMDLINE_LINUX_DEFAULT`, across the given files in order (see [`variables`]);
/// `None` when no file sets either.
pub fn kernel_cmdline<'a>(files: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let vars = variables(files);
    if !vars.keys().any(|k| k.starts_with("GRUB_CMDLINE_LINUX")) {
        return None;
    }
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    Some(format!("{} {}", get("GRUB_CMDLINE_LINUX"), get("GRUB_CMDLINE_LINUX_DEFAULT")).trim().to_string())
}

/// Feeds earlier files' variables to a later file's `$VAR` expansions.
fn prefix(vars: &BTreeMap<String, String>, text: &str) -> String {
    let mut s = String::new();
    for (k, v) in vars {
        s.push_str(&format!("{k}='{}'\n", v.replace('\'', "")));
    }
    s.push_str(text);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::e;

    const DEBIAN: &str = "# If you change this file, run 'update-grub' afterwards to update\n\
# /boot/grub/grub.cfg.\n\
# For full documentation of the options in this file, see:\n\
#   info -f grub -n 'Simple configuration'\n\
\n\
GRUB_DEFAULT=0\n\
GRUB_TIMEOUT=5\n\
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n\
GRUB_CMDLINE_LINUX=\"\"\n\
\n\
# Uncomment to enable BadRAM filtering, modify to suit your needs\n\
#GRUB_BADRAM=\"0x01234567,0xfefefefe,0x89abcdef,0xefefefef\"\n\
\n\
# Uncomment to get a beep at grub start\n\
#GRUB_INIT_TUNE=\"480 440 1\"\n";

    const FEDORA: &str = "GRUB_TIMEOUT=5\n\
GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n\
GRUB_DEFAULT=saved\n\
GRUB_DISABLE_SUBMENU=true\n\
GRUB_TERMINAL_OUTPUT=\"console\"\n\
GRUB_CMDLINE_LINUX=\"rd.lvm.lv=fedora/root rd.lvm.lv=fedora/swap \\\n    rhgb quiet vfio-pci.ids=10de:1b06\"\n\
GRUB_DISABLE_RECOVERY=\"true\"\n\
GRUB_ENABLE_BLSCFG=true\n";

    fn twice(text: Option<&str>, ed: &CmdlineEdit) -> String {
        fuzzgen::idempotent(edit, text, ed)
    }

    #[test]
    fn debian_default_gains_parameters() {
        let ed = e(&["amd_iommu=on", "iommu=pt", "vfio-pci.ids=10de:1b06,10de:10ef"], &[]);
        let out = twice(Some(DEBIAN), &ed);
        assert_eq!(
            out,
            DEBIAN.replace(
                "_DEFAULT=\"quiet\"",
                "_DEFAULT=\"quiet amd_iommu=on iommu=pt vfio-pci.ids=10de:1b06,10de:10ef\""
            )
        );
    }

    #[test]
    fn fedora_linux_keeps_continuation_and_merges_ids_there() {
        let ed = e(&["intel_iommu=on", "iommu=pt", "vfio-pci.ids=10de:1b06,10de:10ef"], &["rhgb"]);
        let out = twice(Some(FEDORA), &ed);
        assert_eq!(
            out,
            FEDORA
                .replace("    rhgb quiet vfio-pci.ids=10de:1b06\"", "    quiet vfio-pci.ids=10de:1b06,10de:10ef\"")
                .replace(
                    "GRUB_DISABLE_RECOVERY",
                    "GRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on iommu=pt\"\nGRUB_DISABLE_RECOVERY"
                )
        );
    }

    #[test]
    fn last_uncommented_assignment_quotes_exports_and_comments() {
        let text = "#GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\n\
                    GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n\
                    export GRUB_CMDLINE_LINUX_DEFAULT='$GRUB_CMDLINE_LINUX_DEFAULT splash' # keep me\n\
                    GRUB_CMDLINE_LINUX=\"intel_iommu=off\"\n";
        let out = twice(Some(text), &e(&["intel_iommu=on", "iommu=pt"], &["intel_iommu=off"]));
        assert_eq!(
            out,
            "#GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\n\
             GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n\
             export GRUB_CMDLINE_LINUX_DEFAULT='$GRUB_CMDLINE_LINUX_DEFAULT splash iommu=pt' # keep me\n\
             GRUB_CMDLINE_LINUX=\"intel_iommu=on\"\n"
        );
    }

    #[test]
    fn bare_values_and_missing_default() {
        let out = twice(Some("GRUB_CMDLINE_LINUX_DEFAULT=quiet\n"), &e(&["iommu=pt"], &[]));
        assert_eq!(out, "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"\n");
        let out = twice(Some("GRUB_CMDLINE_LINUX_DEFAULT=\nGRUB_X=1"), &e(&["iommu=pt"], &[]));
        assert_eq!(out, "GRUB_CMDLINE_LINUX_DEFAULT=iommu=pt\nGRUB_X=1");
        let out = twice(Some("GRUB_TIMEOUT=5"), &e(&["iommu=pt", "a=\"b c\""], &[]));
        assert_eq!(out, "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt a=\\\"b c\\\"\"\n");
        assert_eq!(twice(None, &e(&["iommu=pt"], &[])), "GRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n");
        assert_eq!(twice(Some(DEBIAN), &e(&[], &["nothing"])), DEBIAN);
    }

    #[test]
    fn guide_file_and_mixed_quotes() {
        let guide = "GRUB_CMDLINE_LINUX_DEFAULT=\"amd_iommu=on iommu=pt kvm_amd.npt=1 rd.modules-load=vfio-pci\"\n\
                     GRUB_CMDLINE_LINUX=\"\"\n";
        assert_eq!(twice(Some(guide), &e(&["amd_iommu=on", "iommu=pt"], &[])), guide);
        let mixed = "GRUB_CMDLINE_LINUX_DEFAULT=\"$X\"' quiet'\n";
        assert!(edit(Some(mixed), &e(&["iommu=pt"], &[])).is_err());
        assert_eq!(edit(Some(mixed), &e(&[], &["absent"])).unwrap(), mixed);
    }

    /// Regression: a theme drop-in's `if … fi` assignment received the parameters, though
    /// the shell never runs it; the top-level assignment did not.
    #[test]
    fn assignments_inside_if_may_not_run() {
        let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nif ! echo \"$GRUB_CMDLINE_LINUX_DEFAULT\" | grep -q splash; then\n    GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT splash\"\nfi\n";
        let out = edit(Some(text), &e(&["iommu=pt"], &[])).unwrap();
        assert_eq!(out, text.replacen("quiet splash\"", "quiet splash iommu=pt\"", 1));
        assert_eq!(sets_default(text), (true, false));
        // One that would replace the value gets the additions too.
        let text = "GRUB_CMDLINE_LINUX_DEFAULT=quiet\ncase $X in a) GRUB_CMDLINE_LINUX_DEFAULT=\"quiet nomodeset\" ;;\nesac\nif [ -e /x ]; then GRUB_TIMEOUT=1; fi\nGRUB_TIMEOUT=5\n";
        let sets = sets_default("if true; then\n  GRUB_CMDLINE_LINUX_DEFAULT=\"a\"\nfi\n");
        assert_eq!(sets, (false, true));
        let out =
            edit_later("if true; then\n  GRUB_CMDLINE_LINUX_DEFAULT=\"a\"\nfi\n", &e(&["iommu=pt"], &[])).unwrap();
        assert_eq!(out, "if true; then\n  GRUB_CMDLINE_LINUX_DEFAULT=\"a iommu=pt\"\nfi\n");
        assert_eq!(
            edit(Some(text), &e(&["iommu=pt"], &[])).unwrap(),
            text.replacen("=quiet\n", "=\"quiet iommu=pt\"\n", 1)
        );
    }

    #[test]
    fn never_panics() {
        let words = ["GRUB_CMDLINE_LINUX_DEFAULT=", "GRUB_CMDLINE_LINUX=", "export ", "quiet", "a=x", "iommu=pt"];
        for s in fuzzgen::strings(0x9e3779b97f4a7c15, 3000, 24, &words) {
            for ed in fuzzgen::edits() {
                if let Ok(once) = edit(Some(&s), &ed) {
                    assert_eq!(edit(Some(&once), &ed).as_deref(), Ok(once.as_str()), "{s:?} {ed:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn reads_the_guides_grub_line() {
        let text = "# If you change this file, run 'update-grub'\nGRUB_DEFAULT=0\n\
                    GRUB_CMDLINE_LINUX_DEFAULT=\"amd_iommu=on iommu=pt kvm_amd.npt=1 rd.modules-load=vfio-pci\"\n\
                    GRUB_CMDLINE_LINUX=\"\"\n";
        assert_eq!(
            kernel_cmdline([text]).as_deref(),
            Some("amd_iommu=on iommu=pt kvm_amd.npt=1 rd.modules-load=vfio-pci")
        );
    }

    #[test]
    fn quoting_expansion_and_drop_ins() {
        let main = "GRUB_CMDLINE_LINUX='rhgb quiet'\nexport GRUB_CMDLINE_LINUX_DEFAULT=splash # comment\n";
        let dropin = "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=on \\\"x\\\"\"\n";
        assert_eq!(kernel_cmdline([main, dropin]).as_deref(), Some("rhgb quiet splash intel_iommu=on \"x\""));
        assert_eq!(kernel_cmdline(["GRUB_TIMEOUT=5\n"]), None);
        assert_eq!(assignments("not an assignment\n=x\nA B=c\n").len(), 0);
    }
}
