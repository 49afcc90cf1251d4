//! The libvirt domain of a plan: everything the guides write by hand into their domain
//! XML, decided from the plan and the host. [`render`] is pure and returns the XML text.

pub mod caps;
pub mod hyperv;
mod patch;

use std::collections::BTreeMap;

use crate::pci::PciAddress;
use crate::plan::Plan;
use crate::vendor::CpuVendor;

use crate::xml::esc;
pub use hyperv::{enlightenments, Enlightenment};
pub use patch::{patch, patch_parts, Parts, PatchReport};

/// The first libvirt with native `<input type='evdev'>`, which it sets up itself (device
/// cgroup, ownership); before it, QEMU's `input-linux` objects on the command line.
pub const NATIVE_EVDEV: (u32, u32) = (7, 4);

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
    /// libvirt and QEMU versions (major, minor); `None` when unknown (newest assumed).
    pub libvirt: Option<(u32, u32)>,
    pub qemu: Option<(u32, u32)>,
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
}

/// Renders the domain XML.
pub fn render(plan: &Plan, host: &DomainHost, req: &DomainRequest) -> String {
    let mut x = String::new();
    let w = &mut x;
    let kib = plan.memory.mib * 1024;
    let c = &plan.cpu;
    // libvirt before 7.4 has no <input type='evdev'>: QEMU's input-linux objects instead.
    let native_evdev = host.libvirt.is_none_or(|v| v >= NATIVE_EVDEV);
    let legacy_evdev = !native_evdev && !req.evdev.is_empty();
    if legacy_evdev {
        push(w, 0, "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>");
    } else {
        push(w, 0, "<domain type='kvm'>");
    }
    push(w, 1, &format!("<name>{}</name>", esc(&req.name)));
    push(w, 1, &format!("<memory unit='KiB'>{kib}</memory>"));
    push(w, 1, &format!("<currentMemory unit='KiB'>{kib}</currentMemory>"));
    if let Some(h) = &plan.memory.hugepages {
        push(w, 1, "<!-- guest RAM from the hugepages vfioctl apply reserves -->");
        push(w, 1, "<memoryBacking>");
        push(w, 2, "<hugepages>");
        push(w, 3, &format!("<page size='{}' unit='KiB'/>", h.size_kib));
        push(w, 2, "</hugepages>");
        push(w, 1, "</memoryBacking>");
    }
    push(w, 1, &format!("<vcpu placement='static' cpuset='{}'>{}</vcpu>", c.guest_cpus, c.vcpus));
    push(w, 1, "<iothreads>1</iothreads>");
    push(w, 1, "<!-- vCPU pairs on the SMT siblings of whole host cores; QEMU's own threads elsewhere -->");
    push(w, 1, "<cputune>");
    for p in &c.vcpupin {
        push(w, 2, &format!("<vcpupin vcpu='{}' cpuset='{}'/>", p.vcpu, p.cpuset));
    }
    push(w, 2, &format!("<emulatorpin cpuset='{}'/>", c.emulatorpin));
    push(w, 2, &format!("<iothreadpin iothread='1' cpuset='{}'/>", c.iothreadpin));
    push(w, 1, "</cputune>");
    if let Some(n) = plan.numa_node {
        push(w, 1, "<!-- guest memory on the NUMA node of the passed device -->");
        push(w, 1, "<numatune>");
        push(w, 2, &format!("<memory mode='strict' nodeset='{n}'/>"));
        push(w, 1, "</numatune>");
    }
    push(w, 1, "<os>");
    push(w, 2, "<type arch='x86_64' machine='q35'>hvm</type>");
    match &host.firmware {
        Some(f) => {
            let secure = if f.secure { " secure='yes'" } else { "" };
            push(w, 2, &format!("<loader readonly='yes'{secure} type='pflash'>{}</loader>", esc(&f.code)));
            let nvram = format!("/var/lib/libvirt/qemu/nvram/{}_VARS.fd", esc(&req.name));
            match &f.vars {
                Some(v) => push(w, 2, &format!("<nvram template='{}'>{nvram}</nvram>", esc(v))),
                None => push(w, 2, &format!("<nvram>{nvram}</nvram>")),
            }
        }
        None => push(w, 2, "<!-- no OVMF found on this host: install it (vfioctl check) and render again -->"),
    }
    push(w, 2, "<boot dev='hd'/>");
    push(w, 1, "</os>");
    push(w, 1, "<features>");
    push(w, 2, "<acpi/>");
    push(w, 2, "<apic/>");
    if req.os.is_windows() {
        // mode='custom' exists since libvirt 8.0; before it, custom was the only mode.
        let mode = if host.libvirt.is_none_or(|v| v >= (8, 0)) { " mode='custom'" } else { "" };
        push(w, 2, "<!-- Hyper-V enlightenments: Windows' paravirtual interfaces (less idle CPU, better timers) -->");
        push(w, 2, &format!("<hyperv{mode}>"));
        let mut list = enlightenments(host.libvirt, host.qemu);
        if let Some(c) = &host.caps {
            list = caps::supported(list, c);
        }
        for e in list {
            push(w, 3, &e.xml());
        }
        push(w, 2, "</hyperv>");
    }
    push(w, 2, "<!-- GPU drivers that refuse to run in a VM do not see KVM -->");
    push(w, 2, "<kvm>");
    push(w, 3, "<hidden state='on'/>");
    push(w, 2, "</kvm>");
    push(w, 2, "<vmport state='off'/>");
    if req.os == GuestOs::Windows11 {
        push(w, 2, "<smm state='on'/>");
    }
    push(w, 2, "<ioapic driver='kvm'/>");
    push(w, 1, "</features>");
    push(w, 1, "<!-- the host's own CPU model; not migratable, so invtsc can be passed -->");
    push(w, 1, "<cpu mode='host-passthrough' check='none' migratable='off'>");
    // `dies` exists since libvirt 6.1.
    let dies =
        if host.libvirt.is_none_or(|v| v >= (6, 1)) { format!(" dies='{}'", c.topology.dies) } else { String::new() };
    push(
        w,
        2,
        &format!(
            "<topology sockets='{}'{dies} cores='{}' threads='{}'/>",
            c.topology.sockets, c.topology.cores, c.topology.threads
        ),
    );
    push(w, 2, "<cache mode='passthrough'/>");
    if host.vendor == CpuVendor::Amd && c.topology.threads > 1 {
        push(w, 2, "<!-- AMD: without topoext the guest sees no SMT siblings -->");
        push(w, 2, "<feature policy='require' name='topoext'/>");
    }
    if host.invtsc {
        push(w, 2, "<feature policy='require' name='invtsc'/>");
    }
    push(w, 1, "</cpu>");
    push(w, 1, &format!("<clock offset='{}'>", if req.os.is_windows() { "localtime" } else { "utc" }));
    push(w, 2, "<timer name='rtc' tickpolicy='catchup'/>");
    push(w, 2, "<timer name='pit' tickpolicy='delay'/>");
    push(w, 2, "<timer name='hpet' present='no'/>");
    if req.os.is_windows() {
        push(w, 2, "<timer name='hypervclock' present='yes'/>");
    }
    push(w, 1, "</clock>");
    push(w, 1, "<on_poweroff>destroy</on_poweroff>");
    push(w, 1, "<on_reboot>restart</on_reboot>");
    push(w, 1, "<on_crash>destroy</on_crash>");
    push(w, 1, "<pm>");
    push(w, 2, "<suspend-to-mem enabled='no'/>");
    push(w, 2, "<suspend-to-disk enabled='no'/>");
    push(w, 1, "</pm>");
    push(w, 1, "<devices>");
    if let Some(e) = &host.emulator {
        push(w, 2, &format!("<emulator>{}</emulator>", esc(e)));
    }
    // One root port per physical slot; the slot's functions stay together on it.
    if !plan.devices.is_empty() {
        push(w, 2, "<!-- one root port per physical slot; its functions stay together, as on the host -->");
    }
    let mut slots: BTreeMap<(u32, u8, u8), Vec<PciAddress>> = BTreeMap::new();
    for d in &plan.devices {
        slots.entry((d.address.domain, d.address.bus, d.address.device)).or_default().push(d.address);
    }
    let ports = slots.len().max(1);
    for i in 0..ports {
        let index = i + 1;
        // Eight root ports per guest slot, from slot 2 on.
        let shares = ports - (i / 8) * 8 > 1;
        let multi = if i % 8 == 0 && shares { " multifunction='on'" } else { "" };
        push(w, 2, &format!("<controller type='pci' index='{index}' model='pcie-root-port'>"));
        push(
            w,
            3,
            &format!(
                "<address type='pci' domain='0x0000' bus='0x00' slot='0x{:02x}' function='0x{:x}'{multi}/>",
                2 + i / 8,
                i % 8
            ),
        );
        push(w, 2, "</controller>");
    }
    for (port, (_, fns)) in slots.iter().enumerate() {
        let bus = port + 1;
        for a in fns {
            push(w, 2, "<hostdev mode='subsystem' type='pci' managed='yes'>");
            push(w, 3, "<driver name='vfio'/>");
            push(w, 3, "<source>");
            push(
                w,
                4,
                &format!(
                    "<address domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'/>",
                    a.domain, a.bus, a.device, a.function
                ),
            );
            push(w, 3, "</source>");
            let multi = if a.function == 0 && fns.len() > 1 { " multifunction='on'" } else { "" };
            push(
                w,
                3,
                &format!(
                    "<address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x00' function='0x{:x}'{multi}/>",
                    a.function
                ),
            );
            push(w, 2, "</hostdev>");
        }
    }
    for path in &req.evdev {
        let kbd = path.ends_with("-event-kbd");
        if native_evdev {
            push(w, 2, "<input type='evdev'>");
            if kbd {
                push(w, 3, &format!("<source dev='{}' grab='all' grabToggle='ctrl-ctrl' repeat='on'/>", esc(path)));
            } else {
                push(w, 3, &format!("<source dev='{}'/>", esc(path)));
            }
            push(w, 2, "</input>");
        }
    }
    storage(w, req);
    if let Some(n) = &req.network {
        let (kind, source) = match n {
            Network::Libvirt(name) => ("network", format!("<source network='{}'/>", esc(name))),
            Network::Bridge(br) => ("bridge", format!("<source bridge='{}'/>", esc(br))),
            Network::Direct(dev) => ("direct", format!("<source dev='{}' mode='bridge'/>", esc(dev))),
        };
        push(w, 2, &format!("<interface type='{kind}'>"));
        push(w, 3, &source);
        push(w, 3, "<model type='virtio'/>");
        push(w, 2, "</interface>");
    }
    push(w, 2, "<input type='mouse' bus='ps2'/>");
    push(w, 2, "<input type='keyboard' bus='ps2'/>");
    if req.os == GuestOs::Windows11 {
        push(w, 2, "<tpm model='tpm-crb'>");
        push(w, 3, "<backend type='emulator' version='2.0'/>");
        push(w, 2, "</tpm>");
    }
    push(w, 2, "<!-- no balloon: the memory of a guest with passed devices is pinned anyway -->");
    push(w, 2, "<memballoon model='none'/>");
    push(w, 1, "</devices>");
    if legacy_evdev {
        push(w, 1, "<qemu:commandline>");
        for (i, path) in req.evdev.iter().enumerate() {
            let opts = if path.ends_with("-event-kbd") { ",grab_all=on,repeat=on" } else { "" };
            push(w, 2, "<qemu:arg value='-object'/>");
            push(w, 2, &format!("<qemu:arg value='input-linux,id=evdev{i},evdev={}{opts}'/>", esc(path)));
        }
        push(w, 1, "</qemu:commandline>");
    }
    push(w, 0, "</domain>");
    x
}

/// The system disk and the CD-ROMs; `sd*` names on virtio-scsi or SATA.
fn storage(w: &mut String, req: &DomainRequest) {
    let bus = match req.disk_bus {
        DiskBus::Scsi => "scsi",
        DiskBus::Sata => "sata",
    };
    if req.disk.is_some() && req.disk_bus == DiskBus::Scsi {
        push(w, 2, "<controller type='scsi' index='0' model='virtio-scsi'>");
        push(w, 3, "<driver iothread='1'/>");
        push(w, 2, "</controller>");
    }
    let mut letter = b'a';
    let mut next = || {
        let name = format!("sd{}", letter as char);
        letter = letter.saturating_add(1);
        name
    };
    match &req.disk {
        Some(Disk::Block(dev)) => {
            push(w, 2, "<disk type='block' device='disk'>");
            push(w, 3, "<driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/>");
            push(w, 3, &format!("<source dev='{}'/>", esc(dev)));
            push(w, 3, &format!("<target dev='{}' bus='{bus}'/>", next()));
            push(w, 2, "</disk>");
        }
        Some(Disk::Image(file)) => {
            let format = if file.ends_with(".qcow2") { "qcow2" } else { "raw" };
            push(w, 2, "<disk type='file' device='disk'>");
            push(w, 3, &format!("<driver name='qemu' type='{format}' cache='none' io='native' discard='unmap'/>"));
            push(w, 3, &format!("<source file='{}'/>", esc(file)));
            push(w, 3, &format!("<target dev='{}' bus='{bus}'/>", next()));
            push(w, 2, "</disk>");
        }
        None => {}
    }
    for iso in &req.isos {
        push(w, 2, "<disk type='file' device='cdrom'>");
        push(w, 3, "<driver name='qemu' type='raw'/>");
        push(w, 3, &format!("<source file='{}'/>", esc(iso)));
        push(w, 3, &format!("<target dev='{}' bus='sata'/>", next()));
        push(w, 3, "<readonly/>");
        push(w, 2, "</disk>");
    }
}

fn push(w: &mut String, depth: usize, line: &str) {
    for _ in 0..depth {
        w.push_str("  ");
    }
    w.push_str(line);
    w.push('\n');
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
