//! One host, read once: [`Host`] is the model every command shares. Each part (PCI
//! inventory and IOMMU groups, CPU topology, the boot setup, the facts `check` judges,
//! mounts and block devices, host driver modules) is read from the root the first time a
//! consumer asks for it and kept, so a command reads each part at most once and every
//! consumer sees the same value; parts a command never asks for are never read (`list`
//! runs no `--version`, `topology` reads no boot files).
//!
//! Underneath, the [`HostRoot`] remembers every text file it read, so parts that read a
//! common file (`/proc/cpuinfo` for the topology and for the CPU flags) read it once too.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use vfioctl_core::check::Facts;
use vfioctl_core::iomem;
use vfioctl_core::pci::PciAddress;
use vfioctl_core::topology::Topology;

use crate::boot::{self, BootSetup};
use crate::pci::PciInventory;
use crate::root::HostRoot;
use crate::{cpu, drivers, facts, pci, storage, HostError, Warning};
use vfioctl_core::plan::Mount;

/// A host, read lazily and once.
#[derive(Debug)]
pub struct Host {
    root: HostRoot,
    pci: OnceCell<PciInventory>,
    topology: OnceCell<(Topology, Vec<Warning>)>,
    boot: OnceCell<BootSetup>,
    facts: OnceCell<Facts>,
    file_facts: OnceCell<Facts>,
    storage: OnceCell<Result<storage::Storage, storage::StorageError>>,
    host_modules: OnceCell<BTreeMap<PciAddress, Vec<String>>>,
    framebuffers: OnceCell<BTreeMap<PciAddress, Vec<String>>>,
}

impl Host {
    pub fn new(root: HostRoot) -> Host {
        Host {
            root,
            pci: OnceCell::new(),
            topology: OnceCell::new(),
            boot: OnceCell::new(),
            facts: OnceCell::new(),
            file_facts: OnceCell::new(),
            storage: OnceCell::new(),
            host_modules: OnceCell::new(),
            framebuffers: OnceCell::new(),
        }
    }

    pub fn root(&self) -> &HostRoot {
        &self.root
    }

    /// Every PCI device and IOMMU group.
    pub fn pci(&self) -> Result<&PciInventory, HostError> {
        if let Some(p) = self.pci.get() {
            return Ok(p);
        }
        let inv = pci::read(&self.root)?;
        Ok(self.pci.get_or_init(|| inv))
    }

    /// The CPU topology, with warnings about what could not be read.
    pub fn topology(&self) -> Result<&(Topology, Vec<Warning>), HostError> {
        if let Some(t) = self.topology.get() {
            return Ok(t);
        }
        let t = cpu::read(&self.root)?;
        Ok(self.topology.get_or_init(|| t))
    }

    /// The boot setup: loader, next boot's command line, initramfs builder.
    pub fn boot(&self) -> &BootSetup {
        self.boot.get_or_init(|| boot::detect(&self.root))
    }

    /// What `check` judges (on the live machine this runs QEMU's and libvirt's `--version`
    /// and connects to libvirt's socket, once).
    pub fn facts(&self) -> &Facts {
        self.facts.get_or_init(|| {
            let mut f = self.file_facts().clone();
            facts::add_programs(&self.root, &mut f);
            f
        })
    }

    /// The facts files say, without running programs (`plan` needs no versions): the
    /// programs' fields are unknown here.
    pub fn file_facts(&self) -> &Facts {
        self.file_facts.get_or_init(|| facts::gather_files(&self.root, self.boot()))
    }

    /// Mounted block devices and the PCI controllers behind them.
    pub fn mounts(&self) -> Result<&[Mount], HostError> {
        Ok(&self.storage()?.mounts)
    }

    /// What the host's block devices are used for (mounts, swap, stacked devices).
    pub fn storage(&self) -> Result<&storage::Storage, HostError> {
        self.storage.get_or_init(|| storage::storage(&self.root)).as_ref().map_err(|e| HostError::Storage(e.clone()))
    }

    /// The driver modules the host would bind to each device.
    pub fn host_modules(&self) -> Result<&BTreeMap<PciAddress, Vec<String>>, HostError> {
        if let Some(m) = self.host_modules.get() {
            return Ok(m);
        }
        let m = drivers::host_modules(&self.root, self.pci()?.devices.values());
        Ok(self.host_modules.get_or_init(|| m))
    }

    /// Firmware framebuffers (efifb, simpledrm, BOOTFB) inside each device's memory, from
    /// `/proc/iomem`.
    pub fn framebuffers(&self) -> Result<&BTreeMap<PciAddress, Vec<String>>, HostError> {
        if let Some(f) = self.framebuffers.get() {
            return Ok(f);
        }
        let devices = &self.pci()?.devices;
        // Absent is "no framebuffers known"; unreadable is not: a boot framebuffer inside a
        // passed GPU decides the plan (video=efifb:off).
        self.root.read_optional("/proc/iomem")?;
        let f = self
            .file_facts()
            .iomem
            .as_ref()
            .map(|regions| {
                devices
                    .keys()
                    .filter_map(|a| {
                        let fbs: Vec<String> = iomem::framebuffers_under(regions, &a.to_string())
                            .into_iter()
                            .map(|r| r.name.clone())
                            .collect();
                        (!fbs.is_empty()).then_some((*a, fbs))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(self.framebuffers.get_or_init(|| f))
    }
}
