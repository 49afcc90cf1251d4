//! `vfioctl list`: IOMMU groups and their devices.

use std::fmt::Write as _;

use serde::Serialize;
use vfioctl_core::iommu::{self, GroupAssessment, IommuGroup};
use vfioctl_core::lspci;
use vfioctl_core::pci::{PciAddress, PciDevice, VendorDevice};
use vfioctl_core::pci_ids::PciIds;
use vfioctl_host::pci::{self, PciInventory};
use vfioctl_host::pci_ids::{self, IdsSource};
use vfioctl_host::proc;
use vfioctl_host::root::HostRoot;

use crate::cli::{ListArgs, ListFormat};
use crate::error::{CliError, Exit};
use crate::output;

#[derive(Debug, Serialize)]
struct DeviceJson<'a> {
    address: PciAddress,
    vendor_id: String,
    device_id: String,
    class: String,
    prog_if: String,
    class_name: Option<&'a str>,
    vendor_name: Option<&'a str>,
    device_name: Option<&'a str>,
    revision: Option<String>,
    subsystem_vendor_id: Option<String>,
    subsystem_device_id: Option<String>,
    subsystem_name: Option<&'a str>,
    driver: Option<&'a str>,
    numa_node: Option<u32>,
    boot_vga: Option<bool>,
    reset_methods: Option<&'a [String]>,
    bridge: bool,
    gpu: bool,
    multifunction: Option<bool>,
    iommu_group: Option<u32>,
}

#[derive(Debug, Serialize)]
struct GroupJson<'a> {
    id: u32,
    #[serde(flatten)]
    assessment: GroupAssessment,
    devices: Vec<DeviceJson<'a>>,
}

#[derive(Debug, Serialize)]
struct ListJson<'a> {
    iommu_enabled: bool,
    groups: Vec<GroupJson<'a>>,
    /// Devices no IOMMU group lists (all of them when the IOMMU is off).
    ungrouped: Vec<DeviceJson<'a>>,
    pci_ids: String,
}

fn hex4(v: u16) -> String {
    format!("{v:04x}")
}

fn device_json<'a>(db: &'a PciIds, d: &'a PciDevice) -> DeviceJson<'a> {
    let VendorDevice { vendor, device } = d.id;
    DeviceJson {
        address: d.address,
        vendor_id: hex4(vendor),
        device_id: hex4(device),
        class: d.class.to_string(),
        prog_if: format!("{:02x}", d.class.prog_if()),
        class_name: db.class_name(d.class.base(), d.class.sub()),
        vendor_name: db.vendor(vendor),
        device_name: db.device(vendor, device),
        revision: d.revision.map(|r| format!("{r:02x}")),
        subsystem_vendor_id: d.subsystem.map(|s| hex4(s.vendor)),
        subsystem_device_id: d.subsystem.map(|s| hex4(s.device)),
        subsystem_name: d.subsystem.and_then(|s| db.subsystem(vendor, device, s.vendor, s.device)),
        driver: d.driver.as_deref(),
        numa_node: d.numa_node,
        boot_vga: d.boot_vga,
        reset_methods: d.reset_methods.as_deref(),
        bridge: d.is_bridge(),
        gpu: d.is_gpu(),
        multifunction: d.multifunction,
        iommu_group: d.iommu_group,
    }
}

/// The classic script's output: `IOMMU Group N ` and the `lspci -nns` line, groups in
/// numeric order, devices in address order.
pub fn lspci_lines(db: &PciIds, inv: &PciInventory) -> String {
    let with_domain = inv.multi_domain();
    let mut out = String::with_capacity(inv.devices.len() * 128);
    for g in &inv.groups {
        for a in &g.devices {
            if let Some(d) = inv.devices.get(a) {
                // Writing to a String cannot fail.
                let _ = writeln!(out, "IOMMU Group {} {}", g.id, lspci::line(db, d, with_domain));
            }
        }
    }
    out
}

fn source_text(source: &IdsSource) -> String {
    match source {
        IdsSource::File(p) => p.display().to_string(),
        IdsSource::Embedded => "built-in".to_string(),
    }
}

fn json_value(db: &PciIds, inv: &PciInventory, source: &IdsSource) -> Result<(), CliError> {
    let groups = inv
        .groups
        .iter()
        .map(|g| GroupJson {
            id: g.id,
            assessment: iommu::assess(g, &inv.devices),
            devices: g.devices.iter().filter_map(|a| inv.devices.get(a)).map(|d| device_json(db, d)).collect(),
        })
        .collect();
    let doc = ListJson {
        iommu_enabled: !inv.groups.is_empty(),
        groups,
        ungrouped: inv.ungrouped().into_iter().map(|d| device_json(db, d)).collect(),
        pci_ids: source_text(source),
    };
    output::print_json(&doc)
}

fn short_class(db: &PciIds, d: &PciDevice) -> String {
    db.class_name(d.class.base(), d.class.sub()).map_or_else(|| format!("Class {}", d.class), str::to_string)
}

fn short_name(db: &PciIds, d: &PciDevice) -> String {
    let text = lspci::device_text(db, d);
    // Drop the trailing `[vvvv:dddd]`: the ids have their own column.
    let name = text.strip_suffix(&format!(" [{}]", d.id)).unwrap_or(&text).to_string();
    match d.revision.filter(|&r| r != 0) {
        Some(r) => format!("{name} (rev {r:02x})"),
        None => name,
    }
}

struct Row {
    marker: &'static str,
    group: String,
    address: String,
    class: String,
    ids: String,
    driver: String,
    name: String,
}

fn rows_for(
    db: &PciIds,
    group: Option<(&IommuGroup, &GroupAssessment)>,
    devs: &[&PciDevice],
    with_domain: bool,
) -> Vec<Row> {
    devs.iter()
        .enumerate()
        .map(|(i, d)| {
            let marker = if d.boot_vga == Some(true) {
                "B"
            } else if d.is_gpu() {
                "G"
            } else if d.is_bridge() {
                "·"
            } else {
                " "
            };
            Row {
                marker,
                group: match (i, group) {
                    (0, Some((g, _))) => g.id.to_string(),
                    (0, None) => "-".to_string(),
                    _ => String::new(),
                },
                address: if with_domain { d.address.to_string() } else { d.address.short() },
                class: short_class(db, d),
                ids: d.id.to_string(),
                driver: d.driver.clone().unwrap_or_else(|| "-".into()),
                name: short_name(db, d),
            }
        })
        .collect()
}

fn render_text(db: &PciIds, inv: &PciInventory) -> String {
    let with_domain = inv.multi_domain();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for g in &inv.groups {
        let a = iommu::assess(g, &inv.devices);
        let devs: Vec<&PciDevice> = g.devices.iter().filter_map(|x| inv.devices.get(x)).collect();
        rows.extend(rows_for(db, Some((g, &a)), &devs, with_domain));
        if a.gpu {
            let verdict = if a.boot_vga {
                "boot GPU: keep it for the host".to_string()
            } else if a.mixed {
                "GPU group is not clean".to_string()
            } else if a.passable {
                format!("clean, pass as a whole: {}", list_addrs(&a.endpoints))
            } else {
                "cannot be passed".to_string()
            };
            notes.push(format!("group {:>3}: {verdict}", g.id));
            let elsewhere: Vec<String> = other_functions(inv, g)
                .map(|d| match d.iommu_group {
                    Some(n) => format!("{} (group {n})", d.address.short()),
                    None => format!("{} (no group)", d.address.short()),
                })
                .collect();
            if !elsewhere.is_empty() {
                notes.push(format!(
                    "           the GPU's other functions are in other groups: {}",
                    elsewhere.join(", ")
                ));
            }
            for n in a.notes.iter().filter(|n| !(a.boot_vga && n.contains("boot GPU"))) {
                notes.push(format!("           {n}"));
            }
        }
    }
    let ungrouped = inv.ungrouped();
    if !ungrouped.is_empty() {
        rows.extend(rows_for(db, None, &ungrouped, with_domain));
    }
    let w = |f: fn(&Row) -> &str, title: &str| {
        rows.iter().map(|r| f(r).chars().count()).chain([title.len()]).max().unwrap_or(0)
    };
    let (wg, wa, wc, wi, wd) = (
        w(|r| &r.group, "GROUP"),
        w(|r| &r.address, "ADDRESS"),
        w(|r| &r.class, "CLASS"),
        w(|r| &r.ids, "ID"),
        w(|r| &r.driver, "DRIVER"),
    );
    let mut out = String::with_capacity(rows.len() * (wg + wa + wc + wi + wd + 64));
    // Writing to a String cannot fail.
    let _ =
        writeln!(out, "  {:>wg$}  {:wa$}  {:wc$}  {:wi$}  {:wd$}  NAME", "GROUP", "ADDRESS", "CLASS", "ID", "DRIVER");
    for r in &rows {
        let _ = writeln!(
            out,
            "{} {:>wg$}  {:wa$}  {:wc$}  {:wi$}  {:wd$}  {}",
            r.marker, r.group, r.address, r.class, r.ids, r.driver, r.name
        );
    }
    let gpus = inv.devices.values().filter(|d| d.is_gpu()).count();
    out.push_str(&format!(
        "\n{} devices in {} IOMMU groups; {gpus} GPU{}. Marks: G GPU, B boot GPU, · bridge (stays with the host); group - is none.\n",
        inv.devices.len(),
        inv.groups.len(),
        if gpus == 1 { "" } else { "s" }
    ));
    if !notes.is_empty() {
        out.push_str("\nGPU groups:\n");
        for n in notes {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out
}

/// Devices outside group `g` that share a slot with one of its GPUs (the GPU's audio or
/// USB functions put in another group), in address order.
fn other_functions<'a>(inv: &'a PciInventory, g: &'a IommuGroup) -> impl Iterator<Item = &'a PciDevice> + 'a {
    let mut slots: Vec<PciAddress> = g
        .devices
        .iter()
        .filter(|m| inv.devices.get(m).is_some_and(PciDevice::is_gpu))
        .map(|m| PciAddress { function: 0, ..*m })
        .collect();
    slots.sort();
    slots.dedup();
    slots.into_iter().flat_map(move |first| {
        let last = PciAddress { function: u8::MAX, ..first };
        inv.devices.range(first..=last).map(|(_, d)| d).filter(move |d| d.iommu_group != Some(g.id))
    })
}

fn list_addrs(addrs: &[PciAddress]) -> String {
    addrs.iter().map(PciAddress::short).collect::<Vec<_>>().join(", ")
}

fn iommu_off(root: &HostRoot) -> CliError {
    let vendor = proc::cpu_vendor(root).unwrap_or(proc::CpuVendor::Other);
    let cmdline = proc::cmdline(root).unwrap_or_default();
    let hardware = pci::iommu_hardware(root);
    let mut remedy = Vec::new();
    let off: Vec<&str> = cmdline
        .split_whitespace()
        .filter(|p| matches!(*p, "iommu=off" | "amd_iommu=off" | "intel_iommu=off"))
        .collect();
    if !off.is_empty() {
        remedy.push(format!("the kernel command line turns it off: remove {}", off.join(" ")));
    }
    if hardware.is_empty() {
        let flags: std::collections::BTreeSet<String> = root
            .read_optional("/proc/cpuinfo")
            .ok()
            .flatten()
            .map(|c| vfioctl_core::vendor::cpu_flags(&c).into_iter().collect())
            .unwrap_or_default();
        let vm = vfioctl_host::facts::virtual_machine(root, Some(&flags));
        remedy.push(format!(
            "{}; the kernel found no IOMMU (no /sys/class/iommu entries)",
            vendor.enable_iommu(vm.as_deref())
        ));
    }
    let param = vendor.iommu_parameter();
    if !cmdline.split_whitespace().any(|p| p == param) {
        remedy.push(format!(
            "add `{param} iommu=pt` to the kernel command line (e.g. GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then update-grub) and reboot"
        ));
    }
    remedy.push("check with `vfioctl list` again after the reboot".into());
    CliError::IommuOff { remedy: remedy.join("\n") }
}

pub fn run(root: &HostRoot, args: &ListArgs) -> Result<Exit, CliError> {
    let fields = match args.format {
        ListFormat::Lspci => pci::Fields::Names,
        ListFormat::Text => pci::Fields::Table,
        ListFormat::Json => pci::Fields::All,
    };
    let inv = pci::read_fields(root, fields)?;
    for w in &inv.warnings {
        eprintln_safe!("vfioctl: warning: {w}");
    }
    let vendors = inv.devices.values().map(|d| d.id.vendor).collect();
    let (db, source) =
        pci_ids::load_for(args.pci_ids.as_deref(), Some(&vendors)).map_err(vfioctl_host::HostError::from)?;
    match args.format {
        ListFormat::Lspci => output::print(&lspci_lines(&db, &inv))?,
        ListFormat::Json => json_value(&db, &inv, &source)?,
        ListFormat::Text => output::print(&render_text(&db, &inv))?,
    }
    if inv.groups.is_empty() {
        return Err(iommu_off(root));
    }
    Ok(Exit::Ok)
}
