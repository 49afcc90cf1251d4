//! A new disk image for the guest: qcow2 through `qemu-img`, or a sparse raw file.
//! An existing file is never touched: it may hold someone's installed system.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Command;

use crate::root::HostRoot;

/// What [`create_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new image of this many bytes.
    New { path: PathBuf, bytes: u64, format: &'static str },
    /// The file was there already and is left as it is.
    Existed { path: PathBuf, bytes: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot create the disk image {path}")]
    Io {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("qemu-img could not create {path}: {message}")]
    QemuImg { path: PathBuf, message: String },
    #[error("qemu-img is not installed: it is needed for a qcow2 image ({path})")]
    NoQemuImg { path: PathBuf },
}

impl DiskError {
    pub fn remedy(&self) -> Option<String> {
        match self {
            DiskError::NoQemuImg { .. } => Some(
                "install qemu-utils (Debian/Ubuntu), qemu-img (Fedora, Arch), or name the image .img for a sparse raw file"
                    .into(),
            ),
            DiskError::Io { .. } => Some("check that the directory exists and that you may write to it".into()),
            DiskError::QemuImg { .. } => None,
        }
    }
}

/// The image format a file name asks for.
pub fn format_of(path: &str) -> &'static str {
    if path.ends_with(".qcow2") {
        "qcow2"
    } else {
        "raw"
    }
}

/// Creates the image at `path` (a host path, under the root) with `bytes`, unless a file
/// is already there.
pub fn create_image(root: &HostRoot, path: &str, bytes: u64) -> Result<Created, DiskError> {
    let real = root.path(path);
    if let Ok(meta) = std::fs::metadata(&real) {
        return Ok(Created::Existed { path: real, bytes: meta.len() });
    }
    let io = |err| DiskError::Io { path: real.clone(), err };
    if let Some(dir) = real.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let format = format_of(path);
    if format == "qcow2" {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&real)
            .arg(bytes.to_string())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DiskError::NoQemuImg { path: real.clone() },
                _ => DiskError::Io { path: real.clone(), err: e },
            })?;
        if !out.status.success() {
            return Err(DiskError::QemuImg {
                path: real.clone(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    } else {
        // create_new: never truncate a file that appeared meanwhile.
        let f = OpenOptions::new().write(true).create_new(true).open(&real).map_err(io)?;
        f.set_len(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    Ok(Created::New { path: real, bytes, format })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_images_are_sparse_and_existing_files_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let root = HostRoot::new(tmp.path());
        let made = create_image(&root, "/var/lib/libvirt/images/w.img", 1 << 30).unwrap();
        let real = tmp.path().join("var/lib/libvirt/images/w.img");
        assert_eq!(made, Created::New { path: real.clone(), bytes: 1 << 30, format: "raw" });
        let meta = std::fs::metadata(&real).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 1 << 20, "not sparse: {} blocks", meta.blocks());
        std::fs::write(&real, b"installed system").unwrap();
        assert_eq!(
            create_image(&root, "/var/lib/libvirt/images/w.img", 1 << 30).unwrap(),
            Created::Existed { path: real.clone(), bytes: 16 }
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"installed system");
    }

    #[test]
    fn qcow2_images_come_from_qemu_img() {
        let tmp = tempfile::tempdir().unwrap();
        let root = HostRoot::new(tmp.path());
        match create_image(&root, "/images/w.qcow2", 8 << 30) {
            Ok(Created::New { format, .. }) => {
                assert_eq!(format, "qcow2");
                let head = std::fs::read(tmp.path().join("images/w.qcow2")).unwrap();
                assert_eq!(&head[..4], b"QFI\xfb");
            }
            Err(DiskError::NoQemuImg { .. }) => eprintln!("skipped: no qemu-img"),
            other => panic!("{other:?}"),
        }
    }
}
