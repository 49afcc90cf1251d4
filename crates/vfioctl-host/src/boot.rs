//! The boot setup of a host, decided once, from its files: which boot loader configuration
//! decides the next boot's kernel command line, what that command line is, and what builds
//! the initramfs. `check` reports this command line, `plan` starts from it, `apply` edits
//! exactly these files and `verify` expects what they say: there is no other detector.
//!
//! Each file is read by the module of `vfioctl_core::edit` that also edits it, so what is
//! read is what the editor changes (the default Limine entry, rEFInd's first choice,
//! kernelstub's `user` section, every `GRUB_CMDLINE_LINUX*` assignment as the shell sees it).
//!
//! # Which configuration wins
//! Several can be present at once; the rule, most specific first (ARCHITECTURE.md has the
//! reasons):
//! 1. **kernelstub** (`/etc/kernelstub/configuration`, Pop!_OS): kernelstub writes the
//!    systemd-boot entries from it on every kernel update, so the configuration, not the
//!    entry, is what lasts. Its `esp_path` entries are passed over.
//! 2. **GRUB with BLS entries** (Fedora, RHEL and their rebuilds: `/etc/default/grub` beside
//!    `loader/entries/*.conf`, with `/boot/grub2`, `grubby` or no systemd-boot `loader.conf`):
//!    GRUB reads the entries, so their `options` are the command line; the default entry is
//!    GRUB's `saved_entry` when grubenv names one, else the newest.
//!    `/etc/kernel/cmdline` and `/etc/default/grub` only seed kernels installed later.
//! 3. **kernel-install** (`/etc/kernel/cmdline`: systemd-boot with kernel-install, UKIs,
//!    Proxmox): the file is written into every entry or UKI when they are rebuilt (by
//!    `kernel-install`, or by `mkinitcpio -P` when its presets build UKIs).
//! 4. **systemd-boot entries** (`loader/entries/*.conf` under `/boot`, `/efi` or
//!    `/boot/efi`): the entry systemd-boot starts: the one its EFI variables name
//!    (`bootctl set-oneshot`, `set-default`), else `loader.conf`'s `default` (a glob;
//!    `@saved`), else the newest by version. An entry that chain-loads rEFInd (`efi
//!    …refind…`) hands the choice to rEFInd's `refind_linux.conf`; one that starts another
//!    EFI program or a UKI is refused: no file of this host sets its command line.
//! 5. **GRUB** (`/etc/default/grub` and its `grub.d/*.cfg` drop-ins).
//! 6. **rEFInd** (`/boot/refind_linux.conf`), 7. **Limine** (`limine.conf`).
//!
//! `/etc/os-release` is read beside the files: it names the distribution in messages and
//! decides between GRUB with BLS and systemd-boot when the files alone leave it open
//! (a Fedora-family system without `/boot/grub2` yet).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use vfioctl_core::check::NextBoot;
use vfioctl_core::cmdline::Cmdline;
use vfioctl_core::edit::loader_entry::Boots;
use vfioctl_core::edit::{self, EditError};
use vfioctl_core::kmod;

use crate::root::HostRoot;

/// The directories systemd-boot and GRUB's BLS read entries from.
pub const ENTRY_DIRS: &[&str] = &["/boot/loader/entries", "/efi/loader/entries", "/boot/efi/loader/entries"];
/// Where Limine's configuration lives.
pub const LIMINE_PATHS: &[&str] = &["/boot/limine.conf", "/boot/limine/limine.conf", "/boot/EFI/limine/limine.conf"];
pub const KERNELSTUB: &str = "/etc/kernelstub/configuration";
pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";
pub const DEFAULT_GRUB: &str = "/etc/default/grub";
pub const GRUB_D: &str = "/etc/default/grub.d";
pub const REFIND: &str = "/boot/refind_linux.conf";
pub const GRUBENV: &str = "/boot/grub2/grubenv";
/// The EFI variables the kernel shows.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// systemd-boot's vendor GUID for its EFI variables (the Boot Loader Interface).
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// Where the kernel command line is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootloader {
    /// kernel-install / UKIs: `/etc/kernel/cmdline`. `uki`: mkinitcpio builds unified kernel
    /// images from it (its presets name `*_uki=` files), so rebuilding the initramfs is
    /// what carries a change into the next boot.
    KernelInstall {
        uki: bool,
    },
    /// systemd-boot (or GRUB with BLS when `grub_bls` is set): entry files.
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
            Bootloader::KernelInstall { uki: false } => "kernel-install (/etc/kernel/cmdline)",
            Bootloader::KernelInstall { uki: true } => "unified kernel images (/etc/kernel/cmdline)",
            Bootloader::LoaderEntries { grub_bls: true, .. } => "GRUB with BLS entries",
            Bootloader::LoaderEntries { .. } => "systemd-boot",
            Bootloader::Grub { .. } => "GRUB",
            Bootloader::Kernelstub => "kernelstub",
            Bootloader::Refind { .. } => "rEFInd",
            Bootloader::Limine { .. } => "Limine",
        }
    }

    /// The entry whose command line the next boot uses (loader entries only): the default
    /// named, else the newest, as both systemd-boot and GRUB's BLS order them (by version,
    /// `6.11` after `6.8`).
    pub fn default_entry(&self) -> Option<&Path> {
        match self {
            Bootloader::LoaderEntries { entries, default, .. } => {
                default.as_deref().or(entries.iter().max_by(|a, b| version_cmp(&name_of(a), &name_of(b))).map(|p| &**p))
            }
            _ => None,
        }
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Compares two names as versions, as the boot loaders sort entries: runs of digits by
/// their value, everything else as text (`linux-6.8.0` < `linux-6.11.0`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// What the initramfs builder's configuration loads early, in the builder's own terms:
/// initramfs-tools' `modules` file, mkinitcpio's `MODULES` after its drop-ins, dracut's
/// `force_drivers` across `dracut.conf` and `dracut.conf.d`, booster's `modules_force_load`.
fn early_modules(root: &HostRoot, kind: &Initramfs) -> Option<BTreeSet<String>> {
    let text = |p: &str| root.read_optional(p).map(|t| t.unwrap_or_default()).ok();
    let list: Vec<String> = match kind {
        Initramfs::InitramfsTools => edit::initramfs_tools::listed(&text("/etc/initramfs-tools/modules")?),
        Initramfs::Mkinitcpio => {
            mkinitcpio_files(root).ok()?.iter().fold(Vec::new(), |m, (_, t)| edit::mkinitcpio::modules(&m, t))
        }
        Initramfs::Dracut => dracut_files(root).ok()?.iter().fold(Vec::new(), |m, (_, t)| edit::dracut::forced(&m, t)),
        Initramfs::Booster => edit::booster::forced(&text("/etc/booster.yaml")?).ok()?,
    };
    Some(list.into_iter().map(|m| m.replace('-', "_")).collect())
}

/// The configuration file mkinitcpio builds every preset's image from: the one the
/// presets (`/etc/mkinitcpio.d/*.preset`, `ALL_config=` or `PRESET_config=`) name, else
/// `/etc/mkinitcpio.conf`. Presets naming different files, or one that cannot be read,
/// are an error: no one file decides then.
pub fn mkinitcpio_config(root: &HostRoot) -> Result<PathBuf, String> {
    let names = match root.list(MKINITCPIO_PRESETS) {
        Ok(n) => n,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    let mut configs = BTreeSet::new();
    for n in names.iter().filter(|n| n.ends_with(".preset")) {
        let t = root.read_optional(format!("{MKINITCPIO_PRESETS}/{n}")).map_err(|e| e.to_string())?.unwrap_or_default();
        for (k, v) in edit::grub::assignments(&t) {
            if k.ends_with("_config") && !v.is_empty() {
                configs.insert(v);
            }
        }
    }
    match configs.len() {
        0 => Ok(PathBuf::from(MKINITCPIO_CONF)),
        1 => Ok(PathBuf::from(configs.into_iter().next().unwrap_or_default())),
        _ => Err(format!(
            "the mkinitcpio presets in {MKINITCPIO_PRESETS} build from different configuration files ({}): add the VFIO modules to each by hand",
            configs.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// sysctl's files in the order systemd-sysctl applies them: `sysctl.d/*.conf` of /etc,
/// /run, /usr/local/lib, /usr/lib and /lib by name (a name in an earlier directory hiding
/// the same name in later ones), then `/etc/sysctl.conf` (Debian's
/// `/etc/sysctl.d/99-sysctl.conf` link to it read once, as itself). A later setting wins.
pub fn sysctl_files(root: &HostRoot) -> Result<Vec<(PathBuf, String)>, crate::root::RootError> {
    const DIRS: &[&str] =
        &["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];
    let mut out = config_files(root, None, DIRS, ".conf")?;
    let same = |p: &str| root.real_path(p).ok();
    out.retain(|(p, _)| {
        p != Path::new("/etc/sysctl.d/99-sysctl.conf")
            || same("/etc/sysctl.d/99-sysctl.conf") != same("/etc/sysctl.conf")
    });
    if let Some(t) = root.read_optional("/etc/sysctl.conf")? {
        out.push((PathBuf::from("/etc/sysctl.conf"), t));
    }
    Ok(out)
}

/// The `vm.nr_hugepages` the next boot sets, and the file that sets it (the last setting
/// in [`sysctl_files`] order). A count that is not a number is 0, as sysctl fails it.
pub fn sysctl_hugepages(root: &HostRoot) -> Result<Option<(PathBuf, u64)>, crate::root::RootError> {
    let mut last = None;
    for (path, text) in sysctl_files(root)? {
        for (_, _, v) in vfioctl_core::edit::sysctl::settings(&text, &["vm.nr_hugepages"]) {
            last = Some((path.clone(), v.parse().unwrap_or(0)));
        }
    }
    Ok(last)
}

/// A configuration file and its drop-ins as their program reads them: `main` first (when
/// it exists), then every name ending in `ext` of `dirs` (highest priority first, a name in
/// an earlier directory hiding the same name in later ones) in name order. A file or
/// directory that cannot be read is an error; only "no such file" is absent.
pub fn config_files(
    root: &HostRoot,
    main: Option<&str>,
    dirs: &[&str],
    ext: &str,
) -> Result<Vec<(PathBuf, String)>, crate::root::RootError> {
    let mut files = Vec::new();
    if let Some(main) = main {
        if let Some(t) = root.read_optional(main)? {
            files.push((PathBuf::from(main), t));
        }
    }
    let mut listing = Vec::new();
    for d in dirs {
        match root.list(d) {
            Ok(n) => listing.push((*d, n)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    for p in edit::dropin_order(&listing, ext) {
        if let Some(t) = root.read_optional(&p)? {
            files.push((PathBuf::from(p), t));
        }
    }
    Ok(files)
}

/// mkinitcpio's configuration in the order it sources it: its configuration file
/// ([`mkinitcpio_config`]), then the `*.conf` of that file's `.d` directory
/// (`/etc/mkinitcpio.conf.d`) by name. Unreadable is an error, never absent.
pub fn mkinitcpio_files(root: &HostRoot) -> Result<Vec<(PathBuf, String)>, String> {
    let config = mkinitcpio_config(root)?;
    let config = config.display().to_string();
    let dir = format!("{config}.d");
    config_files(root, Some(&config), &[&dir], ".conf").map_err(|e| e.to_string())
}

/// Where mkinitcpio's presets live.
pub const MKINITCPIO_PRESETS: &str = "/etc/mkinitcpio.d";

/// mkinitcpio's main configuration file and its drop-in directory.
pub const MKINITCPIO_CONF: &str = "/etc/mkinitcpio.conf";
pub const MKINITCPIO_D: &str = "/etc/mkinitcpio.conf.d";

/// mkinitcpio's `HOOKS` after `/etc/mkinitcpio.conf` and its drop-ins, as bash leaves it
/// (`None`: not set, or a file could not be read).
pub fn mkinitcpio_hooks(root: &HostRoot) -> Option<Vec<String>> {
    mkinitcpio_files(root).ok()?.iter().fold(None, |h, (_, t)| edit::mkinitcpio::hooks(h.as_deref(), t).or(h))
}

/// dracut's main configuration file.
pub const DRACUT_CONF: &str = "/etc/dracut.conf";
/// dracut's drop-in directories, highest priority first (a name in `/etc` hides the
/// distribution's file of the same name).
pub const DRACUT_DIRS: &[&str] = &["/etc/dracut.conf.d", "/usr/lib/dracut/dracut.conf.d"];

/// dracut's configuration in the order dracut sources it: `/etc/dracut.conf`, then the
/// `*.conf` of both drop-in directories by name. Unreadable is an error, never absent.
pub fn dracut_files(root: &HostRoot) -> Result<Vec<(PathBuf, String)>, crate::root::RootError> {
    config_files(root, Some(DRACUT_CONF), DRACUT_DIRS, ".conf")
}

/// GRUB's defaults in the order grub-mkconfig sources them: `/etc/default/grub`, then
/// `/etc/default/grub.d/*.cfg` by name, with their text. A file or directory that cannot
/// be read is an error (only "no such file" is absent).
pub fn grub_files(root: &HostRoot) -> Result<Vec<(PathBuf, String)>, crate::root::RootError> {
    config_files(root, Some(DEFAULT_GRUB), &[GRUB_D], ".cfg")
}

/// The index of the file whose `GRUB_CMDLINE_LINUX_DEFAULT` grub-mkconfig uses: the last
/// that assigns it at its top level, not inside an `if` (a cloud image's grub.d drop-in
/// replaces the main file's value); the first file when none does.
pub fn grub_winner(files: &[(PathBuf, String)]) -> usize {
    files.iter().rposition(|(_, t)| edit::grub::sets_default(t).0).unwrap_or(0)
}

/// mkinitcpio presets that build unified kernel images (`default_uki="…"`).
fn mkinitcpio_builds_ukis(root: &HostRoot) -> bool {
    root.list("/etc/mkinitcpio.d").unwrap_or_default().iter().filter(|n| n.ends_with(".preset")).any(|n| {
        root.read_optional(format!("/etc/mkinitcpio.d/{n}"))
            .ok()
            .flatten()
            .is_some_and(|t| edit::grub::assignments(&t).iter().any(|(k, v)| k.ends_with("_uki") && !v.is_empty()))
    })
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

/// What `/etc/os-release` (or `/usr/lib/os-release`) says of the distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_id: String,
    pub pretty_name: String,
}

impl OsRelease {
    /// Parses os-release's `KEY=value` lines (values unquoted as the shell would).
    pub fn parse(text: &str) -> OsRelease {
        let vars = edit::grub::assignments(text);
        let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
        OsRelease {
            id: get("ID"),
            id_like: get("ID_LIKE").split_whitespace().map(str::to_string).collect(),
            version_id: get("VERSION_ID"),
            pretty_name: get("PRETTY_NAME"),
        }
    }

    /// The distribution is `id` or derived from it (`ID_LIKE`).
    pub fn is_like(&self, id: &str) -> bool {
        self.id == id || self.id_like.iter().any(|l| l == id)
    }

    /// Fedora, RHEL and their rebuilds (which boot GRUB with BLS entries).
    pub fn is_fedora_family(&self) -> bool {
        ["fedora", "rhel", "centos"].iter().any(|i| self.is_like(i))
    }
}

/// The boot setup of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootSetup {
    pub os: Option<OsRelease>,
    /// The configuration that decides the next boot's command line; `None` when the host has
    /// none vfioctl knows.
    pub loader: Option<Bootloader>,
    /// That command line and the file(s) it comes from.
    pub next_boot: Option<NextBoot>,
    pub initramfs: Option<Initramfs>,
    /// The modules the builder's configuration loads early (names with `_`), read by the
    /// module that edits each file; `None` when there is no builder or a file is unreadable.
    pub initramfs_modules: Option<BTreeSet<String>>,
    /// Other boot configurations present that do not decide the next boot, and why.
    pub passed_over: Vec<String>,
    /// A file that decides the next boot exists but cannot be read or understood: nothing
    /// may be planned or edited from a guess (`apply` refuses with this).
    pub problem: Option<String>,
}

fn has_program(root: &HostRoot, name: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| root.path(Path::new(d).join(name)).is_file())
}

/// The entry files of the first entry directory that has any, and its directory.
fn loader_entries(root: &HostRoot) -> Option<(&'static str, Vec<PathBuf>)> {
    ENTRY_DIRS.iter().find_map(|dir| {
        let names = root.list(dir).ok()?;
        let entries: Vec<PathBuf> =
            names.iter().filter(|n| n.ends_with(".conf")).map(|n| Path::new(dir).join(n)).collect();
        (!entries.is_empty()).then_some((*dir, entries))
    })
}

/// The entry a name or glob picks (`default arch.conf`, `saved_entry=abc-6.8`).
/// Among several matches of a glob, the one sorting highest by version, which
/// systemd-boot's menu puts first (newest first) and takes.
fn pick<'a>(entries: &'a [PathBuf], pat: &str) -> Option<&'a PathBuf> {
    entries
        .iter()
        .filter(|e| {
            let n = name_of(e);
            kmod::glob_match(pat, &n) || kmod::glob_match(&format!("{pat}.conf"), &n)
        })
        .max_by(|a, b| version_cmp(&name_of(a), &name_of(b)))
}

/// Detection, reading through `root` (every file once: the root remembers what it read).
pub fn detect(root: &HostRoot) -> BootSetup {
    let mut b = BootSetup::default();
    let mut d = Detect { root, b: &mut b };
    d.run();
    b
}

struct Detect<'a> {
    root: &'a HostRoot,
    b: &'a mut BootSetup,
}

impl Detect<'_> {
    /// Reads a file that decides the next boot; an unreadable one is a problem, not absent.
    fn read(&mut self, path: &str) -> Option<String> {
        match self.root.read_optional(path) {
            Ok(t) => t,
            Err(e) => {
                self.problem(e.to_string());
                None
            }
        }
    }

    fn problem(&mut self, what: String) {
        self.b.problem.get_or_insert(what);
    }

    fn edit_problem(&mut self, path: &str, e: EditError) {
        self.problem(format!("{path}: {e}"));
    }

    fn found(&mut self, loader: Bootloader, source: String, cmdline: &str) {
        self.b.loader = Some(loader);
        self.b.next_boot = Some(NextBoot { source, cmdline: Cmdline::parse(cmdline) });
    }

    fn run(&mut self) {
        self.b.os = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| self.root.read_optional(p).ok().flatten())
            .map(|t| OsRelease::parse(&t));
        self.b.initramfs = initramfs(self.root);
        self.b.initramfs_modules = self.b.initramfs.as_ref().and_then(|k| early_modules(self.root, k));
        let entries = loader_entries(self.root);
        let kernel_cmdline = self.root.exists(KERNEL_CMDLINE);
        let grub = self.root.exists(DEFAULT_GRUB);

        // 1. kernelstub.
        if self.root.exists(KERNELSTUB) {
            if let Some(t) = self.read(KERNELSTUB) {
                match edit::kernelstub::cmdline(&t) {
                    Ok(c) => self.found(Bootloader::Kernelstub, format!("kernelstub ({KERNELSTUB})"), &c),
                    Err(e) => self.edit_problem(KERNELSTUB, e),
                }
            }
            if let Some((dir, _)) = &entries {
                self.b.passed_over.push(format!(
                    "the boot entries in {dir}: kernelstub writes them from {KERNELSTUB} at every kernel update"
                ));
            }
            for (present, what) in [(kernel_cmdline, KERNEL_CMDLINE), (grub, DEFAULT_GRUB)] {
                if present {
                    self.b.passed_over.push(format!("{what}: this host boots through kernelstub's entries"));
                }
            }
            return;
        }

        // 2.–4. Loader entries and /etc/kernel/cmdline.
        if let Some((dir, entries)) = entries {
            let loader = dir.trim_end_matches("/entries");
            let loader_conf = format!("{loader}/loader.conf");
            let has_loader_conf = self.root.exists(&loader_conf);
            let grub_bls = grub
                && (self.root.exists("/boot/grub2")
                    || has_program(self.root, "grubby")
                    || !has_loader_conf
                    || self.b.os.as_ref().is_some_and(OsRelease::is_fedora_family));
            let grubenv = if grub_bls { self.root.read_optional(GRUBENV).ok().flatten() } else { None };
            if kernel_cmdline && !grub_bls {
                self.kernel_install();
                self.b
                    .passed_over
                    .push(format!("the boot entries in {dir}: kernel-install writes them from {KERNEL_CMDLINE}"));
                return;
            }
            let default = if grub_bls {
                grubenv
                    .as_deref()
                    .and_then(|t| t.lines().find_map(|l| l.strip_prefix("saved_entry=")))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .and_then(|pat| pick(&entries, pat))
                    .cloned()
            } else {
                self.systemd_boot_default(&loader_conf, has_loader_conf, &entries)
            };
            let l = Bootloader::LoaderEntries { dir: dir.into(), entries, default, grub_bls };
            if let Some(path) = l.default_entry().map(Path::to_path_buf) {
                let p = path.display().to_string();
                if let Some(text) = self.read(&p) {
                    match edit::loader_entry::boots(&text) {
                        Boots::Efi(program)
                            if !grub_bls && program.to_ascii_lowercase().contains("refind") && self.root.exists(REFIND) =>
                        {
                            self.b.passed_over.push(format!(
                                "the systemd-boot entries in {dir}: the default one, {p}, chain-loads rEFInd ({program}), which boots Linux with {REFIND}"
                            ));
                            self.refind();
                        }
                        // An entry without a `linux` line is taken as the Linux one its
                        // options say it is.
                        Boots::Linux | Boots::Nothing => {
                            let c = edit::loader_entry::cmdline(&text, grubenv.as_deref());
                            self.found(l, format!("boot loader entry {p}"), &c);
                        }
                        other => self.problem(format!(
                            "{p}: the default boot entry {other}, not a Linux kernel whose command line this host's files set; make a Linux entry the default (`default` in {loader_conf}, or `bootctl set-default ENTRY`) and run vfioctl again"
                        )),
                    }
                }
            }
            if grub_bls {
                for (present, what) in [(kernel_cmdline, KERNEL_CMDLINE), (grub, DEFAULT_GRUB)] {
                    if present {
                        self.b.passed_over.push(format!(
                            "{what}: GRUB boots the BLS entries; this file seeds kernels installed later"
                        ));
                    }
                }
            }
            return;
        }
        if kernel_cmdline {
            self.kernel_install();
            if grub {
                self.b.passed_over.push(format!("{DEFAULT_GRUB}: {KERNEL_CMDLINE} is the command line kernel-install writes into every boot entry or UKI"));
            }
            return;
        }

        // 5. GRUB.
        if grub {
            match grub_files(self.root) {
                Ok(files) => {
                    if let Some((path, e)) =
                        files.iter().find_map(|(p, t)| edit::grub::readable(t).err().map(|e| (p, e)))
                    {
                        return self.edit_problem(&path.display().to_string(), e);
                    }
                    let regenerate: Vec<String> = if has_program(self.root, "update-grub") {
                        vec!["update-grub".into()]
                    } else if has_program(self.root, "grub2-mkconfig") {
                        vec!["grub2-mkconfig".into(), "-o".into(), "/boot/grub2/grub.cfg".into()]
                    } else {
                        vec!["grub-mkconfig".into(), "-o".into(), "/boot/grub/grub.cfg".into()]
                    };
                    // The source is the file apply edits: the one whose value wins.
                    let w = grub_winner(&files);
                    let source = match files.get(w) {
                        Some((p, _)) if w > 0 => format!("{} (read after {DEFAULT_GRUB})", p.display()),
                        _ => DEFAULT_GRUB.to_string(),
                    };
                    let c = edit::grub::kernel_cmdline(files.iter().map(|(_, t)| t.as_str())).unwrap_or_default();
                    self.found(Bootloader::Grub { regenerate }, source, &c);
                }
                Err(e) => self.problem(e.to_string()),
            }
            return;
        }

        // 6. rEFInd, 7. Limine.
        if self.root.exists(REFIND) {
            self.refind();
            return;
        }
        if let Some(path) = LIMINE_PATHS.iter().find(|p| self.root.exists(p)) {
            if let Some(t) = self.read(path) {
                match edit::limine::cmdline(&t) {
                    Ok((_, c)) => self.found(Bootloader::Limine { path: path.into() }, path.to_string(), &c),
                    Err(e) => self.edit_problem(path, e),
                }
            }
        }
    }

    fn refind(&mut self) {
        if let Some(t) = self.read(REFIND) {
            match edit::refind::cmdline(&t) {
                Ok(c) => {
                    self.found(Bootloader::Refind { path: REFIND.into() }, REFIND.into(), c.as_deref().unwrap_or(""))
                }
                Err(e) => self.edit_problem(REFIND, e),
            }
        }
    }

    /// The entry systemd-boot starts next, as it chooses: the one-shot EFI variable
    /// (`bootctl set-oneshot`), else the default one (`bootctl set-default`), else
    /// loader.conf's `default` (a name or glob; `@saved`: the entry booted last). `None`
    /// when none names an entry (the newest is then started).
    fn systemd_boot_default(
        &mut self,
        loader_conf: &str,
        has_loader_conf: bool,
        entries: &[PathBuf],
    ) -> Option<PathBuf> {
        for var in ["LoaderEntryOneShot", "LoaderEntryDefault"] {
            if let Some(id) = self.efivar(var) {
                if let Some(e) = pick(entries, &id) {
                    return Some(e.clone());
                }
            }
        }
        let conf = if has_loader_conf { self.read(loader_conf) } else { None };
        let pat = conf.and_then(|t| {
            t.lines().find_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix("default")?;
                rest.starts_with([' ', '\t']).then(|| rest.trim().to_string())
            })
        })?;
        let pat = if pat == "@saved" { self.efivar("LoaderEntryLastBooted")? } else { pat };
        pick(entries, &pat).cloned()
    }

    /// A string EFI variable of systemd-boot's vendor GUID (`None`: not set); one that
    /// cannot be read is a problem.
    fn efivar(&mut self, name: &str) -> Option<String> {
        let path = format!("{EFIVARS}/{name}-{LOADER_GUID}");
        // Read as text (read once per command, like every file): entry ids are ASCII
        // file names, which UTF-16LE keeps as valid UTF-8 bytes.
        let text = self.read(&path)?;
        let bytes = text.as_bytes();
        let units: Vec<u16> = bytes.get(4..)?.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let s = String::from_utf16_lossy(&units);
        let s = s.trim_end_matches('\0').to_string();
        (!s.is_empty()).then_some(s)
    }

    fn kernel_install(&mut self) {
        if let Some(t) = self.read(KERNEL_CMDLINE) {
            let c = edit::kernel_cmdline_file::cmdline(&t);
            let uki = self.b.initramfs == Some(Initramfs::Mkinitcpio) && mkinitcpio_builds_ukis(self.root);
            self.found(Bootloader::KernelInstall { uki }, KERNEL_CMDLINE.into(), &c);
        }
    }
}

/// Every kernel in `/boot` turns the Intel IOMMU on without a parameter: each
/// `/boot/config-VERSION` has `CONFIG_INTEL_IOMMU_DEFAULT_ON=y` (none, or one unreadable:
/// no).
pub fn intel_iommu_on_by_default(root: &HostRoot) -> bool {
    let configs: Vec<String> =
        root.list("/boot").unwrap_or_default().into_iter().filter(|n| n.starts_with("config-")).collect();
    !configs.is_empty()
        && configs.iter().all(|c| {
            root.read_optional(format!("/boot/{c}"))
                .ok()
                .flatten()
                .is_some_and(|t| t.lines().any(|l| l.trim() == "CONFIG_INTEL_IOMMU_DEFAULT_ON=y"))
        })
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
mod tests;
