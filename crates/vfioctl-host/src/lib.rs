//! # vfioctl-host: reading a host
//!
//! Everything vfioctl knows about a machine is read here, through one [`root::HostRoot`]
//! (which reads each file once per command and remembers it), into one [`host::Host`] that
//! every command shares: the PCI devices and IOMMU groups from `/sys` ([`pci`]), the CPU
//! topology from `/sys/devices/system` ([`cpu`]), the boot setup ([`boot`]: which loader
//! decides the next boot's command line, and the initramfs builder), the facts `check`
//! judges ([`facts`]), mounts and the controllers behind them ([`storage`]), host drivers
//! ([`drivers`]). Pointing the root at a snapshot or a fixture tree reads that instead.
//! [`snapshot`] packs exactly these files; [`apply`] is the only writer.

use std::path::PathBuf;

pub mod apply;
pub mod audit;
pub mod boot;
pub mod cpu;
pub mod disk;
pub mod drivers;
pub mod facts;
pub mod firmware;
pub mod host;
pub mod libvirt;
pub mod pci;
pub mod pci_ids;
pub mod proc;
pub mod root;
pub mod snapshot;
pub mod storage;

/// Something odd but not fatal met while reading: the file and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// The value of a file that may be absent, given the result of reading it: `None` when it
/// does not exist; `None` and a warning naming the file when unreadable or garbage.
pub(crate) fn parse_optional<T>(
    read: Result<Option<String>, root::RootError>,
    path: &str,
    parse: impl Fn(&str) -> Result<T, vfioctl_core::sysfs_value::ValueError>,
    warnings: &mut Vec<Warning>,
) -> Option<T> {
    let warn = |message: String| Warning { path: PathBuf::from(path), message };
    match read {
        Ok(Some(text)) => parse(&text).map_err(|e| warnings.push(warn(e.to_string()))).ok(),
        Ok(None) => None,
        Err(e) => {
            warnings.push(warn(e.to_string()));
            None
        }
    }
}

/// Errors reading a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{root} does not look like a Linux host root: no PCI bus")]
    NoPciBus {
        root: PathBuf,
        #[source]
        source: root::RootError,
    },
    #[error("{root} does not look like a Linux host root: no CPUs")]
    NoCpus {
        root: PathBuf,
        #[source]
        source: root::RootError,
    },
    #[error("{root} does not look like a Linux host root: no /proc/cpuinfo and no /sys/devices/system/cpu")]
    NotAHost { root: PathBuf },
    #[error(transparent)]
    Root(#[from] root::RootError),
    #[error(transparent)]
    Ids(#[from] pci_ids::IdsError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
}

impl HostError {
    /// What the user can do about it.
    pub fn remedy(&self) -> Option<String> {
        match self {
            HostError::NoPciBus { .. } | HostError::NoCpus { .. } | HostError::NotAHost { .. } => Some(
                "point --root (or VFIOCTL_ROOT) at / or at a directory made by `vfioctl snapshot`; \
                 inside containers, mount the host's /sys"
                    .into(),
            ),
            HostError::Ids(_) => {
                Some("pass a readable pci.ids with --pci-ids, or leave it out to use the built-in copy".into())
            }
            HostError::Root(e) if e.is_not_found() => None,
            HostError::Root(_) => Some("run as a user that can read the file, or take a snapshot as root".into()),
            HostError::Snapshot(e) => e.remedy(),
            HostError::Storage(e) => Some(e.remedy()),
        }
    }
}
