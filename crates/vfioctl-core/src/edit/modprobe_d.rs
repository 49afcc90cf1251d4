//! modprobe.d as kmod merges it, across its directories (modprobe.d(5)): every `*.conf`
//! of `/etc/modprobe.d`, `/run/modprobe.d`, `/usr/local/lib/modprobe.d`,
//! `/usr/lib/modprobe.d` and `/lib/modprobe.d`, sorted by file name, a name in an earlier
//! directory hiding the same name in later ones. A module gets every `options` line for it
//! in that order, and keeps the last value of each key (`ids` of vfio-pci is one string:
//! the last `ids=` is all the ids it claims).
//!
//! [`place`] puts a plan's lines where they take effect: each planned key goes where the
//! key's winning value is now (merged: `ids` lists are united), so the user's ids in
//! `/etc/modprobe.d/gpu.conf` gain the plan's instead of being hidden by a later
//! `vfio.conf`; a key no file sets, and other lines, go to vfioctl's own file. A winning
//! value in a distribution's file (`/usr/lib`, `/lib`, `/run`) is never edited: a file of
//! the same name in `/etc/modprobe.d` overrides it (its text with the key merged), as
//! modprobe.d(5) describes. What the files already say is not written again.
//! [`lacking`] is the check after the edit.

use super::owned::owned_file;
use super::text::same_module;
use crate::modprobe::ModprobeConfig;

/// modprobe.d directories, highest priority first (a file name in an earlier one hides
/// the same name in later ones).
pub const DIRS: &[&str] =
    &["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"];

/// The directory whose files are the administrator's (edited in place).
pub const ETC: &str = "/etc/modprobe.d";

/// One modprobe.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub text: String,
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The files kmod reads, in its order, from each directory's `*.conf` names
/// (`listing`: directory and names, in any order; directories not in [`DIRS`] come last).
pub fn order(listing: &[(&str, Vec<String>)]) -> Vec<String> {
    let rank = |d: &str| DIRS.iter().position(|x| *x == d).unwrap_or(DIRS.len());
    let mut ranked: Vec<(&str, Vec<String>)> = listing.to_vec();
    ranked.sort_by_key(|(d, _)| rank(d));
    super::dropin_order(&ranked, ".conf")
}

/// What the files say, merged as kmod does (`files` in kmod's order).
pub fn effective(files: &[File]) -> ModprobeConfig {
    let mut c = ModprobeConfig::default();
    for f in files {
        c.add(&f.text);
    }
    c
}

fn words(line: &str) -> Vec<&str> {
    line.split('#').next().unwrap_or("").split_whitespace().collect()
}

/// The planned `options` words of `line` (`options MODULE key=value …`), as module and
/// key/value pairs.
fn options(line: &str) -> Option<(&str, Vec<(&str, &str)>)> {
    let w = words(line);
    (w.len() >= 2 && w[0] == "options")
        .then(|| (w[1], w[2..].iter().map(|o| o.split_once('=').unwrap_or((o, ""))).collect()))
}

/// The planned value is what the module gets already: every planned id among the winning
/// `ids`, any other key with the same value.
fn satisfied(config: &ModprobeConfig, module: &str, key: &str, value: &str) -> bool {
    match config.option(module, key) {
        Some(now) if key == "ids" => value.split(',').filter(|i| !i.is_empty()).all(|i| now.split(',').any(|n| n == i)),
        Some(now) => now == value || (as_bool(now).is_some() && as_bool(now) == as_bool(value)),
        None => false,
    }
}

/// A boolean module parameter's value as the kernel reads it (`kstrtobool`: `1`, `y`,
/// `t`, `on` and `0`, `n`, `f`, `off`, any case).
fn as_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "y" | "yes" | "t" | "true" | "on" => Some(true),
        "0" | "n" | "no" | "f" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// The index of the last file with an uncommented `options` line of `module` setting `key`.
fn winner(files: &[File], module: &str, key: &str) -> Option<usize> {
    files.iter().rposition(|f| {
        f.text.lines().any(|l| {
            let w = words(l);
            w.len() >= 2
                && w[0] == "options"
                && same_module(w[1], module)
                && w[2..].iter().any(|o| o.split_once('=').map_or(*o, |(k, _)| k) == key)
        })
    })
}

/// Where the planned `lines` of vfioctl's file `target` (with its `header` when it is
/// new) take effect, given the host's modprobe.d `files` in kmod's order: the files that
/// change or appear, with their new text (see the module docs). Nothing when the files say
/// it all already.
pub fn place(files: &[File], target: &str, header: &str, lines: &[String]) -> Vec<File> {
    let mut work: Vec<File> = files.to_vec();
    let mut changed: Vec<String> = Vec::new();
    let mut own: Vec<String> = Vec::new();
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((module, pairs)) = options(line) else {
            let w = words(line);
            let there = work.iter().any(|f| f.text.lines().any(|l| !l.trim_start().starts_with('#') && words(l) == w));
            if !there {
                own.push(line.to_string());
            }
            continue;
        };
        let config = effective(&work);
        let mut mine: Vec<String> = Vec::new();
        for (key, value) in pairs {
            if satisfied(&config, module, key, value) {
                continue;
            }
            let kv = if value.is_empty() { key.to_string() } else { format!("{key}={value}") };
            match winner(&work, module, key) {
                Some(i) if work[i].path != target => {
                    let planned = vec![format!("options {module} {kv}")];
                    let text = owned_file(Some(&work[i].text), "", &planned);
                    let path = if work[i].path.starts_with(&format!("{ETC}/")) {
                        work[i].path.clone()
                    } else {
                        format!("{ETC}/{}", name_of(&work[i].path))
                    };
                    work[i] = File { path: path.clone(), text };
                    if !changed.contains(&path) {
                        changed.push(path);
                    }
                }
                _ => mine.push(kv),
            }
        }
        if !mine.is_empty() {
            own.push(format!("options {module} {}", mine.join(" ")));
        }
    }
    if !own.is_empty() {
        // A distribution's file of the same name is hidden by vfioctl's: its lines come along.
        let at = work
            .iter()
            .position(|f| f.path == target)
            .or_else(|| work.iter().position(|f| name_of(&f.path) == name_of(target)));
        let text = owned_file(at.map(|i| work[i].text.as_str()), header, &own);
        match at {
            Some(i) => work[i] = File { path: target.to_string(), text },
            None => {
                let i = work.iter().position(|f| name_of(&f.path) > name_of(target)).unwrap_or(work.len());
                work.insert(i, File { path: target.to_string(), text });
            }
        }
        changed.push(target.to_string());
    }
    let mut out: Vec<File> = Vec::new();
    for p in changed {
        if out.iter().any(|f| f.path == p) {
            continue;
        }
        if let Some(f) = work.iter().find(|f| f.path == p) {
            if files.iter().any(|old| old.path == f.path && old.text == f.text) {
                continue;
            }
            out.push(f.clone());
        }
    }
    out
}

/// The host's files with `changes` made: a changed file keeps its place, a new one takes
/// the place of its name (hiding a same-name file of a later directory).
pub fn with_changes(files: &[File], changes: &[File]) -> Vec<File> {
    let mut all: Vec<File> = files.to_vec();
    for c in changes {
        if let Some(f) = all.iter_mut().find(|f| f.path == c.path) {
            f.text = c.text.clone();
        } else if let Some(f) = all.iter_mut().find(|f| name_of(&f.path) == name_of(&c.path)) {
            *f = c.clone();
        } else {
            let i = all.iter().position(|f| name_of(&f.path) > name_of(&c.path)).unwrap_or(all.len());
            all.insert(i, c.clone());
        }
    }
    all
}

/// The planned `options` the merged files do not give the module (`key=value` as
/// planned): empty when every one takes effect.
pub fn lacking(files: &[File], lines: &[String]) -> Vec<String> {
    let config = effective(files);
    let mut out = Vec::new();
    // An install command: kmod runs the first one it reads for a module, so another file's
    // that comes first hides the planned one.
    for line in lines {
        let w = words(line);
        if w.len() >= 3 && w[0] == "install" {
            let planned = w[2..].join(" ");
            let runs = config.install.get(&crate::modprobe::module_name(w[1]));
            if runs.map(|c| c.split_whitespace().collect::<Vec<_>>().join(" ")) != Some(planned) {
                out.push(match runs {
                    Some(other) => format!(
                        "`{}` (modprobe runs `install {} {other}` of an earlier file instead)",
                        w.join(" "),
                        w[1]
                    ),
                    None => format!("`{}`", w.join(" ")),
                });
            }
        }
    }
    for (module, pairs) in lines.iter().filter_map(|l| options(l)) {
        for (key, value) in pairs {
            if !satisfied(&config, module, key, value) {
                out.push(format!("options {module} {key}={value}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen::v;

    const HEADER: &str = "# Written by vfioctl\n";
    const VFIO: &str = "/etc/modprobe.d/vfio.conf";

    fn f(path: &str, text: &str) -> File {
        File { path: path.into(), text: text.into() }
    }

    /// `place`, checked: every planned key takes effect, and placing again on the result
    /// changes nothing.
    fn placed(files: &[File], lines: &[String]) -> Vec<File> {
        let out = place(files, VFIO, HEADER, lines);
        let after = with_changes(files, &out);
        assert_eq!(lacking(&after, lines), Vec::<String>::new(), "{out:?}");
        assert_eq!(place(&after, VFIO, HEADER, lines), vec![], "not idempotent: {after:?}");
        out
    }

    #[test]
    fn kmod_order_and_same_name_hiding() {
        let listing = [
            ("/usr/lib/modprobe.d", v(&["a.conf", "kvm.conf", "z.conf", "README"])),
            ("/etc/modprobe.d", v(&["kvm.conf", "m.conf"])),
            ("/run/modprobe.d", v(&["a.conf"])),
        ];
        assert_eq!(
            order(&listing),
            [
                "/run/modprobe.d/a.conf",
                "/etc/modprobe.d/kvm.conf",
                "/etc/modprobe.d/m.conf",
                "/usr/lib/modprobe.d/z.conf"
            ]
        );
    }

    /// Issue 18: kmod runs the first install command of a module; one in a file read
    /// before vfioctl's hides vfioctl's, and the edit is then not effective.
    #[test]
    fn an_earlier_install_command_hides_the_planned_one() {
        let lines = v(&[
            "install vfio_pci echo vfio-pci > /sys/bus/pci/devices/0000:0b:00.1/driver_override; /sbin/modprobe -i vfio_pci $CMDLINE_OPTS",
        ]);
        let out = placed(&[], &lines);
        assert_eq!(out, [f(VFIO, &format!("{HEADER}{}\n", lines[0]))]);
        let theirs = f("/etc/modprobe.d/a-override.conf", "install vfio-pci /usr/local/bin/vfio-override.sh\n");
        let theirs = [theirs];
        let after = with_changes(&theirs, &place(&theirs, VFIO, HEADER, &lines));
        let l = lacking(&after, &lines);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].contains("runs `install vfio_pci /usr/local/bin/vfio-override.sh` of an earlier file"), "{l:?}");
    }

    #[test]
    fn nothing_there_gives_vfioctls_file() {
        let lines = v(&["options vfio-pci ids=10de:1b06,10de:10ef disable_vga=1", "softdep nouveau pre: vfio-pci"]);
        let out = placed(&[], &lines);
        assert_eq!(out, [f(VFIO, &format!("{HEADER}{}\n{}\n", lines[0], lines[1]))]);
    }

    /// Regression: the user's ids in another file that sorts before vfio.conf were hidden
    /// by the plan's `ids=` in vfio.conf (the last `ids=` wins).
    #[test]
    fn the_users_ids_in_another_file_gain_the_plans() {
        let gpu = f("/etc/modprobe.d/gpu-passthrough.conf", "options vfio_pci ids=10de:1b81,10de:10f0\n");
        let lines = v(&["options vfio-pci ids=10de:1b06,10de:10ef disable_vga=1", "softdep nvidia pre: vfio-pci"]);
        let out = placed(std::slice::from_ref(&gpu), &lines);
        assert_eq!(
            out,
            [
                f(&gpu.path, "options vfio_pci ids=10de:1b81,10de:10f0,10de:1b06,10de:10ef\n"),
                f(VFIO, &format!("{HEADER}options vfio-pci disable_vga=1\nsoftdep nvidia pre: vfio-pci\n")),
            ]
        );
    }

    /// Regression: `options kvm ignore_msrs=1` set by the user's own file was added again.
    #[test]
    fn what_the_files_say_is_not_written_again() {
        let files = [
            f("/etc/modprobe.d/kvm-local.conf", "options kvm ignore_msrs=1 report_ignored_msrs=0\n"),
            f("/etc/modprobe.d/zz.conf", "softdep nvidia pre: vfio vfio_pci\n"),
        ];
        let out = placed(&files, &v(&["options kvm ignore_msrs=1 report_ignored_msrs=0"]));
        assert_eq!(out, []);
        let out = placed(
            &files,
            &v(&["options kvm ignore_msrs=1 report_ignored_msrs=1", "softdep nvidia pre: vfio vfio_pci"]),
        );
        assert_eq!(out, [f(&files[0].path, "options kvm ignore_msrs=1 report_ignored_msrs=1\n")]);
    }

    /// Regression: a user's `report_ignored_msrs=N` was rewritten to `=0`, the same value.
    #[test]
    fn boolean_values_are_compared_as_the_kernel_reads_them() {
        let files = [f("/etc/modprobe.d/kvm.conf", "options kvm ignore_msrs=Y report_ignored_msrs=N\n")];
        assert_eq!(placed(&files, &v(&["options kvm ignore_msrs=1 report_ignored_msrs=0"])), []);
    }

    /// A distribution's file is never edited: a same-name file in /etc overrides it.
    #[test]
    fn a_distribution_file_is_overridden_from_etc() {
        let files = [
            f("/etc/modprobe.d/a.conf", "blacklist nouveau\n"),
            f("/usr/lib/modprobe.d/vfio-ids.conf", "# shipped\noptions vfio-pci ids=1002:67df\n"),
        ];
        let out = placed(&files, &v(&["options vfio-pci ids=10de:1b06"]));
        assert_eq!(out, [f("/etc/modprobe.d/vfio-ids.conf", "# shipped\noptions vfio-pci ids=1002:67df,10de:1b06\n")]);
        let after = with_changes(&files, &out);
        assert_eq!(after.len(), 2, "{after:?}");
    }

    /// A later file of the user's wins over vfio.conf; vfioctl's own file is where the keys
    /// go that no file sets.
    #[test]
    fn a_later_file_wins_and_own_keys_stay_in_vfio_conf() {
        let files = [
            f(VFIO, "# Written by vfioctl\noptions vfio-pci ids=10de:1b06\n"),
            f("/etc/modprobe.d/zz-override.conf", "options vfio-pci ids=1002:67df disable_idle_d3=1\n"),
        ];
        let out = placed(&files, &v(&["options vfio-pci ids=10de:1b06,10de:10ef disable_vga=1"]));
        assert_eq!(
            out,
            [
                f(&files[1].path, "options vfio-pci ids=1002:67df,10de:1b06,10de:10ef disable_idle_d3=1\n"),
                f(VFIO, "# Written by vfioctl\noptions vfio-pci ids=10de:1b06 disable_vga=1\n"),
            ]
        );
    }

    /// vfioctl's `kvm.conf` in /etc hides a distribution's `kvm.conf`: its lines stay in
    /// effect, in vfioctl's file.
    #[test]
    fn a_same_name_distribution_file_is_carried_over() {
        let files = [f("/usr/lib/modprobe.d/kvm.conf", "options kvm_amd nested=1\n")];
        let out = place(&files, "/etc/modprobe.d/kvm.conf", HEADER, &v(&["options kvm ignore_msrs=1"]));
        assert_eq!(out, [f("/etc/modprobe.d/kvm.conf", "options kvm_amd nested=1\noptions kvm ignore_msrs=1\n")]);
        assert_eq!(effective(&with_changes(&files, &out)).option("kvm_amd", "nested"), Some("1"));
    }

    #[test]
    fn never_panics() {
        let lines =
            v(&["options vfio-pci ids=A,B disable_vga=1", "softdep x pre: vfio-pci", "# c", "options", "options kvm"]);
        let words = ["options ", "vfio-pci ", "vfio_pci ", "ids=", "A,", "softdep ", "\n", "#"];
        for s in crate::edit::fuzzgen::strings(43, 1500, 24, &words) {
            let files = [f("/etc/modprobe.d/a.conf", &s), f("/usr/lib/modprobe.d/b.conf", &s)];
            let out = place(&files, VFIO, HEADER, &lines);
            let after = with_changes(&files, &out);
            assert_eq!(place(&after, VFIO, HEADER, &lines), vec![], "{s:?}");
        }
    }
}
