//! Editing `/etc/booster.yaml` (booster, an initramfs generator on Arch): the top-level
//! `modules_force_load:` key, a comma-separated string of modules loaded at boot before
//! udev events are handled (`modules_force_load: vfio,vfio_pci`).
//!
//! The missing modules go to the front of the list (VFIO before any GPU driver listed
//! there); the value's quoting, a trailing comment and every other key stay as written.
//! Without the key, a `modules_force_load:` line is appended. A YAML list value
//! (`[a, b]` or `- a` lines) is refused: booster reads a string.

use super::text::{append_line, lines, same_module, splice};
use super::EditError;

const KEY: &str = "modules_force_load:";

fn err(reason: impl Into<String>) -> EditError {
    EditError::Unsupported { what: "/etc/booster.yaml".into(), reason: reason.into() }
}

/// The modules `/etc/booster.yaml` loads at boot (`modules_force_load`, the last one).
pub fn forced(text: &str) -> Result<Vec<String>, EditError> {
    let ls = lines(text);
    let Some(l) = ls.iter().rev().find(|l| text[l.start..l.end].starts_with(KEY)) else { return Ok(Vec::new()) };
    let value = text[l.start + KEY.len()..l.end].trim();
    let value = match value.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let end = value[1..].find(q).ok_or_else(|| err("unterminated quote in modules_force_load"))?;
            &value[1..1 + end]
        }
        Some('[' | '{' | '|' | '>' | '&' | '*' | '!') => return Err(err("modules_force_load is not a plain string")),
        _ => value.split(" #").next().unwrap_or("").split("\t#").next().unwrap_or(""),
    };
    Ok(value.split(',').map(str::trim).filter(|m| !m.is_empty() && !m.starts_with('#')).map(str::to_string).collect())
}

/// Adds the missing `modules` to `modules_force_load` (`None`: the file does not exist).
pub fn edit(current: Option<&str>, modules: &[String]) -> Result<String, EditError> {
    let text = current.unwrap_or("");
    let wanted: Vec<&str> =
        modules.iter().map(|m| m.trim()).filter(|m| !m.is_empty() && !m.contains([',', '"', '\'', '#', ' '])).collect();
    let ls = lines(text);
    let found = ls.iter().enumerate().rev().find(|(_, l)| text[l.start..l.end].starts_with(KEY));
    let Some((idx, l)) = found else {
        let mut missing: Vec<&str> = Vec::new();
        for m in wanted {
            if !missing.iter().any(|x| same_module(x, m)) {
                missing.push(m);
            }
        }
        if missing.is_empty() {
            return Ok(text.to_string());
        }
        return Ok(append_line(text, &format!("{KEY} {}", missing.join(","))));
    };
    // The value: after the key, up to a comment (` #`), maybe quoted.
    let vs = l.start + KEY.len();
    let rest = &text[vs..l.end];
    let value_start = vs + (rest.len() - rest.trim_start().len());
    let after = &text[value_start..l.end];
    let (open, close) = match after.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let end = after[1..].find(q).ok_or_else(|| err("unterminated quote in modules_force_load"))?;
            (value_start + 1, value_start + 1 + end)
        }
        Some('[' | '{' | '|' | '>' | '&' | '*' | '!') => return Err(err("modules_force_load is not a plain string")),
        _ => {
            let end = if after.starts_with('#') {
                0
            } else {
                after.find(" #").or_else(|| after.find("\t#")).unwrap_or(after.len())
            };
            (value_start, value_start + after[..end].trim_end().len())
        }
    };
    if open == close && ls.get(idx + 1).is_some_and(|n| text[n.start..n.end].trim_start().starts_with("- ")) {
        return Err(err("modules_force_load is a YAML list; booster wants a comma-separated string"));
    }
    let value = &text[open..close];
    let present: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut missing: Vec<&str> = Vec::new();
    for m in wanted {
        if !present.iter().any(|p| same_module(p, m)) && !missing.iter().any(|x| same_module(x, m)) {
            missing.push(m);
        }
    }
    if missing.is_empty() {
        return Ok(text.to_string());
    }
    let mut new = missing.join(",");
    if !present.is_empty() {
        new.push(',');
    } else if text[close..].starts_with('#') {
        new.push(' ');
    }
    let mut reps = vec![(open, open, new)];
    if open == vs {
        reps[0].2.insert(0, ' ');
    }
    if value.trim().is_empty() && !value.is_empty() {
        reps = vec![(open, close, reps[0].2.clone())];
    }
    Ok(splice(text, reps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::{v, VFIO};

    fn twice(text: Option<&str>, m: &[String]) -> String {
        fuzzgen::idempotent(edit, text, m)
    }

    const CONFIG: &str = "# booster config, see booster.yaml(5)\n\
network:\n\
  interfaces: enp4s0\n\
universal: false\n\
modules: -*,+nvme # keep it small\n\
compression: zstd\n\
modules_force_load: amdgpu # the host GPU\n\
vconsole: true\n";

    #[test]
    fn adds_to_the_front() {
        assert_eq!(
            twice(Some(CONFIG), &v(&VFIO)),
            CONFIG.replace("load: amdgpu #", "load: vfio,vfio_iommu_type1,vfio_pci,amdgpu #")
        );
        assert_eq!(
            twice(Some("modules_force_load: \"vfio-pci, amdgpu\"\n"), &v(&VFIO)),
            "modules_force_load: \"vfio,vfio_iommu_type1,vfio-pci, amdgpu\"\n"
        );
        assert_eq!(
            twice(Some("modules_force_load:\n"), &v(&VFIO)),
            "modules_force_load: vfio,vfio_iommu_type1,vfio_pci\n"
        );
        assert_eq!(twice(Some("modules_force_load: ''\n"), &v(&["vfio"])), "modules_force_load: 'vfio'\n");
        assert_eq!(twice(Some("modules_force_load: # none\n"), &v(&["vfio"])), "modules_force_load: vfio # none\n");
    }

    #[test]
    fn missing_key_and_file() {
        let text = "universal: true\n#modules_force_load: vfio";
        assert_eq!(
            twice(Some(text), &v(&VFIO)),
            format!("{text}\nmodules_force_load: vfio,vfio_iommu_type1,vfio_pci\n")
        );
        assert_eq!(twice(None, &v(&VFIO)), "modules_force_load: vfio,vfio_iommu_type1,vfio_pci\n");
        assert!(edit(Some("modules_force_load: [vfio]\n"), &v(&VFIO)).is_err());
        assert!(edit(Some("modules_force_load:\n  - vfio\n"), &v(&VFIO)).is_err());
    }

    #[test]
    fn never_panics() {
        let m = v(&["vfio", "vfio_pci"]);
        for s in fuzzgen::strings(37, 3000, 24, &["modules_force_load:", " vfio", ",", "vfio_pci", " # c", "- "]) {
            if let Ok(once) = edit(Some(&s), &m) {
                assert_eq!(edit(Some(&once), &m).unwrap(), once, "{s:?}");
            }
        }
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn forced_reads_what_edit_writes() {
        assert!(forced("compression: zstd\n").unwrap().is_empty());
        let edited = edit(Some("modules_force_load: \"amdgpu\" # gpu\n"), &["vfio".into(), "vfio_pci".into()]).unwrap();
        assert_eq!(forced(&edited).unwrap(), ["vfio", "vfio_pci", "amdgpu"]);
        assert_eq!(forced("modules_force_load: a, b # c\n").unwrap(), ["a", "b"]);
        assert!(forced("modules_force_load: [a]\n").is_err());
    }
}
