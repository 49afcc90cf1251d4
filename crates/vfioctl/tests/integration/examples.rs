//! The committed example hosts are exactly what `hostgen` builds from their specs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::workspace;

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    for e in fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let path = e.path();
        let rel = path.strip_prefix(base).expect("under base").to_path_buf();
        let ft = e.file_type().expect("file type");
        if ft.is_symlink() {
            out.insert(rel, Entry::Link(fs::read_link(&path).expect("read_link")));
        } else if ft.is_dir() {
            out.insert(rel, Entry::Dir);
            walk(base, &path, out);
        } else {
            out.insert(rel, Entry::File(fs::read(&path).expect("read")));
        }
    }
}

#[test]
fn example_hosts_are_up_to_date_with_their_specs() {
    let dir = workspace().join("examples/hosts");
    let mut specs: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("examples/hosts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 4, "{specs:?}");
    for spec_path in specs {
        let name = spec_path.file_stem().expect("stem").to_string_lossy().into_owned();
        let committed = dir.join(&name);
        let tmp = tempfile::tempdir().expect("tempdir");
        let fresh = tmp.path().join(&name);
        let spec = vfioctl_hostgen::load(&spec_path).expect("spec loads");
        vfioctl_hostgen::generate(&spec, &fresh).expect("generate");
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        walk(&committed, &committed, &mut a);
        walk(&fresh, &fresh, &mut b);
        let only_committed: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
        let only_fresh: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
        let differ: Vec<_> = a.iter().filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k).collect();
        assert!(
            only_committed.is_empty() && only_fresh.is_empty() && differ.is_empty(),
            "examples/hosts/{name} is stale; regenerate with `cargo run -p vfioctl-hostgen -- examples/hosts/{name}.toml examples/hosts/{name}`\n\
             only committed: {only_committed:?}\nonly generated: {only_fresh:?}\ndiffer: {differ:?}"
        );
    }
}
