//! From a plan to a [`Changeset`]: which files of this host change, and how, through the
//! surgical editors of `vfioctl_core::edit`, and which commands regenerate what depends
//! on them.

use std::path::{Path, PathBuf};

use vfioctl_core::edit::{self, CmdlineEdit, EditError};
use vfioctl_core::plan::Plan;

use super::{Changeset, Command, FileChange};
use crate::boot::{Bootloader, Initramfs};
use crate::host::Host;
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
    /// A file that must be read to be edited exists but cannot be read (permissions).
    #[error(transparent)]
    Read(crate::root::RootError),
    /// A file that decides the next boot cannot be read or understood.
    #[error("cannot tell how this host boots: {0}")]
    Boot(String),
    /// The edited files would not give the next boot what the plan asks for.
    /// A separate boot entry carries vfio-pci.ids on its own command line; a binding by
    /// address lives in modprobe.d, which every entry reads.
    #[error("--boot-entry separate cannot bind {0} by address: modprobe.d, where that binding lives, applies to every boot entry; apply with the default entry, or with --bind id when no device of the host shares their ids")]
    SeparateByAddress(String),
    #[error("{files}: after the edit {wrong}, so nothing was written; please report this with a `vfioctl snapshot`, and edit the file that wins by hand")]
    NotEffective { files: String, wrong: String },
}

fn grub_files(root: &HostRoot) -> Result<Vec<(PathBuf, String)>, ChangeError> {
    crate::boot::grub_files(root).map_err(ChangeError::Read)
}

/// The GRUB edit, made where it wins: the plan's additions go to the last file that sets
/// `GRUB_CMDLINE_LINUX_DEFAULT` (a cloud image's grub.d drop-in replaces the main file's
/// value), its removals to every file.
fn grub_edit(root: &HostRoot, e: &CmdlineEdit) -> Result<Vec<(PathBuf, String)>, ChangeError> {
    let files = grub_files(root)?;
    let winner = crate::boot::grub_winner(&files);
    let removals = CmdlineEdit { add: Vec::new(), remove: e.remove.clone() };
    let mut out = Vec::new();
    if files.is_empty() {
        let path = PathBuf::from(crate::boot::DEFAULT_GRUB);
        out.push((path.clone(), edited(&path, edit::grub::edit(None, e))?));
    }
    for (i, (path, text)) in files.iter().enumerate() {
        let new = if i == winner {
            edited(path, edit::grub::edit(Some(text), e))?
        } else if i > winner {
            edited(path, edit::grub::edit_later(text, e))?
        } else {
            edited(path, edit::grub::edit(Some(text), &removals))?
        };
        if i == winner || new != *text {
            out.push((path.clone(), new));
        }
    }
    Ok(out)
}

/// What the plan changes on this host, and notes for the user.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub changes: Changeset,
    pub bootloader: Option<String>,
    pub initramfs: Option<String>,
    pub notes: Vec<String>,
}

/// A file to edit: its text, `None` when absent; unreadable is an error, never absent.
fn read(root: &HostRoot, p: &Path) -> Result<Option<String>, ChangeError> {
    root.read_optional(p).map_err(ChangeError::Read)
}

fn edited(path: &Path, r: Result<String, EditError>) -> Result<String, ChangeError> {
    r.map_err(|source| ChangeError::Edit { path: path.to_path_buf(), source })
}

/// The modprobe.d edits of the plan, placed where kmod's merge of every modprobe.d
/// directory makes them take effect ([`edit::modprobe_d::place`]), and checked against
/// that merge after the edit.
fn modprobe_changes(root: &HostRoot, planned: &[(String, String)]) -> Result<Vec<FileChange>, ChangeError> {
    use edit::modprobe_d;
    let mut files = crate::facts::modprobe_files(root).map_err(ChangeError::Read)?;
    let mut out: Vec<FileChange> = Vec::new();
    let mut all_lines = Vec::new();
    for (path, content) in planned {
        let mut lines = content.lines();
        let header = format!("{}\n", lines.next().unwrap_or(""));
        let body: Vec<String> = lines.map(str::to_string).collect();
        let changed = modprobe_d::place(&files, path, &header, &body);
        files = modprobe_d::with_changes(&files, &changed);
        for c in changed {
            let why = if c.path == *path {
                "module options for the passthrough".to_string()
            } else if root.exists(&c.path) {
                "module options for the passthrough (this file's value is the one modprobe uses)".to_string()
            } else {
                "module options for the passthrough (overrides the distribution's file of the same name, whose value modprobe used)".to_string()
            };
            match out.iter_mut().find(|f| f.path == Path::new(&c.path)) {
                Some(f) => f.after = c.text.into_bytes(),
                None => out.push(FileChange::new(&c.path, c.text, why)),
            }
        }
        all_lines.extend(body);
    }
    let lacking = modprobe_d::lacking(&files, &all_lines);
    if !lacking.is_empty() {
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        return Err(ChangeError::NotEffective {
            files: names.join(", "),
            wrong: format!("modprobe would still not pass {}", lacking.join(", ")),
        });
    }
    Ok(out)
}

/// The mkinitcpio change that makes `modules` load first: in the last file (of the
/// configuration file the presets build from and its drop-ins, sourced in order) that
/// sets `MODULES=` anew, since what came before it is gone; else in that configuration
/// file. Checked against the
/// files as bash sources them after the edit.
fn mkinitcpio_change(root: &HostRoot, modules: &[String]) -> Result<(PathBuf, String), ChangeError> {
    let files = crate::boot::mkinitcpio_files(root).map_err(ChangeError::Boot)?;
    let at = files.iter().rposition(|(_, t)| edit::mkinitcpio::sets_modules(t));
    let (path, current) = match at {
        Some(i) => (files[i].0.clone(), Some(files[i].1.clone())),
        None => {
            let main = crate::boot::mkinitcpio_config(root).map_err(ChangeError::Boot)?;
            let current = files.iter().find(|(p, _)| *p == main).map(|(_, t)| t.clone());
            (main, current)
        }
    };
    let after = edited(&path, edit::mkinitcpio::edit(current.as_deref(), modules))?;
    let mut all = files.clone();
    match all.iter_mut().find(|(p, _)| *p == path) {
        Some(f) => f.1 = after.clone(),
        None => all.insert(0, (path.clone(), after.clone())),
    }
    let loaded: Vec<String> = all
        .iter()
        .fold(Vec::new(), |m, (_, t)| edit::mkinitcpio::modules(&m, t))
        .iter()
        .map(|m| m.replace('-', "_"))
        .collect();
    let lacking: Vec<&str> =
        modules.iter().filter(|m| !loaded.contains(&m.replace('-', "_"))).map(String::as_str).collect();
    if !lacking.is_empty() {
        let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        return Err(ChangeError::NotEffective {
            files: names.join(", "),
            wrong: format!("mkinitcpio's MODULES would still lack {}", lacking.join(", ")),
        });
    }
    Ok((path, after))
}

/// The dracut change that makes `modules` load early: vfioctl's drop-in, unless dracut's
/// configuration (`/etc/dracut.conf` and both drop-in directories, sourced in order) forces
/// them already; when a file sourced after the drop-in replaces the list
/// (`force_drivers="…"`), the modules go at that file's end instead. Checked against the
/// files as dracut sources them after the edit.
fn dracut_change(root: &HostRoot, modules: &[String]) -> Result<Option<(PathBuf, String)>, ChangeError> {
    use crate::boot::{DRACUT_CONF, DRACUT_DIRS};
    let own = PathBuf::from("/etc/dracut.conf.d/vfioctl.conf");
    let files = crate::boot::dracut_files(root).map_err(ChangeError::Read)?;
    let forced = |fs: &[(PathBuf, String)]| -> Vec<String> {
        fs.iter()
            .fold(Vec::new(), |m, (_, t)| edit::dracut::forced(&m, t))
            .iter()
            .map(|m| m.replace('-', "_"))
            .collect()
    };
    let lacking = |fs: &[(PathBuf, String)]| -> Vec<String> {
        let f = forced(fs);
        modules.iter().filter(|m| !f.contains(&m.replace('-', "_"))).cloned().collect()
    };
    let wanted = lacking(&files);
    if wanted.is_empty() {
        return Ok(None);
    }
    let with = |path: &Path, text: String| -> Vec<(PathBuf, String)> {
        let mut fs = files.clone();
        let name = path.file_name();
        if let Some(f) =
            fs.iter_mut().find(|(p, _)| p == path || (p != Path::new(DRACUT_CONF) && p.file_name() == name))
        {
            *f = (path.to_path_buf(), text);
        } else {
            let at =
                fs.iter().position(|(p, _)| p != Path::new(DRACUT_CONF) && p.file_name() > name).unwrap_or(fs.len());
            fs.insert(at, (path.to_path_buf(), text));
        }
        fs
    };
    let current = files.iter().find(|(p, _)| *p == own).map(|(_, t)| t.clone());
    let text = edited(&own, edit::dracut::edit(current.as_deref(), &wanted))?;
    if lacking(&with(&own, text.clone())).is_empty() {
        return Ok(Some((own, text)));
    }
    // A later file sets the list anew: the last one that does, when it is the
    // administrator's, gets the modules at its end.
    let last = files.iter().rev().find(|(_, t)| edit::dracut::replaces(t)).map(|(p, t)| (p.clone(), t.clone()));
    if let Some((path, t)) = last.filter(|(p, _)| !p.starts_with(DRACUT_DIRS[1])) {
        let text = edited(&path, edit::dracut::edit(Some(&t), &wanted))?;
        if lacking(&with(&path, text.clone())).is_empty() {
            return Ok(Some((path, text)));
        }
    }
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    Err(ChangeError::NotEffective {
        files: names.join(", "),
        wrong: format!("dracut would still not force {} into the initramfs", wanted.join(", ")),
    })
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

/// A grub.d script that runs GRUB's own `10_linux` again with the edited command line (the
/// values `/etc/default/grub` and its drop-ins leave) and a distinct title; it sorts after
/// `10_linux`, so the default entry stays the old one.
fn grub_separate_script(files: &[(PathBuf, String)], e: &CmdlineEdit) -> String {
    let vars = edit::grub::variables(files.iter().map(|(_, t)| t.as_str()));
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

impl Prepared {
    /// Records what each file holds now on `root` (the real one, not a baseline view): the
    /// diffs start from it and the apply checks it again. Keeps only the commands when some
    /// file changes.
    pub fn finish(&mut self, root: &HostRoot) -> Result<(), ChangeError> {
        self.changes.record_before(root).map_err(ChangeError::Read)?;
        if self.changes.pending().is_empty() {
            self.changes.commands.clear();
        }
        Ok(())
    }
}

/// Prepares the changes for a plan, on the boot setup the host's one detection found. The
/// host may be one seen as it was before vfioctl's earlier applies
/// ([`super::Baseline::root`]); [`Prepared::finish`] then records what each file holds now
/// ([`FileChange::before`]).
pub fn prepare(host: &Host, plan: &Plan, separate_entry: bool) -> Result<Prepared, ChangeError> {
    if separate_entry && !plan.vfio_addresses.is_empty() {
        return Err(ChangeError::SeparateByAddress(plan.vfio_addresses.join(", ")));
    }
    let root = host.root();
    let setup = host.boot();
    let mut p = Prepared::default();
    p.changes.expect = Some(vfioctl_core::verify::Expectation::from_plan(plan, separate_entry));
    let e = CmdlineEdit { add: plan.kernel_cmdline.add.clone(), remove: plan.kernel_cmdline.remove.clone() };
    if let Some(problem) = &setup.problem {
        return Err(ChangeError::Boot(problem.clone()));
    }
    let boot = setup.loader.as_ref().ok_or(ChangeError::NoBootloader)?;
    p.bootloader = Some(boot.name().to_string());
    p.notes.extend(setup.passed_over.iter().map(|o| format!("also configured, not what decides the next boot: {o}")));
    let cmdline_changes = !e.add.is_empty() || !e.remove.is_empty();
    let push = |p: &mut Prepared, path: &Path, after: String, why: &str| {
        p.changes.files.push(FileChange::new(path, after, why));
    };
    if cmdline_changes {
        match &boot {
            Bootloader::Grub { regenerate } => {
                if separate_entry {
                    p.changes.files.push(
                        FileChange::new(
                            GRUB_SEPARATE,
                            grub_separate_script(&grub_files(root)?, &e),
                            "a separate GRUB entry with the passthrough parameters (after the default one)",
                        )
                        .mode(0o755),
                    );
                    p.notes.push(
                        "the default GRUB entry stays as it was; choose \"… (vfioctl passthrough)\" in the boot menu"
                            .into(),
                    );
                } else {
                    for (path, after) in grub_edit(root, &e)? {
                        let why = if path == Path::new(crate::boot::DEFAULT_GRUB) {
                            "kernel command line (GRUB_CMDLINE_LINUX_DEFAULT)"
                        } else {
                            "kernel command line (GRUB_CMDLINE_LINUX_DEFAULT: this drop-in's value is the one grub-mkconfig uses)"
                        };
                        push(&mut p, &path, after, why);
                    }
                }
                p.changes.commands.push(Command { argv: regenerate.clone(), why: "regenerate grub.cfg".into() });
            }
            Bootloader::LoaderEntries { entries, grub_bls, .. } => {
                // The entry the detection read the next boot's command line from.
                let targets: Vec<&Path> = if *grub_bls {
                    entries.iter().map(PathBuf::as_path).collect()
                } else {
                    boot.default_entry().into_iter().collect()
                };
                for path in targets {
                    let current = read(root, path)?.unwrap_or_default();
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
                        // The separate entry an earlier apply added, now that the default
                        // entry has the parameters.
                        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                        let old = path.with_file_name(format!("{name}-vfioctl.conf"));
                        if read(root, &old)?.is_some_and(|t| t.contains("(vfioctl passthrough)")) {
                            p.changes.files.push(FileChange::removal(
                                &old,
                                "this plan edits the default boot entry instead of a separate one",
                            ));
                        }
                    }
                }
                if *grub_bls {
                    let path = Path::new("/etc/default/grub");
                    if let Some(text) = read(root, path)? {
                        let after = edited(path, edit::grub::edit(Some(&text), &e))?;
                        push(&mut p, path, after, "kernel command line for kernels installed later");
                    }
                    // kernel-install's plugins (grubby on RHEL 9) seed new entries from it.
                    let path = Path::new(crate::boot::KERNEL_CMDLINE);
                    if let Some(text) = read(root, path)? {
                        let after = edited(path, edit::kernel_cmdline_file::edit(Some(&text), &e))?;
                        push(&mut p, path, after, "kernel command line for kernels installed later");
                    }
                }
            }
            Bootloader::KernelInstall { uki } => {
                let path = Path::new("/etc/kernel/cmdline");
                let after = edited(path, edit::kernel_cmdline_file::edit(read(root, path)?.as_deref(), &e))?;
                push(&mut p, path, after, "kernel command line for kernel-install / UKIs");
                if *uki {
                    p.notes.push(
                        "mkinitcpio builds the unified kernel images from /etc/kernel/cmdline: rebuilding them (mkinitcpio -P) carries the change into the next boot"
                            .into(),
                    );
                } else {
                    p.changes.commands.push(Command {
                        argv: vec!["kernel-install".into(), "add-all".into()],
                        why: "rewrite the boot entries (or UKIs) of every kernel".into(),
                    });
                }
            }
            Bootloader::Kernelstub => {
                let path = Path::new("/etc/kernelstub/configuration");
                let after = edited(path, edit::kernelstub::edit(read(root, path)?.as_deref(), &e))?;
                push(&mut p, path, after, "kernelstub's kernel options");
                p.changes
                    .commands
                    .push(Command { argv: vec!["kernelstub".into()], why: "write the boot entry".into() });
            }
            Bootloader::Refind { path } => {
                let current = read(root, path)?;
                let after = if separate_entry {
                    edited(path, edit::refind::separate_entry(current.as_deref().unwrap_or(""), &e))?
                } else {
                    edited(path, edit::refind::edit(current.as_deref(), &e))?
                };
                push(&mut p, path, after, "rEFInd's boot options");
            }
            Bootloader::Limine { path } => {
                let current = read(root, path)?;
                let after = if separate_entry {
                    edited(path, edit::limine::separate_entry(current.as_deref().unwrap_or(""), &e))?
                } else {
                    edited(path, edit::limine::edit(current.as_deref(), &e))?
                };
                push(&mut p, path, after, "Limine's kernel command line");
            }
        }
    }

    // The check after the edit: the boot setup detected again, on the host as the edited
    // files would leave it, gives a next boot's command line with every addition in
    // effect and no removal (a separate entry leaves the default one as it was).
    if cmdline_changes && !separate_entry {
        let view = root.with_baseline(p.changes.files.iter().map(|f| {
            (f.path.clone(), (!f.remove).then(|| std::sync::Arc::from(String::from_utf8_lossy(&f.after).as_ref())))
        }));
        let after = crate::boot::detect(&view);
        let line = after.next_boot.map(|n| n.cmdline.to_string()).unwrap_or_default();
        let wrong = edit::cmdline::lacking(&line, &e);
        if !wrong.is_empty() {
            let files: Vec<String> = p.changes.files.iter().map(|f| f.path.display().to_string()).collect();
            return Err(ChangeError::NotEffective {
                files: files.join(", "),
                wrong: format!("the next boot's command line would still {}", wrong.join(", ")),
            });
        }
    }

    // modprobe.d. With a separate boot entry the ids live on that entry's command line
    // only, so the default entry leaves the devices to their host drivers.
    let planned: Vec<(String, String)> = plan
        .modprobe
        .iter()
        .map(|f| (f.path.clone(), if separate_entry { without_vfio_ids(&f.content) } else { f.content.clone() }))
        .collect();
    p.changes.files.extend(modprobe_changes(root, &planned)?);
    if separate_entry {
        p.notes.push("the devices are reserved by vfio-pci.ids on the new entry's command line only; the default entry leaves them to their host drivers".into());
    }

    // udev rules (vendor-reset's reset): vfioctl's own file is the plan's; a file of the
    // same name that vfioctl did not write keeps every line and gains the plan's.
    for f in &plan.udev_rules {
        let path = Path::new(&f.path);
        let after = owned_text(root, path, &f.content)?;
        push(
            &mut p,
            path,
            after,
            "select vendor-reset's reset for the cards that do not reset otherwise (at the next boot)",
        );
    }

    // Early modules.
    let modules = &plan.initramfs_modules;
    let kernel = root
        .read_optional("/proc/sys/kernel/osrelease")
        .ok()
        .flatten()
        .and_then(|r| vfioctl_core::kmod::kernel_version(r.trim()));
    if kernel.is_some_and(|v| v >= (6, 2))
        && setup.initramfs_modules.as_ref().is_some_and(|m| m.contains("vfio_virqfd"))
    {
        p.notes.push(
            "the initramfs configuration still lists vfio_virqfd, which is part of vfio since Linux 6.2: the builder finds no such module (mkinitcpio stops with 'module not found'); remove it from the list".into(),
        );
    }
    match setup.initramfs.clone() {
        Some(kind) => {
            p.initramfs = Some(kind.name().to_string());
            let early = match kind {
                Initramfs::InitramfsTools => {
                    let path = PathBuf::from("/etc/initramfs-tools/modules");
                    let after = edited(&path, edit::initramfs_tools::edit(read(root, &path)?.as_deref(), modules))?;
                    Some((path, after))
                }
                Initramfs::Mkinitcpio => {
                    if crate::boot::mkinitcpio_hooks(root).is_some_and(|h| !h.iter().any(|x| x == "modconf")) {
                        p.notes.push(
                            "/etc/mkinitcpio.conf: HOOKS has no `modconf`, so the initramfs carries no /etc/modprobe.d and vfio-pci's options there (disable_vga, the ids) do not reach the early boot; vfio-pci.ids on the kernel command line still reserve the devices. Add `modconf` to HOOKS after `autodetect`, as mkinitcpio's default has it, and run `mkinitcpio -P`".into(),
                        );
                    }
                    Some(mkinitcpio_change(root, modules)?)
                }
                Initramfs::Dracut => dracut_change(root, modules)?,
                Initramfs::Booster => {
                    let path = PathBuf::from("/etc/booster.yaml");
                    let after = edited(&path, edit::booster::edit(read(root, &path)?.as_deref(), modules))?;
                    Some((path, after))
                }
            };
            if let Some((path, after)) = early {
                push(&mut p, &path, after, "load the vfio modules early");
                p.changes.commands.push(Command { argv: kind.regenerate(), why: "rebuild the initramfs".into() });
            }
        }
        None => p.notes.push("no initramfs builder found: make sure vfio-pci loads before the GPU driver".into()),
    }

    // 2 MiB hugepages, allocated after boot: a sysctl drop-in on single-node hosts.
    let sysctl = Path::new(SYSCTL_HUGEPAGES);
    let mut wants_sysctl = false;
    if let Some(h) = plan.memory.hugepages.as_ref().filter(|h| !h.reserve_at_boot) {
        if plan.numa_node == Some(0) && !root.exists("/sys/devices/system/node/node1") {
            wants_sysctl = true;
            let path = sysctl;
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
    // Hugepage reservations elsewhere in sysctl's files conflict with the plan's: with
    // 1 GiB pages as the default size they would count 1 GiB pages, and a later file's
    // count would replace the plan's. They are commented out (backed up like every edit).
    if let Some(h) = plan.memory.hugepages.as_ref() {
        let why = if h.reserve_at_boot {
            format!(
                "the guest's {} hugepages of {} are reserved on the kernel command line",
                h.count,
                if h.size_kib >= 1 << 20 { "1 GiB" } else { "2 MiB" }
            )
        } else {
            format!("the guest's {} hugepages of 2 MiB are set in {SYSCTL_HUGEPAGES}", h.count)
        };
        for (path, text) in sysctl_files(root)? {
            if path == Path::new(SYSCTL_HUGEPAGES) {
                continue;
            }
            let set = edit::sysctl::settings(&text, edit::sysctl::HUGEPAGE_KEYS);
            if set.is_empty() {
                continue;
            }
            let lines: Vec<String> = set.iter().map(|(n, k, v)| format!("line {n}: {k} = {v}")).collect();
            if path.starts_with("/etc") {
                let after = edit::sysctl::comment_out(
                    &text,
                    edit::sysctl::HUGEPAGE_KEYS,
                    "conflicts with the plan's hugepages",
                );
                push(
                    &mut p,
                    &path,
                    after,
                    &format!("hugepage reservation that conflicts with the plan ({}): {why}", lines.join(", ")),
                );
            } else {
                p.notes.push(format!(
                    "{} reserves hugepages ({}), which conflicts with the plan's: {why}; override it with a file of the same name in /etc/sysctl.d",
                    path.display(),
                    lines.join(", ")
                ));
            }
        }
    }

    // Files an earlier plan wrote that this one does not want: removed, so that applying
    // this plan after another leaves what applying it alone would.
    let mut unwanted = Vec::new();
    if !wants_sysctl {
        unwanted.push((sysctl, "this plan reserves no 2 MiB hugepages by sysctl"));
    }
    if !separate_entry {
        unwanted.push((Path::new(GRUB_SEPARATE), "this plan edits the default boot entry instead of a separate one"));
    }
    let udev = Path::new(vfioctl_core::pci::reset::UDEV_RULES);
    if !plan.udev_rules.iter().any(|f| Path::new(&f.path) == udev) {
        unwanted.push((udev, "this plan passes no card that needs vendor-reset's reset"));
    }
    for (path, why) in unwanted {
        if read(root, path)?.is_some_and(|t| written_by_vfioctl(&t)) {
            p.changes.files.push(FileChange::removal(path, why));
        }
    }
    Ok(p)
}

/// The new text of a file vfioctl writes whole (`content`, its first line a `# Written
/// by vfioctl` header) when it is absent or vfioctl's own; a user's file of that name keeps
/// every line and gains the missing ones ([`edit::owned::owned_file`]), the header as a
/// comment that says who added them ("Added", never "Written", which would make the whole
/// file vfioctl's).
fn owned_text(root: &HostRoot, path: &Path, content: &str) -> Result<String, ChangeError> {
    Ok(match read(root, path)? {
        Some(text) if !written_by_vfioctl(&text) => {
            let lines: Vec<String> =
                content.lines().map(|l| l.replacen("# Written by vfioctl", "# Added by vfioctl", 1)).collect();
            edit::owned::owned_file(Some(&text), "", &lines)
        }
        _ => content.to_string(),
    })
}

/// What the host needs for Looking Glass (see [`vfioctl_core::looking_glass`]): with
/// `/dev/shm`, the tmpfiles rule that gives the region to the client's `user`; with kvmfr,
/// its `static_size_mb` in modprobe.d (placed where modprobe reads it, the first device at
/// least the region's size, other devices kept), `kvmfr` in modules-load.d and the udev
/// rule for `/dev/kvmfr0`. qemu.conf's `cgroup_device_acl` entry for `/dev/kvmfr0` is
/// [`evdev_acl`]'s `also`. Files of the same names that vfioctl did not write keep every
/// line.
pub fn looking_glass_files(
    root: &HostRoot,
    modprobe: &vfioctl_core::modprobe::ModprobeConfig,
    lg: &vfioctl_core::looking_glass::LookingGlass,
    user: &str,
) -> Result<(Vec<FileChange>, Vec<String>), ChangeError> {
    use vfioctl_core::looking_glass::{self as l, Backing};
    let size = l::static_size_mb(modprobe.option("kvmfr", "static_size_mb"), lg.resolution.region_mib());
    let mut files = Vec::new();
    for f in lg.host_files(user, &size) {
        let path = Path::new(f.path);
        if f.path == l::KVMFR_MODPROBE {
            files.extend(modprobe_changes(root, &[(f.path.to_string(), f.content)])?.into_iter().map(|mut c| {
                c.why = "Looking Glass: the size of kvmfr's device".into();
                c
            }));
            continue;
        }
        let after = owned_text(root, path, &f.content)?;
        if read(root, path)?.as_deref() != Some(after.as_str()) {
            let why = match f.path {
                l::KVMFR_MODULES_LOAD => "Looking Glass: load kvmfr at boot",
                l::KVMFR_UDEV => "Looking Glass: /dev/kvmfr0 for the client's user and QEMU",
                _ => "Looking Glass: the /dev/shm region for the client's user",
            };
            files.push(FileChange::new(path, after, why));
        }
    }
    let note = match lg.backing {
        Backing::Shm => format!(
            "Looking Glass: the tmpfiles rule applies at the next boot (or now: systemd-tmpfiles --create {})",
            l::TMPFILES
        ),
        Backing::Kvmfr => format!(
            "Looking Glass: kvmfr loads with static_size_mb={size} at the next boot (or now, with no VM using it: modprobe -r kvmfr; modprobe kvmfr); where AppArmor or SELinux confines QEMU, allow {} there too",
            l::KVMFR_DEVICE
        ),
    };
    Ok((files, vec![note]))
}

/// A file vfioctl wrote whole: its header says so in its first two lines.
fn written_by_vfioctl(text: &str) -> bool {
    text.lines().take(2).any(|l| l.starts_with("# Written by vfioctl"))
}

/// sysctl's configuration in the order `sysctl --system` and systemd-sysctl read it: the
/// `*.conf` of `/etc/sysctl.d`, `/run/sysctl.d`, `/usr/local/lib/sysctl.d`,
/// `/usr/lib/sysctl.d` and `/lib/sysctl.d` by name (a name in `/etc` hiding the others),
/// then `/etc/sysctl.conf`. Unreadable is an error.
fn sysctl_files(root: &HostRoot) -> Result<Vec<(PathBuf, String)>, ChangeError> {
    crate::boot::sysctl_files(root).map_err(ChangeError::Read)
}

/// The sysctl drop-in for 2 MiB hugepages.
pub const SYSCTL_HUGEPAGES: &str = "/etc/sysctl.d/80-vfioctl-hugepages.conf";

/// libvirt's QEMU driver configuration.
pub use vfioctl_core::edit::qemu_conf::PATH as QEMU_CONF;

/// The first libvirt with `<input type='evdev'>`, which it sets up itself (device cgroup,
/// namespace, DAC/SELinux/AppArmor labels); older ones need `cgroup_device_acl`.
pub use vfioctl_core::domain::NATIVE_EVDEV;

/// The libvirt daemons that read qemu.conf: monolithic, and the modular QEMU driver daemon.
const LIBVIRT_UNITS: &[&str] = &["libvirtd.service", "virtqemud.service"];
/// Where systemd unit files live, local ones first.
const UNIT_DIRS: &[&str] =
    &["/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// What handing keyboard and mouse to the guest by evdev needs from the host (see
/// [`evdev_acl`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvdevAcl {
    /// The `/etc/libvirt/qemu.conf` change, when one is needed.
    pub file: Option<FileChange>,
    /// Restarting the libvirt daemon so it reads qemu.conf again (only with `file`).
    pub command: Option<Command>,
    pub notes: Vec<String>,
}

impl EvdevAcl {
    /// Adds the file, the command and the notes to a prepared apply.
    pub fn add_to(self, p: &mut Prepared) {
        p.changes.files.extend(self.file);
        p.changes.commands.extend(self.command);
        p.notes.extend(self.notes);
    }
}

/// A unit file of the root, not masked (a link to `/dev/null`).
fn has_unit(root: &HostRoot, unit: &str) -> bool {
    let mut found = false;
    for dir in UNIT_DIRS {
        let real = root.path(Path::new(dir).join(unit));
        if std::fs::read_link(&real).is_ok_and(|t| t == Path::new("/dev/null")) {
            return false;
        }
        found |= std::fs::symlink_metadata(&real).is_ok();
    }
    found
}

/// The `cgroup_device_acl` entries `evdev` devices need in qemu.conf, and what else to do.
///
/// With libvirt before 7.4 (`libvirt`, major and minor) the domain hands the devices over
/// with `<qemu:commandline>` `-object input-linux,evdev=…`, which libvirt does not know:
/// its device cgroup (and private `/dev`) must list them, so the missing paths are added
/// to `/etc/libvirt/qemu.conf` ([`edit::qemu_conf::add_device_acl`]), with a command that
/// restarts the daemon when the root has its systemd unit (`systemctl try-restart`, which
/// leaves a stopped daemon alone: it reads the file when it starts), else a note. With
/// libvirt 7.4 or later, or an unknown version (the domain then uses `<input
/// type='evdev'>`, as `vfioctl domain` does), libvirt sets the devices up itself: no
/// change, a note. `user = "root"`, which the guides also set, is never written.
///
/// `also`: devices QEMU opens by arguments whatever libvirt's version (Looking Glass's
/// `/dev/kvmfr0`), added in the same edit.
pub fn evdev_acl(
    root: &HostRoot,
    evdev: &[String],
    libvirt: Option<(u32, u32)>,
    also: &[String],
) -> Result<EvdevAcl, ChangeError> {
    let mut out = EvdevAcl::default();
    if evdev.is_empty() && also.is_empty() {
        return Ok(out);
    }
    let version = match libvirt {
        _ if evdev.is_empty() => None,
        Some(v) if v < NATIVE_EVDEV => Some(v),
        Some((major, minor)) => {
            out.notes.push(format!(
                "libvirt {major}.{minor} sets up <input type='evdev'> devices itself (device cgroup and ownership): qemu.conf needs no cgroup_device_acl for them"
            ));
            None
        }
        None => {
            out.notes.push(
                "libvirt's version is unknown: the domain uses <input type='evdev'>, which libvirt 7.4 and later sets up itself; qemu.conf is left alone for them"
                    .into(),
            );
            None
        }
    };
    let mut paths: Vec<String> = if version.is_some() { evdev.to_vec() } else { Vec::new() };
    paths.extend(also.iter().cloned());
    if paths.is_empty() {
        return Ok(out);
    }
    let what = match (version.is_some(), also.is_empty()) {
        (true, true) => "the evdev devices handed over by qemu:commandline".to_string(),
        (false, _) => also.join(", "),
        (true, false) => format!("the evdev devices and {}", also.join(", ")),
    };
    let path = Path::new(QEMU_CONF);
    let current = root.read_optional(path).map_err(ChangeError::Read)?;
    let text = current.as_deref().unwrap_or("");
    let after = edited(path, edit::qemu_conf::add_device_acl(text, &paths))?;
    if current.as_deref() == Some(after.as_str()) {
        out.notes.push(format!("{QEMU_CONF} already lets QEMU open {what} (cgroup_device_acl)"));
        return Ok(out);
    }
    out.file = Some(
        FileChange::new(path, after, format!("let QEMU open {what}"))
            // qemu.conf may hold passwords (vnc_password, spice_password): distributions ship it 0600.
            .mode(0o600),
    );
    match version {
        Some(v) => out.notes.push(format!(
            "libvirt {}.{} has no <input type='evdev'>: the devices are allowed in cgroup_device_acl; the list applies when a VM starts, so shut the VM down and start it again",
            v.0, v.1
        )),
        None => out.notes.push(format!(
            "{} is allowed in cgroup_device_acl; the list applies when a VM starts, so shut the VM down and start it again",
            also.join(", ")
        )),
    }
    let units: Vec<&str> = LIBVIRT_UNITS.iter().copied().filter(|u| has_unit(root, u)).collect();
    if units.is_empty() {
        let how = if root.exists("/etc/init.d/libvirtd") { " (rc-service libvirtd restart)" } else { "" };
        out.notes.push(format!(
            "restart the libvirt daemon{how} so that it reads {QEMU_CONF} again (libvirtd, or virtqemud with the modular daemons)"
        ));
    } else {
        let mut argv = vec!["systemctl".to_string(), "try-restart".to_string()];
        argv.extend(units.iter().map(|u| u.to_string()));
        out.command =
            Some(Command { argv, why: "restart the running libvirt daemon so that it reads qemu.conf again".into() });
    }
    match edit::qemu_conf::string_setting(text, "user").as_deref() {
        _ if version.is_none() => {}
        Some("root" | "+0" | "0") => {}
        user => out.notes.push(format!(
            "QEMU runs as {} and needs read access to the evdev devices (group input, e.g. `usermod -aG input USER`); vfioctl does not set user = \"root\"",
            user.map_or_else(|| "libvirt's QEMU user (libvirt-qemu or qemu), not root,".to_string(), |u| format!("user {u:?}"))
        )),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KBD: &str = "/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd";
    const MOUSE: &str = "/dev/input/by-id/usb-MOSART_Semi._2.4G_Keyboard_Mouse-if01-event-mouse";

    fn host(files: &[(&str, &str)]) -> (tempfile::TempDir, HostRoot) {
        let d = tempfile::tempdir().unwrap();
        let r = HostRoot::new(d.path());
        for (f, content) in files {
            let p = r.path(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        (d, r)
    }

    fn evdev() -> Vec<String> {
        vec![KBD.to_string(), MOUSE.to_string()]
    }

    #[test]
    fn native_evdev_or_unknown_libvirt_changes_nothing() {
        let (_d, r) = host(&[(QEMU_CONF, "#cgroup_device_acl = [\n#]\n")]);
        for v in [Some((7, 4)), Some((9, 0)), None] {
            let a = evdev_acl(&r, &evdev(), v, &[]).unwrap();
            assert_eq!((a.file, a.command), (None, None), "{v:?}");
            assert_eq!(a.notes.len(), 1);
            assert!(a.notes[0].contains("<input type='evdev'>"), "{:?}", a.notes);
        }
        assert_eq!(evdev_acl(&r, &[], Some((6, 0)), &[]).unwrap(), EvdevAcl::default());
    }

    #[test]
    fn old_libvirt_gets_the_list_and_a_restart_of_the_unit_it_has() {
        let (_d, r) = host(&[
            (QEMU_CONF, "#cgroup_device_acl = [\n#    \"/dev/null\"\n#]\n"),
            ("/lib/systemd/system/libvirtd.service", "[Unit]\n"),
            ("/usr/lib/systemd/system/virtqemud.service", "[Unit]\n"),
        ]);
        let a = evdev_acl(&r, &evdev(), Some((7, 0)), &[]).unwrap();
        let f = a.file.clone().unwrap();
        assert_eq!(f.path, Path::new(QEMU_CONF));
        assert_eq!(f.why, "let QEMU open the evdev devices handed over by qemu:commandline");
        let after = String::from_utf8(f.after).unwrap();
        assert!(after.starts_with("#cgroup_device_acl = [\n#    \"/dev/null\"\n#]\n\n# Added by vfioctl"), "{after}");
        assert_eq!(edit::qemu_conf::device_acl(&after).unwrap().len(), 9);
        assert_eq!(a.command.unwrap().argv, ["systemctl", "try-restart", "libvirtd.service", "virtqemud.service"]);
        assert!(a.notes.iter().any(|n| n.contains("start it again")), "{:?}", a.notes);
        assert!(a.notes.iter().any(|n| n.contains("libvirt's QEMU user")), "{:?}", a.notes);

        // Applied: the second run (a new command, so a new read of the root) changes
        // nothing and restarts nothing.
        std::fs::write(r.path(QEMU_CONF), &after).unwrap();
        let again = evdev_acl(&HostRoot::new(r.base()), &evdev(), Some((7, 0)), &[]).unwrap();
        assert_eq!((again.file, again.command), (None, None));
        assert!(again.notes[0].contains("already"), "{:?}", again.notes);
    }

    #[test]
    fn guide_host_and_masked_or_missing_units() {
        let guide = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/hosts/r2600x/etc/libvirt/qemu.conf"
        ))
        .unwrap();
        // The guide's list has both devices already.
        let (_d, r) = host(&[(QEMU_CONF, &guide), ("/lib/systemd/system/libvirtd.service", "")]);
        let a = evdev_acl(&r, &evdev(), Some((6, 0)), &[]).unwrap();
        assert_eq!((a.file, a.command), (None, None));
        // A new device: one more line; user = "root" stays and needs no note.
        let new = vec!["/dev/input/by-id/usb-Razer-event-mouse".to_string()];
        let a = evdev_acl(&r, &new, Some((6, 0)), &[]).unwrap();
        let after = String::from_utf8(a.file.unwrap().after).unwrap();
        assert!(after.starts_with("# Master configuration file") && after.contains("user = \"root\"\n"));
        assert!(after.ends_with("-event-mouse\",\n    \"/dev/input/by-id/usb-Razer-event-mouse\"\n]\n"), "{after}");
        assert_eq!(a.command.unwrap().argv, ["systemctl", "try-restart", "libvirtd.service"]);
        assert!(!a.notes.iter().any(|n| n.contains("usermod")), "{:?}", a.notes);

        // No qemu.conf and no systemd unit (a masked one does not count): a new 0600
        // file and a note to restart the daemon by hand.
        let (_d, r) =
            host(&[("/etc/init.d/libvirtd", "#!/sbin/openrc-run\n"), ("/lib/systemd/system/libvirtd.service", "")]);
        std::fs::create_dir_all(r.path("/etc/systemd/system")).unwrap();
        std::os::unix::fs::symlink("/dev/null", r.path("/etc/systemd/system/libvirtd.service")).unwrap();
        let a = evdev_acl(&r, &evdev(), Some((5, 0)), &[]).unwrap();
        let f = a.file.unwrap();
        assert_eq!(f.new_mode, Some(0o600));
        assert!(String::from_utf8(f.after).unwrap().starts_with("# Added by vfioctl"));
        assert_eq!(a.command, None);
        assert!(a.notes.iter().any(|n| n.contains("rc-service libvirtd restart")), "{:?}", a.notes);
    }

    /// Regression: the separate GRUB entry took its command line from /etc/default/grub
    /// alone, losing what a cloud image's grub.d drop-in sets.
    #[test]
    fn the_separate_grub_entry_has_the_drop_ins_values() {
        let files = vec![
            (
                PathBuf::from("/etc/default/grub"),
                "GRUB_CMDLINE_LINUX=\"\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\n".to_string(),
            ),
            (
                PathBuf::from("/etc/default/grub.d/50-cloudimg-settings.cfg"),
                "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT console=tty1 console=ttyS0\"\n".to_string(),
            ),
        ];
        let e = CmdlineEdit { add: vec!["iommu=pt".into()], remove: vec!["splash".into()] };
        let script = grub_separate_script(&files, &e);
        assert!(
            script.contains("export GRUB_CMDLINE_LINUX_DEFAULT='quiet console=tty1 console=ttyS0 iommu=pt'\n"),
            "{script}"
        );
    }

    #[test]
    fn broken_qemu_conf_is_an_error_and_add_to_merges() {
        let (_d, r) = host(&[(QEMU_CONF, "cgroup_device_acl = [ \"/dev/null\"\n")]);
        let e = evdev_acl(&r, &evdev(), Some((7, 0)), &[]).unwrap_err();
        assert!(e.to_string().starts_with("/etc/libvirt/qemu.conf: "), "{e}");
        let (_d, r) = host(&[("/usr/lib/systemd/system/virtqemud.service", "")]);
        let mut p = Prepared::default();
        p.notes.push("plan".into());
        evdev_acl(&r, &evdev(), Some((7, 3)), &[]).unwrap().add_to(&mut p);
        assert_eq!(p.changes.files.len(), 1);
        assert_eq!(p.changes.commands[0].argv, ["systemctl", "try-restart", "virtqemud.service"]);
        assert_eq!(p.notes[0], "plan");
        assert!(p.notes.len() >= 3);
    }
}
