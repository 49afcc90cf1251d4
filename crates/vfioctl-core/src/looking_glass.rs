//! Looking Glass: the guest's frames shown on the host through an IVSHMEM region.
//!
//! The region holds two frames of 4 bytes per pixel and about 10 MiB of Looking Glass's own,
//! rounded up to a power of two (QEMU's ivshmem needs one): 32 MiB for 1920x1080, 64 MiB for
//! 2560x1440, 128 MiB for 3840x2160. It is a file in `/dev/shm` (libvirt's `<shmem>`), or the
//! `/dev/kvmfr0` device of the kvmfr module (which libvirt cannot name: QEMU arguments).

use std::fmt;
use std::str::FromStr;

const MIB: u64 = 1 << 20;

/// A guest display resolution, `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

impl FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a resolution: give WIDTHxHEIGHT, e.g. 2560x1440");
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.parse().map_err(|_| bad())?;
        let height: u32 = h.parse().map_err(|_| bad())?;
        // 16K is the largest display anyone drives; beyond it the region stops being memory.
        if !(1..=15360).contains(&width) || !(1..=8640).contains(&height) {
            return Err(format!("{s}: a resolution from 1x1 to 15360x8640"));
        }
        Ok(Resolution { width, height })
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl Resolution {
    /// The region's size in bytes: two frames and 10 MiB, rounded up to a power of two.
    pub fn region_bytes(self) -> u64 {
        (u64::from(self.width) * u64::from(self.height) * 4 * 2 + 10 * MIB).next_power_of_two()
    }

    /// The region's size in MiB.
    pub fn region_mib(self) -> u64 {
        self.region_bytes() / MIB
    }
}

/// Where the region lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// `/dev/shm/looking-glass`, libvirt's `<shmem name='looking-glass'>`.
    Shm,
    /// `/dev/kvmfr0` of the kvmfr module (static_size_mb).
    Kvmfr,
}

/// Looking Glass for a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookingGlass {
    pub resolution: Resolution,
    pub backing: Backing,
}

/// The name of the `/dev/shm` file and of the QEMU memory backend.
pub const NAME: &str = "looking-glass";
/// The kvmfr device.
pub const KVMFR_DEVICE: &str = "/dev/kvmfr0";

impl LookingGlass {
    /// What the host needs besides the domain, one line each, for people.
    pub fn host_steps(&self, user: &str) -> Vec<String> {
        let mib = self.resolution.region_mib();
        match self.backing {
            Backing::Shm => vec![
                format!("the region is /dev/shm/{NAME} ({mib} MiB for {}), which QEMU creates as its own user; let the Looking Glass client read it: `f /dev/shm/{NAME} 0660 {user} kvm -` in /etc/tmpfiles.d/10-looking-glass.conf (then `systemd-tmpfiles --create`)", self.resolution),
            ],
            Backing::Kvmfr => vec![
                format!("load kvmfr with the region's size: `options kvmfr static_size_mb={mib}` in /etc/modprobe.d/kvmfr.conf and `kvmfr` in /etc/modules-load.d/kvmfr.conf"),
                format!("give the client and QEMU the device: `SUBSYSTEM==\"kvmfr\", OWNER=\"{user}\", GROUP=\"kvm\", MODE=\"0660\"` in /etc/udev/rules.d/99-kvmfr.rules"),
                format!("let QEMU open it: add \"{KVMFR_DEVICE}\" to cgroup_device_acl in /etc/libvirt/qemu.conf (keep the default entries), and to the AppArmor/SELinux policy where one confines QEMU"),
            ],
        }
    }
}

/// A file the host needs for Looking Glass, whole, as vfioctl writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub path: &'static str,
    pub content: String,
}

/// systemd-tmpfiles' rule for the `/dev/shm` region.
pub const TMPFILES: &str = "/etc/tmpfiles.d/10-looking-glass.conf";
/// kvmfr's size.
pub const KVMFR_MODPROBE: &str = "/etc/modprobe.d/kvmfr.conf";
/// kvmfr loaded at boot.
pub const KVMFR_MODULES_LOAD: &str = "/etc/modules-load.d/kvmfr.conf";
/// `/dev/kvmfr0`'s owner.
pub const KVMFR_UDEV: &str = "/etc/udev/rules.d/99-kvmfr.rules";

/// Whether `user` can stand in a tmpfiles line and a udev rule as a user name: POSIX
/// portable characters (letters, digits, `.`, `_`, `-`), not starting with `-`, at most 32.
pub fn user_name_ok(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 32
        && !user.starts_with('-')
        && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// kvmfr's `static_size_mb` with the first device at least `mib`: the other devices of
/// a list the host has (`64,32`) stay as they are.
pub fn static_size_mb(current: Option<&str>, mib: u64) -> String {
    let mut sizes: Vec<String> =
        current.unwrap_or("").split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    match sizes.first().and_then(|s| s.parse::<u64>().ok()) {
        Some(first) if first >= mib => {}
        Some(_) => sizes[0] = mib.to_string(),
        None if sizes.is_empty() => sizes.push(mib.to_string()),
        None => sizes[0] = mib.to_string(),
    }
    sizes.join(",")
}

impl LookingGlass {
    /// The files the host needs, for the client `user` (see [`user_name_ok`]) and, with
    /// kvmfr, `static_size_mb` (see [`static_size_mb`]).
    pub fn host_files(&self, user: &str, static_size_mb: &str) -> Vec<HostFile> {
        let mib = self.resolution.region_mib();
        let header = |what: &str| format!("# Written by vfioctl: {what} (Looking Glass, {}).\n", self.resolution);
        match self.backing {
            Backing::Shm => vec![HostFile {
                path: TMPFILES,
                content: format!(
                    "{}f /dev/shm/{NAME} 0660 {user} kvm -\n",
                    header(&format!("the {mib} MiB region QEMU shares with the client of {user}"))
                ),
            }],
            Backing::Kvmfr => vec![
                HostFile {
                    path: KVMFR_MODPROBE,
                    content: format!(
                        "{}options kvmfr static_size_mb={static_size_mb}\n",
                        header(&format!("{KVMFR_DEVICE} of {mib} MiB"))
                    ),
                },
                HostFile { path: KVMFR_MODULES_LOAD, content: format!("{}kvmfr\n", header("load kvmfr at boot")) },
                HostFile {
                    path: KVMFR_UDEV,
                    content: format!(
                        "{}SUBSYSTEM==\"kvmfr\", OWNER=\"{user}\", GROUP=\"kvm\", MODE=\"0660\"\n",
                        header(&format!("{KVMFR_DEVICE} for the client of {user} and for QEMU"))
                    ),
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_and_sizes() {
        assert_eq!(static_size_mb(None, 64), "64");
        assert_eq!(static_size_mb(Some("32"), 64), "64");
        assert_eq!(static_size_mb(Some("128"), 64), "128");
        assert_eq!(static_size_mb(Some("32,16"), 64), "64,16");
        assert_eq!(static_size_mb(Some("x,16"), 64), "64,16");
        for ok in ["alice", "bob.smith", "user_1", "a-b"] {
            assert!(user_name_ok(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "a\"b", "a\nb", "ümlaut", &"x".repeat(33)] {
            assert!(!user_name_ok(bad), "{bad}");
        }
        let lg = LookingGlass { resolution: "2560x1440".parse().unwrap(), backing: Backing::Kvmfr };
        let files = lg.host_files("alice", "64");
        assert_eq!(files.iter().map(|f| f.path).collect::<Vec<_>>(), [KVMFR_MODPROBE, KVMFR_MODULES_LOAD, KVMFR_UDEV]);
        assert!(files[0].content.ends_with("\noptions kvmfr static_size_mb=64\n"));
        assert!(files[2].content.contains("OWNER=\"alice\""));
        let shm = LookingGlass { backing: Backing::Shm, ..lg }.host_files("alice", "64");
        assert!(shm[0].content.ends_with("\nf /dev/shm/looking-glass 0660 alice kvm -\n"), "{}", shm[0].content);
    }

    #[test]
    fn sizes_for_common_resolutions() {
        let r = |s: &str| s.parse::<Resolution>().unwrap().region_mib();
        assert_eq!((r("1920x1080"), r("2560x1440"), r("3440x1440"), r("3840x2160")), (32, 64, 64, 128));
        assert_eq!(r("1280X720"), 32);
        assert_eq!("2560x1440".parse::<Resolution>().unwrap().to_string(), "2560x1440");
        for bad in ["", "2560", "x1440", "2560x", "0x1080", "99999x1", "a x b", "-1x5"] {
            assert!(bad.parse::<Resolution>().is_err(), "{bad}");
        }
    }
}
