//! What every area's checks read from the domain, parsed once: the vCPU count and pins,
//! the passed devices, the evdev inputs, whether the guest is Windows.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::AuditHost;
use crate::cpuset::CpuSet;
use crate::pci::PciAddress;
use crate::units::number;
use crate::xml::Element;

/// The domain's pinning, with the elements that say it.
#[derive(Debug, Default)]
pub struct Pins<'a> {
    /// `<vcpupin vcpu='N' cpuset='…'>` by vCPU.
    pub vcpu: BTreeMap<u32, (CpuSet, &'a Element)>,
    pub emulator: Option<(CpuSet, &'a Element)>,
    /// `<iothreadpin iothread='N'>` by thread.
    pub iothread: BTreeMap<u32, (CpuSet, &'a Element)>,
    /// `<vcpu cpuset='…'>`: where unpinned vCPUs may run.
    pub vcpu_cpuset: Option<CpuSet>,
}

impl<'a> Pins<'a> {
    /// The pins of a domain: `<cputune>`'s and `<vcpu cpuset>`.
    pub fn of(root: &'a Element) -> Pins<'a> {
        let mut pins = Pins { vcpu_cpuset: root.find("vcpu").and_then(cpuset), ..Pins::default() };
        if let Some(t) = root.find("cputune") {
            for e in t.elements() {
                let Some(set) = cpuset(e) else { continue };
                match e.name.as_str() {
                    "vcpupin" => {
                        if let Some(v) = e.attr("vcpu").and_then(|v| v.parse().ok()) {
                            pins.vcpu.insert(v, (set, e));
                        }
                    }
                    "emulatorpin" => pins.emulator = Some((set, e)),
                    "iothreadpin" => {
                        if let Some(v) = e.attr("iothread").and_then(|v| v.parse().ok()) {
                            pins.iothread.insert(v, (set, e));
                        }
                    }
                    _ => {}
                }
            }
        }
        pins
    }

    /// Every host CPU each of `vcpus` vCPUs may run on: its pin, or `<vcpu cpuset>`.
    pub fn vcpu_cpus(&self, vcpus: u32) -> BTreeMap<u32, CpuSet> {
        let mut out = BTreeMap::new();
        for v in 0..vcpus {
            if let Some((set, _)) = self.vcpu.get(&v) {
                out.insert(v, set.clone());
            } else if let Some(set) = &self.vcpu_cpuset {
                out.insert(v, set.clone());
            }
        }
        out
    }

    /// The CPUs the emulator and the I/O threads may run on, as pinned.
    pub fn others(&self) -> CpuSet {
        self.emulator
            .iter()
            .map(|(s, _)| s)
            .chain(self.iothread.values().map(|(s, _)| s))
            .flat_map(|s| s.iter())
            .collect()
    }
}

/// A `<hostdev type='pci'>`.
#[derive(Debug)]
pub struct Hostdev<'a> {
    pub source: PciAddress,
    pub managed: bool,
    /// The guest address (domain, bus, slot, function), when given.
    pub guest: Option<(u32, u32, u32, u32)>,
    pub el: &'a Element,
}

/// An evdev device handed to the guest.
#[derive(Debug)]
pub struct Evdev<'a> {
    pub path: String,
    /// Native `<input type='evdev'>` (libvirt sets it up), or a QEMU `input-linux` argument.
    pub native: bool,
    pub el: &'a Element,
}

/// The domain and host, read once for all checks.
#[derive(Debug)]
pub struct Cx<'a> {
    pub root: &'a Element,
    pub host: &'a AuditHost<'a>,
    /// A Windows guest: libosinfo metadata says so, or it has Hyper-V enlightenments or
    /// a local-time clock.
    pub windows: bool,
    pub vcpus: Option<u32>,
    pub pins: Pins<'a>,
    pub hostdevs: Vec<Hostdev<'a>>,
    pub evdev: Vec<Evdev<'a>>,
}

fn cpuset(e: &Element) -> Option<CpuSet> {
    e.attr("cpuset").and_then(|s| CpuSet::from_str(s).ok())
}

impl<'a> Cx<'a> {
    pub fn new(root: &'a Element, host: &'a AuditHost<'a>) -> Self {
        let os_id = root
            .find("metadata")
            .map(|m| m.elements().flat_map(|e| e.elements()).filter_map(|e| e.attr("id")).collect::<Vec<_>>())
            .unwrap_or_default();
        let windows = os_id.iter().any(|id| id.contains("microsoft.com/win"))
            || root.find("features/hyperv").is_some()
            || root.find("clock").and_then(|c| c.attr("offset")) == Some("localtime");
        let vcpus = root.find("vcpu").and_then(|v| v.text().parse().ok());
        let pins = Pins::of(root);
        let mut hostdevs = Vec::new();
        let mut evdev = Vec::new();
        if let Some(devs) = root.find("devices") {
            for h in devs.children_named("hostdev").filter(|h| h.attr("type") == Some("pci")) {
                let Some(a) = h.find("source/address") else { continue };
                let n = |k: &str| a.attr(k).and_then(number);
                let (Some(bus), Some(slot), Some(function)) = (n("bus"), n("slot"), n("function")) else { continue };
                let source = PciAddress {
                    domain: n("domain").unwrap_or(0),
                    bus: u8::try_from(bus).unwrap_or(u8::MAX),
                    device: u8::try_from(slot).unwrap_or(u8::MAX),
                    function: u8::try_from(function).unwrap_or(u8::MAX),
                };
                let guest = h.child("address").filter(|g| g.attr("type") == Some("pci")).and_then(|g| {
                    let n = |k: &str| g.attr(k).and_then(number);
                    Some((n("domain").unwrap_or(0), n("bus")?, n("slot")?, n("function").unwrap_or(0)))
                });
                hostdevs.push(Hostdev { source, managed: h.attr("managed") == Some("yes"), guest, el: h });
            }
            for i in devs.children_named("input").filter(|i| i.attr("type") == Some("evdev")) {
                if let Some(dev) = i.child("source").and_then(|s| s.attr("dev")) {
                    evdev.push(Evdev { path: dev.to_string(), native: true, el: i });
                }
            }
        }
        if let Some(cl) = root.child("qemu:commandline") {
            for a in cl.children_named("qemu:arg") {
                let Some(v) = a.attr("value") else { continue };
                if v.starts_with("input-linux") {
                    for path in v.split(',').filter_map(|o| o.strip_prefix("evdev=")) {
                        evdev.push(Evdev { path: path.to_string(), native: false, el: a });
                    }
                }
            }
        }
        Cx { root, host, windows, vcpus, pins, hostdevs, evdev }
    }

    /// The element at a `/`-separated path, or its closest existing parent (for the line
    /// of a finding about something missing).
    pub fn closest(&self, path: &str) -> Option<&'a Element> {
        let mut e = self.root;
        for name in path.split('/').filter(|s| !s.is_empty()) {
            match e.child(name) {
                Some(c) => e = c,
                None => return Some(e),
            }
        }
        Some(e)
    }

    /// Every host CPU a vCPU may run on, by vCPU: its pin, or `<vcpu cpuset>`.
    pub fn vcpu_cpus(&self) -> BTreeMap<u32, CpuSet> {
        self.pins.vcpu_cpus(self.vcpus.unwrap_or(0))
    }
}
