// Shared by the fuzz targets (pulled in with `include!`): the input as text, and edits
// built from it so the parameters to add and remove can match what the text holds.
use vfioctl_core::edit::CmdlineEdit;

/// The input as UTF-8 (lossy), split at the first NUL: the file text, then words that
/// become parameters to add and remove.
#[allow(dead_code)]
fn split(data: &[u8]) -> (String, CmdlineEdit) {
    let s = String::from_utf8_lossy(data).into_owned();
    let (text, words) = s.split_once('\0').unwrap_or((s.as_str(), ""));
    let mut e = CmdlineEdit {
        add: vec!["amd_iommu=on".into(), "iommu=pt".into(), "vfio-pci.ids=10de:1b06,10de:10ef".into()],
        remove: vec!["quiet".into()],
    };
    for (i, w) in words.split_whitespace().enumerate() {
        if i % 2 == 0 {
            e.add.push(w.to_string());
        } else {
            e.remove.push(w.to_string());
        }
    }
    // A plan never adds what it removes.
    let remove = e.remove.clone();
    e.add.retain(|a| !remove.contains(a));
    (text.to_string(), e)
}

/// Applies a cmdline editor and checks that a second application changes nothing.
#[allow(dead_code)]
fn twice<E: std::fmt::Debug>(
    text: &str,
    e: &CmdlineEdit,
    f: impl Fn(Option<&str>, &CmdlineEdit) -> Result<String, E>,
) {
    if let Ok(once) = f(Some(text), e) {
        let again = f(Some(&once), e);
        assert!(again.as_ref().is_ok_and(|a| *a == once), "not idempotent: {text:?} → {once:?} → {again:?}");
    }
}

/// The modules list for the early-module editors, from the words.
#[allow(dead_code)]
fn modules(e: &CmdlineEdit) -> Vec<String> {
    let mut m = vec!["vfio".to_string(), "vfio_iommu_type1".into(), "vfio_pci".into()];
    m.extend(e.add.iter().skip(3).cloned());
    m
}
