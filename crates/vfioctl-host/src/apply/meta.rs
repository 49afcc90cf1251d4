//! What a file is besides its bytes, which an apply keeps and a rollback puts back: its
//! mode, owner and extended attributes (the SELinux label, POSIX ACLs, user attributes).
//! A file written by rename loses all of them unless they are set on the new file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One extended attribute: `security.selinux` = `system_u:object_r:etc_t:s0\0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: String,
    /// The value's bytes, as lowercase hexadecimal in the journal.
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
}

/// Mode (with the file type bits, as `st_mode`), owner and extended attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Vec<Xattr>,
}

impl FileMeta {
    /// A new file of `mode` owned by root, without attributes.
    pub fn new_file(mode: u32) -> FileMeta {
        FileMeta { mode, uid: 0, gid: 0, xattrs: Vec::new() }
    }

    /// vfioctl's own state files: 0600, root's.
    pub fn private() -> FileMeta {
        FileMeta::new_file(0o100600)
    }

    /// The metadata of the file at `real` (not following a final link); `None` when it
    /// does not exist. An attribute that cannot be read is an error: a restore must not
    /// silently lose it. A filesystem without extended attributes has none.
    pub fn of(real: &Path) -> std::io::Result<Option<FileMeta>> {
        let m = match std::fs::symlink_metadata(real) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let xattrs = if m.is_file() { xattrs_of(real)? } else { Vec::new() };
        Ok(Some(FileMeta { mode: m.mode(), uid: m.uid(), gid: m.gid(), xattrs }))
    }

    /// Gives `real` (a file vfioctl just created) this mode, owner and attributes. Only root
    /// can give a file away or set `security.*` and `trusted.*` attributes: as a user those
    /// stay as the kernel made them, as a copy by the user would.
    pub(crate) fn set_on(&self, real: &Path) -> std::io::Result<()> {
        std::fs::set_permissions(real, std::fs::Permissions::from_mode(self.mode & 0o7777))?;
        let _ = std::os::unix::fs::chown(real, Some(self.uid), Some(self.gid));
        for x in &self.xattrs {
            match rustix::fs::lsetxattr(real, x.name.as_str(), &x.value, rustix::fs::XattrFlags::empty()) {
                Ok(()) => {}
                Err(rustix::io::Errno::PERM | rustix::io::Errno::ACCESS)
                    if !x.name.starts_with("user.") && !rustix::process::geteuid().is_root() => {}
                Err(e) => return Err(std::io::Error::other(format!("setting the attribute {}: {e}", x.name))),
            }
        }
        Ok(())
    }
}

/// The extended attributes of a regular file, sorted by name.
fn xattrs_of(real: &Path) -> std::io::Result<Vec<Xattr>> {
    let unsupported = |e: rustix::io::Errno| e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP;
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(real, &mut names[..]) {
        Ok(n) => n,
        Err(e) if unsupported(e) => return Ok(Vec::new()),
        Err(e) => return Err(std::io::Error::other(format!("listing its extended attributes: {e}"))),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        match rustix::fs::lgetxattr(real, name.as_str(), &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                out.push(Xattr { name, value });
            }
            // Gone between the list and the read.
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(std::io::Error::other(format!("reading its extended attribute {name}: {e}"))),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hexadecimal digits"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not hexadecimal"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_as_hex() {
        let x = Xattr { name: "security.selinux".into(), value: b"system_u:object_r:etc_t:s0\0".to_vec() };
        let j = serde_json::to_string(&x).unwrap();
        assert!(j.contains("73797374656d5f75"), "{j}");
        assert_eq!(serde_json::from_str::<Xattr>(&j).unwrap(), x);
        assert!(serde_json::from_str::<Xattr>(r#"{"name":"user.a","value":"abc"}"#).is_err());
        assert!(serde_json::from_str::<Xattr>(r#"{"name":"user.a","value":"zz"}"#).is_err());
    }

    #[test]
    fn attributes_are_read_and_set_where_the_filesystem_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "x").unwrap();
        std::fs::write(&b, "x").unwrap();
        if rustix::fs::setxattr(&a, "user.vfioctl-test", b"kept", rustix::fs::XattrFlags::empty()).is_err() {
            eprintln!("skipped: no user attributes on this filesystem");
            return;
        }
        let m = FileMeta::of(&a).unwrap().unwrap();
        assert!(m.xattrs.iter().any(|x| x.name == "user.vfioctl-test" && x.value == b"kept"), "{m:?}");
        m.set_on(&b).unwrap();
        assert_eq!(FileMeta::of(&b).unwrap().unwrap(), m);
        assert_eq!(FileMeta::of(&dir.path().join("none")).unwrap(), None);
    }
}
