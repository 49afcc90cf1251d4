//! One read: no command reads a host file or lists a directory twice, and none runs a
//! `--version` (or connects to libvirt's socket) more than once. `VFIOCTL_READ_LOG` makes
//! the binary write what it read through its `HostRoot`.

use std::path::Path;

use crate::util::{copy_host, example_hosts, vfioctl_env, workspace};

/// `(what, count)` of every host read a command made.
fn reads(root: &Path, args: &[&str]) -> (i32, Vec<(String, u32)>) {
    let log = tempfile::NamedTempFile::new().expect("tempfile");
    let path = log.path().to_str().expect("utf8").to_string();
    let run = vfioctl_env(root, args, &[("VFIOCTL_READ_LOG", &path)]);
    let text = std::fs::read_to_string(log.path()).expect("read log");
    let entries = text
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(what, n)| (what.to_string(), n.parse().expect("count")))
        .collect();
    (run.code, entries)
}

fn commands(kubevirt_out: &str) -> Vec<Vec<String>> {
    let domain = workspace().join("examples/domains/guide-001-win10.xml");
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&["list"]),
        v(&["list", "--format", "json"]),
        v(&["topology"]),
        v(&["check"]),
        v(&["check", "gpu"]),
        v(&["plan", "gpu"]),
        v(&["domain", "gpu", "--name", "t", "--evdev", "auto"]),
        v(&["apply", "gpu", "--dry-run", "--evdev", "auto"]),
        v(&["verify", "gpu"]),
        v(&["audit", domain.to_str().expect("utf8")]),
        v(&["audit", domain.to_str().expect("utf8"), "--fix"]),
        v(&["export", "kubevirt", "gpu", "--name", "t", "--out", kubevirt_out]),
        v(&["status"]),
    ]
}

fn assert_once(what: &str, entries: &[(String, u32)]) {
    let twice: Vec<&(String, u32)> = entries.iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "{what} read these more than once: {twice:?}");
}

#[test]
fn every_command_reads_each_host_file_once() {
    let out = tempfile::tempdir().expect("tempdir");
    let out = out.path().join("kv");
    for host in example_hosts() {
        for args in commands(out.to_str().expect("utf8")) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, entries) = reads(&host, &args);
            // (`status` reads only the journal, which is the transaction's own file.)
            assert!(
                code != 101 && (args == ["status"] || !entries.is_empty()),
                "{} {args:?}: exit {code}",
                host.display()
            );
            assert_once(&format!("{} {args:?}", host.display()), &entries);
            // A snapshot runs nothing: versions come from its marker files.
            assert!(!entries.iter().any(|(w, _)| w.starts_with("run ")), "{args:?}: {entries:?}");
        }
    }
}

/// After an apply, the commands that read the journal and the changed files read them once
/// too; `apply` itself reads each file it changes once more, in the transaction, to check it
/// still holds what the plan saw (that read is the transaction's, not `HostRoot`'s).
#[test]
fn after_an_apply_too() {
    let (_t, root) = copy_host("r2600x");
    let (code, entries) = reads(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(code, 0);
    assert_once("apply", &entries);
    for args in [&["status"][..], &["verify"], &["apply", "gpu", "--dry-run"], &["rollback", "--yes", "--no-commands"]]
    {
        let (_, entries) = reads(&root, args);
        assert_once(&format!("{args:?}"), &entries);
    }
}

/// The live machine: each program's `--version` runs at most once, libvirt's socket is
/// tried once, and `plan` (which needs no versions) runs nothing.
#[test]
fn on_the_live_machine_programs_run_once_and_only_when_needed() {
    let live = Path::new("/");
    let (_, check) = reads(live, &["check"]);
    assert_once("check", &check);
    let (_, plan) = reads(live, &["plan", "gpu"]);
    assert_once("plan", &plan);
    assert!(!plan.iter().any(|(w, _)| w.starts_with("run ") || w.starts_with("connect ")), "{plan:?}");
    let (_, list) = reads(live, &["list"]);
    assert!(!list.iter().any(|(w, _)| w.starts_with("run ")), "{list:?}");
}
