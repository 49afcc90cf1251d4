//! The audit's test bench: a small AMD host, the domain vfioctl renders for it (which must
//! audit clean), and helpers that break that domain one way at a time.
//!
//! Each area's tests live in `audit/<area>/tests` style modules below or in this file;
//! every rule of [`super::RULES`] must have a case that asserts exactly it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use super::*;
use crate::check::HugepagePool;
use crate::domain::{render, DiskBus, DomainHost, DomainRequest, GuestOs};
use crate::pci::{ClassCode, PciAddress, PciDevice, VendorDevice};
use crate::plan::devices::PlannedDevice;
use crate::plan::memory::Hugepages;
use crate::plan::pinning::tests::shape;
use crate::plan::{pinning, CpuRequest, MemoryPlan, Plan};
use crate::xml::{parse, Document};

pub(crate) const KBD: &str = "/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd";
pub(crate) const MOUSE: &str = "/dev/input/by-id/usb-Logitech_USB_Receiver-if01-event-mouse";

/// A host: one AMD package, one node, two L3 domains of four SMT cores (CPU n and n+8
/// are siblings; CPUs 0-3,8-11 share one L3, 4-7,12-15 the other); a GPU 0d:00.0 with
/// its audio 0d:00.1 in group 16 on vfio-pci; a USB controller 0e:00.0 alone in group 17
/// on xhci_hcd; a SATA controller 0f:00.0 and a NIC 0f:00.1 sharing group 18; eight
/// 1 GiB pages reserved and free on node 0.
#[derive(Debug)]
pub(crate) struct Bench {
    pub topology: Topology,
    pub devices: BTreeMap<PciAddress, PciDevice>,
    pub groups: Vec<IommuGroup>,
    pub hugepages: Vec<HugepagePool>,
    pub libvirt: Option<(u32, u32)>,
    pub qemu_conf: String,
    pub input: BTreeSet<String>,
    pub vendor: CpuVendor,
    pub host_disks: BTreeMap<String, String>,
    pub files: BTreeMap<String, crate::audit::HostFile>,
}

pub(crate) fn addr(s: &str) -> PciAddress {
    PciAddress::from_str(s).unwrap()
}

impl Bench {
    pub(crate) fn new() -> Self {
        let topology = shape(1, 1, 2, 4, 2, true, &[16384, 16384]);
        let mut devices = BTreeMap::new();
        let mut dev = |a: &str, id: &str, class: u32, group: u32, driver: &str| {
            let mut d = PciDevice::new(addr(a), VendorDevice::from_str(id).unwrap(), ClassCode::new(class));
            d.iommu_group = Some(group);
            d.driver = Some(driver.to_string());
            d.numa_node = Some(0);
            devices.insert(d.address, d);
        };
        dev("0000:0d:00.0", "1002:66af", 0x030000, 16, "vfio-pci");
        dev("0000:0d:00.1", "1002:ab20", 0x040300, 16, "vfio-pci");
        dev("0000:0e:00.0", "1022:145f", 0x0c0330, 17, "xhci_hcd");
        dev("0000:0f:00.0", "1022:7901", 0x010601, 18, "ahci");
        dev("0000:0f:00.1", "8086:1539", 0x020000, 18, "igb");
        let groups = vec![
            IommuGroup { id: 16, devices: vec![addr("0000:0d:00.0"), addr("0000:0d:00.1")] },
            IommuGroup { id: 17, devices: vec![addr("0000:0e:00.0")] },
            IommuGroup { id: 18, devices: vec![addr("0000:0f:00.0"), addr("0000:0f:00.1")] },
        ];
        let hugepages = vec![HugepagePool { node: Some(0), size_kib: 1048576, total: 8, free: 8 }];
        let input = ["usb-Logitech_USB_Receiver-event-kbd", "usb-Logitech_USB_Receiver-if01-event-mouse"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Bench {
            topology,
            devices,
            groups,
            hugepages,
            libvirt: Some((9, 0)),
            qemu_conf: String::new(),
            input,
            vendor: CpuVendor::Amd,
            host_disks: [("/dev/nvme0n1p2".to_string(), "nvme0n1p2 is mounted at /".to_string())].into_iter().collect(),
            files: BTreeMap::new(),
        }
    }

    pub(crate) fn host(&self) -> AuditHost<'_> {
        AuditHost {
            vendor: self.vendor,
            topology: &self.topology,
            devices: &self.devices,
            groups: &self.groups,
            hugepages: &self.hugepages,
            libvirt: self.libvirt,
            qemu_conf: Some(&self.qemu_conf),
            input_by_id: Some(&self.input),
            host_disks: Some(&self.host_disks),
            host_controllers: None,
            files: Some(&self.files),
        }
    }

    /// The domain vfioctl writes for the GPU on this host: 6 vCPUs on the L3 without CPU 0,
    /// 4 GiB on 1 GiB pages, Windows 10 with evdev keyboard and mouse.
    pub(crate) fn clean(&self) -> String {
        let cpu = pinning::place(&self.topology, &CpuRequest { vcpus: Some(6), node: Some(0) }).unwrap();
        let devices = ["0000:0d:00.0", "0000:0d:00.1"]
            .iter()
            .map(|a| PlannedDevice {
                address: addr(a),
                vendor_id: "1002".into(),
                device_id: "66af".into(),
                class: "0300".into(),
                iommu_group: Some(16),
                driver: Some("vfio-pci".into()),
                reason: String::new(),
            })
            .collect();
        let mut plan = Plan::cpu_and_memory(
            cpu,
            MemoryPlan {
                mib: 4096,
                hugepages: Some(Hugepages { size_kib: 1048576, count: 4, node: Some(0), reserve_at_boot: true }),
                reasons: Vec::new(),
            },
        );
        plan.devices = devices;
        let host = DomainHost {
            vendor: self.vendor,
            invtsc: true,
            firmware: Some(crate::domain::Firmware {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                vars: Some("/usr/share/OVMF/OVMF_VARS_4M.fd".into()),
                secure: false,
            }),
            emulator: Some("/usr/bin/qemu-system-x86_64".into()),
            libvirt: self.libvirt,
            qemu: None,
            caps: None,
        };
        let req = DomainRequest {
            name: "win10".into(),
            os: GuestOs::Windows10,
            evdev: vec![KBD.into(), MOUSE.into()],
            disk: None,
            disk_bus: DiskBus::Scsi,
            isos: Vec::new(),
            network: None,
            rom: None,
            looking_glass: None,
        };
        render(&plan, &host, &req)
    }

    pub(crate) fn audit(&self, xml: &str) -> Vec<Finding> {
        audit(&parse(xml).unwrap(), &self.host())
    }
}

/// The ids of findings at warning or above (info findings do not fail an audit).
pub(crate) fn ids(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.id).collect()
}

/// The clean domain with one edit.
pub(crate) fn broken(bench: &Bench, edit: impl FnOnce(&mut Document)) -> String {
    let mut doc = parse(&bench.clean()).unwrap();
    edit(&mut doc);
    doc.write()
}

/// Asserts the findings are exactly `want` (ids, any order).
#[track_caller]
pub(crate) fn exactly(findings: &[Finding], want: &[&str]) {
    for f in findings {
        let rule = RULES.iter().find(|r| r.id == f.id);
        assert!(
            rule.is_some_and(|r| r.severity == f.severity && r.area == f.area),
            "{} is not a declared rule of its severity and area",
            f.id
        );
    }
    let mut got = ids(findings);
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{findings:#?}");
}

#[test]
fn the_rendered_domain_audits_clean() {
    let b = Bench::new();
    exactly(&b.audit(&b.clean()), &[]);
}

#[test]
fn every_id_is_unique_and_named_by_its_area() {
    let unique: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(unique.len(), RULES.len());
    for Rule { id, area, title, .. } in RULES {
        let prefix = match area {
            Area::Hyperv => "hyperv-",
            Area::Clock => "clock-",
            Area::Cpu => "cpu-",
            Area::Memory => "memory-",
            Area::Devices => "device",
            Area::Security => "security-",
        };
        assert!(id.starts_with(prefix) || (*area == Area::Devices && id.starts_with("evdev-")), "{id}");
        assert!(!title.is_empty());
    }
}

#[test]
fn findings_point_at_their_line() {
    let b = Bench::new();
    let xml = broken(&b, |d| {
        if let Some(h) = d.root.find_mut("features/hyperv/spinlocks") {
            h.set_attr("retries", "100");
        }
    });
    let f = b.audit(&xml);
    let line = xml.lines().position(|l| l.contains("retries='100'")).unwrap() as u32 + 1;
    let s = f.iter().find(|f| f.id == "hyperv-spinlocks-low").unwrap();
    assert_eq!(s.line, Some(line));
    assert!(s.fix.contains("8191"));
}

/// Without any `<hyperv>`, the fix is the one the renderer writes for this libvirt: with
/// `mode='custom'` from libvirt 8.0 on, without the attribute (which older libvirt refuses)
/// before.
#[test]
fn the_missing_hyperv_fix_follows_the_libvirt_version() {
    let mut b = Bench::new();
    let xml = broken(&b, |d| {
        if let Some(f) = d.root.find_mut("features") {
            f.remove_elements(|e| e.name == "hyperv");
        }
    });
    let fix = |b: &Bench| b.audit(&xml).into_iter().find(|f| f.id == "hyperv-missing").unwrap().fix;
    let new = fix(&b);
    assert!(new.starts_with("<features>\n  <hyperv mode='custom'>\n    <relaxed state='on'/>\n"), "{new}");
    assert!(new.contains("\n    <stimer state='on'>\n      <direct state='on'/>\n    </stimer>\n"), "{new}");
    b.libvirt = Some((7, 0));
    let old = fix(&b);
    assert!(old.starts_with("<features>\n  <hyperv>\n") && !old.contains("mode="), "{old}");
}

#[test]
fn hyperv_cases() {
    let b = Bench::new();
    // <kvm> (and <hyperv>) outside <features>: libvirt drops them.
    let xml = b.clean().replace("</devices>", "</devices>\n  <kvm>\n    <hidden state='on'/>\n  </kvm>");
    let f = b.audit(&xml);
    exactly(&f, &["hyperv-misplaced"]);
    assert!(f[0].message.contains("<kvm> is in <domain>, not in <features>"), "{}", f[0].message);
    let hv = |edit: &dyn Fn(&mut Element)| {
        broken(&b, |d| {
            if let Some(h) = d.root.find_mut("features/hyperv") {
                edit(h);
            }
        })
    };
    exactly(
        &b.audit(&hv(&|h| {
            h.remove_elements(|e| e.name == "ipi" || e.name == "runtime");
        })),
        &["hyperv-missing"],
    );
    exactly(
        &b.audit(&hv(&|h| {
            h.remove_elements(|e| e.name == "vpindex");
        })),
        &["hyperv-missing", "hyperv-dependency", "hyperv-dependency", "hyperv-dependency"],
    );
    exactly(
        &b.audit(&broken(&b, |d| {
            if let Some(c) = d.root.find_mut("clock") {
                c.remove_elements(|t| t.attr("name") == Some("hypervclock"));
            }
        })),
        &["hyperv-stimer-without-hypervclock", "clock-no-hypervclock"],
    );
    exactly(
        &b.audit(&hv(&|h| {
            if let Some(v) = h.child_mut("vendor_id") {
                v.set_attr("value", "0123456789abc");
            }
        })),
        &["hyperv-vendor-id-too-long"],
    );
    exactly(
        &b.audit(&hv(&|h| {
            if let Some(v) = h.child_mut("spinlocks") {
                v.set_attr("retries", "4094");
            }
        })),
        &["hyperv-spinlocks-low"],
    );
    exactly(
        &b.audit(&broken(&b, |d| {
            if let Some(f) = d.root.find_mut("features") {
                f.remove_elements(|e| e.name == "hyperv");
            }
        })),
        &["hyperv-missing"],
    );
    // A Linux guest (no hyperv, UTC clock) misses nothing.
    let linux = broken(&b, |d| {
        if let Some(f) = d.root.find_mut("features") {
            f.remove_elements(|e| e.name == "hyperv");
        }
        if let Some(c) = d.root.find_mut("clock") {
            c.set_attr("offset", "utc");
            c.remove_elements(|t| t.attr("name") == Some("hypervclock"));
        }
    });
    exactly(&b.audit(&linux), &[]);
}

#[test]
fn clock_cases() {
    let b = Bench::new();
    let timer = |name: &'static str, attr: &'static str, value: &'static str| {
        broken(&b, move |d| {
            if let Some(c) = d.root.find_mut("clock") {
                if let Some(t) = c.elements_mut().find(|t| t.attr("name") == Some(name)) {
                    t.set_attr(attr, value);
                }
            }
        })
    };
    exactly(&b.audit(&timer("hpet", "present", "yes")), &["clock-hpet"]);
    exactly(&b.audit(&timer("rtc", "tickpolicy", "delay")), &["clock-rtc-tickpolicy"]);
    exactly(&b.audit(&timer("pit", "tickpolicy", "discard")), &["clock-pit-tickpolicy"]);
    exactly(
        &b.audit(&timer("hypervclock", "present", "no")),
        &["clock-no-hypervclock", "hyperv-stimer-without-hypervclock"],
    );
}

/// Every rule has its own broken-domain case: besides its declaration
/// and where it is made, its area's tests name it in an `exactly(…)` assertion.
#[test]
fn every_id_has_a_case() {
    let sources = [
        (Area::Hyperv, include_str!("tests.rs")),
        (Area::Clock, include_str!("tests.rs")),
        (Area::Cpu, include_str!("cpu/tests.rs")),
        (Area::Memory, include_str!("memory.rs")),
        (Area::Devices, include_str!("devices.rs")),
        (Area::Security, include_str!("security.rs")),
    ];
    for &Rule { id, area, .. } in RULES {
        let Some((_, src)) = sources.iter().find(|(a, _)| *a == area) else { continue };
        let tests = src.find("mod tests").map_or("", |i| &src[i..]);
        let tests = if matches!(area, Area::Hyperv | Area::Clock | Area::Cpu) { src } else { tests };
        assert!(tests.contains(&format!("\"{id}\"")), "no test case names {id}");
    }
}

/// README's table of findings is the catalogue: every rule in order, with its severity
/// and title (code spans in the title as backticks).
#[test]
fn readme_lists_every_rule() {
    let readme = include_str!("../../../../README.md");
    let rows: Vec<(String, String, String)> = readme
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.strip_prefix("| `")?.strip_suffix(" |")?.split(" | ").collect();
            let [id, severity, title] = cells.as_slice() else { return None };
            matches!(*severity, "error" | "warning" | "info").then_some(())?;
            Some((id.trim_end_matches('`').to_string(), severity.to_string(), title.replace('`', "")))
        })
        .collect();
    let want: Vec<(String, String, String)> =
        RULES.iter().map(|r| (r.id.to_string(), r.severity.to_string(), r.title.to_string())).collect();
    assert_eq!(rows, want);
}

/// Mangled domains (elements cut out, attributes broken) never make the audit panic.
#[test]
fn mangled_domains_never_panic() {
    let b = Bench::new();
    for g in [crate::domain::tests::GUIDE_000, crate::domain::tests::GUIDE_001, &b.clean()] {
        let lines: Vec<&str> = g.lines().collect();
        for i in 1..lines.len().saturating_sub(1) {
            // Without line i (an element or one side of one).
            let cut = [&lines[..i], &lines[i + 1..]].concat().join("\n");
            if let Ok(doc) = parse(&cut) {
                let _ = audit(&doc, &b.host());
            }
            // Numbers and sets turned into garbage.
            let junk = lines[i].replace("0x", "0xzz").replace("='", "='-");
            let swapped = [&lines[..i], &[junk.as_str()], &lines[i + 1..]].concat().join("\n");
            if let Ok(doc) = parse(&swapped) {
                let _ = audit(&doc, &b.host());
            }
        }
    }
}
