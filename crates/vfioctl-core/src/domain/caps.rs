//! libvirt's domain capabilities (`virsh domcapabilities`, `virConnectGetDomainCapabilities`):
//! what this libvirt and QEMU accept in a domain, read into a [`DomainCaps`]. [`supported`]
//! limits the Hyper-V enlightenments to the ones listed there.
//!
//! Every field is an `Option`: `None` when the section is absent, which is how older
//! libvirt says nothing (the Hyper-V list appeared in 9.0, `<input>` later), so callers
//! fall back to version tables then.

use super::hyperv;
use super::Enlightenment;
use crate::xml::{self, Element};

/// What the domain capabilities say, for the parts vfioctl renders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainCaps {
    /// The emulator (`<path>`), e.g. `/usr/bin/qemu-system-x86_64`.
    pub emulator: Option<String>,
    /// The virtualization type asked for (`<domain>`): `kvm` or `qemu`.
    pub virttype: Option<String>,
    /// The canonical machine type (`<machine>`), e.g. `pc-q35-7.2` for `q35`.
    pub machine: Option<String>,
    pub arch: Option<String>,
    /// `<vcpu max=…>`.
    pub max_vcpus: Option<u32>,
    pub iothreads: Option<bool>,
    /// The Hyper-V enlightenments libvirt can turn on (`<features><hyperv supported='yes'>`,
    /// `<enum name='features'>`); empty when `supported='no'`, `None` when there is no
    /// `<hyperv>` section (libvirt before 9.0).
    pub hyperv: Option<Vec<String>>,
    /// `<input type='evdev'>` is accepted (`<devices><input>`, `<enum name='type'>`).
    pub evdev: Option<bool>,
    /// The TPM vfioctl writes (model `tpm-crb`, `emulator` backend) is accepted.
    pub tpm: Option<bool>,
    /// `<os firmware='efi'>` is accepted.
    pub efi: Option<bool>,
    /// A loader with `secure='yes'` (secure boot) is accepted.
    pub secure_boot: Option<bool>,
    /// The firmware images libvirt knows (`<os><loader><value>`), in its order.
    pub loaders: Vec<String>,
    /// `<cpu mode='host-passthrough'>` is usable (not with the `qemu` virttype).
    pub host_passthrough: Option<bool>,
}

/// Text that is not libvirt's domain capabilities.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("domain capabilities are not well-formed XML: {0}")]
    Xml(#[from] xml::XmlError),
    #[error("not libvirt domain capabilities: the root element is <{0}>, not <domainCapabilities>")]
    NotDomainCaps(String),
}

/// Reads the XML libvirt gives for `virsh domcapabilities`.
pub fn parse(text: &str) -> Result<DomainCaps, CapsError> {
    let doc = xml::parse(text)?;
    let root = &doc.root;
    if root.name != "domainCapabilities" {
        return Err(CapsError::NotDomainCaps(root.name.clone()));
    }
    let leaf = |path: &str| root.find(path).map(Element::text).filter(|t| !t.is_empty());
    let os = root.child("os");
    let loader = os.and_then(|o| o.child("loader"));
    let devices = root.child("devices");
    let tpm = devices.and_then(|d| d.child("tpm")).map(|t| {
        is_supported(t)
            && enum_allows(t, "model", "tpm-crb").unwrap_or(true)
            && enum_allows(t, "backendModel", "emulator").unwrap_or(true)
    });
    let host_passthrough = root
        .child("cpu")
        .and_then(|c| c.children_named("mode").find(|m| m.attr("name") == Some("host-passthrough")))
        .map(is_supported);
    Ok(DomainCaps {
        emulator: leaf("path"),
        virttype: leaf("domain"),
        machine: leaf("machine"),
        arch: leaf("arch"),
        max_vcpus: root.child("vcpu").and_then(|v| v.attr("max")).and_then(|m| m.trim().parse().ok()),
        iothreads: root.child("iothreads").map(is_supported),
        hyperv: root.find("features/hyperv").map(|h| match is_supported(h) {
            true => enum_values(h, "features"),
            false => Vec::new(),
        }),
        evdev: devices
            .and_then(|d| d.child("input"))
            .map(|i| is_supported(i) && enum_allows(i, "type", "evdev").unwrap_or(false)),
        tpm,
        efi: os.map(|o| is_supported(o) && enum_allows(o, "firmware", "efi").unwrap_or(false)),
        secure_boot: loader.map(|l| is_supported(l) && enum_allows(l, "secure", "yes").unwrap_or(false)),
        loaders: loader
            .map(|l| l.children_named("value").map(Element::text).filter(|v| !v.is_empty()).collect())
            .unwrap_or_default(),
        host_passthrough,
    })
}

/// `supported='yes'`; elements without the attribute (`<cpu>`) count as supported.
fn is_supported(e: &Element) -> bool {
    e.attr("supported").is_none_or(|s| s == "yes")
}

/// The values of the child `<enum name=…>`.
fn enum_values(e: &Element, name: &str) -> Vec<String> {
    e.children_named("enum")
        .filter(|en| en.attr("name") == Some(name))
        .flat_map(|en| en.children_named("value").map(Element::text))
        .collect()
}

/// Whether the child `<enum name=…>` lists `value`; `None` without such an enum.
fn enum_allows(e: &Element, name: &str, value: &str) -> Option<bool> {
    e.children_named("enum")
        .any(|en| en.attr("name") == Some(name))
        .then(|| enum_values(e, name).iter().any(|v| v == value))
}

/// The enlightenments of `all` that libvirt lists as supported, and of those only the ones
/// whose dependencies ([`hyperv::REQUIRES`]) stay too: without synic no stimer, without
/// vpindex no synic, stimer, tlbflush or ipi. All of them when the capabilities have no
/// Hyper-V list (older libvirt: the version tables decide then). The order is kept.
pub fn supported(all: Vec<Enlightenment>, caps: &DomainCaps) -> Vec<Enlightenment> {
    let Some(listed) = &caps.hyperv else {
        return all;
    };
    let mut kept: Vec<Enlightenment> = all.into_iter().filter(|e| listed.iter().any(|l| l == e.name)).collect();
    // Drop what lost a dependency until nothing changes (a chain: vpindex → synic → stimer).
    loop {
        let before = kept.len();
        let names: Vec<&'static str> = kept.iter().map(|e| e.name).collect();
        kept.retain(|e| hyperv::requires(e.name).all(|dep| names.contains(&dep)));
        if kept.len() == before {
            return kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::enlightenments;

    const KVM: &str = include_str!("testdata/domcaps-9.0-q35-kvm.xml");
    const QEMU: &str = include_str!("testdata/domcaps-9.0-q35-qemu.xml");
    const OLD: &str = include_str!("testdata/domcaps-old-q35-kvm.xml");

    fn names(list: &[Enlightenment]) -> Vec<&'static str> {
        list.iter().map(|e| e.name).collect()
    }

    fn with_hyperv(list: &[&str]) -> DomainCaps {
        DomainCaps { hyperv: Some(list.iter().map(|s| s.to_string()).collect()), ..DomainCaps::default() }
    }

    #[test]
    fn libvirt_9_0_kvm_domcaps() {
        let c = parse(KVM).unwrap();
        assert_eq!(c.emulator.as_deref(), Some("/usr/bin/qemu-system-x86_64"));
        assert_eq!(c.virttype.as_deref(), Some("kvm"));
        assert_eq!(c.machine.as_deref(), Some("pc-q35-7.2"));
        assert_eq!(c.arch.as_deref(), Some("x86_64"));
        assert_eq!(c.max_vcpus, Some(288));
        assert_eq!(c.iothreads, Some(true));
        // This host's KVM reports no Hyper-V CPUID support: only the two enlightenments
        // that need none are listed.
        assert_eq!(c.hyperv, Some(vec!["spinlocks".to_string(), "vendor_id".to_string()]));
        // libvirt 9.0 has no <input> in the domain capabilities.
        assert_eq!(c.evdev, None);
        assert_eq!(c.tpm, Some(true));
        assert_eq!((c.efi, c.secure_boot), (Some(true), Some(true)));
        assert_eq!(c.loaders.len(), 3);
        assert!(c.loaders.contains(&"/usr/share/OVMF/OVMF_CODE_4M.secboot.fd".to_string()));
        assert_eq!(c.host_passthrough, Some(true));
    }

    #[test]
    fn libvirt_9_0_qemu_domcaps_have_no_host_passthrough() {
        let c = parse(QEMU).unwrap();
        assert_eq!(c.virttype.as_deref(), Some("qemu"));
        assert_eq!(c.machine.as_deref(), Some("pc-q35-7.2"));
        assert_eq!(c.host_passthrough, Some(false));
        assert_eq!(c.hyperv.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn old_domcaps_without_hyperv_keep_every_enlightenment() {
        let c = parse(OLD).unwrap();
        assert_eq!((c.hyperv.clone(), c.tpm, c.evdev), (None, None, None));
        assert_eq!(c.machine.as_deref(), Some("pc-q35-7.2"));
        let all = enlightenments(None, None);
        assert_eq!(supported(all.clone(), &c), all);
    }

    #[test]
    fn listed_enlightenments_only() {
        let kept = supported(enlightenments(None, None), &parse(KVM).unwrap());
        assert_eq!(names(&kept), ["spinlocks", "vendor_id"]);
        let none = DomainCaps { hyperv: Some(Vec::new()), ..DomainCaps::default() };
        assert!(supported(enlightenments(None, None), &none).is_empty());
        // hyperv supported='no' is an empty list, not an unknown one.
        let no = KVM.replace("<hyperv supported='yes'>", "<hyperv supported='no'>");
        assert_eq!(parse(&no).unwrap().hyperv, Some(Vec::new()));
    }

    #[test]
    fn dependencies_follow_what_is_dropped() {
        let every: Vec<&str> = names(&enlightenments(None, None));
        let without = |gone: &[&str]| -> Vec<&'static str> {
            let listed: Vec<&str> = every.iter().copied().filter(|n| !gone.contains(n)).collect();
            names(&supported(enlightenments(None, None), &with_hyperv(&listed)))
        };
        assert_eq!(without(&[]), every);
        let no_synic = without(&["synic"]);
        assert!(!no_synic.contains(&"stimer") && no_synic.contains(&"vpindex") && no_synic.contains(&"ipi"));
        let no_vpindex = without(&["vpindex"]);
        for gone in ["vpindex", "synic", "stimer", "tlbflush", "ipi"] {
            assert!(!no_vpindex.contains(&gone), "{gone} kept without vpindex: {no_vpindex:?}");
        }
        assert!(no_vpindex.contains(&"relaxed") && no_vpindex.contains(&"frequencies"));
        // Order and unknown names: the input order stays; names libvirt lists but vfioctl
        // does not use (avic, evmcs) change nothing.
        let mut reversed = enlightenments(None, None);
        reversed.reverse();
        let mut listed = every.clone();
        listed.extend(["avic", "evmcs"]);
        let kept = supported(reversed.clone(), &with_hyperv(&listed));
        assert_eq!(kept, reversed);
    }

    #[test]
    fn evdev_when_input_lists_it() {
        let input = "<input supported='yes'>\n      <enum name='type'>\n        <value>mouse</value>\n        \
                     <value>evdev</value>\n      </enum>\n    </input>\n  </devices>";
        let c = parse(&KVM.replace("</devices>", input)).unwrap();
        assert_eq!(c.evdev, Some(true));
        let c = parse(&KVM.replace("</devices>", &input.replace("<value>evdev</value>", ""))).unwrap();
        assert_eq!(c.evdev, Some(false));
    }

    #[test]
    fn not_domain_capabilities() {
        assert!(matches!(parse("<domain type='kvm'/>"), Err(CapsError::NotDomainCaps(n)) if n == "domain"));
        assert!(matches!(parse("<domainCapabilities>"), Err(CapsError::Xml(_))));
        assert_eq!(parse("<domainCapabilities/>").unwrap(), DomainCaps::default());
    }
}
