//! Editing a kernel command line string with merge rules: parameters to remove go, a
//! parameter to add replaces one of the same name in place (a `vfio-pci.ids` gains ids
//! instead), others are appended; nothing is ever duplicated.

use super::CmdlineEdit;
use crate::cmdline::{Cmdline, Param};

fn parse_one(s: &str) -> Param {
    Cmdline::parse(s).params.into_iter().next().unwrap_or(Param { name: s.to_string(), value: None })
}

/// Parameters whose values are comma-separated lists that merge.
fn is_list(p: &Param) -> bool {
    p.name_is("vfio-pci.ids") || p.name_is("vfio_pci.ids")
}

/// Applies the edit to a command line, keeping the order and spelling of everything
/// else. Tokens are kept as written (quotes included) unless edited.
pub fn edit(line: &str, e: &CmdlineEdit) -> String {
    // Keep the original tokens so untouched parameters are byte-identical.
    let mut tokens: Vec<String> = split_tokens(line);
    let removes: Vec<Param> = e.remove.iter().map(|r| parse_one(r)).collect();
    let mut slots: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let p = parse_one(&tokens[i]);
        if removes.iter().any(|r| r.name_is(&p.name) && r.value == p.value) {
            slots.push((p.name.replace('-', "_"), i));
            tokens.remove(i);
            continue;
        }
        i += 1;
    }
    for a in &e.add {
        let new = parse_one(a);
        let key = new.name.replace('-', "_");
        let existing = tokens.iter().position(|t| parse_one(t).name_is(&new.name));
        match existing {
            Some(pos) => {
                let old = parse_one(&tokens[pos]);
                if is_list(&new) {
                    let mut ids: Vec<String> = old
                        .value
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    for id in new.value.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()) {
                        if !ids.iter().any(|x| x == id) {
                            ids.push(id.to_string());
                        }
                    }
                    let merged = Param { name: old.name.clone(), value: Some(ids.join(",")) };
                    if merged != old {
                        tokens[pos] = merged.to_string();
                    }
                } else if old != new && !(is_repeatable(&new)) {
                    tokens[pos] = new.to_string();
                } else if is_repeatable(&new) && !tokens.iter().any(|t| parse_one(t) == new) {
                    tokens.push(new.to_string());
                }
            }
            None => match slots.iter().position(|(k, _)| *k == key) {
                Some(s) => {
                    let (_, at) = slots.remove(s);
                    let at = at.min(tokens.len());
                    tokens.insert(at, new.to_string());
                    // Later slots at or after this point moved one to the right.
                    for (_, p) in slots.iter_mut() {
                        if *p >= at {
                            *p += 1;
                        }
                    }
                }
                None => tokens.push(new.to_string()),
            },
        }
    }
    tokens.join(" ")
}

/// Parameters the kernel accepts several times (each `hugepagesz` opens a new pool).
fn is_repeatable(p: &Param) -> bool {
    p.name_is("hugepagesz") || p.name_is("hugepages")
}

/// Splits on whitespace outside double quotes, keeping tokens as written.
pub fn split_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen::e;

    #[test]
    fn adds_merges_and_is_idempotent() {
        let edit = e(&["amd_iommu=on", "iommu=pt", "vfio-pci.ids=10de:1b06,10de:10ef"], &[]);
        let once = edit_line("quiet splash vfio-pci.ids=1002:67df", &edit);
        assert_eq!(once, "quiet splash vfio-pci.ids=1002:67df,10de:1b06,10de:10ef amd_iommu=on iommu=pt");
        assert_eq!(edit_line(&once, &edit), once);
    }

    #[test]
    fn replaces_in_place_and_keeps_quotes() {
        let edit = e(&["vfio-pci.ids=1002:66af,1002:ab20"], &["vfio-pci.ids=1002:66af,1002:ab20,144d:a808"]);
        let out = edit_line("root=/dev/x vfio-pci.ids=1002:66af,1002:ab20,144d:a808 cgroup_no_v1=\"all\" rw", &edit);
        assert_eq!(out, "root=/dev/x vfio-pci.ids=1002:66af,1002:ab20 cgroup_no_v1=\"all\" rw");
        let out = edit_line("intel_iommu=off quiet", &e(&["intel_iommu=on"], &["intel_iommu=off"]));
        assert_eq!(out, "intel_iommu=on quiet");
    }

    #[test]
    fn replacements_keep_their_order() {
        let edit =
            e(&["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=16"], &["default_hugepagesz=2M", "hugepagesz=2M"]);
        let out = edit_line("iommu=pt default_hugepagesz=2M hugepagesz=2M quiet", &edit);
        assert_eq!(out, "iommu=pt default_hugepagesz=1G hugepagesz=1G quiet hugepages=16");
    }

    fn edit_line(s: &str, e: &CmdlineEdit) -> String {
        edit(s, e)
    }
}
