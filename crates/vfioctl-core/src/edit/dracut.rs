//! Editing the vfioctl-owned dracut drop-in `/etc/dracut.conf.d/vfioctl.conf` (Fedora,
//! RHEL, openSUSE, Void): `force_drivers+=" vfio vfio_iommu_type1 vfio_pci "` makes the
//! initramfs include the modules and load them before udev runs. dracut wants spaces
//! inside the quotes of `+=` values (they are concatenated).
//!
//! An existing file keeps all its lines; modules already named by an uncommented
//! `force_drivers=` / `force_drivers+=` line count as present, and the missing ones are
//! added inside the quotes of the last `force_drivers+=` line when no `force_drivers=`
//! follows it (else on a new line at the end).

use super::text::{append_line, same_module, splice};
use super::EditError;

/// The comment a new file starts with.
pub const COMMENT: &str = "# Written by vfioctl: load the VFIO modules early, before the GPU drivers";

/// Uncommented `force_drivers` lines: whether `+=`, the quoted contents' span.
fn lines(text: &str) -> Vec<(bool, usize, usize)> {
    let mut out = Vec::new();
    for l in super::text::lines(text) {
        let line = &text[l.start..l.end];
        let body = line.trim_start();
        let (plus, rest) = match (body.strip_prefix("force_drivers+="), body.strip_prefix("force_drivers=")) {
            (Some(r), _) => (true, r),
            (None, Some(r)) => (false, r),
            _ => continue,
        };
        let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
        let start = l.end - rest.len() + 1;
        let Some(len) = text[start..l.end].find(q) else { continue };
        out.push((plus, start, start + len));
    }
    out
}

/// The modules a dracut configuration file forces into the initramfs and loads early,
/// after what the files read before it forced (`prior`): `force_drivers=` replaces the
/// list, `force_drivers+=` adds to it; `add_drivers` only includes a module (udev loads it
/// when a device asks), so it does not count.
pub fn forced(prior: &[String], text: &str) -> Vec<String> {
    let mut out = prior.to_vec();
    for (plus, a, b) in lines(text) {
        if !plus {
            out.clear();
        }
        out.extend(text[a..b].split_whitespace().map(str::to_string));
    }
    out
}

/// The file sets the list anew (an uncommented `force_drivers=`, not `+=`): what the files
/// before it forced is gone.
pub fn replaces(text: &str) -> bool {
    lines(text).iter().any(|l| !l.0)
}

/// Adds the missing `modules` to `force_drivers` (`None`: the file does not exist yet).
pub fn edit(current: Option<&str>, modules: &[String]) -> Result<String, EditError> {
    let text = current.unwrap_or("");
    super::text::sourceable(text)?;
    let found = lines(text);
    let present: Vec<&str> = found.iter().flat_map(|&(_, a, b)| text[a..b].split_whitespace()).collect();
    let mut missing: Vec<&str> = Vec::new();
    for m in modules.iter().map(|m| m.trim()).filter(|m| !m.is_empty() && !m.contains(['"', '\'', ' ', '\n'])) {
        if !present.iter().any(|p| same_module(p, m)) && !missing.iter().any(|x| same_module(x, m)) {
            missing.push(m);
        }
    }
    if missing.is_empty() {
        return Ok(text.to_string());
    }
    // Into the last `+=` line, unless a `force_drivers=` after it replaces the list.
    if let Some(&(_, a, b)) = found.last().filter(|f| f.0) {
        let inner = &text[a..b];
        let trimmed = inner.trim_end();
        let lead = if trimmed.trim_start().is_empty() && !inner.starts_with(' ') { " " } else { "" };
        let sep = if trimmed.is_empty() || trimmed.ends_with(char::is_whitespace) { "" } else { " " };
        let new = format!("{lead}{trimmed}{sep}{} ", missing.join(" "));
        return Ok(splice(text, vec![(a, b, new)]));
    }
    let mut out = if text.is_empty() { format!("{COMMENT}\n") } else { text.to_string() };
    out = append_line(&out, &format!("force_drivers+=\" {} \"", missing.join(" ")));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::{v, VFIO};

    fn twice(text: Option<&str>, m: &[String]) -> String {
        fuzzgen::idempotent(edit, text, m)
    }

    #[test]
    fn new_and_same_file() {
        let out = twice(None, &v(&VFIO));
        assert_eq!(out, format!("{COMMENT}\nforce_drivers+=\" vfio vfio_iommu_type1 vfio_pci \"\n"));
        assert_eq!(twice(Some(&out), &v(&VFIO)), out);
    }

    #[test]
    fn merges_into_other_content() {
        let text =
            "# from the Arch wiki\nadd_drivers+=\" nvme \"\nforce_drivers+=\" vfio_pci vfio \"\nhostonly=\"yes\"\n";
        assert_eq!(
            twice(Some(text), &v(&VFIO)),
            text.replace("\" vfio_pci vfio \"", "\" vfio_pci vfio vfio_iommu_type1 \"")
        );
        let text = "force_drivers=\"vfio-pci\"\ncompress=\"zstd\"";
        assert_eq!(twice(Some(text), &v(&VFIO)), format!("{text}\nforce_drivers+=\" vfio vfio_iommu_type1 \"\n"));
        assert_eq!(twice(Some("force_drivers+=\"\"\n"), &v(&["vfio"])), "force_drivers+=\" vfio \"\n");
    }

    #[test]
    fn never_panics() {
        let m = v(&["vfio", "vfio_pci"]);
        for s in fuzzgen::strings(31, 3000, 24, &["force_drivers+=\"", "force_drivers=", "vfio", " vfio_pci "]) {
            let once = edit(Some(&s), &m).unwrap();
            assert_eq!(edit(Some(&once), &m).unwrap(), once, "{s:?}");
        }
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn forced_follows_assignment_and_append() {
        let a = forced(&[], "force_drivers+=\" nvidia \"\nadd_drivers+=\" ahci \"\n");
        assert_eq!(a, ["nvidia"]);
        let edited = edit(Some("hostonly=\"yes\"\n"), &["vfio".into(), "vfio_pci".into()]).unwrap();
        assert_eq!(forced(&a, &edited), ["nvidia", "vfio", "vfio_pci"]);
        assert_eq!(forced(&a, "force_drivers=\"x\"\n"), ["x"]);
    }
}
