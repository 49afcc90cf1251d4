//! Editing `limine.conf` (Limine 8 syntax): global `key: value` lines, then entries
//! opened by `/Name` lines (`//Name` for a sub-entry, `/+Name` for an expanded
//! directory), each with indented `key: value` lines such as `protocol: linux`,
//! `path: boot():/vmlinuz-linux` and `cmdline: …` (also spelled `kernel_cmdline:`).
//!
//! [`edit`] changes the command line of the default entry: the one `default_entry:`
//! names (1-based, counting every `/` line in file order, as Limine's menu does), else the
//! first; when that is a directory, the first Linux entry inside it. A default entry that
//! boots something else (`protocol: efi`: a unified kernel image, another loader) is
//! refused, never passed over for another entry.
//! An entry without a `cmdline:` gets one after its last line. [`separate_entry`]
//! instead puts a copy of the default entry right after it, named `… (vfioctl
//! passthrough)`, with the edited command line.

use super::text::{apply, lines, splice, Line};
use super::{CmdlineEdit, EditError};

/// What [`separate_entry`] appends to the copy's name.
pub const SEPARATE_SUFFIX: &str = " (vfioctl passthrough)";

fn err(reason: impl Into<String>) -> EditError {
    EditError::Unsupported { what: "limine.conf".into(), reason: reason.into() }
}

#[derive(Debug)]
struct Entry {
    /// Index of the `/Name` line.
    line: usize,
    /// The slashes (and `+`) before the name.
    prefix: String,
    name: String,
    /// One past the last line of the entry's own block (the next `/` line).
    end: usize,
}

/// `key: value` (or `key=value`): the lower-cased key and the value's start.
fn key_value(text: &str, l: &Line) -> Option<(String, usize)> {
    let line = &text[l.start..l.end];
    let body = line.trim_start();
    if body.starts_with('#') || body.starts_with('/') {
        return None;
    }
    let k = body.find([':', '='])?;
    let key = body[..k].trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let after = &body[k + 1..];
    let vs = l.end - after.trim_start_matches([' ', '\t']).len();
    Some((key.to_ascii_lowercase(), vs))
}

fn entries(text: &str, ls: &[Line]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        let body = text[l.start..l.end].trim_start();
        if !body.starts_with('/') {
            continue;
        }
        let slashes = body.len() - body.trim_start_matches('/').len();
        let plus = usize::from(body[slashes..].starts_with('+'));
        if let Some(last) = out.last_mut() {
            last.end = i;
        }
        out.push(Entry {
            line: i,
            prefix: body[..slashes + plus].to_string(),
            name: body[slashes + plus..].to_string(),
            end: ls.len(),
        });
    }
    out
}

/// The value of the entry's own `key` (its last assignment).
fn value<'t>(text: &'t str, ls: &[Line], e: &Entry, key: &str) -> Option<&'t str> {
    ls[e.line + 1..e.end]
        .iter()
        .filter_map(|l| key_value(text, l).map(|kv| (l, kv)))
        .rfind(|(_, (k, _))| k == key)
        .map(|(l, (_, vs))| text[vs..l.end].trim())
}

/// An entry that boots Linux with a command line of this file: `protocol: linux`, or no
/// protocol but a command line. `protocol: efi` (a UKI, another loader) is not one.
fn is_linux(text: &str, ls: &[Line], e: &Entry) -> bool {
    match value(text, ls, e, "protocol") {
        Some(p) => p.eq_ignore_ascii_case("linux"),
        None => value(text, ls, e, "cmdline").or(value(text, ls, e, "kernel_cmdline")).is_some(),
    }
}

fn depth(e: &Entry) -> usize {
    e.prefix.trim_end_matches('+').len()
}

/// The index (in `entries`) of the entry to edit: the one `default_entry` names, or, when
/// that is a directory, the first Linux entry inside it. Any other entry that is not a
/// Linux one is refused: its command line is not in this file.
fn default_entry(text: &str, ls: &[Line], all: &[Entry]) -> Result<usize, EditError> {
    let first_entry_line = all.first().map_or(ls.len(), |e| e.line);
    let mut start = 0;
    for l in &ls[..first_entry_line] {
        if let Some((k, v)) = key_value(text, l) {
            if k == "default_entry" {
                start = text[v..l.end].trim().parse::<usize>().unwrap_or(1).saturating_sub(1);
            }
        }
    }
    if all.is_empty() {
        return Err(err("no entry in the file"));
    }
    let start = start.min(all.len() - 1);
    let en = &all[start];
    if is_linux(text, ls, en) {
        return Ok(start);
    }
    let inside = all[start + 1..].iter().take_while(|c| depth(c) > depth(en)).count();
    if inside > 0 {
        return (start + 1..=start + inside).find(|&i| is_linux(text, ls, &all[i])).ok_or_else(|| {
            err(format!("the default entry {} ({}) is a directory without a Linux entry", start + 1, en.name.trim()))
        });
    }
    let what =
        match (value(text, ls, en, "protocol"), value(text, ls, en, "path").or(value(text, ls, en, "image_path"))) {
            (Some(p), Some(path)) => format!("boots {path} by protocol {p}"),
            (Some(p), None) => format!("uses protocol {p}"),
            (None, _) => "has no protocol and no command line".to_string(),
        };
    Err(err(format!(
        "the default entry {} ({}) {what}, not a Linux kernel with a command line in this file (a unified kernel image carries its own); make a Linux entry the default (default_entry), or rebuild the image with the parameters",
        start + 1,
        en.name.trim()
    )))
}

/// The replacements that apply `e` to the command line of entry `en`.
fn edit_entry(text: &str, ls: &[Line], en: &Entry, e: &CmdlineEdit) -> Result<Vec<(usize, usize, String)>, EditError> {
    let block = &ls[en.line + 1..en.end];
    let cmd = block
        .iter()
        .filter_map(|l| key_value(text, l).map(|kv| (l, kv)))
        .rfind(|(_, (k, _))| k == "cmdline" || k == "kernel_cmdline");
    if let Some((l, (_, vs))) = cmd {
        let new = apply(&text[vs..l.end], e, false, "limine.conf")?;
        return Ok(if new == text[vs..l.end] { Vec::new() } else { vec![(vs, l.end, new)] });
    }
    let new = apply("", e, false, "limine.conf")?;
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let last = block.iter().rfind(|l| key_value(text, l).is_some());
    let indent = last.map_or("    ", |l| {
        let line = &text[l.start..l.end];
        &line[..line.len() - line.trim_start().len()]
    });
    let after = last.unwrap_or(&ls[en.line]);
    let mut line = format!("{indent}cmdline: {new}\n");
    if after.next == after.end {
        line.insert(0, '\n');
    }
    Ok(vec![(after.next, after.next, line)])
}

/// The default entry's name and command line (empty when it has no `cmdline:`), the
/// entry [`edit`] changes.
pub fn cmdline(text: &str) -> Result<(String, String), EditError> {
    let ls = lines(text);
    let all = entries(text, &ls);
    let en = &all[default_entry(text, &ls, &all)?];
    let line = ls[en.line + 1..en.end]
        .iter()
        .filter_map(|l| key_value(text, l).map(|kv| (l, kv)))
        .rfind(|(_, (k, _))| k == "cmdline" || k == "kernel_cmdline")
        .map(|(l, (_, vs))| text[vs..l.end].trim().to_string());
    Ok((en.name.trim().to_string(), line.unwrap_or_default()))
}

/// Applies the kernel command line edit to the default entry. `None` (no file) is an error.
pub fn edit(current: Option<&str>, e: &CmdlineEdit) -> Result<String, EditError> {
    let text = current.ok_or_else(|| err("the file does not exist"))?;
    let ls = lines(text);
    let all = entries(text, &ls);
    let i = default_entry(text, &ls, &all)?;
    Ok(splice(text, edit_entry(text, &ls, &all[i], e)?))
}

/// Puts a copy of the default entry, named `<name> (vfioctl passthrough)` and with the
/// edited command line, right after it. When that copy exists already, its command line
/// is edited instead.
pub fn separate_entry(current: &str, e: &CmdlineEdit) -> Result<String, EditError> {
    let ls = lines(current);
    let all = entries(current, &ls);
    let i = default_entry(current, &ls, &all)?;
    let en = &all[i];
    let name = format!("{}{SEPARATE_SUFFIX}", en.name.trim_end());
    if let Some(copy) = all.iter().find(|x| x.name.trim_end() == name) {
        return Ok(splice(current, edit_entry(current, &ls, copy, e)?));
    }
    // The entry's own lines, without trailing blank or comment lines.
    let mut last = en.line;
    for (k, l) in ls.iter().enumerate().take(en.end).skip(en.line + 1) {
        if key_value(current, l).is_some() {
            last = k;
        }
    }
    let head = &ls[en.line];
    let indent = &current[head.start..head.end]
        [..current[head.start..head.end].len() - current[head.start..head.end].trim_start().len()];
    let mut copy = format!("{indent}{}{name}\n", en.prefix);
    for l in &ls[en.line + 1..=last] {
        copy.push_str(&current[l.start..l.end]);
        copy.push('\n');
    }
    let cls = lines(&copy);
    let centries = entries(&copy, &cls);
    let copy = match centries.first() {
        Some(c) => splice(&copy, edit_entry(&copy, &cls, c, e)?),
        None => copy,
    };
    let at = ls[last].next;
    let blank = ls.get(last + 1).is_some_and(|l| l.start == l.end);
    let mut insert = String::new();
    if ls[last].next == ls[last].end {
        insert.push('\n');
    }
    if blank {
        insert.push('\n');
        insert.push_str(&copy);
    } else {
        insert.push_str(&copy);
    }
    Ok(splice(current, vec![(at, at, insert)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::e;

    const CACHYOS: &str = r#"timeout: 5
default_entry: 2
# interface_branding: CachyOS

/+CachyOS
    comment: CachyOS kernels

//linux-cachyos
    protocol: linux
    kernel_path: boot():/vmlinuz-linux-cachyos
    kernel_cmdline: quiet nowatchdog splash rw rootflags=subvol=/@ root=UUID=7d1e
    module_path: boot():/initramfs-linux-cachyos.img

//linux-cachyos-lts
    protocol: linux
    kernel_path: boot():/vmlinuz-linux-cachyos-lts
    kernel_cmdline: quiet nowatchdog splash rw rootflags=subvol=/@ root=UUID=7d1e
    module_path: boot():/initramfs-linux-cachyos-lts.img
"#;

    const ARCH: &str = r#"timeout: 3

/Arch Linux
    protocol: linux
    path: boot():/vmlinuz-linux
    cmdline: root=UUID=5e6f rw
    module_path: boot():/initramfs-linux.img

/Arch Linux (fallback)
    protocol: linux
    path: boot():/vmlinuz-linux
    cmdline: root=UUID=5e6f rw
    module_path: boot():/initramfs-linux-fallback.img
"#;

    fn twice(text: &str, ed: &CmdlineEdit) -> String {
        fuzzgen::idempotent(edit, Some(text), ed)
    }

    #[test]
    fn first_entry_and_default_entry() {
        let ed = e(&["amd_iommu=on", "iommu=pt"], &[]);
        assert_eq!(twice(ARCH, &ed), ARCH.replacen("rw\n", "rw amd_iommu=on iommu=pt\n", 1));
        // default_entry 2 is the first kernel inside the CachyOS directory.
        assert_eq!(
            twice(CACHYOS, &e(&["iommu=pt"], &["splash"])),
            CACHYOS.replacen("nowatchdog splash rw", "nowatchdog rw", 1).replacen(
                "UUID=7d1e\n",
                "UUID=7d1e iommu=pt\n",
                1
            )
        );
        let third = CACHYOS.replace("default_entry: 2", "default_entry: 3");
        let out = twice(&third, &e(&["iommu=pt"], &[]));
        assert!(
            out.ends_with("UUID=7d1e iommu=pt\n    module_path: boot():/initramfs-linux-cachyos-lts.img\n"),
            "{out}"
        );
    }

    /// Regression: with a UKI as `default_entry`, the `cmdline` of another entry was edited.
    #[test]
    fn a_uki_default_is_refused_a_directory_is_entered() {
        let text = "timeout: 3\ndefault_entry: 2\n\n/Arch (kernel)\n    protocol: linux\n    path: boot():/vmlinuz-linux\n    cmdline: root=UUID=1 rw\n\n/Arch (UKI)\n    protocol: efi\n    path: boot():/EFI/Linux/arch-linux.efi\n";
        let r = edit(Some(text), &e(&["iommu=pt"], &[])).unwrap_err().to_string();
        assert!(r.contains("entry 2 (Arch (UKI)) boots boot():/EFI/Linux/arch-linux.efi by protocol efi"), "{r}");
        assert!(cmdline(text).is_err());
        let dir = "default_entry: 1\n/+Arch\n//Windows\n    protocol: efi_chainload\n    path: boot():/EFI/Microsoft/Boot/bootmgfw.efi\n//Linux\n    protocol: linux\n    cmdline: rw\n";
        assert_eq!(cmdline(dir).unwrap(), ("Linux".to_string(), "rw".to_string()));
    }

    #[test]
    fn entry_without_cmdline() {
        let text = "/Linux\n    protocol: linux\n    path: boot():/vmlinuz\n";
        assert_eq!(twice(text, &e(&["iommu=pt"], &[])), format!("{text}    cmdline: iommu=pt\n"));
        let text = "/Linux\n  protocol: linux";
        assert_eq!(twice(text, &e(&["iommu=pt"], &[])), "/Linux\n  protocol: linux\n  cmdline: iommu=pt\n");
        assert!(edit(Some("timeout: 3\n"), &e(&["x"], &[])).is_err());
        assert!(edit(Some("/EFI\n    protocol: efi\n"), &e(&["x"], &[])).is_err());
    }

    #[test]
    fn separate_copy_after_the_default() {
        let ed = e(&["iommu=pt"], &[]);
        let out = separate_entry(ARCH, &ed).unwrap();
        assert_eq!(
            out,
            ARCH.replacen(
                "\n/Arch Linux (fallback)",
                "\n/Arch Linux (vfioctl passthrough)\n    protocol: linux\n    path: boot():/vmlinuz-linux\n    cmdline: root=UUID=5e6f rw iommu=pt\n    module_path: boot():/initramfs-linux.img\n\n/Arch Linux (fallback)",
                1
            )
        );
        assert_eq!(separate_entry(&out, &ed).unwrap(), out);
        let out = separate_entry(CACHYOS, &ed).unwrap();
        assert!(out.contains(
            "\n\n//linux-cachyos (vfioctl passthrough)\n    protocol: linux\n    kernel_path: boot():/vmlinuz-linux-cachyos\n    kernel_cmdline: quiet nowatchdog splash rw rootflags=subvol=/@ root=UUID=7d1e iommu=pt\n"
        ), "{out}");
        assert_eq!(separate_entry(&out, &ed).unwrap(), out);
    }

    #[test]
    fn never_panics() {
        let words = ["/", "//", "protocol: linux\n", "cmdline: ", "default_entry: 2\n", "  ", "quiet", "a=x"];
        for s in fuzzgen::strings(19, 3000, 24, &words) {
            for ed in fuzzgen::edits() {
                if let Ok(once) = edit(Some(&s), &ed) {
                    assert_eq!(edit(Some(&once), &ed).as_deref(), Ok(once.as_str()), "{s:?} {ed:?}");
                }
                let _ = separate_entry(&s, &ed);
            }
        }
    }
}
