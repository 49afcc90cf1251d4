//! The libvirt domain of a plan: everything the guides write by hand into their domain
//! XML, decided from the plan and the host. [`document`] builds it as a tree with the
//! builders of [`crate::xml`] (no XML is pasted together as text), [`render`] writes that
//! tree; both are pure. The same small pieces (a timer, a hostdev and its addresses, the
//! evdev input in both forms, the CPU pins and topology, a Hyper-V feature) make the
//! audit's fix snippets, and [`patch`] merges the tree into a user's domain.
//!
//! What a given libvirt or QEMU can take is decided in one place, [`versions`].

pub mod caps;
pub mod hyperv;
mod patch;
pub mod versions;

use std::collections::BTreeMap;

use crate::cpuset::CpuSet;
use crate::pci::PciAddress;
use crate::plan::{CpuPlan, Plan};
use crate::vendor::CpuVendor;

use crate::xml::{Document, Element};
pub use hyperv::{enlightenments, Enlightenment};
pub use patch::{patch, patch_parts, Parts, PatchReport};

/// The first libvirt with native `<input type='evdev'>` ([`versions::LIBVIRT_EVDEV_INPUT`],
/// under its old name).
pub use versions::LIBVIRT_EVDEV_INPUT as NATIVE_EVDEV;

/// The guest operating system: Windows gets Hyper-V enlightenments and a local-time
/// clock; Windows 11 also secure boot and a TPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestOs {
    Windows10,
    Windows11,
    Linux,
}

impl GuestOs {
    pub fn is_windows(self) -> bool {
        matches!(self, GuestOs::Windows10 | GuestOs::Windows11)
    }
}

/// UEFI firmware: the code image and the variable store template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: String,
    pub vars: Option<String>,
    pub secure: bool,
}

/// What the domain depends on besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainHost {
    pub vendor: CpuVendor,
    /// The host has an invariant TSC (`constant_tsc` and `nonstop_tsc`).
    pub invtsc: bool,
    pub firmware: Option<Firmware>,
    pub emulator: Option<String>,
    /// libvirt and QEMU versions (major, minor); `None` when unknown (newest assumed,
    /// see [`versions`]).
    pub libvirt: Option<versions::Version>,
    pub qemu: Option<versions::Version>,
    /// libvirt's domain capabilities, when a connection gave them: they limit the
    /// Hyper-V enlightenments to what this host's KVM and QEMU really offer.
    pub caps: Option<caps::DomainCaps>,
}

/// The guest's system disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// A whole disk or partition by its stable path (`/dev/disk/by-id/…`).
    Block(String),
    /// An image file; its format from the name (`.qcow2`, else raw).
    Image(String),
}

/// Where the disks hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-scsi, with the I/O thread.
    Scsi,
    Sata,
}

/// The guest's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// libvirt's `default` NAT network (or another named one).
    Libvirt(String),
    Bridge(String),
    /// macvtap on a host interface.
    Direct(String),
}

/// What the user asked for the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRequest {
    pub name: String,
    pub os: GuestOs,
    /// `/dev/input/by-id/…-event-kbd` and `-event-mouse` paths to hand over by evdev.
    pub evdev: Vec<String>,
    pub disk: Option<Disk>,
    pub disk_bus: DiskBus,
    /// Installer and driver ISOs, attached as CD-ROMs.
    pub isos: Vec<String>,
    pub network: Option<Network>,
    /// A ROM file for the passed GPU (`<rom file>` in its hostdev), a path on the host.
    pub rom: Option<String>,
    /// Looking Glass: its IVSHMEM region, sized for the guest's resolution.
    pub looking_glass: Option<crate::looking_glass::LookingGlass>,
}

/// Renders the domain XML: [`document`] as text.
pub fn render(plan: &Plan, host: &DomainHost, req: &DomainRequest) -> String {
    document(plan, host, req).write()
}

/// The domain of a plan as a tree, laid out the way libvirt writes domains; the tree
/// [`patch`] merges into a user's domain.
pub fn document(plan: &Plan, host: &DomainHost, req: &DomainRequest) -> Document {
    let kib = plan.memory.mib.saturating_mul(1024).to_string();
    let c = &plan.cpu;
    // libvirt before 7.4 has no <input type='evdev'>: QEMU's input-linux objects instead.
    let native_evdev = versions::at_least(host.libvirt, versions::LIBVIRT_EVDEV_INPUT);
    let legacy_evdev = !native_evdev && !req.evdev.is_empty();
    let kvmfr = req.looking_glass.filter(|l| l.backing == crate::looking_glass::Backing::Kvmfr);
    let mut d = Element::new("domain").with_attr("type", "kvm");
    if legacy_evdev || kvmfr.is_some() {
        d = d.with_attr("xmlns:qemu", QEMU_NS);
    }
    d.push(el("name").with_text(&req.name));
    d.push(el("memory").with_attr("unit", "KiB").with_text(&kib));
    d.push(el("currentMemory").with_attr("unit", "KiB").with_text(&kib));
    if let Some(h) = &plan.memory.hugepages {
        d.push_comment("guest RAM from the hugepages vfioctl apply reserves");
        let page = el("page").with_attr("size", &h.size_kib.to_string()).with_attr("unit", "KiB");
        d.push(el("memoryBacking").with_child(el("hugepages").with_child(page)));
    }
    d.push(vcpu(&c.guest_cpus, c.vcpus));
    d.push(el("iothreads").with_text("1"));
    d.push_comment("vCPU pairs on the SMT siblings of whole host cores; QEMU's own threads elsewhere");
    d.push(cputune(c, &[1]));
    if let Some(n) = plan.numa_node {
        d.push_comment("guest memory on the NUMA node of the passed device");
        d.push(
            el("numatune").with_child(el("memory").with_attr("mode", "strict").with_attr("nodeset", &n.to_string())),
        );
    }
    d.push(os(host, req));
    d.push(features(host, req));
    d.push_comment("the host's own CPU model; not migratable, so invtsc can be passed");
    d.push(cpu(plan, host));
    let windows = req.os.is_windows();
    let mut clock = el("clock").with_attr("offset", if windows { "localtime" } else { "utc" });
    clock.push(Timer::Rtc.element());
    clock.push(Timer::Pit.element());
    clock.push(Timer::Hpet.element());
    if windows {
        clock.push(Timer::Hypervclock.element());
    }
    d.push(clock);
    d.push(el("on_poweroff").with_text("destroy"));
    d.push(el("on_reboot").with_text("restart"));
    d.push(el("on_crash").with_text("destroy"));
    d.push(
        el("pm")
            .with_child(el("suspend-to-mem").with_attr("enabled", "no"))
            .with_child(el("suspend-to-disk").with_attr("enabled", "no")),
    );
    d.push(devices(plan, host, req, native_evdev));
    if legacy_evdev || kvmfr.is_some() {
        let evdev = req.evdev.iter().map(String::as_str).filter(|_| legacy_evdev);
        let mut args = input_linux(evdev);
        if let Some(lg) = kvmfr {
            // libvirt has no element for a device file as IVSHMEM memory: QEMU's own.
            let mib = lg.resolution.region_mib();
            for v in [
                "-device".to_string(),
                format!("ivshmem-plain,id=shmem0,memdev={}", crate::looking_glass::NAME),
                "-object".to_string(),
                format!(
                    "memory-backend-file,id={},mem-path={},size={mib}M,share=yes",
                    crate::looking_glass::NAME,
                    crate::looking_glass::KVMFR_DEVICE
                ),
            ] {
                args.push(el("qemu:arg").with_attr("value", &v));
            }
        }
        d.push(args);
    }
    Document::new(d)
}

/// A `<clock>` timer vfioctl writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The RTC catches up on missed ticks (Windows' clock stays right after a pause).
    Rtc,
    /// PIT ticks are delayed, not replayed.
    Pit,
    /// No HPET: Windows polls it expensively.
    Hpet,
    /// The Hyper-V reference clock, which stimer needs.
    Hypervclock,
}

impl Timer {
    /// The `<timer>` element vfioctl writes.
    pub(crate) fn element(self) -> Element {
        let (name, attr, value) = match self {
            Timer::Rtc => ("rtc", "tickpolicy", "catchup"),
            Timer::Pit => ("pit", "tickpolicy", "delay"),
            Timer::Hpet => ("hpet", "present", "no"),
            Timer::Hypervclock => ("hypervclock", "present", "yes"),
        };
        el("timer").with_attr("name", name).with_attr(attr, value)
    }
}

/// The native evdev input (libvirt 7.4 and later) for `path`: a keyboard (`-event-kbd`)
/// grabs all devices and toggles with both Ctrl keys; anything else is passed as is.
pub(crate) fn evdev_input(path: &str) -> Element {
    let mut source = el("source").with_attr("dev", path);
    if path.ends_with("-event-kbd") {
        source = source.with_attr("grab", "all").with_attr("grabToggle", "ctrl-ctrl").with_attr("repeat", "on");
    }
    el("input").with_attr("type", "evdev").with_child(source)
}

/// QEMU's input-linux objects for evdev `paths` (libvirt before 7.4), as
/// `<qemu:commandline>`; the domain needs the `xmlns:qemu` namespace ([`QEMU_NS`]).
pub(crate) fn input_linux<'a>(paths: impl Iterator<Item = &'a str>) -> Element {
    let mut args = el("qemu:commandline");
    for (i, path) in paths.enumerate() {
        let opts = if path.ends_with("-event-kbd") { ",grab_all=on,repeat=on" } else { "" };
        args.push(el("qemu:arg").with_attr("value", "-object"));
        args.push(el("qemu:arg").with_attr("value", &format!("input-linux,id=evdev{i},evdev={path}{opts}")));
    }
    args
}

/// A host PCI address, as in `<hostdev><source>`.
pub(crate) fn host_address(a: &PciAddress) -> Element {
    el("address")
        .with_attr("domain", &format!("0x{:04x}", a.domain))
        .with_attr("bus", &format!("0x{:02x}", a.bus))
        .with_attr("slot", &format!("0x{:02x}", a.device))
        .with_attr("function", &format!("0x{:x}", a.function))
}

/// A guest PCI address, `<address type='pci' …>` (`bus` being a root port's index).
pub(crate) fn guest_address(domain: u32, bus: u32, slot: u32, function: u32) -> Element {
    el("address")
        .with_attr("type", "pci")
        .with_attr("domain", &format!("0x{domain:04x}"))
        .with_attr("bus", &format!("0x{bus:02x}"))
        .with_attr("slot", &format!("0x{slot:02x}"))
        .with_attr("function", &format!("0x{function:x}"))
}

/// `<hostdev>` for a PCI device, libvirt managing its driver, without content yet.
pub(crate) fn hostdev() -> Element {
    el("hostdev").with_attr("mode", "subsystem").with_attr("type", "pci").with_attr("managed", "yes")
}

/// No memory balloon.
pub(crate) fn no_balloon() -> Element {
    el("memballoon").with_attr("model", "none")
}

/// libvirt's namespace for `<qemu:commandline>`.
pub(crate) const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

fn el(name: &str) -> Element {
    Element::new(name)
}

/// `<os>`: q35, the UEFI firmware and its variable store, boot from the disk.
fn os(host: &DomainHost, req: &DomainRequest) -> Element {
    let mut os =
        el("os").with_child(el("type").with_attr("arch", "x86_64").with_attr("machine", "q35").with_text("hvm"));
    match &host.firmware {
        Some(f) => {
            let mut loader = el("loader").with_attr("readonly", "yes");
            if f.secure {
                loader = loader.with_attr("secure", "yes");
            }
            os.push(loader.with_attr("type", "pflash").with_text(&f.code));
            let mut nvram = el("nvram");
            if let Some(v) = &f.vars {
                nvram = nvram.with_attr("template", v);
            }
            os.push(nvram.with_text(&format!("/var/lib/libvirt/qemu/nvram/{}_VARS.fd", req.name)));
        }
        None => os.push_comment("no OVMF found on this host: install it (vfioctl check) and render again"),
    }
    os.with_child(el("boot").with_attr("dev", "hd"))
}

/// `<features>`: ACPI, the Hyper-V enlightenments for Windows, KVM hidden.
fn features(host: &DomainHost, req: &DomainRequest) -> Element {
    let mut f = el("features").with_child(el("acpi")).with_child(el("apic"));
    if req.os.is_windows() {
        f.push_comment("Hyper-V enlightenments: Windows' paravirtual interfaces (less idle CPU, better timers)");
        let mut list = enlightenments(host.libvirt, host.qemu);
        if let Some(c) = &host.caps {
            list = caps::supported(list, c);
        }
        f.push(hyperv::element(host.libvirt, &list));
    }
    f.push_comment("GPU drivers that refuse to run in a VM do not see KVM");
    f.push(el("kvm").with_child(el("hidden").with_attr("state", "on")));
    f.push(el("vmport").with_attr("state", "off"));
    if req.os == GuestOs::Windows11 {
        f.push(el("smm").with_attr("state", "on"));
    }
    f.with_child(el("ioapic").with_attr("driver", "kvm"))
}

/// `<cpu>`: host-passthrough with the plan's topology.
fn cpu(plan: &Plan, host: &DomainHost) -> Element {
    let t = &plan.cpu.topology;
    let dies = versions::at_least(host.libvirt, versions::LIBVIRT_TOPOLOGY_DIES).then_some(t.dies);
    let mut cpu = host_passthrough(topology(t.sockets, dies, t.cores, t.threads));
    if host.vendor == CpuVendor::Amd && t.threads > 1 {
        cpu.push_comment("AMD: without topoext the guest sees no SMT siblings");
        cpu.push(cpu_feature("topoext"));
    }
    if host.invtsc {
        cpu.push(cpu_feature("invtsc"));
    }
    cpu
}

/// `<vcpu placement='static' cpuset='…'>count</vcpu>`.
pub(crate) fn vcpu(cpuset: &CpuSet, count: u32) -> Element {
    el("vcpu").with_attr("placement", "static").with_attr("cpuset", &cpuset.to_string()).with_text(&count.to_string())
}

/// `<vcpupin>` of one vCPU.
pub(crate) fn vcpupin(vcpu: u32, cpuset: &str) -> Element {
    el("vcpupin").with_attr("vcpu", &vcpu.to_string()).with_attr("cpuset", cpuset)
}

/// `<emulatorpin>`: where QEMU's own threads run.
pub(crate) fn emulatorpin(cpuset: &CpuSet) -> Element {
    el("emulatorpin").with_attr("cpuset", &cpuset.to_string())
}

/// `<iothreadpin>` of one I/O thread (its id as the domain writes it).
pub(crate) fn iothreadpin(iothread: &str, cpuset: &CpuSet) -> Element {
    el("iothreadpin").with_attr("iothread", iothread).with_attr("cpuset", &cpuset.to_string())
}

/// `<cputune>` of a CPU plan: its vCPU pins, the emulator pin, and the plan's I/O thread
/// CPUs for each of `iothreads`.
pub(crate) fn cputune(c: &CpuPlan, iothreads: &[u32]) -> Element {
    let mut cputune = el("cputune");
    for p in &c.vcpupin {
        cputune.push(vcpupin(p.vcpu, &p.cpuset));
    }
    cputune.push(emulatorpin(&c.emulatorpin));
    for &t in iothreads {
        cputune.push(iothreadpin(&t.to_string(), &c.iothreadpin));
    }
    cputune
}

/// `<topology>`; `dies` only where libvirt knows the attribute.
pub(crate) fn topology(sockets: u32, dies: Option<u32>, cores: u32, threads: u32) -> Element {
    let mut topology = el("topology").with_attr("sockets", &sockets.to_string());
    if let Some(d) = dies {
        topology = topology.with_attr("dies", &d.to_string());
    }
    topology.with_attr("cores", &cores.to_string()).with_attr("threads", &threads.to_string())
}

/// `<cpu mode='host-passthrough'>`, not migratable, with `topology` and the host's caches.
pub(crate) fn host_passthrough(topology: Element) -> Element {
    el("cpu")
        .with_attr("mode", "host-passthrough")
        .with_attr("check", "none")
        .with_attr("migratable", "off")
        .with_child(topology)
        .with_child(el("cache").with_attr("mode", "passthrough"))
}

/// A CPU feature the guest must have.
pub(crate) fn cpu_feature(name: &str) -> Element {
    el("feature").with_attr("policy", "require").with_attr("name", name)
}

/// `<devices>`: root ports and the passed devices, evdev, storage, network, TPM.
fn devices(plan: &Plan, host: &DomainHost, req: &DomainRequest, native_evdev: bool) -> Element {
    let mut w = el("devices");
    if let Some(e) = &host.emulator {
        w.push(el("emulator").with_text(e));
    }
    // One root port per physical slot; the slot's functions stay together on it.
    if !plan.devices.is_empty() {
        w.push_comment("one root port per physical slot; its functions stay together, as on the host");
    }
    let mut slots: BTreeMap<(u32, u8, u8), Vec<PciAddress>> = BTreeMap::new();
    for d in &plan.devices {
        slots.entry((d.address.domain, d.address.bus, d.address.device)).or_default().push(d.address);
    }
    let ports = u32::try_from(slots.len().max(1)).unwrap_or(u32::MAX);
    for i in 0..ports {
        // Eight root ports per guest slot, from slot 2 on.
        let shares = ports - (i / 8) * 8 > 1;
        let mut address = guest_address(0, 0, 2 + i / 8, i % 8);
        if i % 8 == 0 && shares {
            address = address.with_attr("multifunction", "on");
        }
        w.push(
            el("controller")
                .with_attr("type", "pci")
                .with_attr("index", &i.saturating_add(1).to_string())
                .with_attr("model", "pcie-root-port")
                .with_child(address),
        );
    }
    // The GPU whose ROM `--rom` gives: the first passed display function.
    let gpu = plan.devices.iter().find(|d| d.class.starts_with("03")).map(|d| d.address);
    for (port, (_, fns)) in slots.iter().enumerate() {
        let bus = u32::try_from(port).map_or(u32::MAX, |p| p.saturating_add(1));
        for a in fns {
            let mut address = guest_address(0, bus, 0, a.function.into());
            if a.function == 0 && fns.len() > 1 {
                address = address.with_attr("multifunction", "on");
            }
            let mut h = hostdev()
                .with_child(el("driver").with_attr("name", "vfio"))
                .with_child(el("source").with_child(host_address(a)));
            if let Some(rom) = req.rom.as_deref().filter(|_| Some(*a) == gpu) {
                h.push(el("rom").with_attr("file", rom));
            }
            w.push(h.with_child(address));
        }
    }
    if native_evdev {
        for path in &req.evdev {
            w.push(evdev_input(path));
        }
    }
    storage(&mut w, req);
    if let Some(n) = &req.network {
        let (kind, source) = match n {
            Network::Libvirt(name) => ("network", el("source").with_attr("network", name)),
            Network::Bridge(br) => ("bridge", el("source").with_attr("bridge", br)),
            Network::Direct(dev) => ("direct", el("source").with_attr("dev", dev).with_attr("mode", "bridge")),
        };
        w.push(
            el("interface")
                .with_attr("type", kind)
                .with_child(source)
                .with_child(el("model").with_attr("type", "virtio")),
        );
    }
    w.push(el("input").with_attr("type", "mouse").with_attr("bus", "ps2"));
    w.push(el("input").with_attr("type", "keyboard").with_attr("bus", "ps2"));
    if req.os == GuestOs::Windows11 {
        let backend = el("backend").with_attr("type", "emulator").with_attr("version", "2.0");
        w.push(el("tpm").with_attr("model", "tpm-crb").with_child(backend));
    }
    if let Some(lg) = req.looking_glass.filter(|l| l.backing == crate::looking_glass::Backing::Shm) {
        w.push_comment(&format!(
            "Looking Glass: two {} frames and its own 10 MiB, rounded up to a power of two",
            lg.resolution
        ));
        w.push(
            el("shmem")
                .with_attr("name", crate::looking_glass::NAME)
                .with_child(el("model").with_attr("type", "ivshmem-plain"))
                .with_child(el("size").with_attr("unit", "M").with_text(&lg.resolution.region_mib().to_string())),
        );
    }
    w.push_comment("no balloon: the memory of a guest with passed devices is pinned anyway");
    w.with_child(no_balloon())
}

/// The system disk and the CD-ROMs; `sd*` names on virtio-scsi or SATA.
fn storage(w: &mut Element, req: &DomainRequest) {
    let bus = match req.disk_bus {
        DiskBus::Scsi => "scsi",
        DiskBus::Sata => "sata",
    };
    if req.disk.is_some() && req.disk_bus == DiskBus::Scsi {
        w.push(
            el("controller")
                .with_attr("type", "scsi")
                .with_attr("index", "0")
                .with_attr("model", "virtio-scsi")
                .with_child(el("driver").with_attr("iothread", "1")),
        );
    }
    let mut letter = b'a';
    let mut next = || {
        let name = format!("sd{}", letter as char);
        letter = letter.saturating_add(1);
        name
    };
    let driver = |format: &str| el("driver").with_attr("name", "qemu").with_attr("type", format);
    let disk = |kind: &str, device: &str| el("disk").with_attr("type", kind).with_attr("device", device);
    let cached = |d: Element| d.with_attr("cache", "none").with_attr("io", "native").with_attr("discard", "unmap");
    match &req.disk {
        Some(Disk::Block(dev)) => w.push(
            disk("block", "disk")
                .with_child(cached(driver("raw")))
                .with_child(el("source").with_attr("dev", dev))
                .with_child(el("target").with_attr("dev", &next()).with_attr("bus", bus)),
        ),
        Some(Disk::Image(file)) => {
            let format = if file.ends_with(".qcow2") { "qcow2" } else { "raw" };
            w.push(
                disk("file", "disk")
                    .with_child(cached(driver(format)))
                    .with_child(el("source").with_attr("file", file))
                    .with_child(el("target").with_attr("dev", &next()).with_attr("bus", bus)),
            );
        }
        None => {}
    }
    for iso in &req.isos {
        w.push(
            disk("file", "cdrom")
                .with_child(driver("raw"))
                .with_child(el("source").with_attr("file", iso))
                .with_child(el("target").with_attr("dev", &next()).with_attr("bus", "sata"))
                .with_child(el("readonly")),
        );
    }
}

/// What the plan's placement of the vCPUs does worse than the domain's own, by the
/// planner's measure ([`Placement`](crate::plan::pinning::Placement)), for people ("2 NUMA
/// nodes instead of 1"); `None` when it is no worse, or when the domain's cannot be compared
/// (a vCPU unpinned, another vCPU count). A patch keeps the domain's pinning then.
pub fn worse_placement(
    topo: &crate::topology::Topology,
    root: &crate::xml::Element,
    cpu: &crate::plan::CpuPlan,
) -> Option<String> {
    use crate::plan::pinning::Placement;
    let own = root.find("vcpu").and_then(|v| v.text().parse::<u32>().ok())?;
    let pins = crate::audit::Pins::of(root);
    let vcpus: Vec<crate::cpuset::CpuSet> = pins.vcpu_cpus(own).into_values().collect();
    if own != cpu.vcpus || vcpus.len() as u32 != own {
        return None;
    }
    let mine = Placement::of(topo, &vcpus, &pins.others());
    let worse = Placement::of_plan(topo, cpu).worse_than(&mine);
    (!worse.is_empty()).then(|| worse.join(", "))
}

/// Whether the domain boots UEFI firmware: `<os firmware='efi'>`, or a pflash or OVMF/edk2
/// `<loader>`; otherwise SeaBIOS.
pub fn boots_uefi(root: &crate::xml::Element) -> bool {
    root.child("os").is_some_and(|o| {
        o.attr("firmware") == Some("efi")
            || o.child("loader").is_some_and(|l| {
                l.attr("type") == Some("pflash")
                    || l.text().to_ascii_lowercase().contains("ovmf")
                    || l.text().contains("edk2")
            })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::pinning::tests::shape;
    use crate::plan::{pinning, CpuRequest, MemoryPlan};

    /// Two domains from the passthrough guides in `examples/domains/`, written by hand.
    pub(crate) const GUIDE_000: &str = include_str!("../../../../examples/domains/guide-000-CompromisedBeast.xml");
    pub(crate) const GUIDE_001: &str = include_str!("../../../../examples/domains/guide-001-win10.xml");

    pub(crate) fn plan() -> Plan {
        let t = shape(1, 1, 2, 3, 2, true, &[8192]);
        let cpu = pinning::place(&t, &CpuRequest { vcpus: Some(4), node: Some(0) }).unwrap();
        Plan::cpu_and_memory(cpu, MemoryPlan { mib: 4096, hugepages: None, reasons: Vec::new() })
    }

    pub(crate) fn host(libvirt: Option<(u32, u32)>) -> DomainHost {
        DomainHost {
            vendor: CpuVendor::Amd,
            invtsc: false,
            firmware: None,
            emulator: None,
            libvirt,
            qemu: None,
            caps: None,
        }
    }

    pub(crate) fn req() -> DomainRequest {
        DomainRequest {
            name: "w<1>".into(),
            os: GuestOs::Windows10,
            evdev: vec!["/dev/input/by-id/kbd-event-kbd".into(), "/dev/input/by-id/m-event-mouse".into()],
            disk: None,
            disk_bus: DiskBus::Scsi,
            isos: Vec::new(),
            network: None,
            rom: None,
            looking_glass: None,
        }
    }

    #[test]
    fn evdev_native_or_input_linux_by_libvirt_version() {
        let new = render(&plan(), &host(Some((9, 0))), &req());
        assert!(new.contains("<input type='evdev'>") && !new.contains("qemu:commandline"));
        assert!(new.contains("<name>w&lt;1&gt;</name>"));
        let old = render(&plan(), &host(Some((6, 0))), &req());
        assert!(old.starts_with("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"));
        assert!(old.contains("input-linux,id=evdev0,evdev=/dev/input/by-id/kbd-event-kbd,grab_all=on,repeat=on"));
        assert!(!old.contains("<input type='evdev'>") && !old.contains("dies=") && !old.contains("mode='custom'"));
    }
}
