//! `vfioctl domain`: the libvirt domain XML of a plan.

use similar::TextDiff;
use vfioctl_core::domain::{self, caps, Disk, DiskBus, DomainHost, DomainRequest, GuestOs, Network};
use vfioctl_core::looking_glass::{self, Backing, LookingGlass};
use vfioctl_core::xml;
use vfioctl_host::disk;
use vfioctl_host::host::Host;
use vfioctl_host::libvirt::Libvirt;
use vfioctl_host::root::HostRoot;

use crate::cli::{self, DiskBusArg, DomainArgs, OsArg};
use crate::error::{CliError, Exit};
use crate::ops::{self, DEFAULT_URI};
use crate::output;

pub fn run(h: &Host, args: &DomainArgs) -> Result<Exit, CliError> {
    let root = h.root();
    let os = match args.os {
        OsArg::Win10 => GuestOs::Windows10,
        OsArg::Win11 => GuestOs::Windows11,
        OsArg::Linux => GuestOs::Linux,
    };
    let mut host = ops::domain_host(h, os);
    if host.firmware.is_none() {
        eprintln_safe!("vfioctl: warning: no OVMF firmware on this host: the domain has no UEFI loader (vfioctl check says how to install it)");
    }
    if os == GuestOs::Windows11 && !host.firmware.as_ref().is_some_and(|f| f.secure) {
        eprintln_safe!("vfioctl: warning: no secure-boot OVMF build on this host: Windows 11 setup wants secure boot (install the distribution's secure-boot OVMF)");
    }
    let evdev = ops::evdev_paths(root, &args.evdev);
    if !evdev.is_empty() && host.libvirt.is_some_and(|v| v < domain::NATIVE_EVDEV) {
        eprintln_safe!(
            "vfioctl: note: libvirt before 7.4 takes evdev devices by qemu:commandline; `vfioctl apply … --evdev` adds them to qemu.conf's cgroup_device_acl"
        );
    }
    for e in &evdev {
        if !root.path(e).exists() && std::fs::symlink_metadata(root.path(e)).is_err() {
            eprintln_safe!("vfioctl: warning: {e} does not exist on this host");
        }
    }
    let disk =
        args.disk
            .as_ref()
            .map(|d| if d.starts_with("/dev/") { Disk::Block(d.clone()) } else { Disk::Image(d.clone()) });
    if let Some(Disk::Block(d)) = &disk {
        // Never the host's own disk: mounted, swap, under LVM/RAID/LUKS, or a whole disk
        // with such a partition (an unreadable mount table is an error, not "unused").
        if let Some((name, why)) = h.storage()?.use_of_path(root, d) {
            if !args.plan.force {
                return Err(CliError::DiskInUse { disk: d.clone(), name, why });
            }
            eprintln_safe!(
                "vfioctl: warning: --force: --disk {d}: {name} is {why}; the guest will write over what the host keeps there"
            );
        }
        if !d.starts_with("/dev/disk/by-") {
            eprintln_safe!("vfioctl: warning: {d} may name another disk after a reboot; use its /dev/disk/by-id path");
        }
    }
    let network = match args.network.as_deref() {
        None => None,
        Some("default") => Some(Network::Libvirt("default".into())),
        Some(n) => Some(match n.split_once(':') {
            Some(("network", name)) => Network::Libvirt(name.into()),
            Some(("bridge", br)) => Network::Bridge(br.into()),
            Some(("direct", dev)) => Network::Direct(dev.into()),
            _ => {
                return Err(CliError::Usage(format!(
                    "--network {n}: use default, network:NAME, bridge:BR or direct:IFACE"
                )))
            }
        }),
    };
    let conn = connect(root, args)?;
    from_libvirt(conn.as_ref(), &mut host);
    let existing = match (&args.from, &args.from_libvirt) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|err| CliError::Input { path: path.clone(), err })?;
            Some((path.display().to_string(), text))
        }
        (None, Some(name)) => {
            let c = required(conn.as_ref())?;
            Some((format!("libvirt domain {name}"), c.domain_xml(name).map_err(CliError::Libvirt)?))
        }
        (None, None) => None,
    };
    let mut doc = match &existing {
        Some((from, text)) => Some(xml::parse(text).map_err(|err| CliError::DomainXml { from: from.clone(), err })?),
        None => None,
    };
    if let (Some(d), Some((from, _))) = (&doc, &existing) {
        if d.root.name != "domain" {
            return Err(CliError::Usage(format!(
                "{from} is not a libvirt domain: its root element is <{}>",
                d.root.name
            )));
        }
    }
    // A domain patched keeps its own vCPU count and memory unless --vcpus/--memory say
    // otherwise: what is indexed by its vCPUs (vcpus, vcpusched, NUMA cells) stays true.
    let mut request = args.plan.request()?;
    if let Some(d) = &doc {
        let own_vcpus = d.root.find("vcpu").and_then(|v| v.text().trim().parse::<u32>().ok()).filter(|n| *n > 0);
        let own_mib =
            d.root.find("memory").and_then(vfioctl_core::units::element_kib).map(|k| k / 1024).filter(|m| *m > 0);
        let mut kept = Vec::new();
        if request.vcpus.is_none() {
            if let Some(n) = own_vcpus {
                request.vcpus = Some(n);
                kept.push(format!("{n} vCPUs"));
            }
        }
        if request.memory_mib.is_none() {
            if let Some(m) = own_mib {
                request.memory_mib = Some(m);
                kept.push(format!("{m} MiB of memory"));
            }
        }
        if !kept.is_empty() {
            eprintln_safe!(
                "vfioctl: note: keeping the domain's {} (--vcpus and --memory change them)",
                kept.join(" and ")
            );
        }
    }
    let p = ops::plan(h, &request)?;
    for w in &p.warnings {
        eprintln_safe!("vfioctl: warning: {w}");
    }
    let name = match (&args.name, &doc) {
        (Some(n), _) => n.clone(),
        (None, Some(d)) => d.root.find("name").map(|n| n.text()).unwrap_or_default(),
        (None, None) => return Err(CliError::Usage("--name is required for a new domain".into())),
    };
    let req = DomainRequest {
        name,
        os,
        evdev,
        disk,
        disk_bus: match args.disk_bus {
            DiskBusArg::Scsi => DiskBus::Scsi,
            DiskBusArg::Sata => DiskBus::Sata,
        },
        isos: args.iso.clone(),
        network,
        rom: checked_rom(h, &p, args.rom.as_deref())?,
        looking_glass: looking_glass(h, args)?,
    };
    let xml = match (&mut doc, &existing) {
        (Some(doc), Some((from, before))) => {
            let want = domain::document(&p, &host, &req);
            // By the planner's own measure the patch's placement is never worse than the
            // domain's: when it would be, the domain keeps its pinning.
            let mut parts = domain::Parts::ALL;
            let (topology, _) = h.topology().map_err(CliError::from)?;
            if let Some(worse) = domain::worse_placement(topology, &doc.root, &p.cpu) {
                eprintln_safe!(
                    "vfioctl: note: keeping the domain's pinning: the plan's would put its vCPUs on {worse}"
                );
                parts.pinning = false;
            }
            let report = domain::patch_parts(doc, &want, parts);
            // The firmware and the machine are the guest's: an installed system does not boot
            // another firmware, and sees a new board on another machine.
            let machine = doc.root.find("os/type").and_then(|t| t.attr("machine")).unwrap_or("");
            if machine.contains("i440fx") || machine == "pc" || (machine.starts_with("pc-") && !machine.contains("q35"))
            {
                if let Some(gpu) = p.devices.iter().find(|d| d.class.starts_with("03")) {
                    eprintln_safe!(
                        "vfioctl: warning: the machine is {machine} (i440fx, no PCI Express), and {} is a GPU; vfioctl leaves the machine as it is (see `vfioctl audit`: device-gpu-i440fx)",
                        gpu.address.short()
                    );
                }
            }
            if !domain::boots_uefi(&doc.root) {
                if let Some(gpu) = p.devices.iter().find(|d| d.class.starts_with("03")) {
                    eprintln_safe!(
                        "vfioctl: warning: the guest boots SeaBIOS, and {} is a GPU: its legacy VGA ROM must run, which many cards do not; vfioctl leaves the firmware as it is (see `vfioctl audit`: device-gpu-legacy-boot)",
                        gpu.address.short()
                    );
                }
            }
            let after = doc.write();
            eprint!("{}", crate::output::terminal_safe(&patch_summary(from, before, &after, &report)));
            after
        }
        _ => domain::render(&p, &host, &req),
    };
    if let (Some(size), Some(Disk::Image(path))) = (&args.disk_size, &req.disk) {
        let bytes = cli::parse_size_mib(size).map_err(CliError::Usage)? * 1024 * 1024;
        match disk::create_image(root, path, bytes).map_err(CliError::Disk)? {
            disk::Created::New { path, bytes, format } => {
                eprintln_safe!("vfioctl: created {} ({format}, {} GiB, sparse)", path.display(), bytes >> 30)
            }
            disk::Created::Existed { path, bytes } => eprintln_safe!(
                "vfioctl: {} exists ({} bytes): left as it is, not resized or overwritten",
                path.display(),
                bytes
            ),
        }
    } else if let Some(Disk::Image(path)) = &req.disk {
        if !root.path(path).exists() {
            eprintln_safe!(
                "vfioctl: warning: {path} does not exist: create it with --disk-size SIZE, or with qemu-img"
            );
        }
    }
    match &args.out {
        Some(path) => {
            output::write_file(path, xml.as_bytes()).map_err(CliError::Out)?;
            eprintln_safe!("vfioctl: wrote {}", path.display());
        }
        None => output::print(&xml)?,
    }
    if args.define {
        let c = required(conn.as_ref())?;
        let d = c.define(&xml).map_err(CliError::Libvirt)?;
        eprintln_safe!("vfioctl: defined domain {} ({}) at {}", d.name, d.uuid, c.uri());
    }
    Ok(Exit::Ok)
}

/// `--looking-glass WxH` on this host: the kvmfr device when asked, or (auto) when the
/// running kernel has the module (loaded, or in its modules.dep), else /dev/shm.
fn looking_glass(h: &Host, args: &DomainArgs) -> Result<Option<LookingGlass>, CliError> {
    let Some(resolution) = args.looking_glass else { return Ok(None) };
    if args.from.is_some() || args.from_libvirt.is_some() {
        return Err(CliError::Usage(
            "--looking-glass writes a new domain's IVSHMEM device; patching an existing domain with it is not supported yet: render a new domain, or add the <shmem> element `vfioctl domain --looking-glass` prints to yours".into(),
        ));
    }
    let backing = ops::looking_glass_backing(h, args.looking_glass_memory);
    let lg = LookingGlass { resolution, backing };
    let user = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "YOUR_USER".into());
    eprintln_safe!(
        "vfioctl: Looking Glass: {} MiB for {resolution} in {}; on the host:",
        resolution.region_mib(),
        if backing == Backing::Kvmfr {
            looking_glass::KVMFR_DEVICE.to_string()
        } else {
            format!("/dev/shm/{}", looking_glass::NAME)
        }
    );
    for step in lg.host_steps(&user) {
        eprintln_safe!("  - {step}");
    }
    eprintln_safe!(
        "  (`vfioctl apply DEVICE… --looking-glass {resolution} --looking-glass-user {user}` writes these files)"
    );
    Ok(Some(lg))
}

/// The changes of a patch as a unified diff and a list, for stderr.
fn patch_summary(from: &str, before: &str, after: &str, report: &domain::PatchReport) -> String {
    let mut out = String::new();
    if report.changes.is_empty() {
        out.push_str(&format!("vfioctl: {from} already has the plan: nothing changed\n"));
    } else {
        let diff = TextDiff::from_lines(before, after);
        out.push_str(&diff.unified_diff().context_radius(2).header(from, "patched").to_string());
        out.push_str(&format!("vfioctl: {} changes to {from}:\n", report.changes.len()));
        for c in &report.changes {
            out.push_str(&format!("  - {c}\n"));
        }
    }
    for n in &report.notes {
        out.push_str(&format!("vfioctl: note: {n}\n"));
    }
    out
}

/// The libvirt connection: required for --define, --from-libvirt and an explicit
/// --connect; otherwise tried quietly on the live host for domain capabilities.
fn connect(root: &HostRoot, args: &DomainArgs) -> Result<Option<Libvirt>, CliError> {
    let needed = args.define || args.from_libvirt.is_some() || args.connect.is_some();
    let uri = args.connect.as_deref().unwrap_or(DEFAULT_URI);
    if !needed && !root.is_live() {
        return Ok(None);
    }
    match Libvirt::open(uri) {
        Ok(l) => Ok(Some(l)),
        Err(e) if needed => Err(CliError::Libvirt(e)),
        Err(_) => Ok(None),
    }
}

/// The connection [`connect`] made because the arguments need one.
fn required(conn: Option<&Libvirt>) -> Result<&Libvirt, CliError> {
    conn.ok_or_else(|| CliError::Usage("this needs a libvirt connection: give --connect URI".into()))
}

/// Versions and domain capabilities from the connection, when there is one.
fn from_libvirt(conn: Option<&Libvirt>, host: &mut DomainHost) {
    let Some(c) = conn else { return };
    if let Ok(v) = c.versions() {
        host.libvirt = Some((v.libvirt.0, v.libvirt.1));
        if let Some(q) = v.hypervisor {
            host.qemu = Some((q.0, q.1));
        }
    }
    match c.domain_capabilities(host.emulator.as_deref()) {
        Ok(x) => match caps::parse(&x.xml) {
            Ok(parsed) => {
                if let Some(list) = &parsed.hyperv {
                    eprintln_safe!(
                        "vfioctl: libvirt at {} offers these Hyper-V enlightenments: {}",
                        c.uri(),
                        if list.is_empty() { "none".to_string() } else { list.join(", ") }
                    );
                }
                host.caps = Some(parsed);
            }
            Err(e) => eprintln_safe!("vfioctl: warning: cannot read libvirt's domain capabilities: {e}"),
        },
        Err(e) => eprintln_safe!("vfioctl: warning: {e}: using the version tables instead"),
    }
}

/// `--rom FILE`: a ROM on the host (read through the root) that QEMU can use for the
/// plan's GPU, checked as `vfioctl rom --check` does; its warnings are printed.
fn checked_rom(h: &Host, plan: &vfioctl_core::plan::Plan, rom: Option<&str>) -> Result<Option<String>, CliError> {
    let Some(file) = rom else { return Ok(None) };
    if !file.starts_with('/') {
        return Err(CliError::Usage(format!(
            "--rom {file}: give the ROM's absolute path on the host, as QEMU opens it"
        )));
    }
    let Some(gpu) = plan.devices.iter().find(|d| d.class.starts_with("03")) else {
        return Err(CliError::Usage("--rom: the plan passes no GPU to give the ROM to".into()));
    };
    let bytes = match h.root().read_bytes(file, 64 << 20) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return Err(CliError::Usage(format!(
                "--rom {file}: no such file on the host (copy the ROM there first; vfioctl rom --check FILE checks it)"
            )))
        }
        Err(e) => return Err(CliError::Usage(format!("--rom {file}: {e}"))),
    };
    let ids = u16::from_str_radix(&gpu.vendor_id, 16).ok().zip(u16::from_str_radix(&gpu.device_id, 16).ok());
    let parsed = vfioctl_core::rom::parse(&bytes).map_err(|e| CliError::Usage(format!("--rom {file}: {e}")))?;
    let verdict = vfioctl_core::rom::judge(&parsed, ids);
    if !verdict.errors.is_empty() {
        return Err(CliError::Usage(format!("--rom {file}: {}", verdict.errors.join("; "))));
    }
    for w in &verdict.warnings {
        eprintln_safe!("vfioctl: warning: --rom {file}: {w}");
    }
    if file.starts_with("/home/") {
        eprintln_safe!(
            "vfioctl: warning: --rom {file} is under /home, where SELinux and AppArmor keep QEMU out: put it in /usr/share/vgabios/"
        );
    }
    Ok(Some(file.to_string()))
}
