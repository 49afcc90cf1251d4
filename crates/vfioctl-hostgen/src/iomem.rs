//! `/proc/iomem`: the physical address map as the kernel prints it, nested by two spaces
//! per level: RAM and firmware ranges, each root bus's window with bridge windows
//! (`PCI Bus DDDD:BB`) and endpoint BARs (`DDDD:BB:DD.F`) inside, driver claims inside
//! those, and the boot framebuffer inside the boot GPU's memory BAR.

use std::fmt::Write as _;

use crate::pci::Dev;
use crate::spec::Spec;
use crate::system::Kernel;
use crate::tree::Tree;

const K: u64 = 1 << 10;
const M: u64 = 1 << 20;

/// One resource and its children.
#[derive(Debug, Clone)]
struct Res {
    start: u64,
    end: u64,
    name: String,
    children: Vec<Res>,
}

impl Res {
    fn new(start: u64, end: u64, name: impl Into<String>) -> Self {
        Res { start, end, name: name.into(), children: Vec::new() }
    }

    fn with(mut self, child: Res) -> Self {
        self.children.push(child);
        self
    }
}

fn render(list: &mut [Res], depth: usize, out: &mut String) {
    list.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    for r in list {
        let _ = writeln!(out, "{:indent$}{:08x}-{:08x} : {}", "", r.start, r.end, r.name, indent = depth * 2);
        render(&mut r.children, depth + 1, out);
    }
}

/// Memory BAR sizes of an endpoint, largest first, and which one holds the framebuffer
/// of a display device.
fn bars(d: &Dev) -> (Vec<u64>, Option<usize>) {
    let vendor = d.id.vendor;
    match d.class >> 8 {
        0x0300 | 0x0302 | 0x0380 => match vendor {
            0x1002 => (vec![256 * M, 2 * M, 256 * K], Some(0)),
            _ => (vec![256 * M, 32 * M, 16 * M], Some(0)),
        },
        0x0403 => (vec![16 * K], None),
        0x0108 => (vec![16 * K], None),
        0x0c03 => (vec![M], None),
        0x0106 => (vec![2 * K], None),
        0x0107 => (vec![M, 64 * K], None),
        0x0200 => (vec![128 * K, 16 * K], None),
        0x0280 => (vec![2 * M], None),
        0x0c05 if vendor == 0x8086 => (vec![256], None),
        0x1080 => (vec![M, 8 * K], None),
        0x0500 => (vec![16 * K, 4 * K], None),
        0x0c80 => (vec![4 * K], None),
        // Host, ISA and PCI bridges, the AMD IOMMU function, dummy functions, SMBus via
        // I/O ports: no memory BARs.
        0x0600 | 0x0601 | 0x0604 | 0x0609 | 0x0806 | 0x1300 | 0x0c05 => (vec![], None),
        _ => (vec![4 * K], None),
    }
}

/// The name a driver claims its first BAR with, if it claims one.
fn claim(driver: &str) -> Option<&'static str> {
    Some(match driver {
        "nvme" => "nvme",
        "ahci" => "ahci",
        "xhci_hcd" => "xhci-hcd",
        "igb" => "igb",
        "igc" => "igc",
        "i40e" => "i40e",
        "snd_hda_intel" => "ICH HD audio",
        "ccp" => "ccp",
        _ => return None,
    })
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

struct Alloc<'a> {
    devs: &'a [Dev],
    children: Vec<Vec<usize>>,
    cursor: u64,
    fb: Option<&'static str>,
}

impl Alloc<'_> {
    fn place(&mut self, i: usize) -> Option<Res> {
        let d = &self.devs[i];
        if d.bridge {
            self.cursor = align(self.cursor, M);
            let kids: Vec<Res> = self.children[i].clone().into_iter().filter_map(|k| self.place(k)).collect();
            let kids = flatten(kids);
            let first = kids.iter().map(|r| r.start).min()?;
            let start = first / M * M;
            let end = align(self.cursor, M) - 1;
            self.cursor = end + 1;
            let mut w = Res::new(start, end, format!("PCI Bus {:04x}:{:02x}", d.addr.domain, d.secondary));
            w.children = kids;
            return Some(w);
        }
        let (sizes, fb_bar) = bars(d);
        let name = d.addr.to_string();
        let mut out = Vec::new();
        for (b, size) in sizes.iter().enumerate() {
            self.cursor = align(self.cursor, *size);
            let mut r = Res::new(self.cursor, self.cursor + size - 1, name.clone());
            if b == 0 {
                if let Some(c) = d.driver.as_deref().and_then(claim) {
                    r.children.push(Res::new(r.start, r.end, c));
                }
            }
            if fb_bar == Some(b) && d.boot_vga == Some(true) {
                if let Some(fb) = self.fb {
                    // 1920x1080, 32 bpp.
                    r.children.push(Res::new(r.start, r.start + 0x7e_8fff, fb));
                }
            }
            self.cursor += size;
            out.push(r);
        }
        // A function with several BARs: return them as siblings through a wrapper the
        // caller flattens.
        let mut wrap = Res::new(0, 0, String::new());
        wrap.children = out;
        Some(wrap)
    }
}

/// Flattens the unnamed wrappers `place` returns for endpoints.
fn flatten(list: Vec<Res>) -> Vec<Res> {
    let mut out = Vec::new();
    for mut r in list {
        if r.name.is_empty() {
            out.extend(flatten(r.children));
        } else {
            r.children = flatten(r.children);
            out.push(r);
        }
    }
    out
}

/// Root windows with everything inside, allocated from `base`; `None` if they pass `limit`.
fn pci_windows(devs: &[Dev], fb: Option<&'static str>, base: u64, limit: u64) -> Option<Vec<Res>> {
    let mut children = vec![Vec::new(); devs.len()];
    for (i, d) in devs.iter().enumerate() {
        if let Some(p) = d.parent {
            children[p].push(i);
        }
    }
    let mut a = Alloc { devs, children, cursor: base, fb };
    let mut roots: Vec<(u32, u8)> =
        devs.iter().filter(|d| d.parent.is_none()).map(|d| (d.addr.domain, d.addr.bus)).collect();
    roots.dedup();
    let mut out = Vec::new();
    for (dom, bus) in roots {
        a.cursor = align(a.cursor, 16 * M);
        let start = a.cursor;
        let top: Vec<usize> = (0..devs.len())
            .filter(|&i| devs[i].parent.is_none() && (devs[i].addr.domain, devs[i].addr.bus) == (dom, bus))
            .collect();
        let kids: Vec<Res> = top.into_iter().filter_map(|i| a.place(i)).collect();
        let kids = flatten(kids);
        if kids.is_empty() {
            continue;
        }
        let end = align(a.cursor, 16 * M) - 1;
        a.cursor = end + 1;
        let mut w = Res::new(start, end, format!("PCI Bus {dom:04x}:{bus:02x}"));
        w.children = kids;
        out.push(w);
    }
    (a.cursor <= limit).then_some(out)
}

/// Writes `proc/iomem`.
pub fn write(spec: &Spec, devs: &[Dev], t: &mut Tree) {
    let total: u64 = spec.memory.node_mib.iter().sum::<u64>() * M;
    let efifb_off = spec.host.cmdline.split_whitespace().any(|w| w == "video=efifb:off");
    let kernel = spec.host.kernel.as_deref().and_then(|k| Kernel::parse(k).ok());
    let fb = if efifb_off {
        None
    } else if kernel.as_ref().is_some_and(|k| !k.at_least(5, 15)) {
        Some("efifb")
    } else {
        Some("BOOTFB")
    };
    let low_end = 0x7a2f_ffffu64.min(0x0010_0000 + total.saturating_sub(1));
    let mut list =
        vec![
            Res::new(0, 0xfff, "Reserved"),
            Res::new(0x1000, 0x9_ffff, "System RAM"),
            Res::new(0xa_0000, 0xf_ffff, "Reserved")
                .with(Res::new(0xa_0000, 0xb_ffff, "PCI Bus 0000:00"))
                .with(Res::new(0xf_0000, 0xf_ffff, "System ROM")),
            Res::new(0x0010_0000, low_end, "System RAM")
                .with(Res::new(0x1f00_0000, 0x1fe0_2596, "Kernel code"))
                .with(Res::new(0x2000_0000, 0x208d_2fff, "Kernel rodata"))
                .with(Res::new(0x20a0_0000, 0x20cf_77ff, "Kernel data"))
                .with(Res::new(0x211a_d000, 0x217f_ffff, "Kernel bss")),
            Res::new(0x7a30_0000, 0x7bff_ffff, "Reserved"),
            Res::new(0x7c00_0000, 0x7c3f_ffff, "ACPI Non-volatile Storage"),
            Res::new(0x7c40_0000, 0x7fff_ffff, "Reserved"),
            Res::new(0xf000_0000, 0xf7ff_ffff, "PCI MMCONFIG 0000 [bus 00-7f]").with(Res::new(
                0xf000_0000,
                0xf7ff_ffff,
                "Reserved",
            )),
            Res::new(0xfec0_0000, 0xfec0_03ff, "IOAPIC 0"),
            Res::new(0xfed0_0000, 0xfed0_03ff, "HPET 0").with(Res::new(0xfed0_0000, 0xfed0_03ff, "PNP0103:00")),
            Res::new(0xfee0_0000, 0xfee0_0fff, "Local APIC").with(Res::new(0xfee0_0000, 0xfee0_0fff, "Reserved")),
            Res::new(0xff00_0000, 0xffff_ffff, "Reserved"),
        ];
    let high_end = 0x1_0000_0000u64 + total.saturating_sub(0x8000_0000) - 0x38_0000 - 1;
    if total > 0x8000_0000 {
        list.push(Res::new(0x1_0000_0000, high_end, "System RAM"));
    }
    if spec.host.iommu {
        if spec.cpu.vendor == "GenuineIntel" {
            list.push(Res::new(0xfed9_0000, 0xfed9_0fff, "dmar0"));
            list.push(Res::new(0xfed9_1000, 0xfed9_1fff, "dmar1"));
        } else {
            let n = devs.iter().filter(|d| d.class >> 8 == 0x0806).count().max(1) as u64;
            for i in 0..n {
                let base = 0xfeb8_0000 - i * 0x0010_0000;
                list.push(Res::new(base, base + 0x7_ffff, "amd_iommu"));
            }
        }
    }
    let windows = pci_windows(devs, fb, 0x8000_0000, 0xf000_0000)
        .or_else(|| pci_windows(devs, fb, align(high_end + 1, 1 << 36), u64::MAX))
        .unwrap_or_default();
    list.extend(windows);
    let mut out = String::new();
    render(&mut list, 0, &mut out);
    t.file("proc/iomem", out);
}
