//! From a plan to a [`Changeset`]: which files of this host change, and how, through the
//! surgical editors of `vfioctl_core::edit`, and which commands regenerate what depends
//! on them.

use std::path::{Path, PathBuf};

use vfioctl_core::edit::{self, CmdlineEdit, EditError};
use vfioctl_core::plan::Plan;

use super::detect::{self, Bootloader, Initramfs};
use super::{Changeset, Command, FileChange};
use crate::root::HostRoot;

/// Where a change could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no boot loader configuration found (/etc/default/grub, loader entries, /etc/kernel/cmdline, kernelstub, refind_linux.conf, limine.conf)")]
    NoBootloader,
    #[error("{path}: {source}")]
    Edit {
        path: PathBuf,
        #[source]
        source: EditError,
    },
    #[error(
        "--boot-entry separate is not supported with {0} yet; apply with the default entry, or add an entry by hand"
    )]
    NoSeparateEntry(&'static str),
}

/// What the plan changes on this host, and notes for the user.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub changes: Changeset,
    pub bootloader: Option<String>,
    pub initramfs: Option<String>,
    pub notes: Vec<String>,
}

fn read(root: &HostRoot, p: &Path) -> Option<String> {
    root.read_optional(p).ok().flatten()
}

fn edited(path: &Path, r: Result<String, EditError>) -> Result<String, ChangeError> {
    r.map_err(|source| ChangeError::Edit { path: path.to_path_buf(), source })
}

/// Splits a planned owned file into its header comment and its lines.
fn owned(root: &HostRoot, path: &str, planned: &str) -> FileChange {
    let mut lines = planned.lines();
    let header = lines.next().unwrap_or("").to_string();
    let body: Vec<String> = lines.map(str::to_string).collect();
    let current = read(root, Path::new(path));
    FileChange {
        path: path.into(),
        after: edit::owned::owned_file(current.as_deref(), &format!("{header}\n"), &body).into_bytes(),
        why: "module options for the passthrough".into(),
        new_mode: None,
    }
}

/// modprobe.d text without `ids=` on `options vfio-pci` lines (a line left with no
/// option goes).
fn without_vfio_ids(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 2 && w[0] == "options" && (w[1] == "vfio-pci" || w[1] == "vfio_pci") {
            let rest: Vec<&str> = w[2..].iter().copied().filter(|o| !o.starts_with("ids=")).collect();
            if !rest.is_empty() {
                out.push_str(&format!("options {} {}\n", w[1], rest.join(" ")));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `/etc/grub.d` script behind `--boot-entry separate` on GRUB.
pub const GRUB_SEPARATE: &str = "/etc/grub.d/41_vfioctl";

/// A grub.d script that runs GRUB's own `10_linux` again with the edited command line and
/// a distinct title; it sorts after `10_linux`, so the default entry stays the old one.
fn grub_separate_script(default_grub: &str, e: &CmdlineEdit) -> String {
    let vars = vfioctl_core::grub::assignments(default_grub);
    let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
    let only_removals = CmdlineEdit { add: Vec::new(), remove: e.remove.clone() };
    let linux = edit::cmdline::edit(&get("GRUB_CMDLINE_LINUX"), &only_removals);
    let default = edit::cmdline::edit(&get("GRUB_CMDLINE_LINUX_DEFAULT"), e);
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    format!(
        "#!/bin/sh\n# Written by vfioctl: a boot entry with the passthrough parameters, after the default one.\n\
         # `vfioctl rollback` removes it.\n\
         export GRUB_CMDLINE_LINUX={}\n\
         export GRUB_CMDLINE_LINUX_DEFAULT={}\n\
         export GRUB_DISTRIBUTOR=\"${{GRUB_DISTRIBUTOR:-Linux}} (vfioctl passthrough)\"\n\
         export GRUB_DISABLE_SUBMENU=true\n\
         export GRUB_DISABLE_RECOVERY=true\n\
         exec /etc/grub.d/10_linux\n",
        quote(&linux),
        quote(&default)
    )
}

/// Prepares the changes for a plan.
pub fn prepare(root: &HostRoot, plan: &Plan, separate_entry: bool) -> Result<Prepared, ChangeError> {
    let mut p = Prepared::default();
    let e = CmdlineEdit { add: plan.kernel_cmdline.add.clone(), remove: plan.kernel_cmdline.remove.clone() };
    let boot = detect::bootloader(root).ok_or(ChangeError::NoBootloader)?;
    p.bootloader = Some(boot.name().to_string());
    let cmdline_changes = !e.add.is_empty() || !e.remove.is_empty();
    let push = |p: &mut Prepared, path: &Path, after: String, why: &str| {
        p.changes.files.push(FileChange {
            path: path.to_path_buf(),
            after: after.into_bytes(),
            why: why.to_string(),
            new_mode: None,
        })
    };
    if cmdline_changes {
        match &boot {
            Bootloader::Grub { regenerate } => {
                let path = Path::new("/etc/default/grub");
                if separate_entry {
                    let text = read(root, path).unwrap_or_default();
                    p.changes.files.push(FileChange {
                        path: GRUB_SEPARATE.into(),
                        after: grub_separate_script(&text, &e).into_bytes(),
                        why: "a separate GRUB entry with the passthrough parameters (after the default one)".into(),
                        new_mode: Some(0o755),
                    });
                    p.notes.push(
                        "the default GRUB entry stays as it was; choose \"… (vfioctl passthrough)\" in the boot menu"
                            .into(),
                    );
                } else {
                    let after = edited(path, edit::grub::edit(read(root, path).as_deref(), &e))?;
                    push(&mut p, path, after, "kernel command line (GRUB_CMDLINE_LINUX_DEFAULT)");
                }
                p.changes.commands.push(Command { argv: regenerate.clone(), why: "regenerate grub.cfg".into() });
            }
            Bootloader::LoaderEntries { entries, default, grub_bls, .. } => {
                let targets: Vec<&PathBuf> = if *grub_bls {
                    entries.iter().collect()
                } else {
                    vec![default.as_ref().or(entries.last()).unwrap_or(&entries[0])]
                };
                for path in targets {
                    let current = read(root, path).unwrap_or_default();
                    if separate_entry && !grub_bls {
                        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                        let new = path.with_file_name(format!("{name}-vfioctl.conf"));
                        let after =
                            edited(path, edit::loader_entry::separate_entry(&current, &e, " (vfioctl passthrough)"))?;
                        push(&mut p, &new, after, "a separate boot entry with the passthrough parameters");
                        p.notes
                            .push(format!("{} stays as it was; choose the new entry in the boot menu", path.display()));
                    } else {
                        let after = edited(path, edit::loader_entry::edit(Some(&current), &e))?;
                        push(&mut p, path, after, "kernel command line of the boot entry");
                    }
                }
                if *grub_bls {
                    let path = Path::new("/etc/default/grub");
                    if let Some(text) = read(root, path) {
                        let after = edited(path, edit::grub::edit(Some(&text), &e))?;
                        push(&mut p, path, after, "kernel command line for kernels installed later");
                    }
                }
            }
            Bootloader::KernelInstall => {
                let path = Path::new("/etc/kernel/cmdline");
                let after = edited(path, edit::kernel_cmdline_file::edit(read(root, path).as_deref(), &e))?;
                push(&mut p, path, after, "kernel command line for kernel-install / UKIs");
                p.changes.commands.push(Command {
                    argv: vec!["kernel-install".into(), "add-all".into()],
                    why: "rewrite the boot entries (or UKIs) of every kernel".into(),
                });
            }
            Bootloader::Kernelstub => {
                let path = Path::new("/etc/kernelstub/configuration");
                let after = edited(path, edit::kernelstub::edit(read(root, path).as_deref(), &e))?;
                push(&mut p, path, after, "kernelstub's kernel options");
                p.changes
                    .commands
                    .push(Command { argv: vec!["kernelstub".into()], why: "write the boot entry".into() });
            }
            Bootloader::Refind { path } => {
                let current = read(root, path);
                let after = if separate_entry {
                    edited(path, edit::refind::separate_entry(current.as_deref().unwrap_or(""), &e))?
                } else {
                    edited(path, edit::refind::edit(current.as_deref(), &e))?
                };
                push(&mut p, path, after, "rEFInd's boot options");
            }
            Bootloader::Limine { path } => {
                let current = read(root, path);
                let after = if separate_entry {
                    edited(path, edit::limine::separate_entry(current.as_deref().unwrap_or(""), &e))?
                } else {
                    edited(path, edit::limine::edit(current.as_deref(), &e))?
                };
                push(&mut p, path, after, "Limine's kernel command line");
            }
        }
    }

    // modprobe.d. With a separate boot entry the ids live on that entry's command line
    // only, so the default entry leaves the devices to their host drivers.
    for f in &plan.modprobe {
        let content = if separate_entry { without_vfio_ids(&f.content) } else { f.content.clone() };
        p.changes.files.push(owned(root, &f.path, &content));
    }
    if separate_entry {
        p.notes.push("the devices are reserved by vfio-pci.ids on the new entry's command line only; the default entry leaves them to their host drivers".into());
    }

    // Early modules.
    let modules = &plan.initramfs_modules;
    match detect::initramfs(root) {
        Some(kind) => {
            p.initramfs = Some(kind.name().to_string());
            let (path, after) = match kind {
                Initramfs::InitramfsTools => {
                    let path = PathBuf::from("/etc/initramfs-tools/modules");
                    let after = edited(&path, edit::initramfs_tools::edit(read(root, &path).as_deref(), modules))?;
                    (path, after)
                }
                Initramfs::Mkinitcpio => {
                    let path = PathBuf::from("/etc/mkinitcpio.conf");
                    let after = edited(&path, edit::mkinitcpio::edit(read(root, &path).as_deref(), modules))?;
                    (path, after)
                }
                Initramfs::Dracut => {
                    let path = PathBuf::from("/etc/dracut.conf.d/vfioctl.conf");
                    let after = edited(&path, edit::dracut::edit(read(root, &path).as_deref(), modules))?;
                    (path, after)
                }
                Initramfs::Booster => {
                    let path = PathBuf::from("/etc/booster.yaml");
                    let after = edited(&path, edit::booster::edit(read(root, &path).as_deref(), modules))?;
                    (path, after)
                }
            };
            push(&mut p, &path, after, "load the vfio modules early");
            p.changes.commands.push(Command { argv: kind.regenerate(), why: "rebuild the initramfs".into() });
        }
        None => p.notes.push("no initramfs builder found: make sure vfio-pci loads before the GPU driver".into()),
    }

    // Hugepages allocated when the guest starts: a sysctl drop-in on single-node hosts.
    if let Some(h) = plan.memory.hugepages.as_ref().filter(|h| !h.reserve_at_boot) {
        if plan.numa_node == Some(0) && !root.exists("/sys/devices/system/node/node1") {
            let path = Path::new("/etc/sysctl.d/80-vfioctl-hugepages.conf");
            push(
                &mut p,
                path,
                format!(
                    "# Written by vfioctl: {} hugepages of 2 MiB for the guest.\nvm.nr_hugepages = {}\n",
                    h.count, h.count
                ),
                "reserve the guest's 2 MiB hugepages early at boot",
            );
        } else {
            p.notes.push(format!(
                "allocate the hugepages on node {} before starting the guest: echo {} > /sys/devices/system/node/node{}/hugepages/hugepages-2048kB/nr_hugepages",
                h.node.unwrap_or(0),
                h.count,
                h.node.unwrap_or(0)
            ));
        }
    }
    // Only files whose content changes, and commands only when something changes.
    let changed = super::pending(root, &p.changes).len();
    if changed == 0 {
        p.changes.commands.clear();
    }
    Ok(p)
}
