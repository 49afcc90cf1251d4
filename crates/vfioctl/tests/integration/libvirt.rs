//! `vfioctl domain` against a real libvirtd: libvirt defines the guides' domains exactly as
//! written, and one of them, adapted to QEMU's TCG (this machine kind has no usable KVM),
//! starts with the Hyper-V flags and the pinning it asks for.
//!
//! Needs root, libvirtd, virtlogd, virsh and QEMU (.ci/run installs them) and, to start a guest,
//! a Debian kernel (`tests/lab/kernel.sh`). When `qemu:///system` does not answer, the first test
//! starts the daemons the way the Debian package would, without systemd, and leaves them running.
//! A missing prerequisite prints `skipped: …` and passes, unless `VFIOCTL_REQUIRE_LAB=1`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::util::{example_host, tool, vfioctl, Run};

const URI: &str = "qemu:///system";

/// The libvirt tests share one daemon (and its domain names): one at a time.
static LIBVIRT: Mutex<()> = Mutex::new(());
/// Whether the daemon answers, settled once per test process: `Err` says why not.
static DAEMON: OnceLock<Result<(), String>> = OnceLock::new();

/// A missing prerequisite: a `skipped: …` line, or a failure when `VFIOCTL_REQUIRE_LAB=1`.
fn skip(test: &str, why: &str) {
    if std::env::var("VFIOCTL_REQUIRE_LAB").is_ok_and(|v| v == "1") {
        panic!("{test}: VFIOCTL_REQUIRE_LAB=1 but {why}");
    }
    // Straight to stderr: the test harness hides what eprintln! prints in passing tests.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// The lock on the shared, running daemon; `None` (after [`skip`]) when there is none.
fn libvirt(test: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = LIBVIRT.lock().unwrap_or_else(PoisonError::into_inner);
    match DAEMON.get_or_init(start_daemon) {
        Ok(()) => Some(guard),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

/// A program on PATH or in the sbin directories (not always on a user's PATH).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

fn is_root() -> bool {
    // Uid: real effective saved fs
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().nth(1)) == Some("0")))
}

fn virsh(args: &[&str]) -> Run {
    let mut all = vec!["-c", URI];
    all.extend_from_slice(args);
    tool("virsh", &all, "libvirt-clients")
}

fn answers() -> bool {
    Command::new("virsh").args(["-c", URI, "version"]).output().is_ok_and(|o| o.status.success())
}

/// Runs a setup command; its failure is a reason to skip.
fn setup(args: &[&str]) -> Result<(), String> {
    let exe = program(args[0]).ok_or_else(|| format!("no {} to prepare libvirtd", args[0]))?;
    let out = Command::new(exe).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn getent(db: &str, name: &str) -> bool {
    Command::new("getent").args([db, name]).output().is_ok_and(|o| o.status.success())
}

/// Makes `libvirtd` answer on qemu:///system: what the Debian system package and systemd would
/// provide, then `virtlogd -d` and `libvirtd -d`.
fn start_daemon() -> Result<(), String> {
    if !is_root() {
        return Err("not root (qemu:///system and starting libvirtd need root)".into());
    }
    program("virsh").ok_or("no virsh (Debian package libvirt-clients)")?;
    // libvirt checks the emulator of every domain it defines.
    program("qemu-system-x86_64").ok_or("no qemu-system-x86_64 (Debian package qemu-system-x86)")?;
    if answers() {
        return Ok(());
    }
    let libvirtd =
        program("libvirtd").ok_or("no libvirtd (Debian packages libvirt-daemon libvirt-daemon-driver-qemu)")?;
    let virtlogd = program("virtlogd").ok_or("no virtlogd (Debian package libvirt-daemon)")?;
    if !getent("group", "kvm") {
        setup(&["groupadd", "--system", "kvm"])?;
    }
    if !getent("passwd", "libvirt-qemu") {
        // QEMU runs as root: nothing it opens needs relabelling.
        run_qemu_as_root(Path::new("/etc/libvirt/qemu.conf"))?;
        // libvirt 9.0 resolves its built-in QEMU user and group (libvirt-qemu on Debian) when
        // the QEMU driver starts, before it reads qemu.conf: without them libvirtd exits with
        // "Failed to parse user 'libvirt-qemu'" even though qemu.conf names root.
        if !getent("group", "libvirt-qemu") {
            setup(&["groupadd", "--system", "libvirt-qemu"])?;
        }
        setup(&[
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/var/lib/libvirt",
            "--gid",
            "libvirt-qemu",
            "--groups",
            "kvm",
            "--shell",
            "/usr/sbin/nologin",
            "libvirt-qemu",
        ])?;
    }
    for dir in ["/var/log/libvirt", "/var/run/libvirt"] {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {dir}: {e}"))?;
    }
    // `-d` returns once the daemon runs; a second copy fails on the pidfile, which is fine.
    let daemon = |exe: &Path| {
        Command::new(exe).arg("-d").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()
    };
    let _ = daemon(&virtlogd);
    let started = daemon(&libvirtd);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if answers() {
            eprintln!("libvirt tests: started virtlogd and libvirtd in {:.1} s", t0.elapsed().as_secs_f64());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "libvirtd ({started:?}) does not answer on {URI} after 30 s: {}; run `libvirtd` in a shell to see why",
        virsh(&["version"]).stderr.trim()
    ))
}

/// Adds `user = "root"` and `group = "root"` to qemu.conf where they are not set, keeping the rest.
fn run_qemu_as_root(conf: &Path) -> Result<(), String> {
    let old = match std::fs::read_to_string(conf) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", conf.display())),
    };
    let set = |key: &str| {
        old.lines().any(|l| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
    };
    let mut add = String::new();
    if !old.is_empty() && !old.ends_with('\n') {
        add.push('\n');
    }
    let before = add.len();
    for key in ["user", "group"] {
        if !set(key) {
            add.push_str(&format!("{key} = \"root\"\n"));
        }
    }
    if add.len() == before {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(conf)
        .map_err(|e| format!("cannot open {}: {e}", conf.display()))?;
    f.write_all(add.as_bytes()).map_err(|e| format!("cannot write {}: {e}", conf.display()))
}

/// A domain libvirt knows: destroyed and undefined however the test ends.
struct Defined {
    name: String,
}

impl Defined {
    fn new(name: &str, xml: &str) -> Defined {
        let domain = Defined { name: name.to_string() };
        domain.forget(); // a leftover of an earlier run with the same pid
        domain.define(xml);
        domain
    }

    fn define(&self, xml: &str) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = tmp.path().join(format!("{}.xml", self.name));
        std::fs::write(&f, xml).expect("write");
        let run = virsh(&["define", f.to_str().expect("utf8")]);
        assert_eq!(run.code, 0, "virsh define {}: {}{}\n{xml}", self.name, run.stdout, run.stderr);
        assert!(run.stdout.contains(&format!("Domain '{}' defined", self.name)), "{}", run.stdout);
    }

    fn forget(&self) {
        for args in [&["destroy", self.name.as_str()][..], &["undefine", "--nvram", self.name.as_str()]] {
            let _ = Command::new("virsh").args(["-c", URI]).args(args).output();
        }
    }
}

impl Drop for Defined {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Slash-separated element names from the root to `n`.
fn path(n: roxmltree::Node) -> String {
    let mut names: Vec<&str> = n.ancestors().filter(|a| a.is_element()).map(|a| a.tag_name().name()).collect();
    names.reverse();
    names.join("/")
}

fn text(n: roxmltree::Node) -> String {
    n.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect::<String>().trim().to_string()
}

/// The elements of `ours` that `theirs` (libvirt's dumpxml) lacks, with their attributes and
/// text: libvirt silently drops what it does not understand. libvirt adds what it fills in
/// (uuid, addresses, controllers) and expands the machine alias `q35` to `pc-q35-<version>`.
fn dropped_by_libvirt(ours: &str, theirs: &str) -> Vec<String> {
    let ours = roxmltree::Document::parse(ours).expect("vfioctl's XML parses");
    let theirs = roxmltree::Document::parse(theirs).expect("libvirt's XML parses");
    let kept: Vec<(String, roxmltree::Node)> =
        theirs.descendants().filter(|n| n.is_element()).map(|n| (path(n), n)).collect();
    let same = |name: &str, want: &str, got: Option<&str>| match got {
        Some(got) if got == want => true,
        Some(got) => name == "machine" && got.starts_with(&format!("pc-{want}-")),
        None => false,
    };
    ours.descendants()
        .filter(|n| n.is_element())
        .filter(|n| {
            let p = path(*n);
            !kept.iter().any(|(kp, k)| {
                *kp == p
                    && text(*n) == text(*k)
                    && n.attributes().all(|a| same(a.name(), a.value(), k.attribute(a.name())))
            })
        })
        .map(|n| {
            let attrs: Vec<String> = n.attributes().map(|a| format!("{}='{}'", a.name(), a.value())).collect();
            format!("<{} {}>{}", path(n), attrs.join(" "), text(n))
        })
        .collect()
}

#[test]
fn libvirt_defines_the_guides_domains_as_written() {
    let Some(_lock) = libvirt("libvirt define") else { return };
    let t0 = Instant::now();
    // tr1950x names Arch's OVMF (/usr/share/edk2-ovmf/x64), absent on Debian: libvirt
    // checks firmware and hostdevs when a domain starts, not when it is defined.
    for host in ["tr1950x", "r2600x"] {
        for os in ["win10", "win11", "linux"] {
            let name = format!("vfioctl-test-{host}-{os}-{}", std::process::id());
            let run = vfioctl(&example_host(host), &["domain", "gpu", "--memory", "2G", "--name", &name, "--os", os]);
            assert_eq!(run.code, 0, "{host} {os}: {}", run.stderr);
            let domain = Defined::new(&name, &run.stdout);
            let dumped = virsh(&["dumpxml", "--inactive", &name]);
            assert_eq!(dumped.code, 0, "{host} {os}: virsh dumpxml: {}", dumped.stderr);
            assert!(dumped.stdout.contains(&format!("<name>{name}</name>")), "{}", dumped.stdout);
            assert!(dumped.stdout.contains("<hostdev mode='subsystem' type='pci' managed='yes'>"));
            let dropped = dropped_by_libvirt(&run.stdout, &dumped.stdout);
            assert!(
                dropped.is_empty(),
                "{host} {os}: libvirt dropped or changed {dropped:#?}\nours:\n{}\nlibvirt's:\n{}",
                run.stdout,
                dumped.stdout
            );
            let gone = virsh(&["undefine", "--nvram", &name]);
            assert_eq!(gone.code, 0, "{host} {os}: virsh undefine: {}", gone.stderr);
            assert_ne!(virsh(&["dominfo", &name]).code, 0, "{name} is still defined");
            drop(domain);
        }
    }
    eprintln!("libvirt define: 6 domains in {:.1} s", t0.elapsed().as_secs_f64());
}

/// The kernel the TCG guest boots directly (tests/lab/kernel.sh puts it in the cache).
fn lab_kernel(test: &str) -> Option<PathBuf> {
    let kernel = match std::env::var_os("VFIOCTL_LAB_KERNEL") {
        Some(k) => PathBuf::from(k),
        None => PathBuf::from(std::env::var_os("VFIOCTL_LAB_CACHE").unwrap_or_else(|| "/var/cache/vfioctl-lab".into()))
            .join("vmlinuz"),
    };
    if kernel.is_file() {
        Some(kernel)
    } else {
        skip(test, &format!("no kernel at {} (run tests/lab/kernel.sh, or set VFIOCTL_LAB_KERNEL)", kernel.display()));
        None
    }
}

/// `0-2,5` → [0, 1, 2, 5].
fn cpu_list(s: &str) -> Vec<u32> {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            a.parse::<u32>().expect("cpu")..=b.parse::<u32>().expect("cpu")
        })
        .collect()
}

/// A task's `Cpus_allowed_list`.
fn affinity(status: &Path) -> Vec<u32> {
    let s = std::fs::read_to_string(status).unwrap_or_default();
    cpu_list(s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or_default())
}

/// `attr='…'` in one line of XML set to `value`.
fn set_attr(line: &str, attr: &str, value: &str) -> String {
    let key = format!("{attr}='");
    let start = line.find(&key).unwrap_or_else(|| panic!("no {attr} in {line}")) + key.len();
    let end = start + line[start..].find('\'').expect("closing quote");
    format!("{}{value}{}", &line[..start], &line[end..])
}

/// Where the TCG guest's threads must run.
#[derive(Debug, Default)]
struct Pins {
    vcpus: BTreeMap<u32, u32>,
    emulator: u32,
    iothread: u32,
}

/// vfioctl's domain as TCG on this machine can run it: no hostdevs (no such devices here), no
/// hugepages (none reserved), `type='qemu'`, a CPU model TCG has, pins on this machine's CPUs
/// (vCPUs round-robin, the emulator on the last, the I/O thread on the first), memory on node 0,
/// this machine's OVMF when the host's is not here, and the lab kernel booted directly.
/// Everything else (Hyper-V, `kvm hidden`, `ioapic kvm`, clock, topology) stays as written.
fn for_tcg(xml: &str, kernel: &Path, cpus: &[u32]) -> Result<(String, Pins), String> {
    let (first, last) = (cpus[0], cpus[cpus.len() - 1]);
    let mut pins = Pins { emulator: last, iothread: first, ..Pins::default() };
    let all: Vec<String> = cpus.iter().map(u32::to_string).collect();
    let mut out = String::new();
    let mut dropping: Option<&str> = None;
    for line in xml.lines() {
        let t = line.trim();
        if let Some(end) = dropping {
            dropping = (t != end).then_some(end);
            continue;
        }
        let new = if t == "<memoryBacking>" {
            dropping = Some("</memoryBacking>");
            continue;
        } else if t.starts_with("<hostdev ") {
            dropping = Some("</hostdev>");
            continue;
        } else if t == "<domain type='kvm'>" {
            "<domain type='qemu'>".to_string()
        } else if t.starts_with("<vcpu ") {
            set_attr(t, "cpuset", &all.join(","))
        } else if let Some(rest) = t.strip_prefix("<vcpupin vcpu='") {
            let vcpu: u32 = rest.split('\'').next().expect("vcpu").parse().expect("vcpu number");
            let cpu = cpus[vcpu as usize % cpus.len()];
            pins.vcpus.insert(vcpu, cpu);
            set_attr(t, "cpuset", &cpu.to_string())
        } else if t.starts_with("<emulatorpin ") {
            set_attr(t, "cpuset", &last.to_string())
        } else if t.starts_with("<iothreadpin ") {
            set_attr(t, "cpuset", &first.to_string())
        } else if t.starts_with("<memory mode=") {
            set_attr(t, "nodeset", "0")
        } else if t.starts_with("<cpu mode='host-passthrough'") {
            // "CPU mode 'host-passthrough' … is not supported by hypervisor" under TCG.
            set_attr(t, "mode", "maximum")
        } else if t.starts_with("<loader ") || t.starts_with("<nvram ") {
            local_firmware(t)?
        } else if t == "<boot dev='hd'/>" {
            format!("<kernel>{}</kernel>\n    <cmdline>console=ttyS0</cmdline>", kernel.display())
        } else {
            t.to_string()
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        out.push_str(&format!("{indent}{new}\n"));
    }
    for want in ["<domain type='qemu'>", "<cpu mode='maximum'", "<kernel>"] {
        assert!(out.contains(want), "the TCG copy has no {want}: has vfioctl's output changed?\n{xml}");
    }
    assert!(!pins.vcpus.is_empty(), "no vcpupin in\n{xml}");
    Ok((out, pins))
}

/// A `<loader>` or `<nvram template=…>` line with firmware that exists here: the host's own
/// when present, else the file of the same name from this machine's OVMF.
fn local_firmware(line: &str) -> Result<String, String> {
    let file = if line.starts_with("<loader ") {
        line.split_once('>').and_then(|(_, r)| r.split_once('<')).map(|(f, _)| f)
    } else {
        line.split_once("template='").and_then(|(_, r)| r.split_once('\'')).map(|(f, _)| f)
    };
    let Some(file) = file else { return Ok(line.to_string()) };
    if Path::new(file).is_file() {
        return Ok(line.to_string());
    }
    let base = Path::new(file).file_name().expect("firmware file name");
    ["/usr/share/OVMF", "/usr/share/edk2/ovmf", "/usr/share/edk2-ovmf/x64", "/usr/share/edk2/x64", "/usr/share/qemu"]
        .iter()
        .map(|dir| Path::new(dir).join(base))
        .find(|p| p.is_file())
        .map(|here| line.replacen(file, here.to_str().expect("utf8"), 1))
        .ok_or_else(|| format!("no OVMF firmware like {file} on this machine (Debian package ovmf)"))
}

/// What TCG on this machine refuses in a generated domain, found by starting it: the message,
/// the line that goes, and why.
const TCG_REFUSALS: &[(&str, &str, &str)] = &[
    (
        "kernel doesn't allow setting HyperV VP_INDEX",
        "<vpindex state='on'/>",
        "QEMU 7.2 asks KVM whether hv-vpindex can be set even under TCG (later QEMUs check kvm_enabled() first)",
    ),
    (
        "host doesn't support invariant TSC",
        "<feature policy='require' name='invtsc'/>",
        "TCG has no invariant TSC, and libvirt checks the started guest's CPU for required features",
    ),
];

/// The `-cpu` flags libvirt must give QEMU for the domain's Hyper-V enlightenments, the
/// Hyper-V clock and `kvm hidden` (in libvirt's spelling, `=on` left out).
fn expected_cpu_flags(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).expect("XML parses");
    let on = |n: &roxmltree::Node| n.attribute("state") == Some("on");
    let mut flags = Vec::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        let parent = n.parent_element().map(|p| p.tag_name().name()).unwrap_or_default();
        let name = n.tag_name().name();
        match (parent, name) {
            ("hyperv", "spinlocks") if on(&n) => {
                let retries: u32 = n.attribute("retries").expect("retries").parse().expect("retries");
                flags.push(format!("hv-spinlocks={retries:#x}"));
            }
            ("hyperv", "vendor_id") if on(&n) => {
                flags.push(format!("hv-vendor-id={}", n.attribute("value").expect("value")))
            }
            ("hyperv", _) if on(&n) => flags.push(format!("hv-{}", name.replace('_', "-"))),
            ("stimer", "direct") if on(&n) => flags.push("hv-stimer-direct".into()),
            ("kvm", "hidden") if on(&n) => flags.push("kvm=off".into()),
            ("clock", "timer")
                if n.attribute("name") == Some("hypervclock") && n.attribute("present") == Some("yes") =>
            {
                flags.push("hv-time".into())
            }
            _ => {}
        }
    }
    flags
}

/// `virsh vcpupin NAME`: ` 0      4` rows → vCPU → CPU list.
fn vcpupin_table(out: &str) -> BTreeMap<u32, String> {
    out.lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let vcpu = cols.next()?.parse().ok()?;
            Some((vcpu, cols.next()?.to_string()))
        })
        .collect()
}

#[test]
fn a_generated_domain_starts_under_tcg_with_its_enlightenments_and_pinning() {
    let test = "libvirt TCG start";
    let Some(_lock) = libvirt(test) else { return };
    let Some(kernel) = lab_kernel(test) else { return };
    let t0 = Instant::now();
    let name = format!("vfioctl-test-tcg-{}", std::process::id());
    let run = vfioctl(&example_host("tr1950x"), &["domain", "gpu", "--memory", "1G", "--name", &name, "--os", "win10"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let cpus = cpu_list(status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("Cpus_allowed_list"));
    let (mut xml, pins) = match for_tcg(&run.stdout, &kernel, &cpus) {
        Ok(adapted) => adapted,
        Err(why) => return skip(test, &why),
    };
    let asked = expected_cpu_flags(&run.stdout);
    for want in [
        "hv-relaxed",
        "hv-vapic",
        "hv-spinlocks=0x1fff",
        "hv-synic",
        "hv-stimer",
        "hv-vendor-id=vfioctl",
        "hv-time",
        "kvm=off",
    ] {
        assert!(
            asked.iter().any(|f| f == want),
            "the generated domain does not ask for {want}: {asked:?}\n{}",
            run.stdout
        );
    }

    let domain = Defined::new(&name, &xml);
    let mut refused = Vec::new();
    loop {
        let start = virsh(&["start", &name]);
        if start.code == 0 {
            break;
        }
        let Some((msg, line, why)) =
            TCG_REFUSALS.iter().find(|(msg, line, _)| start.stderr.contains(msg) && xml.contains(line))
        else {
            panic!("virsh start {name} under TCG: {}\n{xml}", start.stderr);
        };
        eprintln!("libvirt TCG start: dropping {line}: \"{msg}\": {why}");
        refused.push(*line);
        xml = xml.lines().filter(|l| l.trim() != *line).map(|l| format!("{l}\n")).collect();
        domain.forget(); // a new definition without the uuid libvirt gave the old one
        domain.define(&xml);
    }
    let started = t0.elapsed();

    // The QEMU libvirt started, its command line, and its threads.
    let pid = std::fs::read_to_string(format!("/var/run/libvirt/qemu/{name}.pid")).expect("QEMU's pid file");
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    let cmdline = std::fs::read(proc.join("cmdline")).expect("QEMU's command line");
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    assert!(
        args.windows(2).any(|w| w[0] == "-accel" && w[1] == "tcg") || args.iter().any(|a| a.contains("accel=tcg")),
        "QEMU does not run TCG: {args:?}"
    );
    let cpu = args.windows(2).find(|w| w[0] == "-cpu").map(|w| w[1].clone()).expect("-cpu");
    let seen: Vec<&str> = cpu.split(',').map(|f| f.strip_suffix("=on").unwrap_or(f)).collect();
    let kept = expected_cpu_flags(&xml);
    let missing: Vec<&String> = kept.iter().filter(|f| !seen.contains(&f.as_str())).collect();
    assert!(missing.is_empty(), "QEMU's -cpu {cpu} lacks {missing:?}");
    let dropped: Vec<&String> = asked.iter().filter(|f| !kept.contains(f)).collect();
    eprintln!("libvirt TCG start: -cpu {cpu}\n  asked for {asked:?}\n  dropped for TCG {dropped:?}");

    let vcpupin = virsh(&["vcpupin", &name]);
    assert_eq!(vcpupin.code, 0, "{}", vcpupin.stderr);
    let want: BTreeMap<u32, String> = pins.vcpus.iter().map(|(v, c)| (*v, c.to_string())).collect();
    assert_eq!(vcpupin_table(&vcpupin.stdout), want, "virsh vcpupin:\n{}", vcpupin.stdout);
    let emulatorpin = virsh(&["emulatorpin", &name]);
    assert_eq!(emulatorpin.code, 0, "{}", emulatorpin.stderr);
    assert!(
        emulatorpin.stdout.lines().any(|l| l.trim() == format!("*: {}", pins.emulator)),
        "virsh emulatorpin:\n{}",
        emulatorpin.stdout
    );
    let iothreads = virsh(&["iothreadinfo", &name]);
    assert_eq!(
        vcpupin_table(&iothreads.stdout),
        BTreeMap::from([(1, pins.iothread.to_string())]),
        "{}",
        iothreads.stdout
    );
    // What the kernel enforces: QEMU names its threads `CPU N/TCG` and `IO iothread1`.
    let mut vcpu_threads = BTreeMap::new();
    for task in std::fs::read_dir(proc.join("task")).expect("tasks") {
        let task = task.expect("task").path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if let Some(vcpu) = comm.strip_prefix("CPU ").and_then(|c| c.strip_suffix("/TCG")) {
            vcpu_threads.insert(vcpu.parse::<u32>().expect("vcpu"), affinity(&task.join("status")));
        } else if comm == "IO iothread1" {
            assert_eq!(affinity(&task.join("status")), [pins.iothread], "the I/O thread's affinity");
        }
    }
    let want: BTreeMap<u32, Vec<u32>> = pins.vcpus.iter().map(|(v, c)| (*v, vec![*c])).collect();
    assert_eq!(vcpu_threads, want, "the vCPU threads' affinity");
    assert_eq!(affinity(&proc.join("status")), [pins.emulator], "the emulator's affinity");

    let destroy = virsh(&["destroy", &name]);
    assert_eq!(destroy.code, 0, "{}", destroy.stderr);
    let gone = virsh(&["undefine", "--nvram", &name]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    drop(domain);
    eprintln!(
        "libvirt TCG start: started in {:.1} s, checked and removed in {:.1} s; refused under TCG: {refused:?}",
        started.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn vfioctl_defines_patches_from_libvirt_and_reports_libvirts_refusal() {
    let Some(_lock) = libvirt("vfioctl --define") else { return };
    let name = format!("vfioctl-test-define-{}", std::process::id());
    let host = example_host("r2600x");
    let guard = Defined { name: name.clone() };
    guard.forget();
    let uri = ["--connect", URI];
    let mut a = vec!["domain", "gpu", "--memory", "2G", "--name", &name, "--define"];
    a.extend_from_slice(&uri);
    let run = vfioctl(&host, &a);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("defined domain {name} (")), "{}", run.stderr);
    // libvirt's domain capabilities name the enlightenments this host offers.
    assert!(run.stderr.contains("offers these Hyper-V enlightenments"), "{}", run.stderr);
    let dumped = virsh(&["dumpxml", "--inactive", &name]);
    assert_eq!(dumped.code, 0, "{}", dumped.stderr);
    let uuid = roxmltree::Document::parse(&dumped.stdout)
        .expect("xml")
        .descendants()
        .find(|n| n.has_tag_name("uuid"))
        .and_then(|n| n.text().map(String::from))
        .expect("uuid");
    // libvirt's own rewrite of the domain already has the plan: patching changes nothing.
    let mut a = vec!["domain", "gpu", "--memory", "2G", "--from-libvirt", &name];
    a.extend_from_slice(&uri);
    let same = vfioctl(&host, &a);
    assert_eq!(same.code, 0, "{}", same.stderr);
    assert!(same.stderr.contains("already has the plan: nothing changed"), "{}", same.stderr);
    assert_eq!(same.stdout.trim_end(), dumped.stdout.trim_end());
    // A different plan: patched, redefined, and the uuid (the user's) stays.
    let mut a = vec!["domain", "gpu", "--memory", "3G", "--from-libvirt", &name, "--define"];
    a.extend_from_slice(&uri);
    let patched = vfioctl(&host, &a);
    assert_eq!(patched.code, 0, "{}", patched.stderr);
    assert!(patched.stderr.contains("→ <memory unit='KiB'>3145728</memory>"), "{}", patched.stderr);
    let dumped = virsh(&["dumpxml", "--inactive", &name]);
    assert!(dumped.stdout.contains("<memory unit='KiB'>3145728</memory>"), "{}", dumped.stdout);
    assert!(dumped.stdout.contains(&format!("<uuid>{uuid}</uuid>")), "{}", dumped.stdout);
    // libvirt's refusal comes through with its own words and exit 1.
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.xml");
    // (An element vfioctl does not own, so the patch keeps it as it is.)
    let xml = dumped.stdout.replace("</os>", "</os>\n  <on_lockfailure>explode</on_lockfailure>");
    std::fs::write(&bad, xml).expect("write");
    let mut a = vec!["domain", "gpu", "--memory", "3G", "--from", bad.to_str().expect("utf8"), "--define"];
    a.extend_from_slice(&uri);
    let refused = vfioctl(&host, &a);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("libvirt"), "{}", refused.stderr);
    // No daemon at that URI: exit 2 with the URI and a remedy.
    let gone = vfioctl(
        &host,
        &["domain", "gpu", "--name", "x", "--define", "--connect", "qemu+unix:///system?socket=/nonexistent/sock"],
    );
    assert_eq!(gone.code, 2, "{}", gone.stderr);
    assert!(gone.stderr.contains("/nonexistent/sock") && gone.stderr.contains("fix:"), "{}", gone.stderr);
    // Not defined under a missing name either.
    let mut a = vec!["domain", "gpu", "--from-libvirt", "vfioctl-no-such-domain"];
    a.extend_from_slice(&uri);
    let missing = vfioctl(&host, &a);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("vfioctl-no-such-domain"), "{}", missing.stderr);
    drop(guard);
}
