//! Kernel modules: which exist for a kernel (`modules.builtin`, `modules.dep`), which are
//! loaded (`/proc/modules`), and the kernel release they belong to.

use std::collections::BTreeSet;

use crate::modprobe::module_name;

/// The module name of a path in modules.builtin/modules.dep:
/// `kernel/drivers/vfio/pci/vfio-pci.ko.zst` → `vfio_pci`.
pub fn name_of_path(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let stem = file.split(".ko").next()?;
    (!stem.is_empty() && file.contains(".ko")).then(|| module_name(stem))
}

/// Module names in a `modules.builtin` text.
pub fn builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(name_of_path).collect()
}

/// Module names in a `modules.dep` text (`path: deps…`).
pub fn available(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.split(':').next()).filter_map(name_of_path).collect()
}

/// Loaded module names from `/proc/modules`.
pub fn loaded(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.split_whitespace().next()).map(module_name).collect()
}

/// `6.1.0-18-amd64` → (6, 1).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The modules vfio-pci needs on a kernel: `vfio_virqfd` was merged into `vfio` in 6.2,
/// `vfio_pci_core` split out of `vfio_pci` in 5.16.
pub fn vfio_modules(version: Option<(u32, u32)>) -> Vec<&'static str> {
    let mut m = vec!["vfio", "vfio_iommu_type1", "vfio_pci"];
    match version {
        Some(v) if v >= (6, 2) => m.push("vfio_pci_core"),
        Some(v) if v >= (5, 16) => m.extend(["vfio_pci_core", "vfio_virqfd"]),
        _ => m.push("vfio_virqfd"),
    }
    m
}

/// `*` and `?` globbing, as in modules.alias patterns and systemd-boot's `default`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The modules whose `modules.alias` patterns match a device's `modalias`
/// (`pci:v000010DEd00001B06sv…bc03sc00i00`), in file order, without duplicates.
pub fn modules_for_alias(modules_alias: &str, modalias: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in modules_alias.lines() {
        let mut w = line.split_whitespace();
        if let (Some("alias"), Some(pattern), Some(module)) = (w.next(), w.next(), w.next()) {
            if pattern.starts_with("pci:") && glob_match(pattern, modalias) {
                let m = module_name(module);
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
    out
}

/// Whether a kernel carries the ACS override patch (`pcie_acs_override=`), from its release
/// and `/proc/version` strings: the kernels known to ship it are linux-zen, Proxmox's (pve),
/// liquorix (lqx) and xanmod. A patch applied by hand is not seen: its parameter then works,
/// and the plan is refused where it would not.
pub fn has_acs_override(release: &str, version: &str) -> bool {
    let r = release.to_ascii_lowercase();
    let v = version.to_ascii_lowercase();
    ["-zen", "-pve", "-lqx", "liquorix", "xanmod", "-acso"].iter().any(|k| r.contains(k) || v.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lists() {
        assert_eq!(name_of_path("kernel/drivers/vfio/pci/vfio-pci.ko.zst").as_deref(), Some("vfio_pci"));
        assert_eq!(name_of_path("kernel/drivers/vfio/vfio.ko"), Some("vfio".into()));
        assert_eq!(name_of_path("junk"), None);
        let dep = "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/pci/vfio-pci-core.ko kernel/drivers/vfio/vfio.ko\n\
                   kernel/virt/lib/irqbypass.ko:\n";
        assert_eq!(available(dep).into_iter().collect::<Vec<_>>(), ["irqbypass", "vfio_pci"]);
        assert!(builtin("kernel/drivers/vfio/vfio.ko\n").contains("vfio"));
        assert!(loaded("vfio_pci 16384 0 - Live 0x0\nkvm_amd 1 0 - Live 0x0\n").contains("kvm_amd"));
    }

    #[test]
    fn aliases() {
        let aliases = "alias pci:v000010DEd*sv*sd*bc03sc00i00* nvidia\nalias pci:v000010DEd*sv*sd*bc03sc*i* nouveau\n\
                       alias pci:v*d*sv*sd*bc04sc03i* snd_hda_intel\nalias usb:v1234* usbthing\n";
        assert_eq!(
            modules_for_alias(aliases, "pci:v000010DEd00001B06sv000010DEsd0000120Fbc03sc00i00"),
            ["nvidia", "nouveau"]
        );
        assert_eq!(
            modules_for_alias(aliases, "pci:v000010DEd000010EFsv000010DEsd0000120Fbc04sc03i00"),
            ["snd_hda_intel"]
        );
        assert!(glob_match("arch*", "arch.conf") && !glob_match("a?c", "abbc"));
    }

    #[test]
    fn versions() {
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.9.8-arch1-1"), Some((5, 9)));
        assert_eq!(kernel_version("banana"), None);
        assert!(vfio_modules(Some((6, 1))).contains(&"vfio_virqfd"));
        assert!(!vfio_modules(Some((6, 8))).contains(&"vfio_virqfd"));
        assert!(!vfio_modules(Some((5, 0))).contains(&"vfio_pci_core"));
    }

    #[test]
    fn kernels_with_the_acs_override_patch() {
        assert!(has_acs_override("6.12.4-zen1-1-zen", "Linux version 6.12.4-zen1-1-zen (linux-zen@archlinux)"));
        assert!(has_acs_override("6.8.12-4-pve", ""));
        assert!(has_acs_override("6.11.0-x64v3-xanmod1", ""));
        assert!(has_acs_override("6.10.2-lqx1-1-lqx", ""));
        assert!(!has_acs_override("6.8.0-45-generic", "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)"));
        assert!(!has_acs_override("6.1.0-26-amd64", "Linux version 6.1.0-26-amd64 (debian-kernel@lists.debian.org)"));
    }
}
