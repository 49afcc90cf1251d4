//! `vfioctl snapshot`: what is read back equals what the host said.

use std::path::Path;

use crate::util::{example_host, vfioctl};

fn same_answers(original: &Path, copy: &Path) {
    for args in [
        &["list", "--format", "json"][..],
        &["list", "--format", "lspci"],
        &["list"],
        &["topology", "--format", "json"],
    ] {
        let a = vfioctl(original, args);
        let b = vfioctl(copy, args);
        assert_eq!(a.code, b.code, "{args:?}: {} / {}", a.stderr, b.stderr);
        assert_eq!(a.stdout, b.stdout, "{args:?}");
    }
}

#[test]
fn snapshot_of_this_machine_reads_back_the_same() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("snap");
    let run = vfioctl(Path::new("/"), &["snapshot", dir.to_str().expect("utf8")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(dir.join("VFIOCTL-SNAPSHOT").is_file());
    same_answers(Path::new("/"), &dir);
    let tgz = tmp.path().join("snap.tar.gz");
    let run = vfioctl(Path::new("/"), &["snapshot", tgz.to_str().expect("utf8"), "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    same_answers(Path::new("/"), &tgz);
}

#[test]
fn snapshot_of_an_example_host_reads_back_the_same() {
    for name in ["tr1950x", "r2600x"] {
        let host = example_host(name);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("snap");
        let run = vfioctl(&host, &["snapshot", dir.to_str().expect("utf8")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        same_answers(&host, &dir);
        // lspci reads the snapshot too.
        let lspci = |root: &Path| {
            crate::util::tool(
                "lspci",
                &[
                    "-A",
                    "linux-sysfs",
                    "-O",
                    &format!("sysfs.path={}/sys/bus/pci", root.display()),
                    "-O",
                    "hwdb.disable=1",
                    "-nn",
                ],
                "pciutils",
            )
            .stdout
        };
        assert_eq!(lspci(&host), lspci(&dir));
    }
}

#[test]
fn snapshot_never_overwrites_what_is_not_a_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let precious = tmp.path().join("precious");
    std::fs::create_dir(&precious).expect("mkdir");
    std::fs::write(precious.join("thesis.tex"), "x").expect("write");
    let host = example_host("r2600x");
    let run = vfioctl(&host, &["snapshot", precious.to_str().expect("utf8")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("already exists") && run.stderr.contains("--force"), "{}", run.stderr);
    let run = vfioctl(&host, &["snapshot", "--force", precious.to_str().expect("utf8")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a vfioctl snapshot"), "{}", run.stderr);
    assert!(precious.join("thesis.tex").is_file());
    // A snapshot may be replaced with --force.
    let snap = tmp.path().join("snap");
    assert_eq!(vfioctl(&host, &["snapshot", snap.to_str().expect("utf8")]).code, 0);
    assert_eq!(vfioctl(&host, &["snapshot", "--force", snap.to_str().expect("utf8")]).code, 0);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Regression (issue 16): a snapshot carried only the mounts' block devices, so on a
/// snapshot swap, the devices under LVM/LUKS and ZFS pools were "unused" and a plan passed
/// their controllers. What the host uses reads back the same from a snapshot of every
/// example host.
#[test]
fn snapshot_keeps_what_the_hosts_disks_are_used_for() {
    for host in crate::util::example_hosts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("snap");
        let run = vfioctl(&host, &["snapshot", dir.to_str().expect("utf8")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let used = |root: &Path| {
            vfioctl_host::storage::storage(&vfioctl_host::root::HostRoot::new(root))
                .map(|s| (s.used, s.mounts.iter().map(|m| m.controller).collect::<std::collections::BTreeSet<_>>()))
                .map_err(|e| e.to_string())
        };
        assert_eq!(used(&host), used(&dir), "{}", host.display());
    }
}
