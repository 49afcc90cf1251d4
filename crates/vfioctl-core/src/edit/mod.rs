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
mod text;

#[cfg(test)]
mod fuzzgen;

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
