//! Hyper-V enlightenments for Windows guests: the ones the guides and KubeVirt issue 1919
//! use, in dependency order (synic needs vpindex; stimer needs synic and the hypervclock
//! timer; tlbflush and ipi need vpindex), each only when this libvirt and QEMU know it.

use super::versions::{self, Version, HYPERV as TABLE};
use crate::xml::Element;

/// One `<hyperv>` feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enlightenment {
    pub name: &'static str,
    /// The first libvirt and QEMU versions that support it ([`versions::HYPERV`]).
    pub libvirt: Version,
    pub qemu: Version,
}

impl Enlightenment {
    /// The feature's element as vfioctl writes it: on, spinlocks with 8191 retries, the
    /// vendor id `vfioctl`, stimer in direct mode.
    pub fn element(&self) -> Element {
        feature(self.name)
    }

    /// [`Enlightenment::element`] as a snippet, children indented by two spaces.
    pub fn xml(&self) -> String {
        self.element().pretty()
    }
}

/// The `<hyperv>` child vfioctl writes for the enlightenment `name`: on, spinlocks with
/// 8191 retries, the vendor id `vfioctl`, stimer in direct mode.
pub fn feature(name: &str) -> Element {
    let on = Element::new(name).with_attr("state", "on");
    match name {
        "spinlocks" => on.with_attr("retries", "8191"),
        "vendor_id" => on.with_attr("value", "vfioctl"),
        "stimer" => on.with_child(Element::new("direct").with_attr("state", "on")),
        _ => on,
    }
}

/// `<hyperv>` with `list`, `mode='custom'` when this libvirt knows the attribute
/// ([`versions::LIBVIRT_HYPERV_MODE`]).
pub fn element(libvirt: Option<Version>, list: &[Enlightenment]) -> Element {
    let mut hyperv = Element::open("hyperv");
    if versions::at_least(libvirt, versions::LIBVIRT_HYPERV_MODE) {
        hyperv = hyperv.with_attr("mode", "custom");
    }
    hyperv.with_children(list.iter().map(Enlightenment::element))
}

/// (enlightenment, one it needs): QEMU refuses to start without the second. stimer also
/// needs the hypervclock timer, which is a `<clock>` timer, not a `<hyperv>` feature.
pub const REQUIRES: &[(&str, &str)] =
    &[("synic", "vpindex"), ("stimer", "synic"), ("tlbflush", "vpindex"), ("ipi", "vpindex")];

/// The enlightenments `name` needs (directly).
pub fn requires(name: &str) -> impl Iterator<Item = &'static str> + '_ {
    REQUIRES.iter().filter(move |(n, _)| *n == name).map(|&(_, dep)| dep)
}

/// The enlightenments this libvirt and QEMU support (all when a version is unknown).
pub fn enlightenments(libvirt: Option<Version>, qemu: Option<Version>) -> Vec<Enlightenment> {
    TABLE
        .iter()
        .filter(|(_, l, q)| versions::at_least(libvirt, *l) && versions::at_least(qemu, *q))
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
