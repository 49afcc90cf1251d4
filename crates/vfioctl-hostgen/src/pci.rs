//! PCI files: nested device directories under `sys/devices/pciDDDD:BB`, `sys/bus/pci`,
//! drivers, IOMMU groups, `sys/class/iommu`.

use std::collections::{BTreeMap, BTreeSet};

use vfioctl_core::pci::{PciAddress, VendorDevice};

use crate::cpu::Topology;
use crate::spec::{DeviceSpec, Spec};
use crate::tree::{list, mask, Tree};
use crate::Error;

/// A validated PCI function.
#[derive(Debug, Clone)]
pub struct Dev {
    pub addr: PciAddress,
    pub id: VendorDevice,
    pub class: u32,
    pub rev: u8,
    pub subsystem: Option<VendorDevice>,
    pub driver: Option<String>,
    pub group: Option<u32>,
    pub node: i32,
    pub boot_vga: Option<bool>,
    pub reset_method: Option<String>,
    pub parent: Option<usize>,
    pub bridge: bool,
    pub secondary: u8,
    pub subordinate: u8,
    pub multifunction: bool,
    /// PCIe port type for the Express capability, if any.
    pub port_type: Option<u8>,
    /// Directory relative to the root, `sys/devices/pci0000:00/0000:00:01.1/...`.
    pub dir: String,
}

fn err(d: &DeviceSpec, msg: impl std::fmt::Display) -> Error {
    Error::Spec(format!("device {}: {msg}", d.addr))
}

fn hex_u8(s: &str) -> Option<u8> {
    let s = s.trim_start_matches("0x");
    (s.len() <= 2 && !s.is_empty()).then(|| u8::from_str_radix(s, 16).ok()).flatten()
}

/// Validates `device = [...]` and works out the bridge hierarchy.
pub fn devices(spec: &Spec, topo: &Topology) -> Result<Vec<Dev>, Error> {
    let mut roots: BTreeMap<(u32, u8), i32> = BTreeMap::new();
    for r in &spec.pci.roots {
        let dom = u32::from_str_radix(&r.domain, 16)
            .map_err(|_| Error::Spec(format!("pci_root: bad domain `{}`", r.domain)))?;
        let bus = hex_u8(&r.bus).ok_or_else(|| Error::Spec(format!("pci_root: bad bus `{}`", r.bus)))?;
        if r.node >= topo.nodes as i32 || r.node < -1 {
            return Err(Error::Spec(format!("pci_root {}:{}: node {} does not exist", r.domain, r.bus, r.node)));
        }
        roots.insert((dom, bus), r.node);
    }

    let mut specs: Vec<(PciAddress, &DeviceSpec)> = Vec::with_capacity(spec.pci.devices.len());
    for d in &spec.pci.devices {
        let a: PciAddress = d.addr.parse().map_err(|e| err(d, e))?;
        specs.push((a, d));
    }
    specs.sort_by_key(|(a, _)| *a);
    for w in specs.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(err(w[1].1, "listed twice"));
        }
    }
    let index: BTreeMap<PciAddress, usize> = specs.iter().enumerate().map(|(i, (a, _))| (*a, i)).collect();
    let slots: BTreeSet<(u32, u8, u8, u8)> =
        specs.iter().map(|(a, _)| (a.domain, a.bus, a.device, a.function)).collect();

    let mut devs = Vec::with_capacity(specs.len());
    for (addr, d) in &specs {
        let id: VendorDevice = d.id.parse().map_err(|e| err(d, e))?;
        let class = (d.class.len() == 6)
            .then(|| u32::from_str_radix(&d.class, 16).ok())
            .flatten()
            .ok_or_else(|| err(d, format_args!("class `{}` is not six hex digits like 030000", d.class)))?;
        let rev = match &d.rev {
            Some(r) => hex_u8(r).ok_or_else(|| err(d, format_args!("rev `{r}` is not a hex byte")))?,
            None => 0,
        };
        let subsystem = d.subsystem.as_deref().map(str::parse).transpose().map_err(|e| err(d, e))?;
        let parent = match &d.parent {
            Some(p) => {
                let pa: PciAddress = p.parse().map_err(|e| err(d, e))?;
                Some(*index.get(&pa).ok_or_else(|| err(d, format_args!("parent {p} is not listed")))?)
            }
            None => None,
        };
        let display = class >> 16 == 0x03;
        if d.boot_vga.is_some() && !display {
            return Err(err(d, "boot_vga is only for display controllers (class 03xxxx)"));
        }
        let bridge = matches!(class >> 8, 0x0604 | 0x0609);
        if d.secondary_bus.is_some() && !bridge {
            return Err(err(d, "secondary_bus is only for PCI bridges"));
        }
        let secondary = match &d.secondary_bus {
            Some(s) => hex_u8(s).ok_or_else(|| err(d, format_args!("secondary_bus `{s}` is not a hex byte")))?,
            None => 0,
        };
        let multifunction =
            addr.function == 0 && (1..8).any(|f| slots.contains(&(addr.domain, addr.bus, addr.device, f)));
        devs.push(Dev {
            addr: *addr,
            id,
            class,
            rev,
            subsystem,
            driver: d.driver.clone().filter(|s| !s.is_empty()),
            group: if spec.host.iommu { d.group } else { None },
            node: d.node.unwrap_or(-2),
            boot_vga: if display { Some(d.boot_vga.unwrap_or(false)) } else { None },
            reset_method: d.reset_method.clone(),
            parent,
            bridge,
            secondary,
            subordinate: secondary,
            multifunction,
            port_type: None,
            dir: String::new(),
        });
    }

    // Children, secondary bus and parents' kinds.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); devs.len()];
    for (i, d) in devs.iter().enumerate() {
        if let Some(p) = d.parent {
            if !devs[p].bridge {
                return Err(err(specs[i].1, format_args!("parent {} is not a PCI bridge (class 0604)", devs[p].addr)));
            }
            if devs[p].addr.domain != d.addr.domain {
                return Err(err(specs[i].1, "parent is in another PCI domain"));
            }
            children[p].push(i);
        }
    }
    for (i, kids) in children.iter().enumerate() {
        if let Some(&first) = kids.first() {
            let bus = devs[first].addr.bus;
            if kids.iter().any(|&k| devs[k].addr.bus != bus) {
                return Err(err(specs[i].1, "children on more than one bus"));
            }
            if specs[i].1.secondary_bus.is_some() && devs[i].secondary != bus {
                return Err(err(specs[i].1, format_args!("secondary_bus does not match its children's bus {bus:02x}")));
            }
            if bus <= devs[i].addr.bus {
                return Err(err(specs[i].1, "children's bus must be above the bridge's own bus"));
            }
            devs[i].secondary = bus;
        } else if devs[i].bridge && specs[i].1.secondary_bus.is_none() {
            return Err(err(specs[i].1, "bridge without children needs `secondary_bus`"));
        }
    }

    // Depth-first: directories, subordinate buses, nodes, port types. Parents precede
    // children in the walk; a parent loop leaves devices unvisited and is reported.
    let mut visited = vec![false; devs.len()];
    let mut order = Vec::with_capacity(devs.len());
    let mut stack: Vec<usize> = (0..devs.len()).filter(|&i| devs[i].parent.is_none()).rev().collect();
    while let Some(i) = stack.pop() {
        if visited[i] {
            continue;
        }
        visited[i] = true;
        order.push(i);
        let a = devs[i].addr;
        let (dir, node, port_type) = match devs[i].parent {
            None => {
                let node = roots.get(&(a.domain, a.bus)).copied().unwrap_or(-1);
                let pt = if devs[i].bridge { Some(4) } else { None };
                (format!("sys/devices/pci{:04x}:{:02x}/{a}", a.domain, a.bus), node, pt)
            }
            Some(p) => {
                let parent = &devs[p];
                let pt = match (devs[i].bridge, parent.port_type) {
                    (true, Some(5)) => Some(6),
                    (true, _) => Some(5),
                    (false, _) => Some(0),
                };
                (format!("{}/{a}", parent.dir), parent.node, pt)
            }
        };
        let d = &mut devs[i];
        d.dir = dir;
        if d.node == -2 {
            d.node = node;
        }
        if d.node >= topo.nodes as i32 || d.node < -1 {
            return Err(err(specs[i].1, format_args!("node {} does not exist", d.node)));
        }
        d.port_type = port_type;
        stack.extend(children[i].iter().rev());
    }
    if let Some(i) = visited.iter().position(|v| !v) {
        return Err(err(specs[i].1, "parent chain loops"));
    }
    for &i in order.iter().rev() {
        let sub = children[i].iter().map(|&k| devs[k].subordinate.max(devs[k].addr.bus)).max();
        if let Some(sub) = sub {
            devs[i].subordinate = devs[i].subordinate.max(sub);
        }
    }
    Ok(devs)
}

/// 256 bytes of config space: header, bridge bus numbers, a PCI Express capability.
pub fn config(d: &Dev) -> Vec<u8> {
    let mut c = vec![0u8; 256];
    c[0..2].copy_from_slice(&d.id.vendor.to_le_bytes());
    c[2..4].copy_from_slice(&d.id.device.to_le_bytes());
    let command: u16 = if d.driver.is_some() || d.bridge { 0x0407 } else { 0x0000 };
    c[4..6].copy_from_slice(&command.to_le_bytes());
    let status: u16 = if d.port_type.is_some() { 0x0010 } else { 0x0000 };
    c[6..8].copy_from_slice(&status.to_le_bytes());
    c[0x08] = d.rev;
    c[0x09] = d.class as u8;
    c[0x0a] = (d.class >> 8) as u8;
    c[0x0b] = (d.class >> 16) as u8;
    c[0x0c] = 0x10;
    let header = if d.bridge { 1 } else { 0 };
    c[0x0e] = header | if d.multifunction { 0x80 } else { 0 };
    if d.bridge {
        c[0x18] = d.addr.bus;
        c[0x19] = d.secondary;
        c[0x1a] = d.subordinate;
    } else if let Some(s) = d.subsystem {
        c[0x2c..0x2e].copy_from_slice(&s.vendor.to_le_bytes());
        c[0x2e..0x30].copy_from_slice(&s.device.to_le_bytes());
    }
    if let Some(pt) = d.port_type {
        c[0x34] = 0x40;
        c[0x40] = 0x10; // PCI Express
        c[0x41] = 0x00; // end of list
        let caps: u16 = 2 | (u16::from(pt) << 4) | if pt == 4 || pt == 6 { 1 << 8 } else { 0 };
        c[0x42..0x44].copy_from_slice(&caps.to_le_bytes());
    }
    if !d.bridge && d.class >> 8 != 0x0600 {
        c[0x3d] = 1; // INTA#
    }
    c
}

fn modalias(d: &Dev) -> String {
    let s = d.subsystem.unwrap_or(VendorDevice { vendor: 0, device: 0 });
    format!(
        "pci:v{:08X}d{:08X}sv{:08X}sd{:08X}bc{:02X}sc{:02X}i{:02X}\n",
        d.id.vendor,
        d.id.device,
        s.vendor,
        s.device,
        d.class >> 16,
        (d.class >> 8) & 0xff,
        d.class & 0xff
    )
}

/// Whether `iommu=pt` is on the kernel command line (identity-mapped default domains).
fn passthrough(cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == "iommu=pt")
}

/// Writes all PCI files.
pub fn write(spec: &Spec, topo: &Topology, devs: &[Dev], t: &mut Tree) {
    let n = topo.nr_cpus();
    let zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
    t.file("sys/bus/pci/drivers_autoprobe", "1\n");
    let mut drivers = BTreeSet::new();
    let mut groups = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for (i, d) in devs.iter().enumerate() {
        let dir = &d.dir;
        let f = |name: &str| format!("{dir}/{name}");
        t.file(f("vendor"), format!("0x{:04x}\n", d.id.vendor));
        t.file(f("device"), format!("0x{:04x}\n", d.id.device));
        t.file(f("class"), format!("0x{:06x}\n", d.class));
        t.file(f("revision"), format!("0x{:02x}\n", d.rev));
        let s = d.subsystem.unwrap_or(VendorDevice { vendor: 0, device: 0 });
        t.file(f("subsystem_vendor"), format!("0x{:04x}\n", s.vendor));
        t.file(f("subsystem_device"), format!("0x{:04x}\n", s.device));
        let irq = if d.driver.is_some() { 24 + (i % 200) } else { 0 };
        t.file(f("irq"), format!("{irq}\n"));
        t.file(f("numa_node"), format!("{}\n", d.node));
        let local = topo.node_cpus(d.node);
        t.file(f("local_cpulist"), format!("{}\n", list(&local)));
        t.file(f("local_cpus"), format!("{}\n", mask(&local, n)));
        t.file(f("enable"), if d.driver.is_some() { "1\n" } else { "0\n" });
        t.file(f("modalias"), modalias(d));
        t.file(f("driver_override"), "(null)\n");
        t.file(f("d3cold_allowed"), "1\n");
        t.file(f("uevent"), uevent(d));
        let lines = if d.bridge { 17 } else { 13 };
        t.file(f("resource"), zero.repeat(lines));
        t.bytes(f("config"), config(d));
        if let Some(b) = d.boot_vga {
            t.file(f("boot_vga"), if b { "1\n" } else { "0\n" });
        }
        if let Some(r) = &d.reset_method {
            t.file(f("reset_method"), format!("{r}\n"));
        }
        t.link(f("subsystem"), "sys/bus/pci");
        t.link(format!("sys/bus/pci/devices/{}", d.addr), dir);
        if let Some(drv) = &d.driver {
            let dd = format!("sys/bus/pci/drivers/{drv}");
            t.link(f("driver"), &dd);
            t.link(format!("{dd}/{}", d.addr), dir);
            drivers.insert(drv.clone());
        }
        if let Some(g) = d.group {
            let gd = format!("sys/kernel/iommu_groups/{g}");
            t.link(f("iommu_group"), &gd);
            t.link(format!("{gd}/devices/{}", d.addr), dir);
            groups.insert(g);
        }
        if d.parent.is_none() {
            hosts.insert((d.addr.domain, d.addr.bus));
        }
    }
    for drv in &drivers {
        for name in ["bind", "unbind", "new_id", "remove_id", "uevent"] {
            t.file(format!("sys/bus/pci/drivers/{drv}/{name}"), "");
        }
    }
    for (dom, bus) in &hosts {
        t.file(format!("sys/devices/pci{dom:04x}:{bus:02x}/uevent"), "");
    }
    let kind = if passthrough(&spec.host.cmdline) { "identity\n" } else { "DMA\n" };
    for g in &groups {
        t.file(format!("sys/kernel/iommu_groups/{g}/type"), kind);
        t.file(format!("sys/kernel/iommu_groups/{g}/reserved_regions"), "0x00000000fee00000 0x00000000feefffff msi\n");
    }
    if spec.host.iommu {
        if spec.cpu.vendor == "GenuineIntel" {
            let d = "sys/class/iommu/dmar0/intel-iommu";
            t.file(format!("{d}/address"), "fed90000\n");
            t.file(format!("{d}/cap"), "1c0000c40660462\n");
            t.file(format!("{d}/ecap"), "29a00f0505e\n");
            t.file(format!("{d}/version"), "1:0\n");
        } else {
            let d = "sys/class/iommu/ivhd0/amd-iommu";
            t.file(format!("{d}/cap"), "0x00190003\n");
            t.file(format!("{d}/features"), "0x0000000000000000\n");
        }
    }
}

fn uevent(d: &Dev) -> String {
    let mut s = String::new();
    if let Some(drv) = &d.driver {
        s.push_str(&format!("DRIVER={drv}\n"));
    }
    s.push_str(&format!("PCI_CLASS={:X}\n", d.class));
    s.push_str(&format!("PCI_ID={:04X}:{:04X}\n", d.id.vendor, d.id.device));
    // The kernel always writes it: 0000:0000 for a device (or bridge) without one.
    let ss = d.subsystem.unwrap_or(VendorDevice { vendor: 0, device: 0 });
    s.push_str(&format!("PCI_SUBSYS_ID={:04X}:{:04X}\n", ss.vendor, ss.device));
    s.push_str(&format!("PCI_SLOT_NAME={}\n", d.addr));
    s.push_str(&format!("MODALIAS={}", modalias(d)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::topology;
    use crate::spec::parse;

    fn spec(devices: &str) -> Spec {
        parse(&format!(
            "[host]\nname='t'\ncmdline='iommu=pt'\n[cpu]\nvendor='AuthenticAMD'\nmodel_name='x'\nfamily=23\nmodel=1\n\
             cores_per_l3=2\nbase_freq_khz=1\nmax_freq_khz=1\ncache={{l1d='32K',l1i='64K',l2='512K',l3='8M'}}\n\
             [memory]\nnode_mib=[1024]\n[pci]\nroots=[{{bus='00',node=0}}]\n{devices}"
        ))
        .unwrap()
    }

    const TREE: &str = r#"devices = [
  { addr = "00:01.0", id = "1022:1452", class = "060000", group = 0 },
  { addr = "00:01.1", id = "1022:1453", class = "060400", group = 1, driver = "pcieport" },
  { addr = "01:00.0", id = "1002:14a0", class = "060400", rev = "c1", group = 2, parent = "00:01.1", driver = "pcieport" },
  { addr = "02:00.0", id = "1002:14a1", class = "060400", group = 3, parent = "01:00.0", driver = "pcieport" },
  { addr = "03:00.0", id = "1002:66af", class = "030000", rev = "c1", subsystem = "1002:081e", group = 4, parent = "02:00.0", driver = "amdgpu", reset_method = "bus" },
  { addr = "03:00.1", id = "1002:ab20", class = "040300", group = 5, parent = "02:00.0" },
]"#;

    #[test]
    fn nests_and_numbers_buses() {
        let s = spec(TREE);
        let t = topology(&s).unwrap();
        let d = devices(&s, &t).unwrap();
        let gpu = d.iter().find(|x| x.addr.bus == 3 && x.addr.function == 0).unwrap();
        assert_eq!(gpu.dir, "sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0");
        assert!(gpu.multifunction);
        assert_eq!(gpu.boot_vga, Some(false));
        assert_eq!(gpu.node, 0);
        let rp = &d[1];
        assert_eq!((rp.secondary, rp.subordinate), (1, 3));
        assert_eq!((rp.port_type, d[2].port_type, d[3].port_type), (Some(4), Some(5), Some(6)));
        assert!(d[0].multifunction);
        let c = config(gpu);
        assert_eq!(&c[0..4], &[0x02, 0x10, 0xaf, 0x66]);
        assert_eq!((c[0x08], c[0x09], c[0x0a], c[0x0b], c[0x0e]), (0xc1, 0, 0, 3, 0x80));
        assert_eq!(&c[0x2c..0x30], &[0x02, 0x10, 0x1e, 0x08]);
        assert_eq!(config(rp)[0x18..0x1b], [0, 1, 3]);
        assert_eq!(modalias(gpu), "pci:v00001002d000066AFsv00001002sd0000081Ebc03sc00i00\n");
    }

    #[test]
    fn writes_links() {
        let s = spec(TREE);
        let topo = topology(&s).unwrap();
        let d = devices(&s, &topo).unwrap();
        let mut t = Tree::new();
        write(&s, &topo, &d, &mut t);
        use crate::tree::Node;
        assert_eq!(
            t.get("sys/bus/pci/devices/0000:00:01.1"),
            Some(&Node::Link("../../../devices/pci0000:00/0000:00:01.1".into()))
        );
        assert_eq!(
            t.get("sys/devices/pci0000:00/0000:00:01.1/iommu_group"),
            Some(&Node::Link("../../../kernel/iommu_groups/1".into()))
        );
        assert_eq!(t.get("sys/kernel/iommu_groups/1/type"), Some(&Node::File(b"identity\n".to_vec())));
        assert!(t.get("sys/bus/pci/drivers/amdgpu/0000:03:00.0").is_some());
        assert!(t.get("sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.1/driver").is_none());
        assert!(t.get("sys/class/iommu/ivhd0/amd-iommu/cap").is_some());
    }

    #[test]
    fn rejects_bad_devices() {
        let cases = [
            r#"devices = [{ addr = "00:01.0", id = "1022:1452", class = "0600", group = 0 }]"#,
            r#"devices = [{ addr = "00:01.0", id = "1022:1452", class = "060000", group = 0, rev = "100" }]"#,
            r#"devices = [{ addr = "00:01.0", id = "1022:1452", class = "060000", group = 0, boot_vga = true }]"#,
            r#"devices = [{ addr = "01:00.0", id = "1022:1452", class = "060000", group = 0, parent = "00:01.1" }]"#,
            r#"devices = [{ addr = "00:01.1", id = "1022:1453", class = "060400", group = 0 }]"#,
            r#"devices = [{ addr = "00:01.0", id = "1022:1452", class = "060000", group = 0 },
                         { addr = "00:01.0", id = "1022:1452", class = "060000", group = 0 }]"#,
            r#"devices = [{ addr = "00:01.0", id = "1022:1452", class = "060000", group = 0, node = 3 }]"#,
        ];
        for c in cases {
            let s = spec(c);
            let t = topology(&s).unwrap();
            assert!(devices(&s, &t).is_err(), "{c}");
        }
    }
}
