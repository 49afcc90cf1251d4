//! Editing `/boot/refind_linux.conf`: one boot choice per line, `"Title"  "options"`;
//! rEFInd boots the first line by default and offers the others in its submenu.
//!
//! [`edit`] changes the options of the first line only (other choices such as "single
//! user mode" stay as they are); [`separate_entry`] instead adds a new first line,
//! `"Boot with passthrough (vfioctl)" "…"`, with the edited options, keeping the old
//! default as the second choice. Only the options that change are touched.

use super::text::{apply, lines, splice};
use super::{CmdlineEdit, EditError};

/// The title of the line [`separate_entry`] adds.
pub const SEPARATE_TITLE: &str = "Boot with passthrough (vfioctl)";

const WHAT: &str = "/boot/refind_linux.conf";

fn err(reason: impl Into<String>) -> EditError {
    EditError::Unsupported { what: WHAT.into(), reason: reason.into() }
}

/// A boot choice: where its line starts, its title, the separator after the title and
/// the options' inner span.
#[derive(Debug)]
struct Choice {
    start: usize,
    next: usize,
    title: String,
    sep: String,
    options: (usize, usize),
    quoted: bool,
}

/// The end of a double-quoted field starting at `i` (after the closing quote).
fn quoted_end(line: &str, i: usize) -> Option<usize> {
    line[i + 1..].find('"').map(|p| i + 1 + p + 1)
}

fn choices(text: &str) -> Result<Vec<Choice>, EditError> {
    let mut out = Vec::new();
    for l in lines(text) {
        let line = &text[l.start..l.end];
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let ts = l.start + (line.len() - body.len());
        let rel = |i: usize| i - l.start;
        let (title, te) = if body.starts_with('"') {
            let te = quoted_end(line, rel(ts)).ok_or_else(|| err(format!("unterminated title in: {line}")))?;
            (line[rel(ts) + 1..te - 1].to_string(), l.start + te)
        } else {
            let w = body.find(char::is_whitespace).unwrap_or(body.len());
            (body[..w].to_string(), ts + w)
        };
        let after = &text[te..l.end];
        let rest = after.trim_start();
        let sep = after[..after.len() - rest.len()].to_string();
        let os = te + sep.len();
        let options = if rest.is_empty() {
            (l.end, l.end)
        } else if rest.starts_with('"') {
            let oe = quoted_end(line, rel(os)).ok_or_else(|| err(format!("unterminated options in: {line}")))?;
            (os + 1, l.start + oe - 1)
        } else {
            return Err(err(format!("the options are not in double quotes in: {line}")));
        };
        out.push(Choice { start: l.start, next: l.next, title, sep, options, quoted: !rest.is_empty() });
    }
    Ok(out)
}

/// The new text of a choice's options field (with quotes), `None` when unchanged.
fn edited_field(text: &str, c: &Choice, e: &CmdlineEdit) -> Result<Option<(usize, usize, String)>, EditError> {
    let (a, b) = c.options;
    let new = options(&text[a..b], e)?;
    if new == text[a..b] {
        return Ok(None);
    }
    Ok(Some(if !c.quoted { (a, b, format!(" \"{new}\"")) } else { (a, b, new) }))
}

/// The edited options; rEFInd cannot quote a double quote inside them.
fn options(s: &str, e: &CmdlineEdit) -> Result<String, EditError> {
    let new = apply(s, e, false, WHAT)?;
    if new.contains('"') {
        return Err(err("a kernel parameter with double quotes cannot be written inside rEFInd's quoted options"));
    }
    Ok(new)
}

/// The options of the first (default) boot choice, the one [`edit`] changes; `None` when
/// the file has no choice.
pub fn cmdline(text: &str) -> Result<Option<String>, EditError> {
    Ok(choices(text)?.first().map(|c| text[c.options.0..c.options.1].to_string()))
}

/// Applies the kernel command line edit to the first (default) boot choice. `None` (no
/// file: rEFInd then guesses the options from `/etc/fstab`) is an error; `mkrlconf` writes
/// the file.
pub fn edit(current: Option<&str>, e: &CmdlineEdit) -> Result<String, EditError> {
    let text = current.ok_or_else(|| err("the file does not exist: create it with mkrlconf first"))?;
    let all = choices(text)?;
    let first = all.first().ok_or_else(|| err("no boot choice in the file"))?;
    Ok(splice(text, edited_field(text, first, e)?.into_iter().collect()))
}

/// Adds `"Boot with passthrough (vfioctl)" "…"` as the first line, with the options of the
/// current default edited; the old default becomes the second choice. When the first line
/// is already that choice, its options are edited instead.
pub fn separate_entry(current: &str, e: &CmdlineEdit) -> Result<String, EditError> {
    let all = choices(current)?;
    let first = all.first().ok_or_else(|| err("no boot choice in the file"))?;
    if first.title == SEPARATE_TITLE {
        return edit(Some(current), e);
    }
    let (a, b) = first.options;
    let options = options(&current[a..b], e)?;
    let sep = if first.sep.is_empty() { " " } else { first.sep.as_str() };
    let mut line = format!("\"{SEPARATE_TITLE}\"{sep}\"{options}\"\n");
    if first.next == current.len() && !current.ends_with('\n') {
        line = line.replace('\n', "");
        return Ok(splice(current, vec![(first.start, first.start, format!("{line}\n"))]));
    }
    Ok(splice(current, vec![(first.start, first.start, line)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::e;

    const MKRLCONF: &str =
        "\"Boot with standard options\"  \"ro root=UUID=1b2c3d4e-5f60-4a1b-8c2d-3e4f5a6b7c8d quiet splash\"\n\
\"Boot to single-user mode\"    \"ro root=UUID=1b2c3d4e-5f60-4a1b-8c2d-3e4f5a6b7c8d quiet splash single\"\n\
\"Boot with minimal options\"   \"ro root=UUID=1b2c3d4e-5f60-4a1b-8c2d-3e4f5a6b7c8d\"\n";

    const ARCH: &str = "# refind_linux.conf for Arch\n\
\n\
\"Boot using default options\"     \"root=PARTUUID=2a3b rw add_efi_memmap initrd=\\boot\\amd-ucode.img initrd=\\boot\\initramfs-%v.img\"\n\
\"Boot using fallback initramfs\"  \"root=PARTUUID=2a3b rw add_efi_memmap initrd=\\boot\\initramfs-%v-fallback.img\"\n";

    fn twice(text: &str, ed: &CmdlineEdit) -> String {
        fuzzgen::idempotent(edit, Some(text), ed)
    }

    #[test]
    fn edits_the_default_line_only() {
        let out = twice(MKRLCONF, &e(&["amd_iommu=on", "iommu=pt"], &["splash"]));
        assert_eq!(
            out,
            MKRLCONF.replacen("quiet splash\"", "quiet amd_iommu=on iommu=pt\"", 1),
            "only the first line changes"
        );
        let out = twice(ARCH, &e(&["iommu=pt"], &[]));
        assert_eq!(out, ARCH.replacen("initramfs-%v.img\"", "initramfs-%v.img iommu=pt\"", 1));
        assert_eq!(twice("\"Linux\"\n", &e(&["iommu=pt"], &[])), "\"Linux\" \"iommu=pt\"\n");
        assert!(edit(None, &e(&["x"], &[])).is_err());
        assert!(edit(Some("\"Linux\" ro quiet\n"), &e(&["x"], &[])).is_err());
    }

    #[test]
    fn separate_first_line() {
        let ed = e(&["iommu=pt"], &[]);
        let out = separate_entry(ARCH, &ed).unwrap();
        let expected = ARCH.replacen(
            "\"Boot using default",
            "\"Boot with passthrough (vfioctl)\"     \"root=PARTUUID=2a3b rw add_efi_memmap initrd=\\boot\\amd-ucode.img initrd=\\boot\\initramfs-%v.img iommu=pt\"\n\"Boot using default",
            1,
        );
        assert_eq!(out, expected);
        assert_eq!(separate_entry(&out, &ed).unwrap(), out);
        assert_eq!(
            separate_entry("\"L\" \"quiet\"", &ed).unwrap(),
            "\"Boot with passthrough (vfioctl)\" \"quiet iommu=pt\"\n\"L\" \"quiet\""
        );
    }

    #[test]
    fn never_panics() {
        for s in fuzzgen::strings(17, 3000, 24, &["\"Boot\" ", "\"quiet a=x\"", "\"Boot with passthrough (vfioctl)\""])
        {
            for ed in fuzzgen::edits() {
                if let Ok(once) = edit(Some(&s), &ed) {
                    assert_eq!(edit(Some(&once), &ed).as_deref(), Ok(once.as_str()), "{s:?} {ed:?}");
                }
                let _ = separate_entry(&s, &ed);
            }
        }
    }
}
