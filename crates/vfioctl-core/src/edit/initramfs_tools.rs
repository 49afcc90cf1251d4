//! Editing `/etc/initramfs-tools/modules` (Debian, Ubuntu): one module per line, options
//! after the name, `#` comments. `update-initramfs` loads them in file order.
//!
//! Modules already listed (by the first word of an uncommented line, `-` and `_` alike)
//! are left alone; the missing ones are appended in the order given, after a `# vfioctl:`
//! comment the first time. Nothing else changes. Modules listed before them (a GPU
//! driver, say) still load first: the `softdep … pre: vfio-pci` lines of
//! `/etc/modprobe.d/vfio.conf`, which the initramfs carries, keep vfio-pci ahead of them.

use super::text::{append_line, same_module};
use super::EditError;

/// The comment written before the first modules vfioctl adds.
pub const COMMENT: &str =
    "# vfioctl: loaded early, before the passed devices' own drivers (vfio-pci claims them; vendor-reset, when listed, resets a card)";

/// Names of the modules an initramfs-tools modules file lists.
pub fn listed(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Appends the missing `modules` to the file (`None`: it does not exist yet).
pub fn edit(current: Option<&str>, modules: &[String]) -> Result<String, EditError> {
    let text = current.unwrap_or("");
    let have = listed(text);
    let mut missing: Vec<&str> = Vec::new();
    for m in modules.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if !have.iter().any(|h| same_module(h, m)) && !missing.iter().any(|x| same_module(x, m)) {
            missing.push(m);
        }
    }
    if missing.is_empty() {
        return Ok(text.to_string());
    }
    let mut out = text.to_string();
    if !text.lines().any(|l| l.starts_with("# vfioctl:")) {
        out = append_line(&out, COMMENT);
    }
    for m in missing {
        out = append_line(&out, m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::v;

    /// The file of guide 001 (examples/hosts/r2600x/etc/initramfs-tools/modules).
    const GUIDE: &str = "# List of modules that you want to include in your initramfs.
# They will be loaded at boot time in the order below.
#
# Syntax:  module_name [args ...]
#
# You must run update-initramfs(8) to effect this change.
#
# Examples:
#
# raid1
# sd_mod
softdep nvidia pre: vfio vfio_pci
softdep nvidiafb pre: vfio vfio_pci
softdep nvidia_drm pre: vfio vfio_pci
softdep nouveau pre: vfio vfio_pci

vfio
vfio_iommu_type1
vfio_virqfd
options vfio_pci ids=10de:1b06,10de:10ef
vfio_pci ids=10de:1b06,10de:10ef
vfio_pci
nvidiafb
nvidia
";

    fn twice(text: Option<&str>, m: &[String]) -> String {
        fuzzgen::idempotent(edit, text, m)
    }

    #[test]
    fn guide_file_stays_byte_identical() {
        assert_eq!(
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/hosts/r2600x/etc/initramfs-tools/modules"
            ))
            .ok()
            .as_deref()
            .unwrap_or(GUIDE),
            GUIDE
        );
        assert_eq!(twice(Some(GUIDE), &v(&["vfio", "vfio_iommu_type1", "vfio_virqfd", "vfio_pci"])), GUIDE);
        let out = twice(Some(GUIDE), &v(&["vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio-pci"]));
        assert_eq!(out, format!("{GUIDE}{COMMENT}\nvfio_pci_core\n"));
    }

    #[test]
    fn stock_and_missing_files() {
        let stock = "# List of modules that you want to include in your initramfs.\n# raid1\n#vfio\n  # vfio_pci\nnvme";
        let m = v(&["vfio", "vfio_iommu_type1", "vfio_pci"]);
        assert_eq!(twice(Some(stock), &m), format!("{stock}\n{COMMENT}\nvfio\nvfio_iommu_type1\nvfio_pci\n"));
        assert_eq!(twice(None, &m), format!("{COMMENT}\nvfio\nvfio_iommu_type1\nvfio_pci\n"));
        let again = twice(Some(&format!("{COMMENT}\nvfio\n")), &m);
        assert_eq!(again, format!("{COMMENT}\nvfio\nvfio_iommu_type1\nvfio_pci\n"));
    }

    #[test]
    fn never_panics() {
        let m = v(&["vfio", "vfio_pci", "a", ""]);
        for s in fuzzgen::strings(23, 3000, 24, &["vfio", "vfio-pci", "# vfioctl:", "options "]) {
            let once = edit(Some(&s), &m).unwrap();
            assert_eq!(edit(Some(&once), &m).unwrap(), once);
        }
    }
}
