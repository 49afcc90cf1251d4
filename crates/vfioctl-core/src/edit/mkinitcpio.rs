//! Editing `/etc/mkinitcpio.conf` (Arch and derivatives) or one of its drop-ins in
//! `/etc/mkinitcpio.conf.d/*.conf`: bash files whose `MODULES=(…)` array lists the modules
//! the initramfs loads first, in order.
//!
//! The missing modules go to the FRONT of the last `MODULES=` array (vfio-pci has to load
//! before the GPU drivers listed there), as one run of words right after the `(`; the rest
//! of the array (quotes, line breaks, comments) stays as written. The old string form
//! `MODULES="a b"` is edited the same way. A module counts as present when the last
//! `MODULES=` or a later `MODULES+=` lists it (`-` and `_` alike).
//!
//! Without a `MODULES=` line one is appended, written to keep what came before it:
//! `MODULES=(vfio … "${MODULES[@]}")`. The same line is what [`dropin`] writes for a
//! vfioctl-owned drop-in: mkinitcpio sources drop-ins after the main file, so the drop-in
//! puts the VFIO modules in front of the main file's list without touching it.

use super::text::{append_line, same_module, splice};
use super::EditError;

/// The comment [`dropin`] starts with.
pub const COMMENT: &str = "# vfioctl: VFIO modules first, so vfio-pci claims the passed devices before their drivers";

/// A `MODULES=` or `MODULES+=` value: whether it appends, where its contents start (after
/// the `(` or opening quote) and end, and its words without quotes.
#[derive(Debug)]
struct Assign {
    append: bool,
    open: usize,
    words: Vec<String>,
}

/// The end of a quoted string opened at `i` (index after the closing quote, or the end).
fn close(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut k = i + 1;
    while k < b.len() {
        if b[k] == b'\\' && q == b'"' {
            k += 2;
            continue;
        }
        if b[k] == q {
            return k + 1;
        }
        k += 1;
    }
    b.len()
}

/// The words of an array body from `i` up to its `)`; returns them and the index after `)`.
fn array(b: &[u8], text: &str, mut i: usize) -> (Vec<String>, usize) {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b')' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                }
                return (words, i + 1);
            }
            b'#' if !in_word => {
                i = b[i..].iter().position(|&x| x == b'\n').map_or(b.len(), |p| i + p);
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            b'"' | b'\'' => {
                let e = close(b, i);
                cur.push_str(text.get(i + 1..e.saturating_sub(1).max(i + 1)).unwrap_or(""));
                in_word = true;
                i = e;
                continue;
            }
            b'\\' => {
                let len = text.get(i + 1..).and_then(|r| r.chars().next()).map_or(0, char::len_utf8);
                cur.push_str(&text[i + 1..i + 1 + len]);
                in_word = true;
                i += 1 + len;
                continue;
            }
            _ => {
                let len = text[i..].chars().next().map_or(1, char::len_utf8);
                cur.push_str(&text[i..i + len]);
                in_word = true;
                i += len;
                continue;
            }
        }
        i += 1;
    }
    if in_word {
        words.push(cur);
    }
    (words, b.len())
}

/// The `MODULES` assignments at line starts, in order.
fn scan(text: &str) -> Vec<Assign> {
    scan_var(text, "MODULES")
}

/// The assignments of the array `var` at line starts, in order.
fn scan_var(text: &str, var: &str) -> Vec<Assign> {
    let (set, add) = (format!("{var}="), format!("{var}+="));
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let mut p = pos;
        while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
            p += 1;
        }
        let rest = &text[p..];
        let (append, after) = if let Some(r) = rest.strip_prefix(add.as_str()) {
            (true, r)
        } else if let Some(r) = rest.strip_prefix(set.as_str()) {
            (false, r)
        } else {
            (false, "")
        };
        let vs = text.len() - after.len();
        let mut end = p;
        if !after.is_empty() && (after.starts_with('(') || after.starts_with('"') || after.starts_with('\'')) {
            if after.starts_with('(') {
                let (words, e) = array(b, text, vs + 1);
                out.push(Assign { append, open: vs + 1, words });
                end = e;
            } else {
                let e = close(b, vs);
                let inner = text.get(vs + 1..e.saturating_sub(1).max(vs + 1)).unwrap_or("");
                out.push(Assign {
                    append,
                    open: vs + 1,
                    words: inner.split_whitespace().map(str::to_string).collect(),
                });
                end = e;
            }
        } else if !rest.starts_with('#') {
            // Skip other values, including multi-line arrays and strings.
            let mut k = p;
            while k < b.len() && b[k] != b'\n' {
                match b[k] {
                    b'(' => k = array(b, text, k + 1).1,
                    b'"' | b'\'' => k = close(b, k),
                    b'#' if k == p || b[k - 1] == b' ' || b[k - 1] == b'\t' => break,
                    _ => k += 1,
                }
            }
            end = k;
        }
        pos = b[end.min(b.len())..].iter().position(|&c| c == b'\n').map_or(b.len(), |q| end + q + 1).max(pos + 1);
    }
    out
}

/// The modules `MODULES` holds after bash sources `text`, starting from `prior` (what the
/// files sourced before it left): `MODULES=(…)` replaces the list, `MODULES+=(…)` adds to
/// it, and `${MODULES[@]}` / `$MODULES` inside a value stand for the list before it (so
/// [`dropin`]'s line puts its modules in front). mkinitcpio sources `/etc/mkinitcpio.conf`
/// (or the preset's config) and then each `/etc/mkinitcpio.conf.d/*.conf` in order.
pub fn modules(prior: &[String], text: &str) -> Vec<String> {
    sourced("MODULES", prior, text)
}

/// The hooks `HOOKS` holds after bash sources `text` (as [`modules`] for `MODULES`), or
/// `None` while no file has set it. Without the `modconf` hook the initramfs carries no
/// `/etc/modprobe.d`, so options written there (vfio-pci's) do not reach the early boot.
pub fn hooks(prior: Option<&[String]>, text: &str) -> Option<Vec<String>> {
    let set = scan_var(text, "HOOKS");
    if prior.is_none() && set.is_empty() {
        return None;
    }
    Some(sourced("HOOKS", prior.unwrap_or(&[]), text))
}

/// What the array `var` holds after bash sources `text`, starting from `prior`.
fn sourced(var: &str, prior: &[String], text: &str) -> Vec<String> {
    let expansions = [format!("${{{var}[@]}}"), format!("${{{var}[*]}}"), format!("${var}"), format!("${{{var}}}")];
    let mut out = prior.to_vec();
    for a in scan_var(text, var) {
        let mut words = Vec::new();
        for w in &a.words {
            if expansions.iter().any(|e| e == w) {
                words.extend(out.iter().cloned());
            } else {
                words.push(w.clone());
            }
        }
        if a.append {
            out.extend(words);
        } else {
            out = words;
        }
    }
    out
}

/// The line that puts `modules` in front of whatever `MODULES` held before.
fn line(modules: &[&str]) -> String {
    format!("MODULES=({} \"${{MODULES[@]}}\")", modules.join(" "))
}

/// The file sets `MODULES` anew (`MODULES=`, not `MODULES+=`): what the files sourced
/// before it listed is gone, and the modules it lists are where an edit takes effect.
pub fn sets_modules(text: &str) -> bool {
    scan(text).iter().any(|a| !a.append)
}

/// A vfioctl-owned drop-in (`/etc/mkinitcpio.conf.d/vfioctl.conf`) that loads `modules`
/// first: `MODULES=(vfio … "${MODULES[@]}")`.
pub fn dropin(modules: &[String]) -> String {
    let m: Vec<&str> = modules.iter().map(String::as_str).collect();
    format!("{COMMENT}\n{}\n", line(&m))
}

/// Adds the missing `modules` to the front of `MODULES` (`None`: the file does not exist
/// yet, and the result is the [`dropin`] line alone).
pub fn edit(current: Option<&str>, modules: &[String]) -> Result<String, EditError> {
    let text = current.unwrap_or("");
    super::text::sourceable(text)?;
    let all = scan(text);
    let last = all.iter().rposition(|a| !a.append);
    let present: Vec<&str> = all[last.unwrap_or(0)..].iter().flat_map(|a| a.words.iter().map(String::as_str)).collect();
    let mut missing: Vec<&str> = Vec::new();
    for m in modules.iter().map(|m| m.trim()).filter(|m| !m.is_empty() && !m.contains(['"', '\'', '(', ')', '#'])) {
        if !present.iter().any(|p| same_module(p, m)) && !missing.iter().any(|x| same_module(x, m)) {
            missing.push(m);
        }
    }
    if missing.is_empty() {
        return Ok(text.to_string());
    }
    let Some(i) = last else {
        return Ok(append_line(text, &line(&missing)));
    };
    let open = all[i].open;
    let b = text.as_bytes();
    let quoted = b.get(open - 1) == Some(&b'(') && {
        let first = text[open..].trim_start();
        first.starts_with('"') && !first.starts_with("\"$")
    };
    let words: Vec<String> = missing.iter().map(|m| if quoted { format!("\"{m}\"") } else { m.to_string() }).collect();
    let mut insert = words.join(" ");
    let next = b.get(open).copied();
    let closing = if b.get(open - 1) == Some(&b'(') { b')' } else { b[open - 1] };
    if next.is_some_and(|c| c != closing && !c.is_ascii_whitespace()) {
        insert.push(' ');
    }
    Ok(splice(text, vec![(open, open, insert)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::{v, VFIO};

    const STOCK: &str = r#"# vim:set ft=sh
# MODULES
# The following modules are loaded before any boot hooks are
# run.  Advanced users may wish to specify all system modules
# in this array.  For instance:
#     MODULES=(usbhid xhci_hcd)
MODULES=()

# BINARIES
# This setting includes any additional binaries a given user may
# wish into the CPIO image.  This is run last, so it may be used to
# override the actual binaries included by a given hook
# BINARIES are dependency parsed, so you may safely ignore libraries
BINARIES=()

# HOOKS
HOOKS=(base udev autodetect microcode modconf kms keyboard keymap consolefont block filesystems fsck)
"#;

    fn twice(text: Option<&str>, m: &[String]) -> String {
        fuzzgen::idempotent(edit, text, m)
    }

    #[test]
    fn stock_arch_file() {
        let out = twice(Some(STOCK), &v(&VFIO));
        assert_eq!(out, STOCK.replace("\nMODULES=()", "\nMODULES=(vfio vfio_iommu_type1 vfio_pci)"));
    }

    #[test]
    fn existing_quoted_multiline_and_string_forms() {
        let m = v(&VFIO);
        assert_eq!(
            twice(Some("MODULES=(nvidia nvidia_modeset nvidia_uvm nvidia_drm)\n"), &m),
            "MODULES=(vfio vfio_iommu_type1 vfio_pci nvidia nvidia_modeset nvidia_uvm nvidia_drm)\n"
        );
        assert_eq!(
            twice(Some("MODULES=(\"amdgpu\" \"vfio-pci\")\n"), &m),
            "MODULES=(\"vfio\" \"vfio_iommu_type1\" \"amdgpu\" \"vfio-pci\")\n"
        );
        let multi = "#MODULES=(vfio)\nMODULES=(\n    amdgpu  # the host GPU\n    btrfs\n)\nHOOKS=(base\n  udev)\n";
        assert_eq!(
            twice(Some(multi), &m),
            multi.replace("MODULES=(\n    amdgpu", "MODULES=(vfio vfio_iommu_type1 vfio_pci\n    amdgpu")
        );
        assert_eq!(twice(Some("MODULES=\"\"\n"), &m), "MODULES=\"vfio vfio_iommu_type1 vfio_pci\"\n");
        assert_eq!(
            twice(Some("MODULES=(a)\nMODULES+=(vfio)\n"), &m),
            "MODULES=(vfio_iommu_type1 vfio_pci a)\nMODULES+=(vfio)\n"
        );
    }

    #[test]
    fn missing_line_and_dropin() {
        let m = v(&VFIO);
        let d = dropin(&m);
        assert_eq!(d, format!("{COMMENT}\nMODULES=(vfio vfio_iommu_type1 vfio_pci \"${{MODULES[@]}}\")\n"));
        assert_eq!(twice(Some(&d), &m), d);
        assert_eq!(twice(None, &m), "MODULES=(vfio vfio_iommu_type1 vfio_pci \"${MODULES[@]}\")\n");
        assert_eq!(
            twice(Some("HOOKS=(base)"), &m),
            "HOOKS=(base)\nMODULES=(vfio vfio_iommu_type1 vfio_pci \"${MODULES[@]}\")\n"
        );
        let d2 = twice(Some(&d), &v(&["vfio", "vfio_pci_core", "vfio_pci"]));
        assert!(d2.contains("MODULES=(vfio_pci_core vfio "), "{d2}");
    }

    #[test]
    fn never_panics() {
        let m = v(&["vfio", "vfio_pci"]);
        for s in fuzzgen::strings(29, 3000, 24, &["MODULES=(", "MODULES+=(", "MODULES=", "vfio", "\"${MODULES[@]}\""]) {
            let once = edit(Some(&s), &m).unwrap();
            let _ = edit(Some(&once), &m);
        }
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modules_as_bash_leaves_them() {
        let main = "MODULES=(amdgpu)\n# MODULES=(nope)\nMODULES+=(nvme)\n";
        assert_eq!(modules(&[], main), v(&["amdgpu", "nvme"]));
        let dropin = dropin(&v(&["vfio", "vfio_pci"]));
        assert_eq!(modules(&modules(&[], main), &dropin), v(&["vfio", "vfio_pci", "amdgpu", "nvme"]));
        assert_eq!(modules(&v(&["x"]), "MODULES=\"a b\"\n"), v(&["a", "b"]));
        assert_eq!(modules(&v(&["x"]), "HOOKS=(base udev)\n"), v(&["x"]));
        assert_eq!(hooks(None, "MODULES=(a)\n"), None);
        assert_eq!(hooks(None, "HOOKS=(base udev)\nMODULES=(modconf)\n"), Some(v(&["base", "udev"])));
        let main =
            hooks(None, "HOOKS=(base udev autodetect microcode modconf kms block filesystems fsck)\n").expect("HOOKS");
        assert!(main.iter().any(|h| h == "modconf"), "{main:?}");
        assert_eq!(hooks(Some(&main[..2]), "HOOKS+=(modconf)\n"), Some(v(&["base", "udev", "modconf"])));
    }

    #[test]
    fn what_the_editor_writes_is_what_is_read() {
        for text in ["", "MODULES=()\n", "MODULES=(amdgpu)\n", "MODULES=(\n  i915 # intel\n)\nMODULES+=(nvme)\n"] {
            let edited = edit(Some(text), &v(&["vfio", "vfio_pci"])).unwrap();
            let got = modules(&[], &edited);
            assert!(got.starts_with(&v(&["vfio", "vfio_pci"])), "{text:?} → {edited:?} → {got:?}");
        }
    }
}
