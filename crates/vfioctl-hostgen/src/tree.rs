//! An in-memory file tree (files and relative symlinks) written out in one go, plus the
//! kernel's CPU mask and list formats.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use vfioctl_core::cpuset::CpuSet;

use crate::Error;

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    /// A symlink with a relative target.
    Link(String),
}

/// Files and links by path relative to the host root (`sys/devices/...`). Ordered, so
/// writing is deterministic.
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Self {
        Tree::default()
    }

    /// Adds a text file.
    pub fn file(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.entries.insert(path.into(), Node::File(text.into().into_bytes()));
    }

    /// Adds a binary file.
    pub fn bytes(&mut self, path: impl Into<String>, data: Vec<u8>) {
        self.entries.insert(path.into(), Node::File(data));
    }

    /// Adds a symlink at `link` pointing at `target` (both relative to the root); the
    /// stored target is relative to the link's directory.
    pub fn link(&mut self, link: impl Into<String>, target: &str) {
        let link = link.into();
        let rel = relative_target(&link, target);
        self.entries.insert(link, Node::Link(rel));
    }

    /// Adds a symlink whose target is stored verbatim.
    pub fn raw_link(&mut self, link: impl Into<String>, target: &str) {
        self.entries.insert(link.into(), Node::Link(target.to_string()));
    }

    /// The entry, if any, that is a proper prefix directory-wise of `path` (a file or
    /// link where `path` needs a directory).
    pub fn file_above(&self, path: &str) -> Option<&str> {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            if let Some((k, _)) = self.entries.get_key_value(&path[..end]) {
                return Some(k);
            }
            end += 1;
        }
        None
    }

    /// Whether some entry lies below `path` (so `path` is a directory).
    pub fn has_under(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.entries.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entries.get(path)
    }

    /// Writes every entry under `root` (which must exist): directories first, then the
    /// files and links.
    pub fn write(&self, root: &Path) -> Result<(), Error> {
        let mut dirs: Vec<&str> = self.entries.keys().filter_map(|k| k.rsplit_once('/').map(|(d, _)| d)).collect();
        dirs.dedup();
        let mut made: Option<&str> = None;
        for d in dirs {
            if made != Some(d) {
                let path = root.join(d);
                fs::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
                made = Some(d);
            }
        }
        let entries: Vec<(&String, &Node)> = self.entries.iter().collect();
        write_entries(root, &entries)
    }
}

fn write_entries(root: &Path, entries: &[(&String, &Node)]) -> Result<(), Error> {
    for (rel, node) in entries {
        let path = root.join(rel);
        let res = match node {
            Node::File(data) => fs::write(&path, data),
            Node::Link(target) => std::os::unix::fs::symlink(target, &path),
        };
        res.map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}

/// The target of a link at `link` to `target`, relative to the link's directory.
pub fn relative_target(link: &str, target: &str) -> String {
    let from: Vec<&str> = link.split('/').collect();
    let from = &from[..from.len().saturating_sub(1)];
    let to: Vec<&str> = target.split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

/// The kernel's mask format for `set` over `nbits` CPUs (`nr_cpu_ids`): 32-bit chunks,
/// most significant first, the first chunk only as wide as the bits it holds.
pub fn mask(set: &CpuSet, nbits: u32) -> String {
    let nbits = nbits.max(1);
    let words = nbits.div_ceil(32) as usize;
    let mut w = vec![0u32; words];
    for c in set.iter().filter(|&c| c < nbits) {
        w[c as usize / 32] |= 1 << (c % 32);
    }
    let first_bits = match nbits % 32 {
        0 => 32,
        r => r,
    };
    let mut out = String::new();
    for (i, x) in w.iter().enumerate().rev() {
        let width = if i == words - 1 { first_bits.div_ceil(4) as usize } else { 8 };
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("{x:0width$x}"));
    }
    out
}

/// The kernel's list format (`0-3,8-11`).
pub fn list(set: &CpuSet) -> String {
    set.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn set(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    #[test]
    fn masks_match_kernel_widths() {
        assert_eq!(mask(&set("4-7,20-23"), 32), "00f000f0");
        assert_eq!(mask(&set("0,6"), 12), "041");
        assert_eq!(mask(&set("16-19"), 20), "f0000");
        assert_eq!(mask(&set("0,40"), 64), "00000100,00000001");
        assert_eq!(mask(&set("0,128"), 256), "00000000,00000000,00000000,00000001,00000000,00000000,00000000,00000001");
        assert_eq!(mask(&set(""), 4), "0");
        assert_eq!(mask(&set("0-32"), 33), "1,ffffffff");
        // Round trip through the core parser.
        let s = set("1-3,33,255");
        assert_eq!(CpuSet::from_mask(&mask(&s, 256)).unwrap(), s);
    }

    #[test]
    fn lists() {
        assert_eq!(list(&set("0,1,2,3,8,10,11")), "0-3,8,10-11");
        assert_eq!(list(&set("")), "");
    }

    #[test]
    fn relative_links() {
        assert_eq!(
            relative_target("sys/bus/pci/devices/0000:00:01.1", "sys/devices/pci0000:00/0000:00:01.1"),
            "../../../devices/pci0000:00/0000:00:01.1"
        );
        assert_eq!(
            relative_target("sys/devices/pci0000:00/0000:00:01.1/iommu_group", "sys/kernel/iommu_groups/1"),
            "../../../kernel/iommu_groups/1"
        );
        assert_eq!(relative_target("a/b", "a/c"), "c");
    }

    #[test]
    fn writes_files_and_links() {
        let dir = std::env::temp_dir().join(format!("hostgen-tree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut t = Tree::new();
        t.file("x/y/z", "1\n");
        t.link("x/l", "x/y/z");
        t.write(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("x/l")).unwrap(), "1\n");
        assert_eq!(fs::read_link(dir.join("x/l")).unwrap(), PathBuf::from("y/z"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
