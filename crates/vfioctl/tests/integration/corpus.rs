//! The corpus of configuration files in the shapes real users and distributions have
//! (`tests/corpus/NN-name/`: a `case.toml` and the files under `root/`, written for vfioctl
//! after published files, see its README). Each case is laid over a copy of an example
//! host and applied; then, with the consumers as oracles where there is one:
//! - the next boot's command line carries the plan (bash sourcing GRUB's defaults and
//!   drop-ins; for other loaders, a plan made after the apply has nothing left to add);
//! - modprobe gives every module the planned options (kmod over every modprobe.d);
//! - the initramfs builder's configuration loads the planned modules (bash sourcing
//!   mkinitcpio's and dracut's files; initramfs-tools' list);
//! - a second apply changes nothing, and rollback restores every byte;
//!
//! For the cases vfioctl must refuse: it refuses and writes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use crate::apply::{bash_in, module_options_by_kmod, tree};
use crate::util::{copy_host, vfioctl, workspace};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    host: String,
    about: String,
    #[serde(default)]
    remove: Vec<String>,
    /// `applied` (the default) or `refused`.
    #[serde(default)]
    expect: Option<String>,
    /// Text the refusal must contain.
    #[serde(default)]
    refusal: Option<String>,
    /// Files the apply must change (the ones whose values win), when the case is about
    /// which file that is.
    #[serde(default)]
    changes: Vec<String>,
    /// The plan's arguments (default: `gpu`).
    #[serde(default)]
    args: Option<Vec<String>>,
}

fn cases() -> Vec<PathBuf> {
    let dir = workspace().join("crates/vfioctl/tests/corpus");
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    out.sort();
    out
}

fn json(run: &crate::util::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The planned `options MODULE key=value …` lines of the plan's modprobe.d files.
fn planned_options(plan: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for f in plan["modprobe"].as_array().into_iter().flatten() {
        for line in f["content"].as_str().unwrap_or("").lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() >= 3 && w[0] == "options" {
                for o in &w[2..] {
                    let (k, v) = o.split_once('=').unwrap_or((o, ""));
                    out.push((w[1].replace('-', "_"), k.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}

/// The modules the root's initramfs builder loads early, read by the builder's own
/// language (bash for mkinitcpio and dracut), `None` without a builder vfioctl edits.
fn early_modules(root: &Path) -> Option<Vec<String>> {
    let words = |s: String| s.split_whitespace().map(|w| w.replace('-', "_")).collect::<Vec<_>>();
    if root.join("etc/booster.yaml").exists() {
        return None;
    }
    if root.join("etc/mkinitcpio.conf").exists() || root.join("etc/mkinitcpio.conf.d").exists() {
        return Some(words(bash_in(
            root,
            concat!(
                // The configuration file the presets name, as mkinitcpio -P reads it.
                r#"cfg=/etc/mkinitcpio.conf; for p in "$1"/etc/mkinitcpio.d/*.preset; do [ -e "$p" ] || continue; "#,
                r#"c=$(. "$p"; echo "${ALL_config:-${default_config:-}}"); [ -n "$c" ] && cfg=$c; done; "#,
                r#"[ -e "$1$cfg" ] && . "$1$cfg"; for f in "$1$cfg".d/*.conf; do [ -e "$f" ] && . "$f"; done; "#,
                r#"printf '%s\n' "${MODULES[@]}""#
            ),
        )));
    }
    if root.join("etc/dracut.conf").exists() || root.join("etc/dracut.conf.d").exists() {
        return Some(words(bash_in(
            root,
            r#"[ -e "$1/etc/dracut.conf" ] && . "$1/etc/dracut.conf"; for f in $(cd "$1" && ls etc/dracut.conf.d/*.conf usr/lib/dracut/dracut.conf.d/*.conf 2>/dev/null | awk -F/ '{print $NF" "$0}' | sort -k1,1 -u | cut -d' ' -f2); do . "$1/$f"; done; printf '%s' "$force_drivers""#,
        )));
    }
    let modules = fs::read_to_string(root.join("etc/initramfs-tools/modules")).ok()?;
    Some(
        modules
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .map(|m| m.replace('-', "_"))
            .collect(),
    )
}

/// Runs one case; the error says what went wrong.
fn run_case(dir: &Path) -> Result<(), String> {
    let case: Case = toml::from_str(&fs::read_to_string(dir.join("case.toml")).map_err(|e| e.to_string())?)
        .map_err(|e| format!("case.toml: {e}"))?;
    if case.about.trim().is_empty() {
        return Err("case.toml: `about` is empty".into());
    }
    let (_t, root) = copy_host(&case.host);
    for r in &case.remove {
        let p = root.join(r.trim_start_matches('/'));
        if p.is_dir() {
            fs::remove_dir_all(&p).map_err(|e| format!("remove {r}: {e}"))?;
        } else {
            fs::remove_file(&p).map_err(|e| format!("remove {r}: {e}"))?;
        }
    }
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.join("root/."))
        .arg(&root)
        .status()
        .map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err("cp root/".into());
    }
    let plan_args: Vec<String> = case.args.clone().unwrap_or_else(|| vec!["gpu".into()]);
    let with = |cmd: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![cmd.to_string()];
        v.extend(plan_args.iter().cloned());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        vfioctl(&root, &a)
    };
    let before = tree(&root);
    let planned = run(with("plan", &["--format", "json"]));
    let apply = run(with("apply", &["--yes", "--no-commands"]));
    if case.expect.as_deref() == Some("refused") {
        if apply.code == 0 {
            return Err(format!("applied, but must be refused:\n{}", apply.stdout));
        }
        if let Some(r) = &case.refusal {
            if !apply.stderr.contains(r.as_str()) && !apply.stdout.contains(r.as_str()) {
                return Err(format!("refused without {r:?}: {}{}", apply.stdout, apply.stderr));
            }
        }
        if tree(&root) != before {
            return Err("refused, but files changed".into());
        }
        return Ok(());
    }
    if planned.code != 0 {
        return Err(format!("plan exited {}:\n{}{}", planned.code, planned.stdout, planned.stderr));
    }
    let plan = json(&planned);
    let plan_run = run(with("plan", &["--format", "json"]));
    if apply.code != 0 {
        return Err(format!("apply exited {}:\n{}{}", apply.code, apply.stdout, apply.stderr));
    }
    let applied = tree(&root);
    for c in &case.changes {
        let k = PathBuf::from(c.trim_start_matches('/'));
        if before.get(&k) == applied.get(&k) {
            return Err(format!("{c} was not changed; the apply said:\n{}", apply.stdout));
        }
    }
    // What the plan asked for, planned again from the host as the apply left it: nothing
    // left to add or remove on the next boot's command line.
    let after = json(&plan_run);
    let add = strings(&after["kernel_cmdline"]["add"]);
    let remove = strings(&after["kernel_cmdline"]["remove"]);
    if !add.is_empty() || !remove.is_empty() {
        return Err(format!(
            "after the apply the plan still adds {add:?} and removes {remove:?} (source {})",
            after["cmdline_source"]
        ));
    }
    // GRUB: bash sources the defaults and drop-ins as grub-mkconfig does.
    if after["cmdline_source"].as_str().is_some_and(|s| s.contains("/etc/default/grub")) {
        // As grub-mkconfig's shell sources them: a line it cannot run (a CRLF file's
        // `\r`) is reported and skipped, a value keeps a trailing `\r`.
        let line = bash_in(
            &root,
            r#". "$1/etc/default/grub" 2>/dev/null; for f in "$1"/etc/default/grub.d/*.cfg; do [ -e "$f" ] && . "$f" 2>/dev/null; done; printf '%s %s' "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT" | tr -d '\r'"#,
        );
        let c: Vec<&str> = line.split_whitespace().collect();
        let wrong = vfioctl_core::edit::cmdline::lacking(
            &c.join(" "),
            &vfioctl_core::edit::CmdlineEdit {
                add: strings(&plan["kernel_cmdline"]["add"]),
                remove: strings(&plan["kernel_cmdline"]["remove"]),
            },
        );
        if !wrong.is_empty() {
            return Err(format!("bash's GRUB command line would {wrong:?}: {line}"));
        }
    }
    if let Some(ids) = plan["vfio_ids"].as_array() {
        let ids: Vec<String> = ids.iter().filter_map(|i| i.as_str().map(str::to_string)).collect();
        if let Some(opts) = module_options_by_kmod(&root, "vfio_pci") {
            let line = opts.iter().rev().find_map(|o| o.strip_prefix("ids=")).unwrap_or("");
            for id in &ids {
                if !line.split(',').any(|x| x == id) && !after_cmdline_has_ids(&root, id) {
                    return Err(format!("kmod gives vfio-pci ids={line}, without {id}: {opts:?}"));
                }
            }
        }
    }
    for (module, key, value) in planned_options(&plan) {
        if key == "ids" {
            continue;
        }
        if let Some(opts) = module_options_by_kmod(&root, &module) {
            let last = opts.iter().rev().find_map(|o| o.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v));
            // Booleans as the kernel reads them (kstrtobool): `N` is `0`.
            let b = |v: &str| match v.to_ascii_lowercase().as_str() {
                "1" | "y" | "yes" | "t" | "true" | "on" => "1".to_string(),
                "0" | "n" | "no" | "f" | "false" | "off" => "0".to_string(),
                o => o.to_string(),
            };
            if last.map(b) != Some(b(&value)) {
                return Err(format!("kmod gives {module} {key}={last:?}, not {value}: {opts:?}"));
            }
        }
    }
    let wanted = strings(&plan["initramfs_modules"]);
    if let Some(have) = early_modules(&root) {
        for m in &wanted {
            if !have.contains(&m.replace('-', "_")) {
                return Err(format!("the initramfs configuration does not load {m}: {have:?}"));
            }
        }
    }
    let again = run(with("apply", &["--yes", "--no-commands"]));
    if again.code != 0 || !again.stdout.starts_with("Nothing to do") {
        return Err(format!("the second apply was not a no-op ({}):\n{}{}", again.code, again.stdout, again.stderr));
    }
    let back = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
    if back.code != 0 {
        return Err(format!("rollback exited {}: {}{}", back.code, back.stdout, back.stderr));
    }
    if tree(&root) != before {
        let now = tree(&root);
        let diff: Vec<String> = before
            .keys()
            .chain(now.keys())
            .filter(|k| before.get(*k) != now.get(*k))
            .map(|k| k.display().to_string())
            .collect();
        return Err(format!("rollback left differences: {diff:?}"));
    }
    Ok(())
}

/// The id is reserved on the command line instead (a separate GRUB variable, a host
/// without modprobe.d handling): not a modprobe.d failure.
fn after_cmdline_has_ids(root: &Path, id: &str) -> bool {
    let check = vfioctl(root, &["check", "--format", "json"]);
    check.stdout.contains(id)
}

#[test]
fn every_corpus_case_takes_effect_applies_once_and_rolls_back() {
    let all = cases();
    assert!(all.len() >= 40, "only {} corpus cases", all.len());
    // A few cases at a time: each runs vfioctl processes on its own copy.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(d) = all.get(i) else { break };
                if let Err(e) = run_case(d) {
                    let name = d.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    failures.lock().unwrap().push(format!("{name}: {e}"));
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}
