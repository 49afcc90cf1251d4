//! Domains in the shapes real users write (`tests/domains/`, see its README): libvirt's
//! own parser accepts every file. (The patcher's contract over them comes next.)

use std::path::PathBuf;

use crate::util::{libvirt_accepts, workspace};

fn corpus() -> Vec<PathBuf> {
    let dir = workspace().join("tests/domains");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "xml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_corpus_is_what_libvirt_accepts() {
    let files = corpus();
    assert!(files.len() >= 30, "tests/domains holds {} domains", files.len());
    for f in &files {
        let xml = std::fs::read_to_string(f).expect("read");
        libvirt_accepts(&xml).unwrap_or_else(|e| panic!("{}: libvirt refuses the corpus file: {e}", f.display()));
    }
}
