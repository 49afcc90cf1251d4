//! `/proc/iomem`: the physical address map as a tree. A boot framebuffer (efifb, vesafb,
//! simpledrm) that still sits inside a GPU's memory BAR shows as a child of that GPU's
//! entry, and keeps vfio-pci from mapping the BAR ("BAR 0: can't reserve").
//!
//! ```text
//! e0000000-efffffff : 0000:0d:00.0
//!   e0000000-e02fffff : efifb
//! ```
//! Without root the addresses read as zeros, but names and nesting remain, which is all
//! this module uses.

/// One line of /proc/iomem with its nesting depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub depth: usize,
    pub range: String,
    pub name: String,
}

/// Parses /proc/iomem (two spaces of indentation per level). Lines that do not parse are
/// skipped.
pub fn parse(text: &str) -> Vec<Region> {
    text.lines()
        .filter_map(|line| {
            let depth = (line.len() - line.trim_start_matches(' ').len()) / 2;
            let (range, name) = line.trim_start().split_once(" : ")?;
            Some(Region { depth, range: range.to_string(), name: name.trim().to_string() })
        })
        .collect()
}

/// Names of framebuffer drivers that claim a GPU's memory at boot.
pub const FRAMEBUFFERS: &[&str] = &["efifb", "vesafb", "simpledrm", "simple-framebuffer", "BOOTFB", "vga16fb"];

/// The framebuffer regions nested anywhere under the entries named `owner` (a PCI
/// address like `0000:0d:00.0`).
pub fn framebuffers_under<'a>(regions: &'a [Region], owner: &str) -> Vec<&'a Region> {
    let mut found = Vec::new();
    let mut inside: Option<usize> = None;
    for r in regions {
        if let Some(d) = inside {
            if r.depth <= d {
                inside = None;
            } else if FRAMEBUFFERS.iter().any(|f| r.name.starts_with(f)) {
                found.push(r);
            }
        }
        if inside.is_none() && r.name == owner {
            inside = Some(r.depth);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOMEM: &str = r"00000000-00000fff : Reserved
e0000000-f01fffff : PCI Bus 0000:00
  e0000000-efffffff : PCI Bus 0000:0a
    e0000000-efffffff : 0000:0a:00.0
      e0000000-e07e8fff : efifb
  f0000000-f01fffff : PCI Bus 0000:09
    f0000000-f0ffffff : 0000:09:00.0
      f0000000-f0ffffff : vfio-pci
00000000-00000000 : 0000:0b:00.0
  00000000-00000000 : BOOTFB
";

    #[test]
    fn finds_framebuffers_inside_a_devices_bar() {
        let r = parse(IOMEM);
        assert_eq!(framebuffers_under(&r, "0000:0a:00.0").len(), 1);
        assert!(framebuffers_under(&r, "0000:09:00.0").is_empty());
        assert_eq!(framebuffers_under(&r, "0000:0b:00.0")[0].name, "BOOTFB");
        assert!(framebuffers_under(&r, "0000:99:00.0").is_empty());
        assert!(parse("garbage\n\n").is_empty());
    }
}
