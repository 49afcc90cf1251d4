//! Issue 14, "nothing lost": the transaction against unreadable files, missing backups,
//! concurrency, repeats, links, archives and files changed after the apply. Each test is
//! one symptom that once lost a user's bytes.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::apply::tree;
use crate::util::{copy_host, vfioctl, vfioctl_env};

const APPLY: &[&str] = &["apply", "gpu", "--memory", "16G", "--yes", "--no-commands"];

fn apply_with(root: &Path, extra: &[&str]) -> crate::util::Run {
    let mut a = APPLY.to_vec();
    a.extend_from_slice(extra);
    vfioctl(root, &a)
}

fn journals(root: &Path) -> usize {
    fs::read_dir(root.join("var/lib/vfioctl/journal")).map_or(0, |d| d.count())
}

/// A file apply would edit that cannot be read is a refusal naming it, before anything is
/// written: a directory where the file should be, and (as an unprivileged user) a file
/// the user may not read. It is never taken for a missing file.
#[test]
fn an_unreadable_target_stops_the_apply_before_anything_is_written() {
    let (_t, root) = copy_host("r2600x");
    let grub = root.join("etc/default/grub");
    let text = fs::read(&grub).unwrap();
    fs::remove_file(&grub).unwrap();
    fs::create_dir(&grub).unwrap();
    let before = tree(&root);
    let run = apply_with(&root, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("/etc/default/grub"), "{}", run.stderr);
    assert_eq!(tree(&root), before);
    assert_eq!(journals(&root), 0);
    fs::remove_dir(&grub).unwrap();
    fs::write(&grub, &text).unwrap();

    // As nobody, on a root whose grub only root may read.
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root {
        eprintln!("skipped: the unprivileged half needs root to switch users");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mine = tmp.path().join("host");
    assert!(Command::new("cp").arg("-a").arg(&root).arg(&mine).status().unwrap().success());
    let _ = Command::new("chmod").args(["-R", "a+rwX"]).arg(tmp.path()).status();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let grub = mine.join("etc/default/grub");
    fs::set_permissions(&grub, fs::Permissions::from_mode(0o600)).unwrap();
    let before = tree(&mine);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_vfioctl"))
        .arg("--root")
        .arg(&mine)
        .args(APPLY)
        .env("VFIOCTL_PCI_IDS", crate::util::ids_file())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/etc/default/grub") && stderr.contains("ermission denied"), "{stderr}");
    assert_eq!(fs::read(&grub).unwrap(), text, "the unreadable file was replaced");
    assert_eq!(tree(&mine), before);
}

/// The journal proves itself: a saved copy that is gone or altered stops the rollback
/// before anything changes, and the file is not deleted.
#[test]
fn rollback_trusts_no_missing_or_altered_backup() {
    for damage in ["remove", "alter"] {
        let (_t, root) = copy_host("r2600x");
        assert_eq!(apply_with(&root, &[]).code, 0);
        let journal = fs::read_dir(root.join("var/lib/vfioctl/journal")).unwrap().next().unwrap().unwrap().path();
        let j: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(journal.join("journal.json")).unwrap()).unwrap();
        let n = j["files"].as_array().unwrap().iter().position(|f| f["path"] == "/etc/default/grub").unwrap();
        let backup = journal.join(format!("before/{n}"));
        match damage {
            "remove" => fs::remove_file(&backup).unwrap(),
            _ => fs::write(&backup, "GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n").unwrap(),
        }
        let applied = tree(&root);
        let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
        assert_eq!(rb.code, 2, "{damage}: {}", rb.stderr);
        assert!(rb.stderr.contains("nothing was restored") && rb.stderr.contains("/etc/default/grub"), "{}", rb.stderr);
        assert_eq!(tree(&root), applied, "{damage}: rollback changed files");
    }
}

/// A file the user changed after the apply is not overwritten in silence: rollback stops
/// and shows the three versions; `--force` restores and keeps the user's version beside.
#[test]
fn a_file_changed_after_the_apply_stops_rollback_unless_forced() {
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    assert_eq!(apply_with(&root, &[]).code, 0);
    let grub = root.join("etc/default/grub");
    let mut edited = fs::read_to_string(&grub).unwrap();
    edited.push_str("GRUB_TIMEOUT=3 # mine\n");
    fs::write(&grub, &edited).unwrap();
    let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
    assert_eq!(rb.code, 2, "{}", rb.stderr);
    for needle in ["changed since apply", "before the apply:", "applied:", "now:", "+GRUB_TIMEOUT=3 # mine", "--force"]
    {
        assert!(rb.stderr.contains(needle), "{needle}: {}", rb.stderr);
    }
    assert_eq!(fs::read_to_string(&grub).unwrap(), edited);
    let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands", "--force"]);
    assert_eq!(rb.code, 0, "{}", rb.stderr);
    let kept: Vec<_> = fs::read_dir(root.join("etc/default"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("grub.vfioctl-kept-"))
        .collect();
    assert_eq!(kept.len(), 1, "{}", rb.stderr);
    assert_eq!(fs::read_to_string(kept[0].path()).unwrap(), edited);
    fs::remove_file(kept[0].path()).unwrap();
    assert_eq!(tree(&root), before);
}

/// Two applies at once never mix. Usually one wins and the other writes nothing (it waits
/// for the lock, then finds the files changed since its plan); on a busy machine the second
/// may plan only after the first finished, and then both apply, one after the other. Either
/// way the host ends as one of the two plans alone, and `rollback --all` restores it.
#[test]
fn two_applies_at_once_never_mix() {
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    let alone = |memory: &str| {
        let (_t, r) = copy_host("r2600x");
        assert_eq!(vfioctl(&r, &["apply", "gpu", "--memory", memory, "--yes", "--no-commands"]).code, 0);
        let mut t = tree(&r);
        t.retain(|p, _| !p.starts_with("var"));
        t
    };
    let spawn = |memory: &str| {
        Command::new(env!("CARGO_BIN_EXE_vfioctl"))
            .arg("--root")
            .arg(&root)
            .args(["apply", "gpu", "--memory", memory, "--yes", "--no-commands"])
            .env("VFIOCTL_PCI_IDS", crate::util::ids_file())
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("16G"));
        let b = s.spawn(|| spawn("8G"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let msgs = format!("{}\n{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(ok >= 1, "neither applied: {msgs}");
    for o in [&a, &b].iter().filter(|o| !o.status.success()) {
        assert_eq!(o.status.code(), Some(2), "{msgs}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was written"), "{msgs}");
    }
    let mut now = tree(&root);
    now.retain(|p, _| !p.starts_with("var"));
    assert!(now == alone("16G") || now == alone("8G"), "a mix of the two plans: {msgs}");
    let h = vfioctl(&root, &["history", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().iter().filter(|j| j["in_effect"] == true).count(), ok, "{}", h.stdout);
    assert_eq!(vfioctl(&root, &["rollback", "--all", "--yes", "--no-commands"]).code, 0);
    assert_eq!(tree(&root), before);
}

/// The lock: a second apply waits for the first and gives up with exit 2 after the
/// timeout, saying what it waited for.
#[test]
fn a_held_lock_makes_apply_wait_then_give_up() {
    let (_t, root) = copy_host("r2600x");
    fs::create_dir_all(root.join("var/lib/vfioctl")).unwrap();
    let lock = root.join("var/lib/vfioctl/lock");
    fs::write(&lock, "").unwrap();
    let mut holder = Command::new("flock").arg(&lock).args(["sleep", "30"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = vfioctl_env(&root, APPLY, &[("VFIOCTL_LOCK_TIMEOUT", "1")]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("waiting up to 1 s") && run.stderr.contains("still holds"), "{}", run.stderr);
    assert_eq!(journals(&root), 0);
}

/// A history, not a single slot: apply, apply other options, apply again; `history` lists
/// them; `rollback` undoes the last; `rollback --all` returns to before the first, byte for
/// byte, directories the applies created included; `rollback ID` to a chosen point.
#[test]
fn rollback_all_and_to_a_point_after_a_sequence() {
    let (_t, root) = copy_host("r2600x");
    let original = tree(&root);
    assert_eq!(apply_with(&root, &[]).code, 0);
    let after_first = tree(&root);
    let second = vfioctl(&root, &["apply", "gpu", "--memory", "4G", "--hugepages", "2M", "--yes", "--no-commands"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let grub = fs::read_to_string(root.join("etc/default/grub")).unwrap();
    assert!(!grub.contains("hugepagesz=1G"), "the 1 GiB page size stays behind: {grub}");
    let third = vfioctl(&root, &["apply", "gpu", "--memory", "8G", "--yes", "--no-commands"]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let h = vfioctl(&root, &["history", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    let ids: Vec<String> = v.as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3, "{}", h.stdout);
    assert!(v[2]["summary"].as_str().unwrap().contains("--memory 8G"), "{}", h.stdout);
    let text = vfioctl(&root, &["history"]);
    assert!(text.stdout.contains("3 still in effect"), "{}", text.stdout);
    // Regression: the rows did not line up under the header (the dates overflowed).
    let lines: Vec<&str> = text.stdout.lines().take(4).collect();
    for col in ["DATE", "STATE", "FILES", "WHAT"] {
        let at = lines[0].find(col).expect(col);
        for row in &lines[1..] {
            assert!(row[..at].ends_with(' ') && !row[at..].starts_with(' '), "{col} in {row:?}:\n{}", text.stdout);
        }
    }

    // Back to just after the first.
    let rb = vfioctl(&root, &["rollback", &ids[1], "--yes", "--no-commands"]);
    assert_eq!(rb.code, 0, "{}", rb.stderr);
    assert_eq!(tree(&root), after_first);
    // The last in effect is now the first: `rollback` undoes it.
    let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
    assert_eq!(rb.code, 0, "{}", rb.stderr);
    assert_eq!(tree(&root), original);
    let none = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
    assert_eq!(none.code, 1, "{}", none.stderr);

    // Again, all at once.
    assert_eq!(apply_with(&root, &[]).code, 0);
    assert_eq!(vfioctl(&root, &["apply", "gpu", "--memory", "4G", "--yes", "--no-commands"]).code, 0);
    let rb = vfioctl(&root, &["rollback", "--all", "--yes", "--no-commands"]);
    assert_eq!(rb.code, 0, "{}", rb.stderr);
    assert_eq!(tree(&root), original);
    let bad = vfioctl(&root, &["rollback", "1-0", "--yes"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("vfioctl history"), "{}", bad.stderr);
}

/// A snapshot archive is unpacked into a temporary directory: writing there would be
/// thrown away, so apply and rollback refuse (a dry run still works).
#[test]
fn a_tar_gz_root_refuses_to_apply_or_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("host.tar.gz");
    let snap = vfioctl(&crate::util::example_host("r2600x"), &["snapshot", archive.to_str().unwrap()]);
    assert_eq!(snap.code, 0, "{}", snap.stderr);
    for args in [APPLY, &["rollback", "--yes"][..]] {
        let run = vfioctl(&archive, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("snapshot archive") && run.stderr.contains("tar -xzf"), "{}", run.stderr);
    }
    let dry = vfioctl(&archive, &["apply", "gpu", "--memory", "16G", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
}

/// `/etc/default/grub` as a link into the user's dotfiles: the dotfile is edited (its mode
/// kept), the link stays a link, and rollback restores the dotfile.
#[test]
fn a_symlinked_target_edits_what_it_points_to_and_keeps_the_link() {
    let (_t, root) = copy_host("r2600x");
    let grub = root.join("etc/default/grub");
    let dot = root.join("etc/default/grub.dotfiles");
    fs::rename(&grub, &dot).unwrap();
    fs::set_permissions(&dot, fs::Permissions::from_mode(0o640)).unwrap();
    symlink("grub.dotfiles", &grub).unwrap();
    let before = tree(&root);
    let dot_before = fs::read_to_string(&dot).unwrap();
    let run = apply_with(&root, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(fs::symlink_metadata(&grub).unwrap().file_type().is_symlink(), "the link was replaced");
    let dot_now = fs::read_to_string(&dot).unwrap();
    assert!(dot_now.contains("vfio-pci.ids="), "the dotfile was not edited: {dot_now}");
    assert_eq!(fs::metadata(&dot).unwrap().mode() & 0o7777, 0o640);
    let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
    assert_eq!(rb.code, 0, "{}", rb.stderr);
    assert_eq!(fs::read_to_string(&dot).unwrap(), dot_before);
    assert!(fs::symlink_metadata(&grub).unwrap().file_type().is_symlink());
    assert_eq!(tree(&root), before);
}

/// An absolute link inside the root points into the root, as in a chroot: never to the
/// machine running vfioctl. Here `/etc/default/grub -> /etc/grub.real` names the root's own
/// file, and a file of the same name planted on this machine is never read nor written.
#[test]
fn absolute_links_resolve_inside_the_root() {
    let (_t, root) = copy_host("r2600x");
    let grub = root.join("etc/default/grub");
    let real = root.join("etc/grub.vfioctl-test-real");
    fs::rename(&grub, &real).unwrap();
    symlink("/etc/grub.vfioctl-test-real", &grub).unwrap();
    let outside = Path::new("/etc/grub.vfioctl-test-real");
    let planted = fs::write(outside, "GRUB_CMDLINE_LINUX_DEFAULT=\"outside\"\n").is_ok();
    let plan = vfioctl(&root, &["apply", "gpu", "--memory", "16G", "--dry-run"]);
    let run = apply_with(&root, &[]);
    let outside_after = fs::read_to_string(outside).ok();
    if planted {
        let _ = fs::remove_file(outside);
    }
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(!plan.stdout.contains("outside"), "read the machine's file: {}", plan.stdout);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(fs::read_to_string(&real).unwrap().contains("vfio-pci.ids="));
    if planted {
        assert_eq!(
            outside_after.as_deref(),
            Some("GRUB_CMDLINE_LINUX_DEFAULT=\"outside\"\n"),
            "wrote outside the root"
        );
    }
}

/// The plan is a fixed point, and applies compose: on every example host that applies,
/// for pairs of option sets A, B (memory, page size 1G / 2M / none, vCPUs, a separate
/// boot entry), `apply A; apply A` writes nothing the second time, `apply A; apply B`
/// leaves exactly the files `apply B` alone leaves, and `rollback --all` restores every
/// file (bytes and mode) and removes the directories the applies created.
#[test]
fn applies_compose_and_rollback_all_restores_every_host() {
    let sets: &[&[&str]] = &[
        &["--memory", "16G"],
        &["--memory", "4G", "--hugepages", "2M", "--vcpus", "4"],
        &["--memory", "8G", "--hugepages", "none"],
        &["--memory", "15G", "--boot-entry", "separate"],
    ];
    // Each later apply plans from the host as it was before the earlier ones (the
    // journals' baseline): a separate entry after a default apply takes the ids the first
    // added out of the default entry again, and a user's own hugepage parameters that the
    // first plan replaced come back when the second plan does not need them.
    let pairs = [(0, 1), (1, 0), (0, 2), (2, 1), (0, 3), (3, 0), (1, 3)];
    let run = |root: &Path, set: &[&str]| {
        let mut a = vec!["apply", "gpu", "--yes", "--no-commands"];
        a.extend_from_slice(set);
        vfioctl(root, &a)
    };
    // vfioctl's state, and directories that only hold nothing (an earlier apply created
    // /etc/sysctl.d for a file a later one removed: harmless, and rollback removes it).
    let without_state = |root: &Path| {
        let mut t = tree(root);
        t.retain(|p, _| !p.starts_with("var"));
        let dirs: Vec<_> = t
            .keys()
            .filter(|p| t[*p].0.is_empty() && !t.keys().any(|q| q != *p && q.starts_with(p)))
            .cloned()
            .collect();
        for d in dirs {
            if root.join(&d).is_dir() {
                t.remove(&d);
            }
        }
        // modprobe.d as kmod reads it: the order of the options on one line, and of lines
        // about different things (vfioctl writes each option once), is not a difference.
        for (p, (bytes, _)) in t.iter_mut() {
            if p.starts_with("etc/modprobe.d") {
                let text = String::from_utf8_lossy(bytes).into_owned();
                let lines: Vec<String> = text
                    .lines()
                    .map(|l| {
                        let w: Vec<&str> = l.split_whitespace().collect();
                        if w.len() > 2 && w[0] == "options" {
                            let mut opts = w[2..].to_vec();
                            opts.sort_unstable();
                            format!("options {} {}", w[1], opts.join(" "))
                        } else {
                            l.to_string()
                        }
                    })
                    .collect();
                let mut lines = lines;
                lines.sort();
                *bytes = lines.join("\n").into_bytes();
            }
        }
        t
    };
    let one_host = |host: std::path::PathBuf| -> usize {
        let mut checked = 0;
        {
            let name = host.file_name().unwrap().to_string_lossy().into_owned();
            for &(a, b) in &pairs {
                let (_t1, one) = copy_host(&name);
                let original = tree(&one);
                if run(&one, sets[a]).code != 0 {
                    continue;
                }
                let n = journals(&one);
                let again = run(&one, sets[a]);
                assert!(
                    again.stdout.starts_with("Nothing to do"),
                    "{name} {:?} twice: {}{}",
                    sets[a],
                    again.stdout,
                    again.stderr
                );
                assert_eq!(journals(&one), n, "{name} {:?}: the second apply wrote a journal", sets[a]);
                if a == b {
                    let rb = vfioctl(&one, &["rollback", "--all", "--yes", "--no-commands"]);
                    assert_eq!(rb.code, 0, "{name}: {}", rb.stderr);
                    let diff = differing(&tree(&one), &original);
                    let diff: Vec<_> = diff.into_iter().filter(|d| !d.starts_with("var/lib/vfioctl")).collect();
                    assert!(diff.is_empty(), "{name}: {:?} twice, rollback --all left {diff:?}", sets[a]);
                    checked += 1;
                    continue;
                }
                let after_a = without_state(&one);
                let second = run(&one, sets[b]);
                let (_t2, alone) = copy_host(&name);
                let only = run(&alone, sets[b]);
                assert_eq!(second.code, only.code, "{name} {:?} then {:?}: {}", sets[a], sets[b], second.stderr);
                // B refused (z690-twin-3070 binds by address, which a separate entry cannot
                // carry): nothing of it was written, A stands.
                let want = if only.code == 0 { without_state(&alone) } else { after_a };
                let diff = differing(&without_state(&one), &want);
                assert!(
                    diff.is_empty(),
                    "{name}: {:?} then {:?} differs from {:?} alone in {diff:?}",
                    sets[a],
                    sets[b],
                    sets[b]
                );
                let rb = vfioctl(&one, &["rollback", "--all", "--yes", "--no-commands"]);
                assert_eq!(rb.code, 0, "{name}: {}", rb.stderr);
                let mut now = tree(&one);
                now.retain(|p, _| !p.starts_with("var/lib/vfioctl"));
                let mut was = original.clone();
                was.retain(|p, _| !p.starts_with("var/lib/vfioctl"));
                let diff = differing(&now, &was);
                assert!(diff.is_empty(), "{name}: {:?} then {:?}, rollback --all left {diff:?}", sets[a], sets[b]);
                checked += 1;
            }
        }
        checked
    };
    // Two hosts at a time: each run is a separate process.
    let hosts = crate::util::example_hosts();
    let (left, right) = hosts.split_at(hosts.len() / 2);
    let checked: usize = std::thread::scope(|s| {
        let l = s.spawn(|| left.iter().cloned().map(one_host).sum::<usize>());
        let r: usize = right.iter().cloned().map(one_host).sum();
        l.join().unwrap() + r
    });
    assert!(checked >= 20, "only {checked} sequences applied");
}

type Tree = std::collections::BTreeMap<std::path::PathBuf, (Vec<u8>, u32)>;

/// The paths where two trees differ, with the text of each side when it is short.
fn differing(a: &Tree, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for p in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (x, y) = (a.get(p), b.get(p));
        if x != y {
            let show = |v: Option<&(Vec<u8>, u32)>| match v {
                None => "absent".to_string(),
                Some((bytes, mode)) if bytes.len() < 400 => format!("{mode:o} {:?}", String::from_utf8_lossy(bytes)),
                Some((bytes, mode)) => format!("{mode:o} {} bytes", bytes.len()),
            };
            out.push(format!("{}: {} vs {}", p.display(), show(x), show(y)));
        }
    }
    out
}

/// `--out` writes only regular files, atomically, takes relative names and refuses a
/// missing directory; a FIFO or a device stays what it was.
#[test]
fn out_writes_only_regular_files_in_existing_directories() {
    let host = crate::util::example_host("r2600x");
    let tmp = tempfile::tempdir().unwrap();
    let domain = |out: &str, cwd: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_vfioctl"))
            .current_dir(cwd)
            .arg("--root")
            .arg(&host)
            .args(["domain", "gpu", "--memory", "8G", "--name", "vm", "--out", out])
            .env("VFIOCTL_PCI_IDS", crate::util::ids_file())
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // A relative name.
    let (code, err) = domain("rel.xml", tmp.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(fs::read_to_string(tmp.path().join("rel.xml")).unwrap().contains("<domain"));
    // A missing directory is refused, not created.
    let (code, err) = domain("no/such/dir/vm.xml", tmp.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not exist") && err.contains("mkdir -p"), "{err}");
    assert!(!tmp.path().join("no").exists());
    // A FIFO, a directory, a device: refused, left as they were.
    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (target, what) in
        [(fifo.to_str().unwrap(), "a FIFO"), (tmp.path().to_str().unwrap(), "a directory"), ("/dev/null", "a device")]
    {
        let (code, err) = domain(target, tmp.path());
        assert_eq!(code, Some(2), "{target}: {err}");
        assert!(err.contains(what) && err.contains("not a regular file"), "{target}: {err}");
    }
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // An existing file keeps its mode.
    let kept = tmp.path().join("kept.xml");
    fs::write(&kept, "old").unwrap();
    fs::set_permissions(&kept, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(domain("kept.xml", tmp.path()).0, Some(0));
    assert_eq!(fs::metadata(&kept).unwrap().mode() & 0o777, 0o600);
}

/// After everything is rolled back, `verify` checks the newest journal (and fails, since its
/// configuration is gone) rather than saying nothing was ever applied.
#[test]
fn verify_after_rollback_checks_the_newest_journal() {
    let (_t, root) = copy_host("r2600x");
    assert_eq!(apply_with(&root, &[]).code, 0);
    assert_eq!(vfioctl(&root, &["rollback", "--yes", "--no-commands"]).code, 0);
    let v = vfioctl(&root, &["verify"]);
    assert_ne!(v.code, 2, "{}{}", v.stdout, v.stderr);
    assert!(!v.stderr.contains("nothing was applied"), "{}", v.stderr);
}

/// On the live machine, apply and rollback say up front that they need root, before any
/// planning; a dry run works as any user.
#[test]
fn on_the_live_machine_apply_and_rollback_need_root() {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root {
        eprintln!("skipped: needs root to switch to an unprivileged user");
        return;
    }
    for args in [&["apply", "gpu", "--yes"][..], &["rollback", "--yes"][..]] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_vfioctl"))
            .args(["--root", "/"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("need root") && stderr.contains("sudo"), "{args:?}: {stderr}");
    }
}

/// Runs `args` with `VFIOCTL_FAULT=KIND:N` for N = 0, 1, … until the command no longer
/// meets its fault (it succeeds: every step was covered), calling `check(n, run)` after each
/// faulted run. Returns how many steps there were.
fn every_step(root: &Path, kind: &str, args: &[&str], mut check: impl FnMut(usize, &crate::util::Run)) -> usize {
    for n in 0..2000 {
        let fault = format!("{kind}:{n}");
        let run = vfioctl_env(root, args, &[("VFIOCTL_FAULT", &fault)]);
        if run.code == 0 {
            return n;
        }
        assert!(!run.stderr.contains("panicked"), "{fault}: {}", run.stderr);
        check(n, &run);
    }
    panic!("{kind}: the command never got past its fault");
}

fn forget_journals(root: &Path) {
    let _ = fs::remove_dir_all(root.join("var/lib/vfioctl"));
}

/// A crash (`die:N`: the process is killed) or an I/O error (`step:N`) before each single
/// side effect of an apply: every temporary file, write, fsync, chmod, rename, directory sync
/// and journal update. After a crash the next command says the apply did not finish, and
/// `rollback` returns the host to the old state byte for byte (no temporary file left
/// behind); after an error the apply has already restored it, and the next apply works.
#[test]
fn a_crash_or_an_error_at_every_step_of_apply_loses_nothing() {
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    let dies = every_step(&root, "die", APPLY, |n, run| {
        assert!(run.stderr.contains(&format!("injected crash before step {n}")), "die:{n}: {}", run.stderr);
        let status = vfioctl(&root, &["status"]);
        // A changed host is either a finished apply or one status calls unfinished.
        if tree(&root) != before {
            assert!(
                status.stdout.contains("did not finish") || status.stdout.contains("state applied\n"),
                "die:{n}: a changed host, and status says\n{}",
                status.stdout
            );
        }
        // Refused while a journal says the apply did not finish; else (the crash came
        // before the journal said anything, or after it said all) it goes through, and the
        // rollback below undoes it.
        let again = apply_with(&root, &[]);
        if again.code != 0 {
            assert!(again.stderr.contains("did not finish"), "die:{n}: {}", again.stderr);
        }
        let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
        assert!(rb.code == 0 || rb.stderr.contains("nothing to roll back"), "die:{n}: {}", rb.stderr);
        assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "die:{n}");
        forget_journals(&root);
    });
    // The last run met no fault: a whole apply, undone.
    assert_eq!(vfioctl(&root, &["rollback", "--yes", "--no-commands"]).code, 0);
    assert_eq!(differing(&tree(&root), &before), Vec::<String>::new());
    forget_journals(&root);
    let steps = every_step(&root, "step", APPLY, |n, run| {
        assert!(run.stderr.contains(&format!("injected fault at step {n}")), "step:{n}: {}", run.stderr);
        assert_eq!(
            differing(&tree(&root), &before),
            Vec::<String>::new(),
            "step:{n}: the failed apply restored everything"
        );
        let again = apply_with(&root, &[]);
        assert_eq!(again.code, 0, "step:{n}: the next apply is not blocked: {}", again.stderr);
        let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
        assert_eq!(rb.code, 0, "step:{n}: {}", rb.stderr);
        assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "step:{n}");
        forget_journals(&root);
    });
    assert_eq!(dies, steps, "the same steps either way");
    assert!(steps > 40, "an apply of r2600x has {steps} steps");
}

/// The same for `rollback`: a crash or an error at any of its steps, then `rollback` again,
/// and the host is as before the apply.
#[test]
fn a_crash_or_an_error_at_every_step_of_rollback_loses_nothing() {
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    let rollback = &["rollback", "--yes", "--no-commands"];
    for kind in ["die", "step"] {
        assert_eq!(apply_with(&root, &[]).code, 0);
        let steps = every_step(&root, kind, rollback, |n, _| {
            // Again; or nothing left to do when only the journal's last word was lost.
            let rb = vfioctl(&root, rollback);
            assert!(rb.code == 0 || rb.stderr.contains("nothing to roll back"), "{kind}:{n}: {}", rb.stderr);
            assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "{kind}:{n}");
            forget_journals(&root);
            assert_eq!(apply_with(&root, &[]).code, 0);
        });
        assert!(steps > 5, "{kind}: a rollback of r2600x has {steps} steps");
        assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "{kind}: the unfaulted rollback");
        forget_journals(&root);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// A filesystem the test mounted, unmounted when it drops (also when the test fails).
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], at: &Path) -> Option<Mounted> {
    let ok = Command::new("mount").args(args).arg(at).status().is_ok_and(|s| s.success());
    ok.then(|| Mounted(at.to_path_buf()))
}

/// r2600x copied onto a tmpfs of `size` the test mounted; `None` (the test skips) where
/// this user may not mount.
fn host_on_tmpfs(size: &str) -> Option<(tempfile::TempDir, Mounted, std::path::PathBuf)> {
    if !is_root() {
        eprintln!("skipped: mounting a test filesystem needs root");
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let fs_dir = tmp.path().join("fs");
    fs::create_dir(&fs_dir).expect("mkdir");
    let Some(m) = mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"], &fs_dir) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return None;
    };
    let root = fs_dir.join("r2600x");
    let src = crate::util::example_host("r2600x");
    assert!(Command::new("cp").arg("-a").arg(&src).arg(&root).status().expect("cp").success());
    Some((tmp, m, root))
}

/// The files an apply of `APPLY` writes on `root`, as the journal lists them (host paths).
fn targets(root: &Path) -> Vec<String> {
    assert_eq!(apply_with(root, &[]).code, 0);
    let dir = fs::read_dir(root.join("var/lib/vfioctl/journal")).expect("journals").flatten().next().expect("one");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("journal.json")).expect("journal")).expect("json");
    let out = j["files"].as_array().expect("files").iter().map(|f| f["path"].as_str().expect("path").to_string());
    let out = out.collect();
    assert_eq!(vfioctl(root, &["rollback", "--yes", "--no-commands"]).code, 0);
    forget_journals(root);
    out
}

/// A full filesystem at every point of the apply: with 0, 1, 2, … pages left, the apply
/// fails on "No space left on device" and leaves every file as it was (no temporary file
/// either) and no journal that blocks the next apply, until there is room for all of it.
#[test]
fn a_full_disk_fails_the_apply_and_loses_nothing() {
    let Some((_t, _m, root)) = host_on_tmpfs("64m") else { return };
    let before = tree(&root);
    let filler = root.join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 1 << 16];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let full = fs::metadata(&filler).expect("filler").len();
    let mut succeeded = false;
    for pages in 0..200u64 {
        let f = fs::OpenOptions::new().write(true).open(&filler).expect("filler");
        f.set_len(full.saturating_sub(pages * 4096)).expect("truncate");
        drop(f);
        let run = apply_with(&root, &[]);
        if run.code == 0 {
            succeeded = true;
            break;
        }
        assert!(run.stderr.contains("No space left on device"), "{pages} pages: {}", run.stderr);
        assert!(!run.stderr.contains("restoring failed"), "{pages} pages: {}", run.stderr);
        assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "{pages} pages free");
        let status = vfioctl(&root, &["status"]);
        assert!(!status.stdout.contains("did not finish"), "{pages} pages: {}", status.stdout);
        forget_journals(&root);
    }
    assert!(succeeded, "the apply never had room");
    fs::remove_file(&filler).expect("rm filler");
    assert_eq!(vfioctl(&root, &["rollback", "--yes", "--no-commands"]).code, 0);
    assert_eq!(differing(&tree(&root), &before), Vec::<String>::new());
}

/// A read-only root refuses before anything is written (the journal cannot be started);
/// a read-only /etc under a writable /var fails at the first file and restores nothing
/// it did not write. Either way every file is as it was, and nothing blocks the next apply.
#[test]
fn a_read_only_filesystem_fails_the_apply_and_loses_nothing() {
    let Some((_t, m, root)) = host_on_tmpfs("64m") else { return };
    let before = tree(&root);
    assert!(Command::new("mount").args(["-o", "remount,ro"]).arg(&m.0).status().expect("mount").success());
    let run = apply_with(&root, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("Read-only file system"), "{}", run.stderr);
    assert_eq!(differing(&tree(&root), &before), Vec::<String>::new());
    assert!(Command::new("mount").args(["-o", "remount,rw"]).arg(&m.0).status().expect("mount").success());

    let etc = root.join("etc");
    let etc_arg = etc.to_str().expect("utf-8 path");
    let bind = mount(&["--bind", etc_arg], &etc).expect("bind mount");
    assert!(Command::new("mount").args(["-o", "remount,bind,ro"]).arg(&etc).status().expect("mount").success());
    let run = apply_with(&root, &[]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("Read-only file system"), "{}", run.stderr);
    assert!(run.stderr.contains("every file was restored"), "{}", run.stderr);
    assert_eq!(differing(&tree(&root), &before), Vec::<String>::new());
    drop(bind);
    let again = apply_with(&root, &[]);
    assert_eq!(again.code, 0, "a failed apply does not block the next: {}", again.stderr);
    assert_eq!(vfioctl(&root, &["rollback", "--yes", "--no-commands"]).code, 0);
    assert_eq!(differing(&tree(&root), &before), Vec::<String>::new());
}

/// An immutable file (`chattr +i`), each of the apply's files in turn: the apply fails on
/// it, restores what it wrote before it, and says so; nothing is left for rollback.
#[test]
fn an_immutable_file_fails_the_apply_and_loses_nothing() {
    if !is_root() {
        eprintln!("skipped: chattr +i needs root");
        return;
    }
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    let files = targets(&root);
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        let real = root.join(f.trim_start_matches('/'));
        if !real.exists() {
            continue; // created by the apply: nothing to make immutable
        }
        if !Command::new("chattr").arg("+i").arg(&real).status().is_ok_and(|s| s.success()) {
            eprintln!("skipped: this filesystem does not support chattr +i");
            return;
        }
        let run = apply_with(&root, &[]);
        let _ = Command::new("chattr").arg("-i").arg(&real).status();
        assert_ne!(run.code, 0, "{f}");
        assert!(
            run.stderr.contains(f.as_str()) && run.stderr.contains("Operation not permitted"),
            "{f}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("every file was restored"), "{f}: {}", run.stderr);
        assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "{f}");
        let status = vfioctl(&root, &["status"]);
        assert!(!status.stdout.contains("did not finish"), "{f}: {}", status.stdout);
        forget_journals(&root);
    }
}

/// Line endings and encodings the editors must carry through: CRLF lines, a UTF-8 BOM,
/// files that do not end in a newline. Each apply keeps them, the same apply again
/// changes nothing, and rollback restores every byte.
#[test]
fn crlf_bom_and_no_final_newline_survive_apply_and_rollback() {
    type Edit = fn(&str) -> String;
    let cases: [(&str, &str, Edit); 4] = [
        ("crlf grub", "etc/default/grub", |t| t.replace('\n', "\r\n")),
        // kmod reads a BOM'd comment line as an unknown command and ignores it: harmless.
        ("bom kvm.conf", "etc/modprobe.d/kvm.conf", |t| format!("\u{feff}# mine\n{t}")),
        ("grub without final newline", "etc/default/grub", |t| t.trim_end_matches('\n').to_string()),
        ("kvm.conf without final newline", "etc/modprobe.d/kvm.conf", |t| t.trim_end_matches('\n').to_string()),
    ];
    for (name, file, edit) in cases {
        let (_t, root) = copy_host("r2600x");
        let path = root.join(file);
        let original = fs::read_to_string(&path).expect("read");
        fs::write(&path, edit(&original)).expect("write");
        let before = tree(&root);
        let run = apply_with(&root, &[]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let after = fs::read_to_string(&path).expect("read");
        assert_ne!(after, edit(&original), "{name}: the apply changed {file}");
        match name {
            "crlf grub" => assert!(
                after.split_inclusive('\n').all(|l| l.ends_with("\r\n")),
                "{name}: every line still ends in CRLF:\n{after:?}"
            ),
            "bom kvm.conf" => {
                assert!(after.starts_with('\u{feff}'), "{name}: the BOM stays first");
                assert_eq!(after.matches('\u{feff}').count(), 1, "{name}");
            }
            _ => {}
        }
        let again = apply_with(&root, &[]);
        assert_eq!(again.code, 0, "{name}: {}", again.stderr);
        assert_eq!(journals(&root), 1, "{name}: the same apply again wrote a journal: {}", again.stdout);
        assert_eq!(fs::read_to_string(&path).expect("read"), after, "{name}: the second apply changed the file");
        let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
        assert_eq!(rb.code, 0, "{name}: {}", rb.stderr);
        assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "{name}");
    }
}

/// Regression: a shell-syntax file bash cannot source (a byte order mark before the first
/// line) was edited with exit 0, though grub-mkconfig and mkinitcpio stop on it. The apply
/// refuses, names the file and line, and writes nothing. bash is the oracle.
#[test]
fn a_shell_file_bash_cannot_source_is_refused() {
    let cases: [(&str, &str, &[&str]); 2] =
        [("r2600x", "etc/default/grub", &[]), ("arch-uki", "etc/mkinitcpio.conf", &[])];
    for (host, file, extra) in cases {
        let (_t, root) = copy_host(host);
        let path = root.join(file);
        let Ok(original) = fs::read_to_string(&path) else { panic!("{host} has no {file}") };
        fs::write(&path, format!("\u{feff}{original}")).expect("write");
        let sourced = std::process::Command::new("bash")
            .arg("-c")
            .arg(r#"set -e; . "$1""#)
            .arg("bash")
            .arg(&path)
            .output()
            .expect("bash");
        assert!(!sourced.status.success(), "{host} {file}: bash sources it with the mark; the refusal would be wrong");
        let before = tree(&root);
        let run = apply_with(&root, extra);
        assert_eq!(run.code, 2, "{host} {file}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(&format!("/{file}")) && run.stderr.contains("line 1"), "{}", run.stderr);
        assert!(run.stderr.contains("byte order mark"), "{}", run.stderr);
        assert_eq!(differing(&tree(&root), &before), Vec::<String>::new(), "{host} {file}: something was written");
        assert_eq!(journals(&root), 0, "{host}");
    }
}

/// Extended attributes (a user attribute and, as root, an SELinux label) ride along: the
/// edited file keeps them, and after rollback the restored file has them again.
#[test]
fn extended_attributes_are_kept_by_apply_and_restored_by_rollback() {
    use rustix::fs::{getxattr, setxattr, XattrFlags};
    let (_t, root) = copy_host("r2600x");
    let grub = root.join("etc/default/grub");
    let mut attrs = vec![("user.vfioctl-test", b"kept by the user".to_vec())];
    if is_root() {
        attrs.push(("security.selinux", b"system_u:object_r:bootloader_etc_t:s0\0".to_vec()));
    }
    for (name, value) in &attrs {
        if setxattr(&grub, *name, value, XattrFlags::empty()).is_err() {
            eprintln!("skipped: this filesystem does not keep {name}");
            return;
        }
    }
    let read = |name: &str| {
        let mut buf = vec![0u8; 256];
        getxattr(&grub, name, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
    };
    let run = apply_with(&root, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (name, value) in &attrs {
        assert_eq!(read(name).as_ref(), Some(value), "{name} after apply");
    }
    // The label a restore would otherwise lose: drop it from the applied file.
    for (name, _) in &attrs {
        let _ = rustix::fs::removexattr(&grub, *name);
    }
    let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
    assert_eq!(rb.code, 0, "{}", rb.stderr);
    for (name, value) in &attrs {
        assert_eq!(read(name).as_ref(), Some(value), "{name} after rollback");
    }
}
