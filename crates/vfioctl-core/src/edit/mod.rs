//! Surgical edits of the files `vfioctl apply` changes. Each editor is a pure function
//! from the file's current text (or `None` when it does not exist) to its new text:
//! comments, quoting style and unrelated settings are kept; applying the same change
//! twice gives the same text as applying it once.
//!
//! Kernel command line: [`grub`], [`loader_entry`], [`kernel_cmdline_file`],
//! [`kernelstub`], [`refind`], [`limine`] (all over a [`CmdlineEdit`], merged by the rules
//! of [`cmdline::edit`]). Early modules: [`initramfs_tools`], [`mkinitcpio`], [`dracut`],
//! [`booster`]. Files vfioctl owns: [`owned`]; modprobe.d across its directories: [`modprobe_d`]. libvirt's QEMU driver settings: [`qemu_conf`].

pub mod booster;
pub mod cmdline;
pub mod dracut;
pub mod grub;
pub mod initramfs_tools;
pub mod kernel_cmdline_file;
pub mod kernelstub;
pub mod limine;
pub mod loader_entry;
pub mod mkinitcpio;
pub mod modprobe_d;
pub mod owned;
pub mod qemu_conf;
pub mod refind;
pub mod sysctl;
mod text;

#[cfg(test)]
mod fuzzgen;

/// The drop-in files a program reads from several directories, in its order: every name
/// ending in `ext`, sorted by name, a name in an earlier directory of `listing` (directory
/// and names, highest priority first) hiding the same name in later ones (modprobe.d,
/// dracut.conf.d, sysctl.d and the other systemd-style drop-in directories).
pub fn dropin_order(listing: &[(&str, Vec<String>)], ext: &str) -> Vec<String> {
    let mut by_name: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for (dir, names) in listing {
        for n in names.iter().filter(|n| n.ends_with(ext)) {
            by_name.entry(n).or_insert_with(|| format!("{}/{n}", dir.trim_end_matches('/')));
        }
    }
    by_name.into_values().collect()
}

/// Kernel command line parameters to add and remove (a plan's `kernel_cmdline`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdlineEdit {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Why a file could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{what}: {reason}")]
    Unsupported { what: String, reason: String },
}
