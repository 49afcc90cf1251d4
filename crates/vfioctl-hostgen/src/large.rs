//! The large synthetic host (`hostgen --large`): a two-socket EPYC-like server with
//! thousands of PCI functions, for benchmarks.
//!
//! Layout: 4 PCI root complexes per package, each a root bus with a root complex host
//! bridge (`1022:1480`, its own IOMMU group) and up to 248 root ports (`1022:1483`).
//! Every other IOMMU group is one root port with what sits behind it: a multi-function
//! endpoint (GPU with audio/USB/UCSI, 4-port NICs, NVMe, HBA, ...) or, for larger groups,
//! a PLX switch with endpoints behind its downstream ports. The first group holds the
//! BMC's ASPEED bridge and VGA (the boot display). Buses are numbered depth-first; a root
//! complex that no longer fits below bus 0xff starts a new PCI domain, as multi-segment
//! servers do. Root complexes are spread evenly over the NUMA nodes.

use crate::spec::{CacheSpec, CpuSpec, DeviceSpec, HostSpec, MemorySpec, PciRootSpec, PciSpec, SmtSiblings, Spec};
use crate::Error;

/// Size of the generated host.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub devices: u32,
    pub groups: u32,
    pub cpus: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { devices: 2000, groups: 500, cpus: 256 }
    }
}

/// One function of an endpoint template: id, class, rev, driver, reset_method.
type Func = (&'static str, &'static str, &'static str, Option<&'static str>, Option<&'static str>);

/// Real devices, function 0 first; (functions, subsystem).
const TEMPLATES: &[(&[Func], &str)] = &[
    (
        &[
            ("10de:1e07", "030000", "a1", Some("nvidia"), Some("bus")),
            ("10de:10f7", "040300", "a1", Some("snd_hda_intel"), Some("bus")),
            ("10de:1ad6", "0c0330", "a1", Some("xhci_hcd"), Some("bus")),
            ("10de:1ad7", "0c8000", "a1", Some("nvidia-gpu"), Some("bus")),
        ],
        "10de:12fa",
    ),
    (
        &[
            ("8086:1572", "020000", "02", Some("i40e"), Some("flr bus")),
            ("8086:1572", "020000", "02", Some("i40e"), Some("flr bus")),
            ("8086:1572", "020000", "02", Some("i40e"), Some("flr bus")),
            ("8086:1572", "020000", "02", Some("i40e"), Some("flr bus")),
        ],
        "8086:0004",
    ),
    (&[("144d:a824", "010802", "00", Some("nvme"), Some("flr bus"))], "144d:a812"),
    (
        &[
            ("15b3:1017", "020000", "00", Some("mlx5_core"), Some("flr bus")),
            ("15b3:1017", "020000", "00", Some("mlx5_core"), Some("flr bus")),
        ],
        "15b3:0007",
    ),
    (
        &[
            ("1002:66af", "030000", "c1", Some("amdgpu"), Some("bus")),
            ("1002:ab20", "040300", "00", Some("snd_hda_intel"), Some("bus")),
        ],
        "1002:081e",
    ),
    (
        &[
            ("8086:1521", "020000", "01", Some("igb"), Some("flr bus")),
            ("8086:1521", "020000", "01", Some("igb"), Some("flr bus")),
            ("8086:1521", "020000", "01", Some("igb"), Some("flr bus")),
            ("8086:1521", "020000", "01", Some("igb"), Some("flr bus")),
        ],
        "8086:5001",
    ),
    (&[("1000:0097", "010700", "02", Some("mpt3sas"), Some("bus"))], "1000:30e0"),
    (&[("10de:20b0", "030200", "a1", Some("nvidia"), Some("flr bus"))], "10de:134f"),
    (
        &[
            ("8086:1593", "020000", "02", Some("ice"), Some("flr bus")),
            ("8086:1593", "020000", "02", Some("ice"), Some("flr bus")),
            ("8086:1593", "020000", "02", Some("ice"), Some("flr bus")),
            ("8086:1593", "020000", "02", Some("ice"), Some("flr bus")),
        ],
        "8086:0005",
    ),
    (&[("1b21:2142", "0c0330", "00", Some("xhci_hcd"), None)], "1b21:2142"),
];

const ROOT_PORT: &str = "1022:1483";
const SWITCH: &str = "10b5:8747";

fn bad(msg: String) -> Error {
    Error::Spec(msg)
}

/// The CPU part: 2 packages × 2 nodes for 64+ CPUs, L3 per 8 cores, 2 threads per core.
fn cpu_spec(cpus: u32) -> Result<(CpuSpec, u32), Error> {
    let (packages, nodes_per_package) = if cpus >= 64 && cpus % 64 == 0 {
        (2, 2)
    } else if cpus >= 16 && cpus % 16 == 0 {
        (1, 1)
    } else {
        return Err(bad(format!("--cpus {cpus}: must be a multiple of 64 (or of 16 below 64)")));
    };
    let cores_per_l3 = 8;
    let l3_per_node = cpus / 2 / (packages * nodes_per_package * cores_per_l3);
    let cpu = CpuSpec {
        vendor: "AuthenticAMD".into(),
        model_name: "AMD EPYC 7763 64-Core Processor".into(),
        family: 25,
        model: 1,
        stepping: 1,
        microcode: Some("0xa0011d1".into()),
        packages,
        nodes_per_package,
        l3_per_node,
        cores_per_l3,
        threads_per_core: 2,
        smt_siblings: SmtSiblings::Split,
        core_id_slots_per_l3: None,
        base_freq_khz: 2450000,
        max_freq_khz: 3530000,
        cache: CacheSpec { l1d: "32K".into(), l1i: "32K".into(), l2: "512K".into(), l3: "32M".into() },
        hybrid: None,
        flags: None,
        l3_sizes: None,
        l3_max_freq_khz: None,
    };
    Ok((cpu, packages * nodes_per_package))
}

struct Builder {
    devices: Vec<DeviceSpec>,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        dom: u32,
        bus: u32,
        dev: u32,
        func: u32,
        id: &str,
        class: &str,
        group: u32,
        parent: Option<String>,
    ) -> String {
        let addr = format!("{dom:04x}:{bus:02x}:{dev:02x}.{func:x}");
        self.devices.push(DeviceSpec {
            addr: addr.clone(),
            id: id.into(),
            class: class.into(),
            group: Some(group),
            parent,
            ..DeviceSpec::default()
        });
        addr
    }

    fn last(&mut self) -> &mut DeviceSpec {
        let i = self.devices.len() - 1;
        &mut self.devices[i]
    }

    /// An endpoint with `n` functions of template `t` at `bus:00`.
    #[allow(clippy::too_many_arguments)]
    fn endpoint(&mut self, dom: u32, bus: u32, t: usize, n: usize, group: u32, parent: &str, vfio: bool) {
        let (funcs, subsys) = TEMPLATES[t];
        for (f, &(id, class, rev, driver, reset)) in funcs.iter().take(n).enumerate() {
            self.add(dom, bus, 0, f as u32, id, class, group, Some(parent.into()));
            let d = self.last();
            d.rev = Some(rev.into());
            d.subsystem = Some(subsys.into());
            d.driver = if vfio { Some("vfio-pci".into()) } else { driver.map(Into::into) };
            d.reset_method = reset.map(Into::into);
            if class.starts_with("03") {
                d.boot_vga = Some(false);
            }
        }
    }
}

/// Buses a group of `size` devices needs below its root port.
fn buses_for(size: u32) -> u32 {
    let rem = size - 1;
    if rem <= 4 {
        1
    } else {
        // the upstream port's bus, the downstream ports' bus, one bus per downstream port
        let mut left = rem - 1;
        let mut ports = 0;
        while left > 0 {
            ports += 1;
            left -= 1;
            left -= left.min(4);
        }
        2 + ports
    }
}

/// Builds the spec of the large host.
pub fn spec(p: &Params) -> Result<Spec, Error> {
    let (cpu, nodes) = cpu_spec(p.cpus)?;
    let packages = cpu.packages;
    let rcs = packages * 4;
    if p.groups < rcs + 1 {
        return Err(bad(format!("--groups {}: need at least {}", p.groups, rcs + 1)));
    }
    // Group sizes: one host bridge per root complex, the BMC group (3), then the rest.
    let other_groups = p.groups - rcs - 1;
    let other_devices = p.devices.saturating_sub(rcs + 3);
    if p.devices < rcs + 3 || other_devices < 2 * other_groups || (other_groups == 0 && other_devices > 0) {
        return Err(bad(format!(
            "--devices {} cannot fill --groups {} (each group needs 2 to 64 devices)",
            p.devices, p.groups
        )));
    }
    let mut sizes: Vec<u32> = vec![3];
    for i in 0..other_groups {
        sizes.push(other_devices / other_groups + u32::from(i < other_devices % other_groups));
    }
    if sizes.iter().any(|&s| s > 64) {
        return Err(bad(format!("--devices {} / --groups {}: groups larger than 64 devices", p.devices, p.groups)));
    }
    // Assign groups to root complexes round-robin.
    let mut per_rc: Vec<Vec<(u32, u32)>> = vec![Vec::new(); rcs as usize];
    for (i, &s) in sizes.iter().enumerate() {
        per_rc[i % rcs as usize].push((i as u32, s));
    }
    if per_rc.iter().any(|g| g.len() > 248) {
        return Err(bad("too many groups: more than 248 root ports per root complex".into()));
    }

    let mut b = Builder { devices: Vec::with_capacity(p.devices as usize) };
    let mut roots = Vec::new();
    let (mut dom, mut cursor) = (0u32, 0u32);
    for (rc, groups) in per_rc.iter().enumerate() {
        let need: u32 = 1 + groups.iter().map(|&(g, s)| if g == 0 { 2 } else { buses_for(s) }).sum::<u32>();
        if need > 256 {
            return Err(bad("too many buses in one root complex".into()));
        }
        if cursor + need > 256 {
            dom += 1;
            cursor = 0;
        }
        let root = cursor;
        cursor += 1;
        let node = rc as u32 * nodes / rcs;
        roots.push(PciRootSpec { domain: format!("{dom:04x}"), bus: format!("{root:02x}"), node: node as i32 });
        let hb_group = p.groups - rcs + rc as u32;
        b.add(dom, root, 0, 0, "1022:1480", "060000", hb_group, None);
        b.last().subsystem = Some("1022:1480".into());
        for (k, &(g, size)) in groups.iter().enumerate() {
            let (slot, func) = (1 + k as u32 / 8, k as u32 % 8);
            let rp = b.add(dom, root, slot, func, ROOT_PORT, "060400", g, None);
            b.last().driver = Some("pcieport".into());
            let sec = cursor;
            if g == 0 {
                let br = b.add(dom, sec, 0, 0, "1a03:1150", "060400", g, Some(rp));
                b.last().rev = Some("04".into());
                let vga_bus = sec + 1;
                b.add(dom, vga_bus, 0, 0, "1a03:2000", "030000", g, Some(br));
                let d = b.last();
                d.rev = Some("41".into());
                d.subsystem = Some("15d9:1b95".into());
                d.driver = Some("ast".into());
                d.boot_vga = Some(true);
                cursor += 2;
                continue;
            }
            let rem = size - 1;
            let vfio = g % 4 == 1;
            if rem <= 4 {
                let cands: Vec<usize> =
                    (0..TEMPLATES.len()).filter(|&t| TEMPLATES[t].0.len() >= rem as usize).collect();
                let t = cands[g as usize % cands.len()];
                b.endpoint(dom, sec, t, rem as usize, g, &rp, vfio);
                cursor += 1;
                continue;
            }
            let up = b.add(dom, sec, 0, 0, SWITCH, "060400", g, Some(rp));
            b.last().rev = Some("ca".into());
            b.last().driver = Some("pcieport".into());
            let down_bus = sec + 1;
            cursor += 2;
            let mut left = rem - 1;
            let mut port = 0;
            while left > 0 {
                let dp = b.add(dom, down_bus, port, 0, SWITCH, "060400", g, Some(up.clone()));
                let ep_bus = cursor;
                {
                    let d = b.last();
                    d.rev = Some("ca".into());
                    d.driver = Some("pcieport".into());
                    d.secondary_bus = Some(format!("{ep_bus:02x}"));
                }
                cursor += 1;
                left -= 1;
                let n = left.min(4);
                if n > 0 {
                    let cands: Vec<usize> =
                        (0..TEMPLATES.len()).filter(|&t| TEMPLATES[t].0.len() >= n as usize).collect();
                    let t = cands[(g + port) as usize % cands.len()];
                    b.endpoint(dom, ep_bus, t, n as usize, g, &dp, vfio);
                    left -= n;
                }
                port += 1;
            }
        }
        debug_assert_eq!(cursor, root + need);
    }

    let cmdline = "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=5b7e7a39-2c0e-4f8e-9a55-3d1c6f1e2a90 ro quiet amd_iommu=on iommu=pt default_hugepagesz=1G hugepagesz=1G hugepages=64";
    Ok(Spec {
        host: HostSpec {
            name: "large".into(),
            description: format!(
                "synthetic {}-CPU server with {} PCI functions in {} IOMMU groups",
                p.cpus, p.devices, p.groups
            ),
            cmdline: cmdline.into(),
            iommu: true,
            kernel: Some("6.1.0-18-amd64".into()),
            distro: Some(crate::spec::Distro::Debian),
            ..Default::default()
        },
        cpu,
        memory: MemorySpec {
            node_mib: vec![131072; nodes as usize],
            remote_distance: 32,
            hugepages_2m: vec![0; nodes as usize],
            hugepages_1g: vec![64 / u64::from(nodes); nodes as usize],
        },
        pci: PciSpec { roots, devices: b.devices },
        files: Default::default(),
        links: Default::default(),
        disks: Vec::new(),
        volumes: Vec::new(),
        mounts: Vec::new(),
        pools: Vec::new(),
        ukis: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn default_size() {
        let s = spec(&Params::default()).unwrap();
        assert_eq!(s.pci.devices.len(), 2000);
        let groups: BTreeSet<_> = s.pci.devices.iter().map(|d| d.group).collect();
        assert_eq!(groups.len(), 500);
        assert_eq!(s.pci.devices.iter().filter(|d| d.boot_vga == Some(true)).count(), 1);
        let t = crate::build(&s).unwrap();
        assert!(t.len() > 50_000);
    }

    #[test]
    fn odd_sizes() {
        for (devices, groups, cpus) in [(100, 10, 16), (3000, 300, 128), (1000, 500, 64), (2000, 100, 256)] {
            let s = spec(&Params { devices, groups, cpus }).unwrap();
            assert_eq!(s.pci.devices.len() as u32, devices);
            let g: BTreeSet<_> = s.pci.devices.iter().map(|d| d.group).collect();
            assert_eq!(g.len() as u32, groups);
            crate::build(&s).unwrap();
        }
        assert!(spec(&Params { devices: 10, groups: 500, cpus: 256 }).is_err());
        assert!(spec(&Params { devices: 2000, groups: 500, cpus: 100 }).is_err());
    }
}
