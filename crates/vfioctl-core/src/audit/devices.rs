//! Devices: passed PCI devices against the host (the rules of [`crate::plan::devices`]:
//! every function of a slot and every endpoint of an IOMMU group go together, bridges stay
//! with the host), their guest addresses, and the evdev inputs.

use std::collections::{BTreeMap, BTreeSet};

use super::cx::Evdev;
use super::{Area, Cx, Finding, HostFile, Hostdev, Rule, Severity};
use crate::domain::versions::{release, LIBVIRT_EVDEV_INPUT};
use crate::domain::{evdev_input, guest_address, host_address, hostdev, input_linux, QEMU_NS};
use crate::edit::qemu_conf::{device_acl, DEFAULT_ACL};
use crate::pci::{PciAddress, PciDevice};
use crate::xml::{Element, Node};

const AREA: Area = Area::Devices;

pub const NOT_ON_HOST: Rule = Rule {
    id: "device-not-on-host",
    severity: Severity::Error,
    area: AREA,
    title: "a passed PCI address that does not exist on this host",
};
pub const STALE_HOSTDEV: Rule = Rule {
    id: "device-hostdev-host-needs",
    severity: Severity::Error,
    area: AREA,
    title: "a passed address that is a bridge, the boot GPU or a controller holding the host's disks",
};
pub const GROUP_MEMBER_NOT_VFIO: Rule = Rule {
    id: "device-group-member-not-vfio",
    severity: Severity::Error,
    area: AREA,
    title: "an IOMMU group member that is not passed is bound to a host driver",
};
pub const SLOT_INCOMPLETE: Rule = Rule {
    id: "device-slot-incomplete",
    severity: Severity::Warning,
    area: AREA,
    title: "another function of a passed device's slot is not passed",
};
pub const UNMANAGED_NOT_VFIO: Rule = Rule {
    id: "device-unmanaged-not-vfio",
    severity: Severity::Error,
    area: AREA,
    title: "managed='no' but the device is not bound to vfio-pci",
};
pub const FUNCTIONS_SPLIT: Rule = Rule {
    id: "device-functions-split",
    severity: Severity::Warning,
    area: AREA,
    title: "functions of one host device on different guest slots",
};
pub const MULTIFUNCTION_MISSING: Rule = Rule {
    id: "device-multifunction-missing",
    severity: Severity::Warning,
    area: AREA,
    title: "function 0 of a multi-function guest slot without multifunction='on'",
};
pub const GPU_LEGACY_BOOT: Rule = Rule {
    id: "device-gpu-legacy-boot",
    severity: Severity::Warning,
    area: AREA,
    title: "a passed GPU in a guest that boots SeaBIOS (no UEFI firmware)",
};
pub const DISK_HOST_IN_USE: Rule = Rule {
    id: "device-disk-host-in-use",
    severity: Severity::Error,
    area: AREA,
    title: "a disk the host uses (mounted, swap, under LVM/RAID/LUKS) given to the guest",
};
pub const EVDEV_MISSING: Rule = Rule {
    id: "evdev-missing",
    severity: Severity::Error,
    area: AREA,
    title: "an evdev device that does not exist in /dev/input/by-id",
};
pub const EVDEV_NOT_IN_ACL: Rule = Rule {
    id: "evdev-not-in-acl",
    severity: Severity::Error,
    area: AREA,
    title: "a qemu:commandline evdev device missing from qemu.conf's cgroup_device_acl",
};
pub const EVDEV_NATIVE_UNSUPPORTED: Rule = Rule {
    id: "evdev-native-unsupported",
    severity: Severity::Error,
    area: AREA,
    title: "<input type='evdev'> on libvirt older than 7.4",
};

/// Bound to vfio-pci (or one of its vendor variants, `mlx5_vfio_pci`, …).
fn on_vfio(d: &PciDevice) -> bool {
    d.driver.as_deref().is_some_and(|n| n.contains("vfio"))
}

/// The kernel lets QEMU open a group when every device is on a vfio driver, on pci-stub,
/// or on none.
fn blocks_group(d: &PciDevice) -> bool {
    d.driver.as_deref().is_some_and(|n| !n.contains("vfio") && n != "pci-stub")
}

/// `on igb`, `without a driver`.
fn bound(d: &PciDevice) -> String {
    d.driver.as_deref().map_or("without a driver".to_string(), |n| format!("on {n}"))
}

fn list(a: &[PciAddress]) -> String {
    a.iter().map(PciAddress::short).collect::<Vec<_>>().join(", ")
}

/// The `<hostdev>` that passes `a`, as a snippet.
fn hostdev_xml(a: &PciAddress) -> String {
    hostdev().with_child(Element::new("source").with_child(host_address(a))).pretty()
}

/// Why a passed device cannot be the guest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// No such device on the host; what its slot holds instead.
    NotOnHost(String),
    /// A bridge, the boot GPU, or the controller of the host's disks.
    HostNeeds(String),
}

/// The domain's hostdevs that cannot be the guest's: gone from the host, or what the host
/// needs (a bridge, the boot GPU, its disks' controller). The audit's errors and the fix
/// that removes them, from one detector. Empty when nothing is known of the host's devices.
pub fn stale_hostdevs(cx: &Cx<'_>) -> Vec<(PciAddress, Stale)> {
    let devices = cx.host.devices;
    if devices.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for h in &cx.hostdevs {
        let Some(d) = devices.get(&h.source) else {
            let same_slot: Vec<PciAddress> = devices.keys().filter(|a| a.same_slot(&h.source)).copied().collect();
            let hint = if same_slot.is_empty() {
                "no device sits in that slot".to_string()
            } else {
                format!("that slot has {}", list(&same_slot))
            };
            out.push((h.source, Stale::NotOnHost(hint)));
            continue;
        };
        let what = if d.is_bridge() || d.class.base() == 0x06 {
            Some(format!("a bridge (class {}): bridges stay with the host; vfio-pci does not take them", d.class))
        } else if d.boot_vga == Some(true) {
            Some("the boot GPU, the host's console".to_string())
        } else {
            cx.host
                .host_controllers
                .and_then(|c| c.get(&h.source))
                .map(|u| format!("the controller of the host's disks: {u}"))
        };
        if let Some(what) = what {
            out.push((h.source, Stale::HostNeeds(what)));
        }
    }
    out
}

fn hostdevs(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let devices = cx.host.devices;
    // Nothing known about the host's PCI devices: nothing to compare with.
    if cx.hostdevs.is_empty() || devices.is_empty() {
        return;
    }
    let passed: BTreeSet<PciAddress> = cx.hostdevs.iter().map(|h| h.source).collect();
    let stale = stale_hostdevs(cx);
    let present: Vec<&Hostdev<'_>> = cx.hostdevs.iter().filter(|h| devices.contains_key(&h.source)).collect();
    for (h, why) in cx.hostdevs.iter().filter_map(|h| stale.iter().find(|s| s.0 == h.source).map(|s| (h, &s.1))) {
        let at = h.el.find("source/address").or(Some(h.el));
        out.push(match why {
            Stale::NotOnHost(hint) => Finding::at(&NOT_ON_HOST, "devices/hostdev/source/address", at)
                .message(format!("{} does not exist on this host ({hint})", h.source))
                .why("libvirt cannot find the device: the guest does not start. Addresses change when cards move to another slot, after a BIOS update or when another card is added")
                .fix("vfioctl list shows the host's devices and their addresses: correct this <source><address>, or remove the <hostdev> (vfioctl audit --fix removes it)"),
            // What the host needs, passed (often an address that moved: another card now sits there).
            Stale::HostNeeds(what) => Finding::at(&STALE_HOSTDEV, "devices/hostdev/source/address", at)
                .message(format!("{} is {what}", h.source.short()))
                .why("the guest would take what the host runs on; most often the domain is older than the host's layout (cards moved, a BIOS update renumbered the buses)")
                .fix("remove this <hostdev> (vfioctl audit --fix does), or correct its <source><address> to the card's (vfioctl list shows the host's devices)"),
        });
    }

    // Group members, once per group: not passed and on a host driver.
    let mut blocked: BTreeSet<PciAddress> = BTreeSet::new();
    let mut seen_groups = BTreeSet::new();
    for h in &present {
        let Some(gid) = devices[&h.source].iommu_group else { continue };
        if !seen_groups.insert(gid) {
            continue;
        }
        let Some(group) = cx.host.groups.iter().find(|g| g.id == gid) else { continue };
        let offenders: Vec<&PciDevice> = group
            .devices
            .iter()
            .filter(|a| !passed.contains(a))
            .filter_map(|a| devices.get(a))
            .filter(|d| !d.is_bridge() && blocks_group(d))
            .collect();
        if offenders.is_empty() {
            continue;
        }
        blocked.extend(offenders.iter().map(|d| d.address));
        let ours: Vec<PciAddress> = group.devices.iter().filter(|a| passed.contains(a)).copied().collect();
        let names: Vec<String> =
            offenders.iter().map(|d| format!("{} (class {}, {})", d.address.short(), d.class, bound(d))).collect();
        let addrs: Vec<PciAddress> = offenders.iter().map(|d| d.address).collect();
        out.push(
            Finding::at(&GROUP_MEMBER_NOT_VFIO, "devices/hostdev", Some(h.el))
                .message(format!(
                    "IOMMU group {gid} of {} also holds {}, not passed and bound to a host driver",
                    list(&ours),
                    names.join(", ")
                ))
                .why(format!(
                    "the IOMMU isolates whole groups: QEMU can open group {gid} only when every device in it is on vfio-pci (or has no driver), so the guest does not start (\"group {gid} is not viable\"). The host loses {} either way",
                    list(&addrs)
                ))
                .fix(format!(
                    "pass {} too (vfioctl plan shows what the group takes):\n{}\n{}",
                    list(&addrs),
                    addrs.iter().map(hostdev_xml).collect::<Vec<_>>().join("\n"),
                    Node::comment(&format!(
                        "or bind it to vfio-pci on the host: echo vfio-pci > /sys/bus/pci/devices/{}/driver_override",
                        addrs[0]
                    ))
                    .to_xml()
                )),
        );
    }

    // Other functions of the passed devices' slots, once per slot.
    let mut seen_slots = BTreeSet::new();
    for h in &present {
        let s = h.source;
        if !seen_slots.insert((s.domain, s.bus, s.device)) {
            continue;
        }
        let missing: Vec<&PciDevice> = devices
            .values()
            .filter(|d| d.address.same_slot(&s) && !passed.contains(&d.address) && !d.is_bridge())
            .filter(|d| !blocked.contains(&d.address))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let addrs: Vec<PciAddress> = missing.iter().map(|d| d.address).collect();
        let names: Vec<String> = missing.iter().map(|d| format!("{} (class {})", d.address.short(), d.class)).collect();
        let ours: Vec<PciAddress> = passed.iter().filter(|a| a.same_slot(&s)).copied().collect();
        out.push(
            Finding::at(&SLOT_INCOMPLETE, "devices/hostdev", Some(h.el))
                .message(format!("{} is passed without {}, another function of its slot", list(&ours), names.join(", ")))
                .why("the functions of a card belong together: the guest driver expects them (a GPU's HDMI audio, USB-C controller), and a function left on the host may lose its device when the guest resets the card")
                .fix(addrs.iter().map(hostdev_xml).collect::<Vec<_>>().join("\n")),
        );
    }

    for h in present.iter().filter(|h| !h.managed) {
        let d = &devices[&h.source];
        if on_vfio(d) {
            continue;
        }
        out.push(
            Finding::at(&UNMANAGED_NOT_VFIO, "devices/hostdev", Some(h.el))
                .message(format!("{} is managed='no' but {}, not on vfio-pci", h.source.short(), bound(d)))
                .why("with managed='no' libvirt leaves the driver alone and expects vfio-pci there already: the guest does not start")
                .fix(format!(
                    "{}\n{}",
                    hostdev().start_tag(),
                    Node::comment(&format!("or bind it to vfio-pci at boot: vfioctl apply {}", h.source.short())).to_xml()
                )),
        );
    }

    // Functions of one host slot on different guest slots.
    let mut by_slot: BTreeMap<(u32, u8, u8), Vec<&Hostdev<'_>>> = BTreeMap::new();
    for h in &present {
        by_slot.entry((h.source.domain, h.source.bus, h.source.device)).or_default().push(h);
    }
    for fns in by_slot.values().filter(|f| f.len() > 1) {
        let guest: BTreeSet<Option<(u32, u32, u32)>> =
            fns.iter().map(|h| h.guest.map(|(d, b, s, _)| (d, b, s))).collect();
        if guest.len() == 1 && !guest.contains(&None) {
            continue;
        }
        let places: Vec<String> = fns
            .iter()
            .map(|h| match h.guest {
                Some((_, b, s, f)) => format!("{} at {b:02x}:{s:02x}.{f:x}", h.source.short()),
                None => format!("{} on a slot of its own (no address)", h.source.short()),
            })
            .collect();
        let first = fns.iter().find(|h| h.source.function == 0).unwrap_or(&fns[0]);
        let (dom, bus) = first.guest.map_or((0, 1), |(d, b, _, _)| (d, b));
        let slot = first.guest.map_or(0, |(_, _, s, _)| s);
        let fix: Vec<String> = fns
            .iter()
            .map(|h| {
                let f = h.source.function;
                let mut address = guest_address(dom, bus, slot, f.into());
                if f == 0 {
                    address = address.with_attr("multifunction", "on");
                }
                format!("{} {}", Node::comment(&h.source.short()).to_xml(), address.to_xml())
            })
            .collect();
        out.push(
            Finding::at(&FUNCTIONS_SPLIT, "devices/hostdev/address", first.el.child("address").or(Some(first.el)))
                .message(format!("the functions of one host device sit on different guest slots: {}", places.join(", ")))
                .why("drivers expect a card's functions together in one slot, as on the host: the GPU's HDMI audio on another slot may not work, and AMD and NVIDIA drivers can fail to initialise")
                .fix(fix.join("\n")),
        );
    }
}

/// A guest PCI address's function, its `<address>` and the device element holding it.
type Function<'a> = (u32, &'a Element, &'a Element);

/// Guest slots holding several functions whose function 0 lacks `multifunction='on'`.
fn multifunction(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(devs) = cx.root.child("devices") else { return };
    let mut slots: BTreeMap<(u32, u32, u32), Vec<Function<'_>>> = BTreeMap::new();
    for dev in devs.elements() {
        let Some(a) = dev.child("address").filter(|a| a.attr("type") == Some("pci")) else { continue };
        let n = |k: &str| a.attr(k).and_then(crate::units::number);
        let (Some(bus), Some(slot)) = (n("bus"), n("slot")) else { continue };
        slots.entry((n("domain").unwrap_or(0), bus, slot)).or_default().push((n("function").unwrap_or(0), a, dev));
    }
    for ((dom, bus, slot), fns) in slots.iter().filter(|(_, f)| f.len() > 1) {
        let Some((_, a, dev)) = fns.iter().find(|(f, _, _)| *f == 0) else { continue };
        if a.attr("multifunction") == Some("on") {
            continue;
        }
        let mut others: Vec<String> =
            fns.iter().filter(|(f, _, _)| *f != 0).map(|(f, _, e)| format!("{f} ({})", e.name)).collect();
        others.sort();
        out.push(
            Finding::at(&MULTIFUNCTION_MISSING, &format!("devices/{}/address", dev.name), Some(a))
                .message(format!(
                    "guest slot {bus:02x}:{slot:02x} holds functions 0 ({}) and {}, but function 0 lacks multifunction='on'",
                    dev.name,
                    others.join(", ")
                ))
                .why("without the multifunction bit on function 0 the guest sees a single-function device and never looks for the other functions (QEMU refuses the slot outright): the GPU's HDMI audio, for one, goes missing")
                .fix(guest_address(*dom, *bus, *slot, 0).with_attr("multifunction", "on").to_xml()),
        );
    }
}

/// The evdev inputs `paths` as QEMU input-linux objects (what the domain renderer writes
/// for libvirt before 7.4), with the namespace the domain needs, then what qemu.conf
/// needs. That last line is prose, not an XML comment: it names `--evdev`, and `--` may
/// not stand inside a comment (libvirt would refuse the pasted domain).
fn evdev_fix_legacy(paths: &[&Evdev<'_>]) -> String {
    let domain = Element::new("domain").with_attr("type", "kvm").with_attr("xmlns:qemu", QEMU_NS);
    format!(
        "{}\n{}\nand list the paths in /etc/libvirt/qemu.conf's cgroup_device_acl (vfioctl apply --evdev does)",
        domain.start_tag(),
        input_linux(paths.iter().map(|e| e.path.as_str())).pretty(),
    )
}

/// Block devices of the domain (`<disk type='block'>`) that the host uses.
fn host_disks(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(used) = cx.host.host_disks else { return };
    let Some(devices) = cx.root.find("devices") else { return };
    for disk in devices.children_named("disk") {
        let Some(source) = disk.find("source") else { continue };
        let Some(dev) = source.attr("dev") else { continue };
        let Some(why) = used.get(dev) else { continue };
        out.push(
            Finding::at(&DISK_HOST_IN_USE, "devices/disk/source", Some(source))
                .message(format!("{dev}: {why}"))
                .why("the guest writes to the disk under the host: an installer formats it, and the host's filesystem is lost")
                .fix("give the guest a disk the host does not use (its /dev/disk/by-id path), or an image file (<disk type='file'> with <source file='/var/lib/libvirt/images/NAME.qcow2'/>)"),
        );
    }
}

fn evdev(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if let Some(names) = cx.host.input_by_id {
        for e in &cx.evdev {
            let Some(name) = e.path.strip_prefix("/dev/input/by-id/") else { continue };
            if names.contains(name) {
                continue;
            }
            let kind = ["-event-kbd", "-event-mouse"].into_iter().find(|s| name.ends_with(s));
            let similar: Vec<&String> = names.iter().filter(|n| kind.is_some_and(|k| n.ends_with(k))).collect();
            let fix = if similar.is_empty() {
                "ls -l /dev/input/by-id/ (plug the device in; -event-kbd and -event-mouse are the ones to pass)"
                    .to_string()
            } else {
                let v: Vec<String> = similar.iter().map(|n| format!("/dev/input/by-id/{n}")).collect();
                format!("this host has: {}", v.join(", "))
            };
            let path = if e.native { "devices/input/source" } else { "qemu:commandline/qemu:arg" };
            out.push(
                Finding::at(&EVDEV_MISSING, path, Some(e.el))
                    .message(format!("{} does not exist on this host", e.path))
                    .why("the device cannot be opened: the guest does not start. by-id names change with the device, its firmware or the USB port (-if01- interfaces)")
                    .fix(fix),
            );
        }
    }
    // qemu:commandline input-linux: libvirt does not know the device, the cgroup denies it.
    if let Some(conf) = cx.host.qemu_conf {
        let listed = device_acl(conf);
        let custom = listed.is_some();
        let acl = listed.unwrap_or_else(|| DEFAULT_ACL.iter().map(|s| s.to_string()).collect());
        let mut missing: Vec<&Evdev<'_>> = cx.evdev.iter().filter(|e| !e.native && !acl.contains(&e.path)).collect();
        missing.dedup_by(|a, b| a.path == b.path);
        let paths: Vec<String> = missing.iter().map(|e| format!("    \"{}\"", e.path)).collect();
        // Without a list of its own, libvirt's defaults and every missing device in one
        // new list (a second list would be ignored).
        let list = if custom {
            format!("add to cgroup_device_acl in /etc/libvirt/qemu.conf:\n{}", paths.join(",\n"))
        } else {
            let defaults: Vec<String> = DEFAULT_ACL.iter().map(|p| format!("\"{p}\"")).collect();
            format!(
                "/etc/libvirt/qemu.conf (libvirt's defaults plus the devices):\ncgroup_device_acl = [\n    {},\n{}\n]",
                defaults.join(", "),
                paths.join(",\n")
            )
        };
        let native = if cx.host.libvirt.is_some_and(|v| v >= LIBVIRT_EVDEV_INPUT) {
            let or = format!(
                "or, on this libvirt ({} or later): {}, which needs no ACL",
                release(LIBVIRT_EVDEV_INPUT),
                evdev_input("…").to_xml()
            );
            format!("\n{}", Node::comment(&or).to_xml())
        } else {
            String::new()
        };
        for e in &missing {
            out.push(
                Finding::at(&EVDEV_NOT_IN_ACL, "qemu:commandline/qemu:arg", Some(e.el))
                    .message(format!(
                        "{} is handed to QEMU by qemu:commandline but is not in qemu.conf's cgroup_device_acl{}",
                        e.path,
                        if custom { "" } else { " (libvirt's default list)" }
                    ))
                    .why("libvirt does not know about devices on the QEMU command line: the device cgroup denies QEMU the file and the guest does not start (\"Permission denied\" opening the evdev)")
                    .fix(format!("{list}\nthen: systemctl restart libvirtd   (vfioctl apply … --evdev makes this edit){native}")),
            );
        }
    }
    // qemu:commandline evdev where libvirt would do it natively (no ACL, no namespace, and
    // libvirt knows the device): a note, with the native elements.
    if cx.host.libvirt.is_some_and(|v| v >= LIBVIRT_EVDEV_INPUT) {
        let mut legacy: Vec<&Evdev<'_>> = cx.evdev.iter().filter(|e| !e.native).collect();
        legacy.dedup_by(|a, b| a.path == b.path);
        if let Some(first) = legacy.first() {
            let paths: Vec<&str> = legacy.iter().map(|e| e.path.as_str()).collect();
            let elements: Vec<String> = paths.iter().map(|p| evdev_input(p).to_xml()).collect();
            out.push(
                Finding::at(&EVDEV_COMMANDLINE, "qemu:commandline/qemu:arg", Some(first.el))
                    .message(format!(
                        "{} handed over by qemu:commandline input-linux; libvirt {} and later do it with <input type='evdev'>",
                        paths.join(", "),
                        release(LIBVIRT_EVDEV_INPUT)
                    ))
                    .why("libvirt then knows the devices: it gives QEMU access itself (no cgroup_device_acl edit in qemu.conf), labels them for SELinux/AppArmor, checks them when the domain is defined, and the domain needs no qemu namespace for them")
                    .fix(format!("in <devices>:\n{}\nthen remove the input-linux <qemu:arg> lines (and -object before each)", elements.join("\n"))),
            );
        }
    }
    if let Some(v) = cx.host.libvirt.filter(|v| *v < LIBVIRT_EVDEV_INPUT) {
        let native: Vec<&Evdev<'_>> = cx.evdev.iter().filter(|e| e.native).collect();
        for e in &native {
            out.push(
                Finding::at(&EVDEV_NATIVE_UNSUPPORTED, "devices/input", Some(e.el))
                    .message(format!(
                        "<input type='evdev'> for {} needs libvirt {}; this host has {}",
                        e.path,
                        release(LIBVIRT_EVDEV_INPUT),
                        release(v)
                    ))
                    .why(format!(
                        "libvirt before {} does not know the evdev input type: it refuses the domain",
                        release(LIBVIRT_EVDEV_INPUT)
                    ))
                    .fix(evdev_fix_legacy(&native)),
            );
        }
    }
}

pub const ROM_MISSING: Rule = Rule {
    id: "device-rom-missing",
    severity: Severity::Error,
    area: AREA,
    title: "a <rom file> that does not exist or cannot be read",
};

pub const ROM_SUSPECT: Rule = Rule {
    id: "device-rom-suspect",
    severity: Severity::Warning,
    area: AREA,
    title: "a <rom file> that is not a PCI option ROM, or sits under /home",
};

/// The ROM files of passed devices: QEMU reads them when the guest starts, as its own user
/// and under the host's SELinux or AppArmor policy.
fn rom_files(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for h in &cx.hostdevs {
        let Some(rom) = h.el.child("rom") else { continue };
        let Some(file) = rom.attr("file").filter(|f| !f.is_empty()) else { continue };
        let state = cx.host.files.and_then(|f| f.get(file));
        let (rule, message, why) = match state {
            Some(HostFile::Missing) => (
                &ROM_MISSING,
                format!("the ROM of {} is {file}, which does not exist", h.source.short()),
                "QEMU cannot open the ROM: the guest does not start".to_string(),
            ),
            Some(HostFile::Unreadable(e)) => (
                &ROM_MISSING,
                format!("the ROM of {} is {file}, which cannot be read ({e})", h.source.short()),
                "QEMU cannot read the ROM: the guest does not start".to_string(),
            ),
            Some(HostFile::Present { rom: false }) => (
                &ROM_SUSPECT,
                format!("{file}, the ROM of {}, does not start like a PCI option ROM (55 AA)", h.source.short()),
                "a ROM dumped with a tool's header (GPU-Z, nvflash) or truncated does not run: the card shows nothing, or the guest driver fails (code 43)".to_string(),
            ),
            _ if file.starts_with("/home/") => (
                &ROM_SUSPECT,
                format!("the ROM of {} is under /home: {file}", h.source.short()),
                "QEMU runs as its own user, confined by SELinux (svirt) or AppArmor (libvirt's profile), which do not let it read home directories: the guest fails to start with \"Permission denied\"".to_string(),
            ),
            _ => continue,
        };
        let home = file.starts_with("/home/");
        out.push(
            Finding::at(rule, "devices/hostdev/rom", Some(rom))
                .message(if home && !message.contains("is under /home") { format!("{message}; it is under /home too") } else { message })
                .why(why)
                .fix("put the ROM where QEMU may read it, e.g. /usr/share/vgabios/NAME.rom (root-owned, mode 0644), and point <rom file='…'/> there; a ROM dumped with a header needs it cut off (rom-parser shows where the ROM starts)"),
        );
    }
}

pub const GPU_I440FX: Rule = Rule {
    id: "device-gpu-i440fx",
    severity: Severity::Warning,
    area: AREA,
    title: "a passed GPU in an i440fx machine (no PCI Express)",
};

pub const IVSHMEM_TOO_SMALL: Rule = Rule {
    id: "device-ivshmem-too-small",
    severity: Severity::Warning,
    area: AREA,
    title: "a Looking Glass IVSHMEM region too small for a 1080p frame",
};

pub const EVDEV_COMMANDLINE: Rule = Rule {
    id: "evdev-commandline-where-native",
    severity: Severity::Info,
    area: AREA,
    title: "evdev by qemu:commandline on a libvirt that has <input type='evdev'>",
};

/// A passed GPU on i440fx: the card sits on conventional PCI, without a PCIe link.
fn i440fx_gpu(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(t) = cx.root.find("os/type") else { return };
    let Some(machine) = t.attr("machine") else { return };
    let i440fx =
        machine.contains("i440fx") || machine == "pc" || (machine.starts_with("pc-") && !machine.contains("q35"));
    if !i440fx {
        return;
    }
    let Some(gpu) = cx.hostdevs.iter().find(|h| cx.host.devices.get(&h.source).is_some_and(|d| d.class.is_display()))
    else {
        return;
    };
    out.push(
        Finding::at(&GPU_I440FX, "os/type", Some(t))
            .message(format!("{} is a GPU, and the machine is {machine} (i440fx: PCI, not PCI Express)", gpu.source.short()))
            .why("on i440fx the card sits on a conventional PCI bus: the guest driver sees no PCIe link (NVIDIA's driver runs it at a reduced link, AMD's may fail to start), no root port to reset it through, no Resizable BAR; the guides use q35")
            .fix("<type arch='x86_64' machine='q35'>hvm</type>, the devices on pcie-root-ports (virt-manager does this when the machine changes); Windows sees a new board and finds its devices again"),
    );
}

/// Looking Glass needs two frames of 4 bytes per pixel and about 10 MiB besides, in a
/// power-of-two region: 32 MiB for 1920x1080, 64 MiB for 2560x1440, 128 MiB for 3840x2160.
fn ivshmem(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    const MIB: u64 = 1 << 20;
    let need = |width: u32, height: u32| crate::looking_glass::Resolution { width, height }.region_bytes();
    let looking_glass = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("looking-glass") || s.contains("looking_glass") || s.contains("lookingglass")
    };
    let mut regions: Vec<(u64, &Element)> = Vec::new();
    if let Some(devs) = cx.root.find("devices") {
        for shm in devs.children_named("shmem").filter(|s| s.attr("name").is_some_and(looking_glass)) {
            let Some(size) = shm.child("size") else { continue };
            let Some(n) = size.text().parse::<u64>().ok() else { continue };
            if let Some(kib) = crate::units::kib(n, Some(size.attr("unit").unwrap_or("b"))) {
                regions.push((kib * 1024, shm));
            }
        }
    }
    if let Some(cl) = cx.root.child("qemu:commandline") {
        for a in cl.children_named("qemu:arg") {
            let Some(v) = a.attr("value") else { continue };
            if !(v.starts_with("memory-backend-file") && looking_glass(v)) {
                continue;
            }
            if let Some(bytes) = v.split(',').find_map(|o| o.strip_prefix("size=")).and_then(qemu_size) {
                regions.push((bytes, a));
            }
        }
    }
    for (bytes, el) in regions {
        if bytes >= need(1920, 1080) {
            continue;
        }
        out.push(
            Finding::at(&IVSHMEM_TOO_SMALL, if el.name == "shmem" { "devices/shmem/size" } else { "qemu:commandline/qemu:arg" }, Some(el))
                .message(format!("the Looking Glass region is {} MiB: a 1920x1080 frame needs {} MiB", bytes / MIB, need(1920, 1080) / MIB))
                .why(format!(
                    "Looking Glass keeps two frames of 4 bytes per pixel and about 10 MiB of its own in the region, rounded up to a power of two: {} MiB for 1920x1080, {} MiB for 2560x1440, {} MiB for 3840x2160; too small and the host application refuses the region or shows nothing",
                    need(1920, 1080) / MIB,
                    need(2560, 1440) / MIB,
                    need(3840, 2160) / MIB
                ))
                .fix(format!("<size unit='M'>{}</size> (or the size for the guest's resolution, above); the same in /etc/tmpfiles.d or the kvmfr module's static_size_mb", need(1920, 1080) / MIB)),
        );
    }
}

/// A QEMU size (`32M`, `1G`, `33554432`) in bytes.
fn qemu_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// A passed GPU with legacy (SeaBIOS) boot: the card's legacy VGA ROM has to run and take
/// the VGA ranges, which many cards (and the host's own VGA arbitration) do not allow.
fn legacy_boot(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let os = cx.root.child("os");
    if crate::domain::boots_uefi(cx.root) {
        return;
    }
    let Some(gpu) = cx.hostdevs.iter().find(|h| cx.host.devices.get(&h.source).is_some_and(|d| d.class.is_display()))
    else {
        return;
    };
    out.push(
        Finding::at(&GPU_LEGACY_BOOT, "os", os.or(Some(gpu.el)))
            .message(format!("{} is a GPU, and the guest boots SeaBIOS (no UEFI loader in <os>)", gpu.source.short()))
            .why("with legacy boot the card's VGA option ROM must run and claim the legacy VGA ranges: many cards show nothing, the host's VGA arbitration gets in the way, and Windows 11 will not install; the guides boot OVMF")
            .fix("<os firmware='efi'> (libvirt picks OVMF), or a <loader readonly='yes' type='pflash'> with the host's OVMF_CODE and an <nvram>; a guest installed on SeaBIOS needs its disk converted to GPT (mbr2gpt in Windows) first"),
    );
}

pub(super) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    hostdevs(cx, out);
    legacy_boot(cx, out);
    i440fx_gpu(cx, out);
    ivshmem(cx, out);
    rom_files(cx, out);
    host_disks(cx, out);
    multifunction(cx, out);
    evdev(cx, out);
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::audit::tests::*;
    use crate::audit::{audit, AuditHost};
    use crate::iommu::IommuGroup;
    use crate::pci::{ClassCode, VendorDevice};
    use crate::xml::{parse, Document, Node};

    fn hostdev(domain: &mut Document, source: &str, guest: Option<(u32, u32, u32)>) {
        let a = addr(source);
        let mut h =
            Element::new("hostdev").with_attr("mode", "subsystem").with_attr("type", "pci").with_attr("managed", "yes");
        let mut src = Element::new("source");
        src.children.push(Node::Element(Box::new(
            Element::new("address")
                .with_attr("domain", &format!("0x{:04x}", a.domain))
                .with_attr("bus", &format!("0x{:02x}", a.bus))
                .with_attr("slot", &format!("0x{:02x}", a.device))
                .with_attr("function", &format!("0x{:x}", a.function)),
        )));
        h.children.push(Node::Element(Box::new(src)));
        if let Some((b, s, f)) = guest {
            h.children.push(Node::Element(Box::new(
                Element::new("address")
                    .with_attr("type", "pci")
                    .with_attr("domain", "0x0000")
                    .with_attr("bus", &format!("0x{b:02x}"))
                    .with_attr("slot", &format!("0x{s:02x}"))
                    .with_attr("function", &format!("0x{f:x}")),
            )));
        }
        if let Some(devs) = domain.root.child_mut("devices") {
            devs.insert(None, vec![Node::Element(Box::new(h))], 2, &crate::xml::Style::libvirt());
        }
    }

    fn hostdev_mut<'a>(d: &'a mut Document, function: &str) -> &'a mut Element {
        d.root
            .child_mut("devices")
            .unwrap()
            .elements_mut()
            .find(|e| {
                e.name == "hostdev"
                    && e.find("source/address").and_then(|a| a.attr("function")) == Some(function)
                    && e.find("source/address").and_then(|a| a.attr("bus")) == Some("0x0d")
            })
            .unwrap()
    }

    #[test]
    fn address_not_on_host() {
        let b = Bench::new();
        let xml = broken(&b, |d| hostdev(d, "0000:0d:00.2", Some((2, 0, 0))));
        let f = b.audit(&xml);
        exactly(&f, &["device-not-on-host"]);
        assert!(f[0].message.contains("0000:0d:00.2") && f[0].message.contains("0d:00.0, 0d:00.1"), "{}", f[0].message);
        assert_eq!(f[0].element, "devices/hostdev/source/address");
        assert!(f[0].line.is_some());
    }

    /// A `<rom file>` QEMU cannot use: missing, unreadable, not a ROM, under /home.
    #[test]
    fn rom_files_qemu_cannot_use() {
        let with_rom = |b: &Bench, file: &str| {
            broken(b, |d| {
                let h = d.root.find_mut("devices").unwrap().elements_mut().find(|e| e.name == "hostdev").unwrap();
                h.insert(
                    None,
                    vec![Node::Element(Box::new(Element::new("rom").with_attr("file", file)))],
                    3,
                    &crate::xml::Style::libvirt(),
                );
            })
        };
        let mut b = Bench::new();
        b.files.insert("/usr/share/vgabios/gone.rom".into(), HostFile::Missing);
        b.files.insert("/usr/share/vgabios/locked.rom".into(), HostFile::Unreadable("Permission denied".into()));
        b.files.insert("/usr/share/vgabios/gpuz.rom".into(), HostFile::Present { rom: false });
        b.files.insert("/usr/share/vgabios/good.rom".into(), HostFile::Present { rom: true });
        b.files.insert("/home/me/vbios.rom".into(), HostFile::Present { rom: true });
        b.files.insert("/home/me/gpuz.rom".into(), HostFile::Present { rom: false });
        for (file, want, says) in [
            ("/usr/share/vgabios/gone.rom", Some("device-rom-missing"), "does not exist"),
            ("/usr/share/vgabios/locked.rom", Some("device-rom-missing"), "Permission denied"),
            ("/usr/share/vgabios/gpuz.rom", Some("device-rom-suspect"), "55 AA"),
            ("/home/me/vbios.rom", Some("device-rom-suspect"), "under /home"),
            ("/home/me/gpuz.rom", Some("device-rom-suspect"), "under /home"),
            ("/usr/share/vgabios/good.rom", None, ""),
            // Not looked at (a path audit was not told about): nothing to say.
            ("/usr/share/vgabios/other.rom", None, ""),
        ] {
            let f = b.audit(&with_rom(&b, file));
            exactly(&f, want.as_slice());
            if let Some(x) = f.first() {
                assert!(x.message.contains(says), "{file}: {}", x.message);
                assert_eq!(x.element, "devices/hostdev/rom");
            }
        }
        let doc = parse(&with_rom(&b, "/x.rom")).unwrap();
        assert_eq!(crate::audit::named_files(&doc), vec!["/x.rom".to_string()]);
    }

    /// A passed GPU on i440fx is a warning; q35 is fine; no GPU, nothing to say.
    #[test]
    fn a_gpu_on_i440fx() {
        let b = Bench::new();
        let machine = |m: &'static str| {
            broken(&b, move |d| {
                d.root.find_mut("os/type").unwrap().set_attr("machine", m);
            })
        };
        for m in ["pc-i440fx-2.9", "pc", "pc-1.2"] {
            let f = b.audit(&machine(m));
            exactly(&f, &["device-gpu-i440fx"]);
            assert!(f[0].message.contains("0d:00.0 is a GPU"), "{}", f[0].message);
        }
        exactly(&b.audit(&machine("pc-q35-8.2")), &[]);
    }

    /// Looking Glass regions: 32 MiB serves 1080p; 16 MiB (in any unit, libvirt's or
    /// QEMU's) does not; other shmem is not Looking Glass.
    #[test]
    fn a_looking_glass_region_too_small() {
        let b = Bench::new();
        let shmem = |name: &'static str, size: &'static str, unit: Option<&'static str>| {
            broken(&b, move |d| {
                let mut sz = Element::new("size").with_text(size);
                if let Some(u) = unit {
                    sz.set_attr("unit", u);
                }
                let shm = Element::new("shmem")
                    .with_attr("name", name)
                    .with_child(Element::new("model").with_attr("type", "ivshmem-plain"))
                    .with_child(sz);
                d.root.find_mut("devices").unwrap().insert(
                    None,
                    vec![Node::Element(Box::new(shm))],
                    2,
                    &crate::xml::Style::libvirt(),
                );
            })
        };
        exactly(&b.audit(&shmem("looking-glass", "32", Some("M"))), &[]);
        let f = b.audit(&shmem("looking-glass", "16", Some("M")));
        exactly(&f, &["device-ivshmem-too-small"]);
        assert!(f[0].message.contains("16 MiB: a 1920x1080 frame needs 32 MiB"), "{}", f[0].message);
        assert!(f[0].why.contains("128 MiB for 3840x2160"));
        // No unit: bytes, as libvirt reads it.
        exactly(&b.audit(&shmem("looking-glass", "16777216", None)), &["device-ivshmem-too-small"]);
        exactly(&b.audit(&shmem("other", "4", Some("M"))), &[]);
        let cmdline = broken(&b, |d| {
            if d.root.child("qemu:commandline").is_none() {
                d.root.set_attr("xmlns:qemu", QEMU_NS);
                d.root.insert(
                    None,
                    vec![Node::Element(Box::new(Element::new("qemu:commandline")))],
                    1,
                    &crate::xml::Style::libvirt(),
                );
            }
            let cl = d.root.child_mut("qemu:commandline").unwrap();
            for v in ["-object", "memory-backend-file,id=ivshmem,share=on,mem-path=/dev/shm/looking-glass,size=16M"] {
                cl.insert(
                    None,
                    vec![Node::Element(Box::new(Element::new("qemu:arg").with_attr("value", v)))],
                    2,
                    &crate::xml::Style::libvirt(),
                );
            }
        });
        exactly(&b.audit(&cmdline), &["device-ivshmem-too-small"]);
        assert_eq!(
            (qemu_size("32M"), qemu_size("1G"), qemu_size("4096"), qemu_size("x")),
            (Some(32 << 20), Some(1 << 30), Some(4096), None)
        );
    }

    /// A passed GPU in a SeaBIOS guest; OVMF (a pflash loader or firmware='efi') is fine.
    #[test]
    fn a_gpu_in_a_seabios_guest() {
        let b = Bench::new();
        let xml = broken(&b, |d| {
            d.root.find_mut("os").unwrap().remove_elements(|e| e.name == "loader" || e.name == "nvram");
        });
        let f = b.audit(&xml);
        exactly(&f, &["device-gpu-legacy-boot"]);
        assert!(f[0].message.contains("0d:00.0 is a GPU"), "{}", f[0].message);
        let efi = broken(&b, |d| {
            let os = d.root.find_mut("os").unwrap();
            os.remove_elements(|e| e.name == "loader" || e.name == "nvram");
            os.set_attr("firmware", "efi");
        });
        let f = b.audit(&efi);
        assert!(f.iter().all(|x| x.id != "device-gpu-legacy-boot"), "{f:?}");
    }

    /// A passed address that is a bridge or the boot GPU is what the host needs.
    #[test]
    fn a_hostdev_the_host_needs() {
        let mut b = Bench::new();
        let mut bridge = PciDevice::new(
            addr("0000:00:01.1"),
            VendorDevice::from_str("1022:1453").unwrap(),
            ClassCode::new(0x060400),
        );
        bridge.iommu_group = Some(19);
        bridge.driver = Some("pcieport".into());
        b.devices.insert(bridge.address, bridge);
        b.groups.push(IommuGroup { id: 19, devices: vec![addr("0000:00:01.1")] });
        let xml = broken(&b, |d| hostdev(d, "0000:00:01.1", Some((3, 0, 0))));
        let f = b.audit(&xml);
        exactly(&f, &["device-hostdev-host-needs"]);
        assert!(f[0].message.contains("00:01.1 is a bridge (class 0604)"), "{}", f[0].message);
        b.devices.get_mut(&addr("0000:0d:00.0")).unwrap().boot_vga = Some(true);
        let f = b.audit(&b.clean());
        exactly(&f, &["device-hostdev-host-needs"]);
        assert!(f[0].message.contains("0d:00.0 is the boot GPU"), "{}", f[0].message);
    }

    #[test]
    fn group_member_on_a_host_driver() {
        let b = Bench::new();
        // The SATA controller without the NIC sharing its group (igb has it).
        let xml = broken(&b, |d| hostdev(d, "0000:0f:00.0", Some((2, 0, 0))));
        let f = b.audit(&xml);
        exactly(&f, &["device-group-member-not-vfio"]);
        assert!(
            f[0].message.contains("group 18 of 0f:00.0") && f[0].message.contains("0f:00.1 (class 0200, on igb)"),
            "{}",
            f[0].message
        );
        // Bridges stay with the host; members without a driver or on vfio-pci are fine
        // for the group (a same-slot one is still a slot finding).
        let mut b = Bench::new();
        let mut bridge = PciDevice::new(
            addr("0000:00:01.1"),
            VendorDevice::from_str("1022:1453").unwrap(),
            ClassCode::new(0x060400),
        );
        bridge.iommu_group = Some(16);
        bridge.driver = Some("pcieport".into());
        b.devices.insert(bridge.address, bridge);
        b.groups[0].devices.push(addr("0000:00:01.1"));
        exactly(&b.audit(&b.clean()), &[]);
        b.devices.get_mut(&addr("0000:0f:00.1")).unwrap().driver = None;
        exactly(&b.audit(&xml), &["device-slot-incomplete"]);
    }

    #[test]
    fn sibling_function_not_passed() {
        let b = Bench::new();
        let xml = broken(&b, |d| {
            if let Some(devs) = d.root.child_mut("devices") {
                devs.remove_elements(|e| {
                    e.name == "hostdev" && e.find("source/address").and_then(|a| a.attr("function")) == Some("0x1")
                });
            }
            // Function 0 alone on its slot: no multifunction needed.
        });
        // 0d:00.1 stays on vfio-pci: the group can be opened, the audio is missing.
        let f = b.audit(&xml);
        exactly(&f, &["device-slot-incomplete"]);
        assert!(f[0].message.contains("0d:00.0 is passed without 0d:00.1 (class 0403)"), "{}", f[0].message);
        assert!(f[0].fix.contains("bus='0x0d' slot='0x00' function='0x1'"));
        // The audio back on its host driver: the group cannot be opened (one finding).
        let mut b = Bench::new();
        b.devices.get_mut(&addr("0000:0d:00.1")).unwrap().driver = Some("snd_hda_intel".into());
        let f = b.audit(&xml);
        exactly(&f, &["device-group-member-not-vfio"]);
        assert!(f[0].message.contains("0d:00.1 (class 0403, on snd_hda_intel)"));
    }

    #[test]
    fn sibling_in_its_own_group() {
        // ACS splits the functions: another group, still the same card.
        let mut b = Bench::new();
        b.groups[0].devices.retain(|a| a.function == 0);
        b.groups.push(IommuGroup { id: 19, devices: vec![addr("0000:0d:00.1")] });
        b.devices.get_mut(&addr("0000:0d:00.1")).unwrap().iommu_group = Some(19);
        b.devices.get_mut(&addr("0000:0d:00.1")).unwrap().driver = Some("snd_hda_intel".into());
        let xml = broken(&b, |d| {
            if let Some(devs) = d.root.child_mut("devices") {
                devs.remove_elements(|e| {
                    e.name == "hostdev" && e.find("source/address").and_then(|a| a.attr("function")) == Some("0x1")
                });
            }
        });
        exactly(&b.audit(&xml), &["device-slot-incomplete"]);
    }

    #[test]
    fn unmanaged_not_on_vfio() {
        let b = Bench::new();
        let xml = broken(&b, |d| hostdev(d, "0000:0e:00.0", Some((2, 0, 0))));
        // Managed: libvirt binds vfio-pci itself.
        exactly(&b.audit(&xml), &[]);
        let unmanaged = broken(&b, |d| {
            hostdev(d, "0000:0e:00.0", Some((2, 0, 0)));
            let devs = d.root.child_mut("devices").unwrap();
            let h = devs
                .elements_mut()
                .find(|e| e.find("source/address").and_then(|a| a.attr("bus")) == Some("0x0e"))
                .unwrap();
            h.set_attr("managed", "no");
        });
        let f = b.audit(&unmanaged);
        exactly(&f, &["device-unmanaged-not-vfio"]);
        assert!(f[0].message.contains("0e:00.0 is managed='no' but on xhci_hcd"), "{}", f[0].message);
        // managed='no' on a device already on vfio-pci is fine.
        let gpu = broken(&b, |d| {
            hostdev_mut(d, "0x0").set_attr("managed", "no");
        });
        exactly(&b.audit(&gpu), &[]);
    }

    #[test]
    fn functions_split_across_guest_slots() {
        let b = Bench::new();
        let xml = broken(&b, |d| {
            let h = hostdev_mut(d, "0x1");
            h.child_mut("address").unwrap().set_attr("bus", "0x02");
            h.child_mut("address").unwrap().set_attr("function", "0x0");
            // Function 0 alone now: its multifunction='on' is harmless.
        });
        let f = b.audit(&xml);
        exactly(&f, &["device-functions-split"]);
        assert!(f[0].message.contains("0d:00.0 at 01:00.0, 0d:00.1 at 02:00.0"), "{}", f[0].message);
        assert!(f[0].fix.contains("bus='0x01' slot='0x00' function='0x1'"), "{}", f[0].fix);
        // No guest addresses: libvirt puts each hostdev on a root port of its own.
        let bare = broken(&b, |d| {
            for f in ["0x0", "0x1"] {
                hostdev_mut(d, f).remove_elements(|e| e.name == "address");
            }
        });
        exactly(&b.audit(&bare), &["device-functions-split"]);
    }

    #[test]
    fn multifunction_off() {
        let b = Bench::new();
        let xml = broken(&b, |d| {
            hostdev_mut(d, "0x0").child_mut("address").unwrap().remove_attr("multifunction");
        });
        let f = b.audit(&xml);
        exactly(&f, &["device-multifunction-missing"]);
        assert_eq!(f[0].element, "devices/hostdev/address");
        assert!(f[0].fix.contains("bus='0x01' slot='0x00' function='0x0' multifunction='on'"), "{}", f[0].fix);
    }

    #[test]
    fn no_hostdevs_no_device_findings() {
        let mut b = Bench::new();
        // Even with a host whose devices are all elsewhere.
        b.devices.clear();
        b.groups.clear();
        let xml = broken(&b, |d| {
            if let Some(devs) = d.root.child_mut("devices") {
                devs.remove_elements(|e| e.name == "hostdev");
            }
        });
        exactly(&b.audit(&xml), &[]);
    }

    /// Regression: a domain whose disk is the partition holding the host's `/` passed the
    /// audit.
    #[test]
    fn a_disk_the_host_uses() {
        let b = Bench::new();
        let with = |dev: &str| {
            b.clean().replacen(
                "</devices>",
                &format!("<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='{dev}'/><target dev='sda' bus='scsi'/></disk></devices>"),
                1,
            )
        };
        let f = b.audit(&with("/dev/nvme0n1p2"));
        exactly(&f, &["device-disk-host-in-use"]);
        assert_eq!(f[0].message, "/dev/nvme0n1p2: nvme0n1p2 is mounted at /");
        assert_eq!(f[0].element, "devices/disk/source");
        exactly(&b.audit(&with("/dev/disk/by-id/ata-spare")), &[]);
    }

    #[test]
    fn evdev_device_missing() {
        let mut b = Bench::new();
        b.input.remove("usb-Logitech_USB_Receiver-event-kbd");
        b.input.insert("usb-Razer_Keyboard-event-kbd".into());
        let f = b.audit(&b.clean());
        exactly(&f, &["evdev-missing"]);
        assert!(f[0].message.contains(KBD));
        assert!(f[0].fix.contains("/dev/input/by-id/usb-Razer_Keyboard-event-kbd") && !f[0].fix.contains("mouse"));
        assert_eq!(f[0].element, "devices/input/source");
    }

    /// The legacy form vfioctl renders for libvirt before 7.4.
    fn legacy() -> String {
        let xml = Bench { libvirt: Some((7, 0)), ..Bench::new() }.clean();
        assert!(xml.contains("input-linux"));
        xml
    }

    /// qemu:commandline evdev on a libvirt with native evdev: a note with the elements.
    #[test]
    fn evdev_by_commandline_where_native_serves() {
        let xml = legacy();
        let b = Bench { libvirt: Some((8, 0)), ..Bench::new() };
        let f = b.audit(&xml);
        let note: Vec<&Finding> = f.iter().filter(|x| x.id == "evdev-commandline-where-native").collect();
        assert_eq!(note.len(), 1, "{f:?}");
        assert!(note[0].fix.contains("<input type='evdev'>"), "{:?}", note[0].fix);
        let b = Bench { libvirt: Some((7, 3)), ..Bench::new() };
        assert!(b.audit(&xml).iter().all(|x| x.id != "evdev-commandline-where-native"));
    }

    #[test]
    fn evdev_not_in_acl() {
        let mut b = Bench::new();
        b.libvirt = Some((7, 0));
        let xml = legacy();
        // No qemu.conf: libvirt's defaults, without the devices.
        let f = b.audit(&xml);
        exactly(&f, &["evdev-not-in-acl", "evdev-not-in-acl"]);
        assert!(f[0].fix.contains("\"/dev/kvm\"") && f.iter().all(|f| f.fix.contains(KBD) && f.fix.contains(MOUSE)));
        assert!(!f[0].fix.contains("7.4 or later"));
        // A list with the keyboard only.
        b.qemu_conf = format!("cgroup_device_acl = [ \"/dev/null\", \"/dev/kvm\", \"{KBD}\" ]\n");
        let f = b.audit(&xml);
        exactly(&f, &["evdev-not-in-acl"]);
        assert!(f[0].message.contains(MOUSE) && f[0].fix.contains(&format!("    \"{MOUSE}\"")));
        // Both: clean.
        b.qemu_conf = format!("cgroup_device_acl = [ \"/dev/null\", \"/dev/kvm\", \"{KBD}\", \"{MOUSE}\" ]\n");
        exactly(&b.audit(&xml), &[]);
        // On a newer libvirt the legacy form still needs the ACL; the fix names the native form.
        b.libvirt = Some((9, 0));
        b.qemu_conf = String::new();
        let f = b.audit(&xml);
        exactly(&f, &["evdev-not-in-acl", "evdev-not-in-acl", "evdev-commandline-where-native"]);
        assert!(f.iter().find(|x| x.id == "evdev-not-in-acl").unwrap().fix.contains("7.4 or later"));
    }

    #[test]
    fn no_qemu_conf_known_no_acl_finding() {
        let b = Bench { libvirt: Some((7, 0)), ..Bench::new() };
        let xml = legacy();
        let doc = parse(&xml).unwrap();
        let host = AuditHost { qemu_conf: None, ..b.host() };
        exactly(&audit(&doc, &host), &[]);
    }

    #[test]
    fn native_evdev_on_old_libvirt() {
        let mut b = Bench::new();
        let xml = b.clean();
        b.libvirt = Some((7, 3));
        let f = b.audit(&xml);
        exactly(&f, &["evdev-native-unsupported", "evdev-native-unsupported"]);
        assert!(f[0].message.contains("7.3") && f[0].fix.contains("input-linux,id=evdev0"), "{}", f[0].fix);
        // Unknown version: nothing to say.
        b.libvirt = None;
        exactly(&b.audit(&xml), &[]);
    }
}
