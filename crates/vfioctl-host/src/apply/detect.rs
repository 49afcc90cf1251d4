//! What this host boots with and builds its initramfs with, decided from its files (not
//! from guesses about the distribution).

use std::path::{Path, PathBuf};

use crate::root::HostRoot;

/// Where the kernel command line is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootloader {
    /// kernel-install / UKIs: `/etc/kernel/cmdline`.
    KernelInstall,
    /// systemd-boot (or GRUB with BLS when `grub` is set): entry files.
    LoaderEntries {
        dir: PathBuf,
        entries: Vec<PathBuf>,
        default: Option<PathBuf>,
        grub_bls: bool,
    },
    /// GRUB: `/etc/default/grub` and the command that regenerates grub.cfg.
    Grub {
        regenerate: Vec<String>,
    },
    Kernelstub,
    Refind {
        path: PathBuf,
    },
    Limine {
        path: PathBuf,
    },
}

impl Bootloader {
    pub fn name(&self) -> &'static str {
        match self {
            Bootloader::KernelInstall => "kernel-install (/etc/kernel/cmdline)",
            Bootloader::LoaderEntries { grub_bls: true, .. } => "GRUB with BLS entries",
            Bootloader::LoaderEntries { .. } => "systemd-boot",
            Bootloader::Grub { .. } => "GRUB",
            Bootloader::Kernelstub => "kernelstub",
            Bootloader::Refind { .. } => "rEFInd",
            Bootloader::Limine { .. } => "Limine",
        }
    }
}

/// What builds the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initramfs {
    InitramfsTools,
    Mkinitcpio,
    Dracut,
    Booster,
}

impl Initramfs {
    pub fn name(&self) -> &'static str {
        match self {
            Initramfs::InitramfsTools => "initramfs-tools",
            Initramfs::Mkinitcpio => "mkinitcpio",
            Initramfs::Dracut => "dracut",
            Initramfs::Booster => "booster",
        }
    }

    /// The command that rebuilds the initramfs of every installed kernel.
    pub fn regenerate(&self) -> Vec<String> {
        let v: &[&str] = match self {
            Initramfs::InitramfsTools => &["update-initramfs", "-u", "-k", "all"],
            Initramfs::Mkinitcpio => &["mkinitcpio", "-P"],
            Initramfs::Dracut => &["dracut", "-f", "--regenerate-all"],
            Initramfs::Booster => &["booster", "build", "--force"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

fn has_program(root: &HostRoot, name: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| root.path(Path::new(d).join(name)).is_file())
}

/// The boot loader configuration to edit, most specific first.
pub fn bootloader(root: &HostRoot) -> Option<Bootloader> {
    if root.exists("/etc/kernel/cmdline") {
        return Some(Bootloader::KernelInstall);
    }
    if root.exists("/etc/kernelstub/configuration") {
        return Some(Bootloader::Kernelstub);
    }
    for dir in ["/boot/loader/entries", "/efi/loader/entries", "/boot/efi/loader/entries"] {
        let Ok(names) = root.list(dir) else { continue };
        let entries: Vec<PathBuf> =
            names.iter().filter(|n| n.ends_with(".conf")).map(|n| Path::new(dir).join(n)).collect();
        if entries.is_empty() {
            continue;
        }
        let loader = dir.trim_end_matches("/entries");
        let default = root
            .read_optional(format!("{loader}/loader.conf"))
            .ok()
            .flatten()
            .and_then(|t| t.lines().find_map(|l| l.trim().strip_prefix("default").map(|v| v.trim().to_string())))
            .and_then(|pat| {
                entries.iter().find(|e| {
                    let n = e.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    vfioctl_core::kmod::glob_match(&pat, &n)
                        || vfioctl_core::kmod::glob_match(&format!("{pat}.conf"), &n)
                })
            })
            .cloned();
        // GRUB reads BLS entries too (Fedora, RHEL); systemd-boot has a loader.conf.
        let grub_bls = root.exists("/etc/default/grub")
            && (root.exists("/boot/grub2")
                || has_program(root, "grubby")
                || !root.exists(format!("{loader}/loader.conf")));
        return Some(Bootloader::LoaderEntries { dir: dir.into(), entries, default, grub_bls });
    }
    if root.exists("/etc/default/grub") {
        let regenerate: Vec<String> = if has_program(root, "update-grub") {
            vec!["update-grub".into()]
        } else if has_program(root, "grub2-mkconfig") {
            vec!["grub2-mkconfig".into(), "-o".into(), "/boot/grub2/grub.cfg".into()]
        } else {
            vec!["grub-mkconfig".into(), "-o".into(), "/boot/grub/grub.cfg".into()]
        };
        return Some(Bootloader::Grub { regenerate });
    }
    for p in ["/boot/refind_linux.conf"] {
        if root.exists(p) {
            return Some(Bootloader::Refind { path: p.into() });
        }
    }
    for p in ["/boot/limine.conf", "/boot/limine/limine.conf", "/boot/EFI/limine/limine.conf"] {
        if root.exists(p) {
            return Some(Bootloader::Limine { path: p.into() });
        }
    }
    None
}

/// The initramfs builder, from its configuration files.
pub fn initramfs(root: &HostRoot) -> Option<Initramfs> {
    if root.exists("/etc/booster.yaml") {
        return Some(Initramfs::Booster);
    }
    if root.exists("/etc/mkinitcpio.conf") || root.exists("/etc/mkinitcpio.conf.d") {
        return Some(Initramfs::Mkinitcpio);
    }
    if root.exists("/etc/dracut.conf") || root.exists("/etc/dracut.conf.d") {
        return Some(Initramfs::Dracut);
    }
    if root.exists("/etc/initramfs-tools") {
        return Some(Initramfs::InitramfsTools);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(files: &[&str]) -> (tempfile::TempDir, HostRoot) {
        let d = tempfile::tempdir().unwrap();
        let r = HostRoot::new(d.path());
        for f in files {
            let p = r.path(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x\n").unwrap();
        }
        (d, r)
    }

    #[test]
    fn detects_from_files() {
        let (_d, r) = host(&["/etc/default/grub", "/usr/sbin/update-grub", "/etc/initramfs-tools/modules"]);
        assert_eq!(bootloader(&r), Some(Bootloader::Grub { regenerate: vec!["update-grub".into()] }));
        assert_eq!(initramfs(&r), Some(Initramfs::InitramfsTools));
        let (_d, r) = host(&[
            "/etc/default/grub",
            "/boot/loader/entries/a.conf",
            "/usr/sbin/grubby",
            "/etc/dracut.conf.d/x.conf",
        ]);
        assert!(matches!(bootloader(&r), Some(Bootloader::LoaderEntries { grub_bls: true, .. })));
        assert_eq!(initramfs(&r), Some(Initramfs::Dracut));
        let (_d, r) = host(&[
            "/boot/loader/loader.conf",
            "/boot/loader/entries/arch.conf",
            "/boot/loader/entries/arch-lts.conf",
            "/etc/mkinitcpio.conf",
        ]);
        std::fs::write(r.path("/boot/loader/loader.conf"), "default arch.conf\n").unwrap();
        match bootloader(&r) {
            Some(Bootloader::LoaderEntries { default, grub_bls: false, .. }) => {
                assert_eq!(default, Some("/boot/loader/entries/arch.conf".into()))
            }
            other => panic!("{other:?}"),
        }
        let (_d, r) = host(&["/etc/kernel/cmdline", "/etc/default/grub"]);
        assert_eq!(bootloader(&r), Some(Bootloader::KernelInstall));
        let (_d, r) = host(&["/etc/kernelstub/configuration"]);
        assert_eq!(bootloader(&r), Some(Bootloader::Kernelstub));
        let (_d, r) = host(&["/boot/refind_linux.conf", "/etc/booster.yaml"]);
        assert!(matches!(bootloader(&r), Some(Bootloader::Refind { .. })));
        assert_eq!(initramfs(&r), Some(Initramfs::Booster));
        let (_d, r) = host(&["/boot/limine/limine.conf"]);
        assert!(matches!(bootloader(&r), Some(Bootloader::Limine { .. })));
        let (_d, r) = host(&[]);
        assert_eq!(bootloader(&r), None);
        assert_eq!(initramfs(&r), None);
    }
}
