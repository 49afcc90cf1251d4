//! Hyper-V enlightenments for Windows guests: the ones the guides and KubeVirt issue 1919
//! use, in dependency order (synic needs vpindex; stimer needs synic and the hypervclock
//! timer; tlbflush and ipi need vpindex), each only when this libvirt and QEMU know it.

/// One `<hyperv>` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enlightenment {
    pub name: &'static str,
    /// The first libvirt and QEMU versions that support it.
    pub libvirt: (u32, u32),
    pub qemu: (u32, u32),
}

impl Enlightenment {
    pub fn xml(&self) -> String {
        match self.name {
            "spinlocks" => "<spinlocks state='on' retries='8191'/>".into(),
            "vendor_id" => "<vendor_id state='on' value='vfioctl'/>".into(),
            "stimer" => "<stimer state='on'>\n        <direct state='on'/>\n      </stimer>".into(),
            n => format!("<{n} state='on'/>"),
        }
    }
}

/// A (major, minor) version.
type Version = (u32, u32);

/// (name, libvirt version, QEMU version), dependencies first.
const TABLE: &[(&str, Version, Version)] = &[
    ("relaxed", (1, 0), (1, 1)),
    ("vapic", (1, 1), (1, 1)),
    ("spinlocks", (1, 1), (1, 1)),
    ("vpindex", (1, 3), (2, 5)),
    ("runtime", (1, 3), (2, 5)),
    ("synic", (1, 3), (2, 6)),
    // stimer with <direct> needs libvirt 5.7 and QEMU 4.1.
    ("stimer", (5, 7), (4, 1)),
    ("reset", (1, 3), (2, 5)),
    ("vendor_id", (1, 3), (2, 5)),
    ("frequencies", (4, 7), (2, 12)),
    ("reenlightenment", (4, 7), (3, 0)),
    ("tlbflush", (4, 7), (3, 0)),
    ("ipi", (4, 10), (3, 1)),
];

/// (enlightenment, one it needs): QEMU refuses to start without the second. stimer also
/// needs the hypervclock timer, which is a `<clock>` timer, not a `<hyperv>` feature.
pub const REQUIRES: &[(&str, &str)] =
    &[("synic", "vpindex"), ("stimer", "synic"), ("tlbflush", "vpindex"), ("ipi", "vpindex")];

/// The enlightenments `name` needs (directly).
pub fn requires(name: &str) -> impl Iterator<Item = &'static str> + '_ {
    REQUIRES.iter().filter(move |(n, _)| *n == name).map(|&(_, dep)| dep)
}

/// The enlightenments this libvirt and QEMU support (all when a version is unknown).
pub fn enlightenments(libvirt: Option<(u32, u32)>, qemu: Option<(u32, u32)>) -> Vec<Enlightenment> {
    TABLE
        .iter()
        .filter(|(_, l, q)| libvirt.is_none_or(|v| v >= *l) && qemu.is_none_or(|v| v >= *q))
        .map(|&(name, libvirt, qemu)| Enlightenment { name, libvirt, qemu })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_limit_the_list_and_dependencies_hold() {
        let all = enlightenments(None, None);
        assert_eq!(all.len(), TABLE.len());
        let old: Vec<&str> = enlightenments(Some((4, 0)), Some((2, 11))).iter().map(|e| e.name).collect();
        assert!(old.contains(&"synic") && !old.contains(&"stimer") && !old.contains(&"tlbflush"), "{old:?}");
        for list in [all.iter().map(|e| e.name).collect::<Vec<_>>(), old] {
            let pos = |n: &str| list.iter().position(|x| *x == n);
            for &(needs, dep) in REQUIRES {
                if let Some(p) = pos(needs) {
                    assert!(pos(dep).is_some_and(|d| d < p), "{needs} without {dep}");
                }
            }
        }
    }
}
