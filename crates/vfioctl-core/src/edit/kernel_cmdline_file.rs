//! Editing `/etc/kernel/cmdline`, the command line `kernel-install` (systemd-boot, UKIs)
//! and Proxmox's `proxmox-boot-tool` write into boot entries: normally one line of
//! parameters. Line breaks are treated as spaces (as `kernel-install` reads it); only the
//! parameters that change are touched, so a trailing newline (or its absence) stays.

use super::text::apply;
use super::{CmdlineEdit, EditError};

/// The parameters of `/etc/kernel/cmdline`, line breaks read as spaces (as kernel-install
/// reads it).
pub fn cmdline(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Applies the kernel command line edit to `/etc/kernel/cmdline`.
///
/// `current` must be the file's text. When the file does not exist, `kernel-install` uses
/// the running kernel's command line (`/proc/cmdline`), so the caller passes that text
/// instead, without the boot loader's own parameters (`BOOT_IMAGE=…`, `initrd=…`); `None`
/// is an error saying so.
pub fn edit(current: Option<&str>, e: &CmdlineEdit) -> Result<String, EditError> {
    let Some(text) = current else {
        return Err(EditError::Unsupported {
            what: "/etc/kernel/cmdline".into(),
            reason: "the file does not exist: start from the running command line (/proc/cmdline, \
                     without BOOT_IMAGE= and initrd=), which kernel-install uses in its place"
                .into(),
        });
    };
    apply(text, e, false, "/etc/kernel/cmdline")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::e;

    fn twice(text: &str, ed: &CmdlineEdit) -> String {
        fuzzgen::idempotent(edit, Some(text), ed)
    }

    #[test]
    fn proxmox_and_fedora_files() {
        let pve = "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n";
        assert_eq!(
            twice(pve, &e(&["amd_iommu=on", "iommu=pt"], &[])),
            "root=ZFS=rpool/ROOT/pve-1 boot=zfs amd_iommu=on iommu=pt\n"
        );
        let fedora = "root=UUID=0b8f7a0e-4a1c-4f8e-9d2b-3c4d5e6f7a8b ro rootflags=subvol=root rhgb quiet";
        assert_eq!(
            twice(fedora, &e(&["intel_iommu=on"], &["rhgb"])),
            "root=UUID=0b8f7a0e-4a1c-4f8e-9d2b-3c4d5e6f7a8b ro rootflags=subvol=root quiet intel_iommu=on"
        );
        assert_eq!(twice("", &e(&["iommu=pt"], &[])), "iommu=pt");
        assert_eq!(twice("\n", &e(&["iommu=pt"], &[])), "\niommu=pt");
        assert!(edit(None, &e(&["iommu=pt"], &[])).is_err());
    }

    #[test]
    fn merges_ids_in_place() {
        let text = "quiet vfio-pci.ids=10de:1b06 splash\n";
        assert_eq!(
            twice(text, &e(&["vfio-pci.ids=10de:1b06,10de:10ef"], &["vfio-pci.ids=10de:1b06"])),
            "quiet vfio-pci.ids=10de:1b06,10de:10ef splash\n"
        );
    }

    #[test]
    fn never_panics() {
        for s in fuzzgen::strings(11, 3000, 24, &["quiet", "a=x", "vfio-pci.ids="]) {
            for ed in fuzzgen::edits() {
                if let Ok(once) = edit(Some(&s), &ed) {
                    assert_eq!(edit(Some(&once), &ed).as_deref(), Ok(once.as_str()), "{s:?} {ed:?}");
                }
            }
        }
    }
}
