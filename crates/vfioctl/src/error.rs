//! Errors of the binary: each says what went wrong, the chain of causes, and a remedy.

use std::error::Error as StdError;

use vfioctl_host::HostError;

/// Process exit status, documented in README.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, nothing to report.
    Ok = 0,
    /// A finding or refusal the user can act on.
    Finding = 1,
    /// Usage or environment error: the command could not do its job.
    Env = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("the IOMMU is not enabled on this host: no IOMMU groups in /sys/kernel/iommu_groups")]
    IommuOff { remedy: String },
    #[error(transparent)]
    Selector(vfioctl_core::selector::SelectorError),
    #[error(transparent)]
    Plan(vfioctl_core::plan::PlanError),
    #[error("cannot unpack the snapshot {path}: {err}")]
    Archive { path: std::path::PathBuf, err: std::io::Error },
    #[error(transparent)]
    Apply(vfioctl_host::apply::ApplyError),
    #[error("{0}")]
    Usage(String),
    /// A file that decides the plan (a passed device's slot, group or NUMA node) cannot be read.
    #[error("cannot plan from a guess: {path}: {message}")]
    Unreadable { path: String, message: String },
    /// `--disk` names a block device the host uses.
    #[error("--disk {disk}: {name} is {why}; the guest would write over the host's data")]
    DiskInUse { disk: String, name: String, why: String },
    #[error("apply and rollback change /etc and /boot of this machine: they need root")]
    NeedsRoot,
    #[error("not asking without a terminal: pass --yes to go ahead (or --dry-run to look first)")]
    NeedsYes,
    #[error(transparent)]
    Change(vfioctl_host::apply::changes::ChangeError),
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    Out(crate::output::OutError),
    #[error("cannot read {path}")]
    Input {
        path: std::path::PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("{from} is not well-formed XML")]
    DomainXml {
        from: String,
        #[source]
        err: vfioctl_core::xml::XmlError,
    },
    #[error(transparent)]
    Disk(vfioctl_host::disk::DiskError),
    #[error(transparent)]
    Libvirt(vfioctl_host::libvirt::LibvirtError),
    #[error("{} is a snapshot archive: vfioctl reads it unpacked into a temporary directory, so what it wrote would be thrown away", .0.display())]
    ReadOnlyRoot(std::path::PathBuf),
}

impl CliError {
    pub fn exit_code(&self) -> Exit {
        match self {
            CliError::IommuOff { .. } => Exit::Finding,
            CliError::Apply(vfioctl_host::apply::ApplyError::NothingToRollBack(_)) => Exit::Finding,
            CliError::Apply(_)
            | CliError::NeedsYes
            | CliError::NeedsRoot
            | CliError::Change(_)
            | CliError::Usage(_) => Exit::Env,
            CliError::Plan(vfioctl_core::plan::PlanError::Selector(_) | vfioctl_core::plan::PlanError::NoDevices) => {
                Exit::Env
            }
            CliError::Plan(_) | CliError::DiskInUse { .. } => Exit::Finding,
            CliError::Host(_)
            | CliError::Output(_)
            | CliError::Out(_)
            | CliError::Archive { .. }
            | CliError::Selector(_)
            | CliError::Input { .. }
            | CliError::DomainXml { .. }
            | CliError::Disk(_)
            | CliError::Unreadable { .. } => Exit::Env,
            // libvirt refusing the domain is a finding about it; no connection is the environment.
            CliError::Libvirt(vfioctl_host::libvirt::LibvirtError::Refused { .. }) => Exit::Finding,
            CliError::Libvirt(_) | CliError::ReadOnlyRoot(_) => Exit::Env,
        }
    }

    pub fn remedy(&self) -> Option<String> {
        match self {
            CliError::IommuOff { remedy, .. } => Some(remedy.clone()),
            CliError::Host(e) => e.remedy(),
            CliError::Output(_) | CliError::Input { .. } => None,
            CliError::Out(crate::output::OutError::NoDirectory { dir, .. }) => {
                Some(format!("create it first (`mkdir -p {}`), or give another --out", dir.display()))
            }
            CliError::Out(crate::output::OutError::NotRegular { .. }) => {
                Some("--out takes the name of a file; write to stdout (no --out) to pipe the output".into())
            }
            CliError::Out(_) => None,
            CliError::DomainXml { .. } => {
                Some("fix the XML at that line and column (virt-xml-validate FILE domain helps), then run again".into())
            }
            CliError::Disk(e) => e.remedy(),
            CliError::Libvirt(e) => e.remedy(),
            CliError::ReadOnlyRoot(p) => Some(format!(
                "unpack it (`mkdir host && tar -xzf {} -C host`) and pass the directory to --root; --dry-run works on the archive",
                p.display()
            )),
            CliError::Apply(e) => e.remedy(),
            CliError::NeedsYes | CliError::Usage(_) => None,
            CliError::Unreadable { message, .. }
                if message.contains("cannot read") || message.contains("cannot list") || message.contains("denied") =>
            {
                Some(
                    "run vfioctl as root (or on a `vfioctl snapshot` taken as root) so that the file can be read; --force plans without it, and you take on what it would have said".into(),
                )
            }
            CliError::Unreadable { .. } => Some(
                "fix the file (or restore it from a backup) so that it says something vfioctl can read; --force plans without it, and you take on what it would have said".into(),
            ),
            CliError::DiskInUse { .. } => Some(
                "give the guest a disk the host does not use (its /dev/disk/by-id path), or an image file: --disk /var/lib/libvirt/images/NAME.qcow2 --disk-size 100G (--force gives it to the guest anyway, and what the host keeps on it is lost)".into(),
            ),
            CliError::NeedsRoot => Some("run it with sudo (`sudo vfioctl …`); --dry-run shows what it would do as any user".into()),
            CliError::Change(_) => {
                Some("the file is left as it is; edit it by hand, or report it with a `vfioctl snapshot`".into())
            }
            CliError::Plan(e) => e.remedy(),
            CliError::Selector(_) => Some("see `vfioctl list` for the devices of this host".into()),
            CliError::Archive { .. } => {
                Some("pass a .tar.gz made by `vfioctl snapshot`, or unpack it and pass the directory".into())
            }
        }
    }
}

/// Prints the error, its causes and the remedy to stderr.
pub fn report(e: &CliError) {
    eprintln_safe!("vfioctl: error: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        eprintln_safe!("  caused by: {s}");
        source = s.source();
    }
    if let Some(remedy) = e.remedy() {
        for (i, line) in remedy.lines().enumerate() {
            eprintln_safe!("{}{line}", if i == 0 { "  fix: " } else { "       " });
        }
    }
}
