//! What `vfioctl audit` needs to know about a host, read through the root: topology, PCI
//! devices and groups, hugepage pools, libvirt's version, qemu.conf, `/dev/input/by-id`.

use std::collections::{BTreeMap, BTreeSet};

#[cfg(doc)]
use vfioctl_core::audit::named_files;
use vfioctl_core::audit::{AuditHost, HostFile};
use vfioctl_core::check::{Facts, Program};
use vfioctl_core::edit::qemu_conf::PATH as QEMU_CONF;
use vfioctl_core::iommu::IommuGroup;
use vfioctl_core::pci::{PciAddress, PciDevice};
use vfioctl_core::topology::Topology;

use crate::host::Host;
use crate::{HostError, Warning};

/// The host, owned; [`AuditFacts::host`] lends it to the pure audit.
#[derive(Debug)]
pub struct AuditFacts {
    pub topology: Topology,
    pub devices: BTreeMap<PciAddress, PciDevice>,
    pub groups: Vec<IommuGroup>,
    /// What `check` knows of the host: vendor, hugepage pools, programs and their versions.
    pub facts: Facts,
    /// qemu.conf's text; empty when the file is absent, `None` when unreadable.
    pub qemu_conf: Option<String>,
    pub input_by_id: Option<BTreeSet<String>>,
    /// `/dev` paths of the block devices the host uses (`None`: the mount table or sysfs
    /// could not be read; the warning says so).
    pub host_disks: Option<BTreeMap<String, String>>,
    /// The PCI controllers holding what the host's disks are used for, and that use.
    pub host_controllers: BTreeMap<PciAddress, String>,
    /// The files a domain names ([`AuditFacts::read_files`]).
    pub files: BTreeMap<String, HostFile>,
    pub warnings: Vec<Warning>,
}

pub fn gather(host: &Host) -> Result<AuditFacts, HostError> {
    let root = host.root();
    let inv = host.pci()?.clone();
    let (topology, cpu_warnings) = host.topology()?.clone();
    let qemu_conf = match root.read_optional(QEMU_CONF) {
        Ok(Some(t)) => Some(t),
        Ok(None) => Some(String::new()),
        Err(_) => None,
    };
    let input_by_id = match root.list("/dev/input/by-id") {
        Ok(names) => Some(names.into_iter().collect()),
        Err(e) if e.is_not_found() => Some(BTreeSet::new()),
        Err(_) => None,
    };
    let mut warnings = inv.warnings;
    warnings.extend(cpu_warnings);
    let mut host_controllers = BTreeMap::new();
    let host_disks = match host.storage() {
        Ok(s) => {
            for m in &s.mounts {
                host_controllers.entry(m.controller).or_insert_with(|| format!("{} ({})", m.mount_point, m.source));
            }
            Some(s.used_paths(root))
        }
        Err(e) => {
            warnings.push(Warning {
                path: "/proc/self/mountinfo".into(),
                message: format!("{e}: the domain's block devices are not checked against the host's"),
            });
            None
        }
    };
    Ok(AuditFacts {
        topology,
        devices: inv.devices,
        groups: inv.groups,
        facts: host.facts().clone(),
        qemu_conf,
        input_by_id,
        host_disks,
        host_controllers,
        files: BTreeMap::new(),
        warnings,
    })
}

impl AuditFacts {
    /// Looks at the files a domain names ([`named_files`]) through the host root: absent,
    /// unreadable, or read (its first two bytes, for a ROM's signature).
    pub fn read_files(&mut self, host: &Host, paths: &[String]) {
        for p in paths {
            let state = match host.root().read_bytes(p, 2) {
                Ok(b) => HostFile::Present { rom: b.starts_with(&[0x55, 0xaa]) },
                Err(e) if e.is_not_found() => HostFile::Missing,
                Err(e) => HostFile::Unreadable(e.to_string()),
            };
            self.files.insert(p.clone(), state);
        }
    }

    pub fn host(&self) -> AuditHost<'_> {
        AuditHost {
            vendor: self.facts.vendor,
            topology: &self.topology,
            devices: &self.devices,
            groups: &self.groups,
            hugepages: &self.facts.hugepages,
            libvirt: self.facts.libvirt.as_ref().and_then(Program::major_minor),
            qemu_conf: self.qemu_conf.as_deref(),
            input_by_id: self.input_by_id.as_ref(),
            host_disks: self.host_disks.as_ref(),
            host_controllers: Some(&self.host_controllers),
            files: Some(&self.files),
        }
    }
}
