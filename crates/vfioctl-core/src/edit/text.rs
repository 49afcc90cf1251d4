//! Helpers shared by the editors: a layout-preserving edit of a parameter list (only the
//! tokens that change are touched, every separator, line break and continuation stays),
//! line offsets and splicing of replacements into a text.

use super::{cmdline, CmdlineEdit, EditError};

/// Refuses a shell-syntax file (GRUB defaults, mkinitcpio, dracut) that bash, which its
/// tools source it with, cannot read as written: a UTF-8 byte order mark sticks to the
/// first word, so the first line fails (`command not found`, or a syntax error before an
/// assignment) and `grub-mkconfig` or `mkinitcpio` stops there. An edit of such a file
/// would be correct text that the boot never sees.
pub(crate) fn sourceable(text: &str) -> Result<(), EditError> {
    if text.starts_with('\u{feff}') {
        return Err(EditError::Unsupported {
            what: "line 1".into(),
            reason: "the file starts with a UTF-8 byte order mark (bytes EF BB BF), and bash, which sources it, reads the mark as part of the first command, so the tools that read this file fail on it; remove the mark (`sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`) and run vfioctl again".into(),
        });
    }
    Ok(())
}
use crate::cmdline::{Cmdline, Param};

/// Byte spans of the parameters in `s`: split on whitespace outside double quotes, as the
/// kernel (and [`cmdline::split_tokens`]) does. With `continuation`, a backslash-newline
/// outside quotes separates too (a shell line continuation inside a double-quoted value).
pub(crate) fn spans(s: &str, continuation: bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quoted = false;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let sep = !quoted && (c.is_whitespace() || (continuation && c == '\\' && matches!(it.peek(), Some((_, '\n')))));
        if sep {
            if c == '\\' {
                it.next();
            }
            if let Some(st) = start.take() {
                out.push((st, i));
            }
            continue;
        }
        if c == '"' {
            quoted = !quoted;
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push((st, s.len()));
    }
    out
}

/// The parameter name of one token (`vfio-pci.ids=…` → `vfio-pci.ids`).
pub(crate) fn param_name(token: &str) -> String {
    Cmdline::parse(token).params.into_iter().next().map(|p: Param| p.name).unwrap_or_default()
}

/// Whether the parameter list `s` has a parameter named `name` (`-`/`_` alike).
pub(crate) fn has_param(s: &str, name: &str) -> bool {
    !name.is_empty() && Cmdline::parse(s).has(name)
}

/// Applies `e` to the parameter list `s` by the rules of [`cmdline::edit`], touching only
/// the tokens that change: kept tokens keep their separators (line breaks included), a
/// replaced token takes the place of the old one, new tokens are joined with one space.
///
/// A list with an unbalanced double quote is refused (`what` names the file) when the edit
/// would change it: whatever is added after it would end up inside the quotes.
pub(crate) fn apply(s: &str, e: &CmdlineEdit, continuation: bool, what: &str) -> Result<String, EditError> {
    apply_escaped(s, e, continuation, what, &|t| t.to_string(), &|t| t.to_string())
}

/// [`apply`] inside a shell string: the tokens are read through `unescape` for the edit,
/// kept tokens stay as written, and the tokens it writes (new or replaced) go through
/// `escape`.
pub(crate) fn apply_escaped(
    s: &str,
    e: &CmdlineEdit,
    continuation: bool,
    what: &str,
    escape: &dyn Fn(&str) -> String,
    unescape: &dyn Fn(&str) -> String,
) -> Result<String, EditError> {
    let sp = spans(s, continuation);
    let old: Vec<String> = sp.iter().map(|&(a, b)| unescape(&s[a..b])).collect();
    let new = cmdline::split_tokens(&cmdline::edit(&old.join(" "), e));
    if new.len() == old.len() && new.iter().zip(&old).all(|(a, b)| a == b) {
        return Ok(s.to_string());
    }
    if s.matches('"').count() % 2 == 1 {
        return Err(EditError::Unsupported {
            what: what.to_string(),
            reason: format!("unbalanced double quote in the kernel parameters {s:?}; fix them by hand"),
        });
    }
    // A merged value with odd whitespace may not read back as written: refuse what would
    // change again on the next run.
    let again = cmdline::split_tokens(&cmdline::edit(&new.join(" "), e));
    if again != new {
        return Err(EditError::Unsupported {
            what: what.to_string(),
            reason: format!("the kernel parameters {s:?} do not edit cleanly; fix them by hand"),
        });
    }
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    Ok(layout(s, &sp, &old, &new, escape))
}

/// The text of `new` laid out like `s` (whose tokens `old` sit at `sp`).
fn layout(s: &str, sp: &[(usize, usize)], old: &[&str], new: &[String], escape: &dyn Fn(&str) -> String) -> String {
    let n = old.len();
    let gap = |k: usize| -> &str {
        let from = if k == 0 { 0 } else { sp[k - 1].1 };
        let to = if k == n { s.len() } else { sp[k].0 };
        &s[from..to]
    };
    let (lead, trail) = if n == 0 { (s, "") } else { (gap(0), gap(n)) };
    let Some(items) = align(old, new) else {
        let new: Vec<String> = new.iter().map(|t| escape(t)).collect();
        return format!("{lead}{}{trail}", new.join(" "));
    };
    let mut out = String::from(lead);
    let mut prev: Option<Option<usize>> = None;
    for (text, slot) in &items {
        if let Some(p) = prev {
            match (p, *slot) {
                (Some(p), Some(k)) if k == p + 1 => out.push_str(gap(k)),
                (Some(p), Some(_)) => out.push_str(gap(p + 1)),
                _ => out.push(' '),
            }
        }
        match slot {
            Some(k) if old[*k] == text => out.push_str(&s[sp[*k].0..sp[*k].1]),
            _ => out.push_str(&escape(text)),
        }
        prev = Some(*slot);
    }
    out.push_str(trail);
    out
}

/// Aligns the old and new token lists (longest common subsequence): each output item is
/// a token and the old slot it occupies (kept, or replaced in place), `None` for a new one.
fn align(old: &[&str], new: &[String]) -> Option<Vec<(String, Option<usize>)>> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > 4_000_000 {
        return None;
    }
    let w = m + 1;
    let mut dp = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[i * w + j] =
                if old[i] == new[j] { dp[(i + 1) * w + j + 1] + 1 } else { dp[(i + 1) * w + j].max(dp[i * w + j + 1]) };
        }
    }
    let mut items = Vec::new();
    let (mut dels, mut ins): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    let flush = |items: &mut Vec<(String, Option<usize>)>, dels: &mut Vec<usize>, ins: &mut Vec<usize>| {
        let mut d = dels.drain(..);
        for j in ins.drain(..) {
            items.push((new[j].clone(), d.next()));
        }
    };
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            flush(&mut items, &mut dels, &mut ins);
            items.push((new[j].clone(), Some(i)));
            i += 1;
            j += 1;
        } else if j < m && (i == n || dp[i * w + j + 1] >= dp[(i + 1) * w + j]) {
            ins.push(j);
            j += 1;
        } else {
            dels.push(i);
            i += 1;
        }
    }
    flush(&mut items, &mut dels, &mut ins);
    Some(items)
}

/// One line of a text: `start..end` without the line break, `next` where the next begins.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub start: usize,
    pub end: usize,
    pub next: usize,
}

/// The lines of `text` with their offsets (a `\r` before the `\n` is not part of `end`).
pub(crate) fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let (end, next) = match text[start..].find('\n') {
            Some(i) => (start + i, start + i + 1),
            None => (text.len(), text.len()),
        };
        let end = if text[start..end].ends_with('\r') { end - 1 } else { end };
        out.push(Line { start, end, next });
        start = next;
    }
    out
}

/// Replaces byte ranges of `text` (non-overlapping, any order); an empty range inserts.
pub(crate) fn splice(text: &str, mut reps: Vec<(usize, usize, String)>) -> String {
    reps.sort_by_key(|r| (r.0, r.1));
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for (a, b, s) in reps {
        if a < at || b < a || b > text.len() {
            continue;
        }
        out.push_str(&text[at..a]);
        out.push_str(&s);
        at = b;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` with a line appended, adding the missing line break before it.
pub(crate) fn append_line(text: &str, line: &str) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

/// Module names treat `-` and `_` alike.
pub(crate) fn same_module(a: &str, b: &str) -> bool {
    a.replace('-', "_") == b.replace('-', "_")
}

/// The end of a double-quoted string whose opening quote is at `i`: the index after the
/// closing quote, or `None` when it is not closed.
pub(crate) fn close_double(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i + 1;
    while k < b.len() {
        match b[k] {
            b'\\' => k += 2,
            b'"' => return Some(k + 1),
            _ => k += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen::e;

    #[test]
    fn keeps_layout() {
        let s = "  rd.lvm.lv=fedora/root \\\n    rhgb   quiet ";
        let apply = |s: &str, ed: &CmdlineEdit, c: bool| apply(s, ed, c, "test").unwrap();
        assert_eq!(apply(s, &e(&["iommu=pt"], &[]), true), "  rd.lvm.lv=fedora/root \\\n    rhgb   quiet iommu=pt ");
        assert_eq!(apply(s, &e(&[], &["rhgb"]), true), "  rd.lvm.lv=fedora/root \\\n    quiet ");
        assert_eq!(
            apply("a  intel_iommu=off\tb", &e(&["intel_iommu=on"], &["intel_iommu=off"]), false),
            "a  intel_iommu=on\tb"
        );
        assert_eq!(apply("", &e(&["x"], &[]), false), "x");
        assert_eq!(apply("quiet", &e(&[], &["quiet"]), false), "");
        assert!(super::apply("a=\"b", &e(&["x"], &[]), false, "test").is_err());
    }
}
