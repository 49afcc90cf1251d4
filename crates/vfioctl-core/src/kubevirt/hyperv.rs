//! The domain's Hyper-V enlightenments in KubeVirt's words (`spec.domain.features.hyperv`
//! of `kubevirt.io/v1`, type `FeatureHyperv`).
//!
//! The list itself comes from [`crate::domain::hyperv::enlightenments`], the one source of
//! truth `vfioctl domain` renders too; this file only renames: libvirt's `stimer` is
//! KubeVirt's `synictimer` (with `direct`), `vendor_id` is `vendorid` (its value under
//! `vendorid`), the spinlock retries go under `spinlocks.spinlocks`. KubeVirt turns them back
//! into the same libvirt elements (virt-launcher's converter). An enlightenment KubeVirt has
//! no field for is left out, and said so.
//!
//! Every feature is written with `enabled: true`: KubeVirt's admission webhook counts only
//! an explicit `true` when it checks that a feature's requirement (synic → vpindex, …) is on.

use serde_json::{json, Map, Value};

use crate::domain::hyperv::Enlightenment;

/// Spinlock retries; the same number `Enlightenment::xml` writes (a test keeps them equal).
/// KubeVirt's API asks for at least 4096.
pub const SPINLOCK_RETRIES: u64 = 8191;
/// The hypervisor vendor id the guest sees; the same as the domain's (at most 12 characters).
pub const VENDOR_ID: &str = "vfioctl";

/// (libvirt `<hyperv>` element, KubeVirt `FeatureHyperv` field) for every enlightenment
/// KubeVirt supports.
pub const NAMES: &[(&str, &str)] = &[
    ("relaxed", "relaxed"),
    ("vapic", "vapic"),
    ("spinlocks", "spinlocks"),
    ("vpindex", "vpindex"),
    ("runtime", "runtime"),
    ("synic", "synic"),
    ("stimer", "synictimer"),
    ("reset", "reset"),
    ("vendor_id", "vendorid"),
    ("frequencies", "frequencies"),
    ("reenlightenment", "reenlightenment"),
    ("tlbflush", "tlbflush"),
    ("ipi", "ipi"),
    ("evmcs", "evmcs"),
];

/// KubeVirt's field for a libvirt enlightenment, if it has one.
pub fn kubevirt_name(libvirt: &str) -> Option<&'static str> {
    NAMES.iter().find(|(l, _)| *l == libvirt).map(|&(_, k)| k)
}

/// `features.hyperv` for these enlightenments, and the names KubeVirt has no field for.
/// `evmcs` is left out as well: it needs the Intel-only `vmx` CPU feature and KubeVirt pins
/// it to Intel nodes, and the guides do not use it.
pub fn features(list: &[Enlightenment]) -> (Map<String, Value>, Vec<&'static str>) {
    let on = || json!({"enabled": true});
    let mut out = Map::new();
    let mut unsupported = Vec::new();
    for e in list {
        let Some(field) = kubevirt_name(e.name).filter(|f| *f != "evmcs") else {
            unsupported.push(e.name);
            continue;
        };
        let value = match field {
            "spinlocks" => json!({"enabled": true, "spinlocks": SPINLOCK_RETRIES}),
            "synictimer" => json!({"enabled": true, "direct": {"enabled": true}}),
            "vendorid" => json!({"enabled": true, "vendorid": VENDOR_ID}),
            _ => on(),
        };
        out.insert(field.to_string(), value);
    }
    (out, unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hyperv::{enlightenments, REQUIRES};

    #[test]
    fn every_enlightenment_of_the_domain_has_a_kubevirt_field() {
        let all = enlightenments(None, None);
        let (f, unsupported) = features(&all);
        assert!(unsupported.is_empty(), "{unsupported:?}");
        assert_eq!(f.len(), all.len());
        assert_eq!(f["synictimer"], json!({"enabled": true, "direct": {"enabled": true}}));
        assert_eq!(f["spinlocks"]["spinlocks"], json!(8191));
        // The dependencies the domain keeps hold in KubeVirt's names too.
        for &(needs, dep) in REQUIRES {
            let (n, d) = (kubevirt_name(needs).unwrap(), kubevirt_name(dep).unwrap());
            assert!(!f.contains_key(n) || f.contains_key(d), "{n} without {d}");
        }
    }

    #[test]
    fn values_are_the_domains() {
        let all = enlightenments(None, None);
        let xml = |n: &str| all.iter().find(|e| e.name == n).unwrap().xml();
        assert!(xml("spinlocks").contains(&format!("retries='{SPINLOCK_RETRIES}'")));
        assert!(xml("vendor_id").contains(&format!("value='{VENDOR_ID}'")));
        assert!(VENDOR_ID.len() <= 12);
    }

    #[test]
    fn older_lists_stay_shorter_and_unknown_names_are_reported() {
        let old = enlightenments(Some((4, 0)), Some((2, 11)));
        let (f, _) = features(&old);
        assert!(f.contains_key("synic") && !f.contains_key("synictimer") && !f.contains_key("ipi"));
        let odd = Enlightenment { name: "avic", libvirt: (1, 0), qemu: (1, 0) };
        let (f, unsupported) = features(&[odd]);
        assert!(f.is_empty());
        assert_eq!(unsupported, ["avic"]);
    }
}
