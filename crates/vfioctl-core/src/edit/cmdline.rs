//! Editing a kernel command line string with merge rules: parameters to remove go, a
//! parameter to add replaces one of the same name in place, others are appended; nothing
//! is ever duplicated. A parameter whose value is a comma list the kernel reads item by
//! item (`vfio-pci.ids`, and the IOMMU options `intel_iommu`, `amd_iommu`, `iommu`) gains
//! only the plan's items: a user's `intel_iommu=igfx_off` becomes `intel_iommu=on,igfx_off`,
//! never `intel_iommu=on`. `video=` is one parameter per framebuffer driver or connector
//! (the name before `:`): `video=efifb:off` replaces only a `video=efifb:…`, and a user's
//! `video=DP-1:2560x1440@144` or `video=vesafb:off,efifb:off` stays beside it.

use super::CmdlineEdit;
use crate::cmdline::{Cmdline, Param};

fn parse_one(s: &str) -> Param {
    Cmdline::parse(s).params.into_iter().next().unwrap_or(Param { name: s.to_string(), value: None })
}

/// How a parameter's comma-separated value merges with the plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    /// Not a list: the plan's value replaces the user's.
    No,
    /// Device ids: the plan's ids go after the user's.
    Ids,
    /// Options read one by one, the later winning where two undo each other (`on` and
    /// `off`, `pt` and `nopt`): the plan's go first and the ones they undo are dropped.
    Options,
}

fn list_kind(p: &Param) -> List {
    if p.name_is("vfio-pci.ids") || p.name_is("vfio_pci.ids") {
        List::Ids
    } else if p.name_is("intel_iommu") || p.name_is("amd_iommu") || p.name_is("iommu") {
        List::Options
    } else {
        List::No
    }
}

/// The option that `option` undoes in an IOMMU option list.
fn undone_by(option: &str) -> Option<&'static str> {
    match option {
        "on" => Some("off"),
        "off" => Some("on"),
        "pt" => Some("nopt"),
        "nopt" => Some("pt"),
        _ => None,
    }
}

/// `old`'s items with `new`'s merged in by `kind`'s rule.
fn merge_items(kind: List, old: &str, new: &str) -> String {
    let items = |v: &str| v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let (old, new) = (items(old), items(new));
    let merged: Vec<String> = match kind {
        List::Options => {
            let fresh: Vec<&String> = new.iter().filter(|n| !old.contains(n)).collect();
            let undone: Vec<&str> = fresh.iter().filter_map(|n| undone_by(n)).collect();
            fresh.into_iter().cloned().chain(old.into_iter().filter(|o| !undone.contains(&o.as_str()))).collect()
        }
        _ => {
            let mut all = old;
            for n in new {
                if !all.contains(&n) {
                    all.push(n);
                }
            }
            all
        }
    };
    merged.join(",")
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
        // `video=` is given once per driver or connector (`video=efifb:off
        // video=DP-1:1920x1080`): the one with the same name before `:`, the last winning.
        let existing = if new.name_is("video") {
            let key = |p: &Param| p.value.as_deref().and_then(|v| v.split_once(':')).map(|(k, _)| k.to_string());
            tokens.iter().rposition(|t| {
                let p = parse_one(t);
                p.name_is("video") && key(&p) == key(&new)
            })
        } else {
            tokens.iter().position(|t| parse_one(t).name_is(&new.name))
        };
        match existing {
            Some(pos) => {
                let old = parse_one(&tokens[pos]);
                let kind = list_kind(&new);
                if kind != List::No {
                    let items =
                        merge_items(kind, old.value.as_deref().unwrap_or(""), new.value.as_deref().unwrap_or(""));
                    let merged = Param { name: old.name.clone(), value: Some(items) };
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

/// What the command line `line` still lacks of the edit, as the kernel reads it: for
/// each addition not in effect, `lack PARAM`; for each removal still there, `have PARAM`.
/// An addition is in effect when every item of a list parameter is there, when
/// `video=NAME:…` is what NAME gets, when a repeatable parameter (`hugepagesz`) is there
/// as written, and otherwise when the last value of its name is the planned one.
pub fn lacking(line: &str, e: &CmdlineEdit) -> Vec<String> {
    let c = Cmdline::parse(line);
    let mut out = Vec::new();
    for a in &e.add {
        let p = parse_one(a);
        let ok = match (list_kind(&p), p.value.as_deref()) {
            (_, None) => c.params.iter().any(|q| q.name_is(&p.name)),
            (List::Ids | List::Options, Some(v)) => {
                v.split(',').filter(|x| !x.is_empty()).all(|x| c.has_value(&p.name, x))
            }
            (List::No, Some(v)) if p.name_is("video") => match v.split_once(':') {
                Some((name, opts)) => c.video_options(name) == Some(opts),
                None => c.values("video").contains(&v),
            },
            (List::No, Some(_)) if is_repeatable(&p) => c.params.contains(&p),
            (List::No, Some(v)) => c.values(&p.name).last() == Some(&v),
        };
        if !ok {
            out.push(format!("lack {a}"));
        }
    }
    for r in &e.remove {
        let p = parse_one(r);
        if c.params.contains(&p) {
            out.push(format!("have {r}"));
        }
    }
    out
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

    /// Regression: the plan's `video=efifb:off` replaced a user's `video=` for a connector
    /// (or another framebuffer driver), losing their mode.
    #[test]
    fn video_is_one_parameter_per_driver_or_connector() {
        let edit = e(&["video=efifb:off"], &[]);
        let once = edit_line("quiet video=DP-1:2560x1440@144 video=vesafb:off,efifb:off", &edit);
        assert_eq!(once, "quiet video=DP-1:2560x1440@144 video=vesafb:off,efifb:off video=efifb:off");
        assert_eq!(edit_line(&once, &edit), once);
        assert_eq!(edit_line("video=efifb:nowc quiet", &edit), "video=efifb:off quiet");
        assert!(Cmdline::parse(&once).fb_off("efifb") && Cmdline::parse(&once).fb_off("vesafb"));
    }

    /// The check after every edit: what the kernel would take from the line.
    #[test]
    fn lacking_reads_the_line_as_the_kernel_does() {
        let plan = e(
            &[
                "intel_iommu=on",
                "vfio-pci.ids=10de:1b06",
                "video=efifb:off",
                "default_hugepagesz=1G",
                "hugepagesz=1G",
                "kvm.ignore_msrs",
            ],
            &["iommu=off"],
        );
        let good = "intel_iommu=igfx_off,on vfio_pci.ids=1002:67df,10de:1b06 video=efifb:off default_hugepagesz=1G hugepagesz=1G kvm.ignore_msrs";
        assert_eq!(lacking(good, &plan), Vec::<String>::new());
        let bad = "intel_iommu=igfx_off vfio-pci.ids=1002:67df video=vesafb:off,efifb:off default_hugepagesz=1G default_hugepagesz=2M hugepagesz=2M iommu=off";
        assert_eq!(
            lacking(bad, &plan),
            [
                "lack intel_iommu=on",
                "lack vfio-pci.ids=10de:1b06",
                "lack video=efifb:off",
                "lack default_hugepagesz=1G",
                "lack hugepagesz=1G",
                "lack kvm.ignore_msrs",
                "have iommu=off"
            ]
        );
    }

    #[test]
    fn replacements_keep_their_order() {
        let edit =
            e(&["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=16"], &["default_hugepagesz=2M", "hugepagesz=2M"]);
        let out = edit_line("iommu=pt default_hugepagesz=2M hugepagesz=2M quiet", &edit);
        assert_eq!(out, "iommu=pt default_hugepagesz=1G hugepagesz=1G quiet hugepages=16");
    }

    #[test]
    fn iommu_options_keep_the_users_own() {
        // GVT-g hosts keep the integrated GPU out of the IOMMU.
        let on = e(&["intel_iommu=on"], &[]);
        assert_eq!(edit_line("quiet intel_iommu=igfx_off", &on), "quiet intel_iommu=on,igfx_off");
        assert_eq!(edit_line("intel_iommu=on,igfx_off", &on), "intel_iommu=on,igfx_off");
        assert_eq!(edit_line("intel_iommu=off,sm_on", &on), "intel_iommu=on,sm_on");
        let pt = e(&["iommu=pt"], &[]);
        assert_eq!(edit_line("iommu=on,igfx_off splash", &pt), "iommu=pt,on,igfx_off splash");
        assert_eq!(edit_line("iommu=nopt,force", &pt), "iommu=pt,force");
        assert_eq!(edit_line("amd_iommu=force_isolation", &e(&["amd_iommu=on"], &[])), "amd_iommu=on,force_isolation");
        // Not a list: replaced.
        assert_eq!(edit_line("default_hugepagesz=2M", &e(&["default_hugepagesz=1G"], &[])), "default_hugepagesz=1G");
        // One per driver: kept beside.
        assert_eq!(edit_line("video=efifb:off", &e(&["video=vesafb:off"], &[])), "video=efifb:off video=vesafb:off");
        // The merged line is what the plan asked for, and merging again changes nothing.
        let once = edit_line("intel_iommu=igfx_off iommu=soft", &e(&["intel_iommu=on", "iommu=pt"], &[]));
        let c = crate::cmdline::Cmdline::parse(&once);
        assert!(c.has_value("intel_iommu", "on") && c.has_value("intel_iommu", "igfx_off"), "{once}");
        assert!(c.has_value("iommu", "pt") && c.has_value("iommu", "soft"), "{once}");
        assert_eq!(edit_line(&once, &e(&["intel_iommu=on", "iommu=pt"], &[])), once);
    }

    fn edit_line(s: &str, e: &CmdlineEdit) -> String {
        edit(s, e)
    }
}
