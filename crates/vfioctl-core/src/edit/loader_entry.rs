//! Editing a Boot Loader Specification entry (`/boot/loader/entries/*.conf`, read by
//! systemd-boot, and by GRUB on Fedora-style systems): `key value` lines, of which only
//! the `options` lines are touched.
//!
//! The loader joins several `options` lines with spaces, so parameters to remove go from
//! whichever line holds them, a parameter to add that already appears (by name) is edited
//! on the line that has it, and other parameters go to the end of the last `options` line
//! (a new `options` line at the end of the entry when it has none). Everything else —
//! `title`, `version`, `linux`, `initrd`, comments, spacing — stays byte for byte.
//!
//! Entries whose options hold `$kernelopts` take their parameters from GRUB's environment
//! block; they are refused (`grubby --update-kernel=ALL --args=…` or `grub2-editenv` edit
//! them).

use super::text::{append_line, apply, has_param, lines, param_name, splice};
use super::{CmdlineEdit, EditError};

const WHAT: &str = "boot loader entry";

/// The value spans of the uncommented `options` lines.
fn options(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for l in lines(text) {
        let line = &text[l.start..l.end];
        let body = line.trim_start();
        let Some(rest) = body.strip_prefix("options") else { continue };
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue;
        }
        let vs = l.end - rest.trim_start_matches([' ', '\t']).len();
        out.push((vs, l.end));
    }
    out
}

fn refuse_kernelopts(text: &str, spans: &[(usize, usize)]) -> Result<(), EditError> {
    if spans.iter().any(|&(a, b)| text[a..b].contains("$kernelopts")) {
        return Err(EditError::Unsupported {
            what: "boot loader entry".into(),
            reason: "its options use $kernelopts from GRUB's environment block: edit them with grubby \
                     (grubby --update-kernel=ALL --args=…) or grub2-editenv, not in the entry"
                .into(),
        });
    }
    Ok(())
}

/// What an entry starts, by its first `linux`, `efi` or `uki` line (Boot Loader
/// Specification type #1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boots {
    /// A Linux kernel (`linux`), with the entry's `options` as its command line.
    Linux,
    /// An EFI program (`efi`): another boot loader, a UKI, Windows' boot manager.
    Efi(String),
    /// A unified kernel image (`uki`), whose command line is built in.
    Uki(String),
    /// None of the three.
    Nothing,
}

impl std::fmt::Display for Boots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Boots::Linux => f.write_str("boots a Linux kernel"),
            Boots::Efi(p) => write!(f, "starts the EFI program {p}"),
            Boots::Uki(p) => write!(f, "boots the unified kernel image {p}, whose command line is built in"),
            Boots::Nothing => f.write_str("has no linux, efi or uki line"),
        }
    }
}

/// What the entry `text` starts.
pub fn boots(text: &str) -> Boots {
    for l in lines(text) {
        let body = text[l.start..l.end].trim();
        let (key, value) = body.split_once([' ', '\t']).unwrap_or((body, ""));
        let value = value.trim().to_string();
        match key {
            "linux" => return Boots::Linux,
            "efi" => return Boots::Efi(value),
            "uki" => return Boots::Uki(value),
            _ => {}
        }
    }
    Boots::Nothing
}

/// The command line of an entry: its `options` lines joined with spaces, as the loader
/// joins them. Under GRUB (Fedora/RHEL), a `$name` word is a variable of GRUB's
/// environment block (`grubenv`: `kernelopts` before Fedora 33, tuned's `tuned_params`),
/// replaced by its value there, or by nothing.
pub fn cmdline(text: &str, grubenv: Option<&str>) -> String {
    let vars: Vec<(&str, &str)> =
        grubenv.map(|g| g.lines().filter_map(|l| l.split_once('=')).collect()).unwrap_or_default();
    let expand = |w: &str| -> String {
        match w.strip_prefix('$') {
            Some(name) if grubenv.is_some() => {
                let name = name.trim_start_matches('{').trim_end_matches('}');
                vars.iter().rfind(|(k, _)| *k == name).map(|(_, v)| v.to_string()).unwrap_or_default()
            }
            _ => w.to_string(),
        }
    };
    options(text)
        .iter()
        .flat_map(|&(a, b)| text[a..b].split_whitespace().map(expand).collect::<Vec<_>>())
        .filter(|w| !w.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Applies the kernel command line edit to the `options` lines of an entry. `None` (no such
/// entry) is an error: vfioctl edits entries, the kernel's install scripts write them.
pub fn edit(current: Option<&str>, e: &CmdlineEdit) -> Result<String, EditError> {
    let Some(text) = current else {
        return Err(EditError::Unsupported {
            what: "boot loader entry".into(),
            reason: "the entry does not exist; vfioctl edits the entries kernel-install (or the distribution) wrote"
                .into(),
        });
    };
    let spans = options(text);
    refuse_kernelopts(text, &spans)?;
    let mut adds: Vec<Vec<String>> = vec![Vec::new(); spans.len()];
    let mut extra = Vec::new();
    for add in &e.add {
        let name = param_name(add);
        match spans.iter().rposition(|&(a, b)| has_param(&text[a..b], &name)).or(spans.len().checked_sub(1)) {
            Some(i) => adds[i].push(add.clone()),
            None => extra.push(add.clone()),
        }
    }
    let mut reps = Vec::new();
    for (&(a, b), add) in spans.iter().zip(adds) {
        let new = apply(&text[a..b], &CmdlineEdit { add, remove: e.remove.clone() }, false, WHAT)?;
        if new != text[a..b] {
            // A bare `options` line needs a space before its first parameter.
            let sep = if a == b && !text[..a].ends_with([' ', '\t']) && !new.is_empty() { " " } else { "" };
            reps.push((a, b, format!("{sep}{new}")));
        }
    }
    let out = splice(text, reps);
    let extra = apply("", &CmdlineEdit { add: extra, remove: Vec::new() }, false, WHAT)?;
    Ok(if extra.is_empty() { out } else { append_line(&out, &format!("options {extra}")) })
}

/// The title suffix of the copy [`separate_entry`] makes.
pub const SEPARATE_SUFFIX: &str = " (vfioctl passthrough)";

/// A copy of the entry `current` with the edited options and `suffix_title` (normally
/// [`SEPARATE_SUFFIX`]) appended to its `title` (a `title` line is added when there is none),
/// for `--boot-entry separate`. Giving it its own copy again gives the same text.
pub fn separate_entry(current: &str, e: &CmdlineEdit, suffix_title: &str) -> Result<String, EditError> {
    let edited = edit(Some(current), e)?;
    let mut reps = Vec::new();
    let mut titled = false;
    for l in lines(&edited) {
        let line = &edited[l.start..l.end];
        let body = line.trim_start();
        if let Some(rest) = body.strip_prefix("title") {
            if rest.is_empty() || rest.starts_with([' ', '\t']) {
                titled = true;
                if !line.trim_end().ends_with(suffix_title.trim_end()) {
                    let end = l.start + line.trim_end().len();
                    reps.push((end, end, suffix_title.to_string()));
                }
            }
        }
    }
    if !titled {
        reps.push((0, 0, format!("title {}\n", suffix_title.trim())));
    }
    Ok(splice(&edited, reps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::e;

    const ARCH: &str = "# Created by: archinstall\n\
title   Arch Linux (linux)\n\
linux   /vmlinuz-linux\n\
initrd  /amd-ucode.img\n\
initrd  /initramfs-linux.img\n\
options root=PARTUUID=5f1c2a5e-7b8d-4e6f-9a0b-1c2d3e4f5a6b zswap.enabled=0 rw rootfstype=ext4\n";

    const FEDORA_BLS: &str = "title Fedora Linux (6.8.5-301.fc40.x86_64) 40 (Workstation Edition)\n\
version 6.8.5-301.fc40.x86_64\n\
linux /vmlinuz-6.8.5-301.fc40.x86_64\n\
initrd /initramfs-6.8.5-301.fc40.x86_64.img\n\
options $kernelopts\n\
grub_users $grub_users\n\
grub_arg --unrestricted\n\
grub_class fedora\n";

    fn twice(text: &str, ed: &CmdlineEdit) -> String {
        fuzzgen::idempotent(edit, Some(text), ed)
    }

    #[test]
    fn arch_entry() {
        let ed = e(&["amd_iommu=on", "iommu=pt", "vfio-pci.ids=1002:66af,1002:ab20"], &["zswap.enabled=0"]);
        let out = twice(ARCH, &ed);
        assert_eq!(
            out,
            ARCH.replace(
                "zswap.enabled=0 rw rootfstype=ext4",
                "rw rootfstype=ext4 amd_iommu=on iommu=pt vfio-pci.ids=1002:66af,1002:ab20"
            )
        );
    }

    #[test]
    fn several_options_lines_and_crlf() {
        let text = "title Linux\r\noptions  root=/dev/sda2 vfio-pci.ids=1002:66af\r\noptions quiet\r\n";
        let out = twice(text, &e(&["iommu=pt", "vfio-pci.ids=1002:ab20"], &["root=/dev/sda2"]));
        assert_eq!(out, "title Linux\r\noptions  vfio-pci.ids=1002:66af,1002:ab20\r\noptions quiet iommu=pt\r\n");
        assert_eq!(twice("options\n", &e(&["iommu=pt"], &[])), "options iommu=pt\n");
        let out = twice("title X\nlinux /vmlinuz", &e(&["iommu=pt"], &[]));
        assert_eq!(out, "title X\nlinux /vmlinuz\noptions iommu=pt\n");
    }

    #[test]
    fn kernelopts_and_missing_entries_are_refused() {
        let err = edit(Some(FEDORA_BLS), &e(&["iommu=pt"], &[])).unwrap_err();
        assert!(err.to_string().contains("grubby"), "{err}");
        assert!(edit(None, &e(&["iommu=pt"], &[])).is_err());
    }

    #[test]
    fn separate_copy() {
        let ed = e(&["iommu=pt"], &[]);
        let copy = separate_entry(ARCH, &ed, SEPARATE_SUFFIX).unwrap();
        assert_eq!(
            copy,
            ARCH.replace("(linux)\n", "(linux) (vfioctl passthrough)\n").replace("ext4\n", "ext4 iommu=pt\n")
        );
        assert_eq!(separate_entry(&copy, &ed, SEPARATE_SUFFIX).unwrap(), copy);
        assert_eq!(
            separate_entry("options quiet\n", &ed, SEPARATE_SUFFIX).unwrap(),
            "title (vfioctl passthrough)\noptions quiet iommu=pt\n"
        );
    }

    #[test]
    fn what_an_entry_boots() {
        assert_eq!(boots("title Arch\nlinux /vmlinuz-linux\nefi /x.efi\n"), Boots::Linux);
        assert_eq!(
            boots("# chain\ntitle rEFInd\nefi\t/EFI/refind/refind_x64.efi\r\n"),
            Boots::Efi("/EFI/refind/refind_x64.efi".into())
        );
        assert_eq!(
            boots("title Arch\nuki /EFI/Linux/arch.efi\noptions quiet\n"),
            Boots::Uki("/EFI/Linux/arch.efi".into())
        );
        assert_eq!(boots("title nothing\n#linux /vmlinuz\n"), Boots::Nothing);
    }

    #[test]
    fn never_panics() {
        let words = ["options ", "title ", "$kernelopts", "quiet", "a=x"];
        for s in fuzzgen::strings(7, 3000, 24, &words) {
            for ed in fuzzgen::edits() {
                if let Ok(once) = edit(Some(&s), &ed) {
                    assert_eq!(edit(Some(&once), &ed).as_deref(), Ok(once.as_str()), "{s:?} {ed:?}");
                }
                let _ = separate_entry(&s, &ed, SEPARATE_SUFFIX);
            }
        }
    }
}
