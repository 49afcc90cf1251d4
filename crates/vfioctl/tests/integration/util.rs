//! Shared helpers: running the binary, finding example hosts, running oracle tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (where README.md and examples/ live).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Every example host root under examples/hosts (directories with a `sys` tree).
pub fn example_hosts() -> Vec<PathBuf> {
    let dir = workspace().join("examples/hosts");
    let mut hosts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("sys").is_dir()).collect())
        .unwrap_or_default();
    hosts.sort();
    assert!(!hosts.is_empty(), "no example hosts under {}", dir.display());
    hosts
}

/// One example host by name.
pub fn example_host(name: &str) -> PathBuf {
    let p = workspace().join("examples/hosts").join(name);
    assert!(p.join("sys").is_dir(), "example host {} is missing", p.display());
    p
}

/// The PCI id database the tests name devices with: vfioctl's built-in copy, so outputs
/// do not depend on the pci.ids version of the machine running the tests. Oracle runs of
/// lspci get the same file (`-i`).
pub fn ids_file() -> PathBuf {
    workspace().join("crates/vfioctl-host/data/pci.ids.gz")
}

/// The result of running vfioctl.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs vfioctl with `--root ROOT` and the arguments (names from [`ids_file`]).
pub fn vfioctl(root: &Path, args: &[&str]) -> Run {
    vfioctl_env(root, args, &[])
}

/// [`vfioctl`] with extra environment variables.
pub fn vfioctl_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfioctl"));
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("VFIOCTL_ROOT")
        .env_remove("VFIOCTL_FAULT")
        .env("VFIOCTL_PCI_IDS", ids_file());
    for (k, v) in env {
        cmd.env(k, v);
    }
    finish(cmd.output().expect("run vfioctl"))
}

/// A private copy of an example host, to change.
pub fn copy_host(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dst = tmp.path().join(name);
    let ok = Command::new("cp").arg("-a").arg(example_host(name)).arg(&dst).status().expect("cp");
    assert!(ok.success());
    (tmp, dst)
}

/// Runs an oracle tool; a missing tool is a test failure that says how to install it.
pub fn tool(program: &str, args: &[&str], package: &str) -> Run {
    match Command::new(program).args(args).output() {
        Ok(out) => finish(out),
        Err(e) => panic!("cannot run {program} ({e}): install the Debian package `{package}` (.ci/run does)"),
    }
}

/// libvirt's own schema check (`virt-xml-validate FILE domain`) of a domain.
pub fn validate(xml: &str, what: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("domain.xml");
    std::fs::write(&f, xml).expect("write");
    let run = tool("virt-xml-validate", &[f.to_str().expect("utf8"), "domain"], "libvirt-clients and libxml2-utils");
    assert_eq!(run.code, 0, "{what}: virt-xml-validate: {}{}\n{xml}", run.stdout, run.stderr);
}

/// libvirt's own parser and checks on a domain, through its test driver (no daemon):
/// `virsh -c test:///default define FILE`. `Err` with libvirt's message when it refuses.
pub fn libvirt_accepts(xml: &str) -> Result<(), String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("domain.xml");
    std::fs::write(&f, xml).expect("write");
    let run = tool("virsh", &["-q", "-c", "test:///default", "define", f.to_str().expect("utf8")], "libvirt-clients");
    if run.code == 0 {
        Ok(())
    } else {
        Err(format!("{}{}", run.stdout, run.stderr))
    }
}

/// Binds a fixture's PCI device to `driver` as the kernel would show it: the `driver` link
/// and the `DRIVER=` line of its `uevent`.
pub fn bind(root: &Path, address: &str, driver: &str) {
    let dev = std::fs::canonicalize(root.join("sys/bus/pci/devices").join(address)).expect("device dir");
    let link = dev.join("driver");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("../../../../bus/pci/drivers/{driver}"), &link).expect("link");
    let uevent = std::fs::read_to_string(dev.join("uevent")).expect("uevent");
    let rest: String = uevent.lines().filter(|l| !l.starts_with("DRIVER=")).map(|l| format!("{l}\n")).collect();
    std::fs::write(dev.join("uevent"), format!("DRIVER={driver}\n{rest}")).expect("uevent");
}
