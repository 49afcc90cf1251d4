//! Files vfioctl owns, such as `/etc/modprobe.d/vfio.conf` when vfioctl creates it:
//! a new file is the header and the planned lines; an existing one keeps every line and
//! gains only what is missing.
//!
//! Merging (modprobe.d syntax): each key of a planned `options MODULE key=value …` line is
//! merged into the uncommented `options` line of the same module (`-` and `_` alike) where
//! that key last appears, since modprobe passes the lines in order and the module keeps a
//! key's last value (a user's `ids=` on one line and `disable_vga=1` on the next: the ids
//! join the first). A key not there yet joins the module's last `options` line. `ids=`
//! lists are united (existing ids first), other planned keys replace that line's value;
//! keys only the file has stay. Any other line
//! (`softdep`, `blacklist`, comments) is appended unless the same words are already on an
//! uncommented line (comments: the same text).

use super::text::same_module;

fn words(line: &str) -> Vec<&str> {
    line.split('#').next().unwrap_or("").split_whitespace().collect()
}

/// `line` with the planned `options` words merged in, or `None` when it already says it.
fn merge_options(line: &str, planned: &[&str]) -> Option<String> {
    let (body, comment) = match line.find('#') {
        Some(i) => (&line[..i], Some(line[i..].trim_end())),
        None => (line, None),
    };
    let indent = &body[..body.len() - body.trim_start().len()];
    let old: Vec<&str> = body.split_whitespace().collect();
    let mut pairs: Vec<(String, Option<String>)> = old
        .iter()
        .skip(2)
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w.to_string(), None),
        })
        .collect();
    for w in planned.iter().skip(2) {
        let (k, v) = match w.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (*w, None),
        };
        match pairs.iter_mut().find(|(ok, _)| ok == k) {
            Some((_, ov)) if k == "ids" => {
                let mut ids: Vec<String> =
                    ov.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                for id in v.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()) {
                    if !ids.iter().any(|x| x == id) {
                        ids.push(id.to_string());
                    }
                }
                *ov = Some(ids.join(","));
            }
            Some((_, ov)) => *ov = v,
            None => pairs.push((k.to_string(), v)),
        }
    }
    let mut new =
        format!("{indent}{} {}", old.first().copied().unwrap_or("options"), old.get(1).copied().unwrap_or(""));
    for (k, v) in &pairs {
        new.push(' ');
        new.push_str(k);
        if let Some(v) = v {
            new.push('=');
            new.push_str(v);
        }
    }
    if let Some(c) = comment {
        new.push(' ');
        new.push_str(c);
    }
    (words(&new) != old).then_some(new)
}

/// Ends a last line that continues onto the next (a trailing `\\`, which kmod and udev
/// both join with the line after it) with an empty line, so that a line appended after
/// it stands on its own instead of being glued onto the user's.
fn end_continuation(file: &mut Vec<String>) {
    if file.last().is_some_and(|l| l.trim_end().ends_with('\\')) {
        file.push(String::new());
    }
}

/// The new text of an owned file: `header` and `lines` when it does not exist (`None`),
/// else the current text with the planned lines merged in (see the module docs).
pub fn owned_file(current: Option<&str>, header: &str, lines: &[String]) -> String {
    let Some(text) = current else {
        let mut out = header.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
        return out;
    };
    let ends_nl = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut file: Vec<String> =
        if text.is_empty() { Vec::new() } else { body.split('\n').map(str::to_string).collect() };
    let mut appended = false;
    for planned in lines {
        let p = planned.trim();
        if p.is_empty() {
            continue;
        }
        if p.starts_with('#') {
            if !file.iter().any(|l| l.trim() == p) {
                end_continuation(&mut file);
                file.push(p.to_string());
                appended = true;
            }
            continue;
        }
        let pw = words(p);
        if pw.is_empty() || file.iter().any(|l| !l.trim_start().starts_with('#') && words(l) == pw) {
            continue;
        }
        if pw[0] == "options" && pw.len() >= 2 {
            let module_lines: Vec<usize> = (0..file.len())
                .filter(|&i| {
                    let w = words(&file[i]);
                    w.len() >= 2 && w[0] == "options" && same_module(w[1], pw[1])
                })
                .collect();
            if let Some(&last) = module_lines.last() {
                // modprobe passes every line's options in file order and the module keeps
                // the last value of a key: each planned key goes where the key last is, so
                // that its value is the one that wins; keys not there yet join the last line.
                let key = |w: &str| w.split_once('=').map_or(w, |(k, _)| k).to_string();
                let mut by_line: Vec<(usize, Vec<&str>)> = Vec::new();
                for w in pw.iter().skip(2) {
                    let at = module_lines
                        .iter()
                        .rev()
                        .find(|&&i| words(&file[i]).iter().skip(2).any(|o| key(o) == key(w)))
                        .copied()
                        .unwrap_or(last);
                    match by_line.iter_mut().find(|(i, _)| *i == at) {
                        Some((_, ws)) => ws.push(w),
                        None => by_line.push((at, vec![w])),
                    }
                }
                for (i, ws) in by_line {
                    let planned: Vec<&str> = pw[..2].iter().copied().chain(ws).collect();
                    if let Some(new) = merge_options(&file[i], &planned) {
                        file[i] = new;
                    }
                }
                continue;
            }
        }
        end_continuation(&mut file);
        file.push(p.to_string());
        appended = true;
    }
    let mut out = file.join("\n");
    if (ends_nl || appended) && !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::fuzzgen;
    use crate::edit::fuzzgen::v;

    const HEADER: &str = "# Written by vfioctl: reserve 0000:09:00.0, 0000:09:00.1 for vfio-pci.\n";

    fn twice(text: Option<&str>, lines: &[String]) -> String {
        let once = owned_file(text, HEADER, lines);
        assert_eq!(owned_file(Some(&once), HEADER, lines), once, "not idempotent");
        once
    }

    /// The guide's /etc/modprobe.d/vfio.conf (examples/hosts/r2600x).
    const GUIDE: &str = "softdep nvidia pre: vfio vfio_pci
softdep nvidiafb pre: vfio vfio_pci
softdep nvidia_drm pre: vfio vfio_pci
softdep nouveau pre: vfio vfio_pci
options vfio-pci ids=10de:1b06,10de:10ef disable_vga=1
";

    /// Regression: a user's file whose last line continues (`\\`) had the planned line glued
    /// onto it, into the user's rule or options line.
    #[test]
    fn a_trailing_continuation_is_ended_first() {
        let text = "ACTION==\"add\", SUBSYSTEM==\"pci\", \\\n  RUN+=\"/bin/true\" \\\n";
        let lines = v(&["# vfioctl", "ACTION==\"add\", KERNEL==\"0000:0b:00.0\""]);
        let out = twice(Some(text), &lines);
        assert_eq!(out, format!("{text}\n# vfioctl\n{}\n", lines[1]));
        let no_nl = text.trim_end_matches('\n');
        assert_eq!(twice(Some(no_nl), &lines), out);
    }

    #[test]
    fn new_file() {
        let lines = v(&["options vfio-pci ids=10de:1b06,10de:10ef disable_vga=1", "softdep nouveau pre: vfio-pci"]);
        assert_eq!(twice(None, &lines), format!("{HEADER}{}\n{}\n", lines[0], lines[1]));
    }

    #[test]
    fn merges_ids_and_keeps_everything() {
        let lines = v(&["options vfio-pci ids=10de:1b06,10de:10ef,10de:1b80", "softdep nouveau pre: vfio-pci"]);
        assert_eq!(
            twice(Some(GUIDE), &lines),
            GUIDE.replace(
                "10de:10ef disable_vga=1\n",
                "10de:10ef,10de:1b80 disable_vga=1\nsoftdep nouveau pre: vfio-pci\n"
            )
        );
        let same = v(&["options vfio_pci ids=10de:10ef disable_vga=1", "softdep nvidia pre: vfio vfio_pci"]);
        assert_eq!(twice(Some(GUIDE), &same), GUIDE);
    }

    #[test]
    fn commented_and_other_modules() {
        let text =
            "#options vfio-pci ids=1002:7300\noptions vhost_net experimental_zcopytx=1  # fast\noptions vfio-pci ids=A";
        let lines =
            v(&["options vfio-pci ids=A,B disable_vga=1", "options vhost_net experimental_zcopytx=0", "# note"]);
        assert_eq!(
            twice(Some(text), &lines),
            "#options vfio-pci ids=1002:7300\noptions vhost_net experimental_zcopytx=0 # fast\noptions vfio-pci ids=A,B disable_vga=1\n# note\n"
        );
        assert_eq!(twice(Some(""), &v(&["a"])), "a\n");
    }

    /// Regression: a user's ids on one line and `disable_vga=1` on the next; the plan's ids
    /// went onto the second line, whose `ids=` then won, and the user's own GPU was no
    /// longer claimed.
    #[test]
    fn a_key_is_merged_where_it_wins() {
        let text = "options vfio-pci ids=10de:1b81,10de:10f0\noptions vfio-pci disable_vga=1\n";
        let lines = v(&["options vfio-pci ids=10de:1b06,10de:10ef disable_vga=1"]);
        assert_eq!(
            twice(Some(text), &lines),
            "options vfio-pci ids=10de:1b81,10de:10f0,10de:1b06,10de:10ef\noptions vfio-pci disable_vga=1\n"
        );
        // The ids on two lines: the later one is the one modprobe's module keeps.
        let text = "options vfio_pci ids=1002:67df\noptions vfio-pci ids=10de:1b81 disable_idle_d3=1\n";
        let lines = v(&["options vfio-pci ids=10de:1b06 disable_vga=1"]);
        assert_eq!(
            twice(Some(text), &lines),
            "options vfio_pci ids=1002:67df\noptions vfio-pci ids=10de:1b81,10de:1b06 disable_idle_d3=1 disable_vga=1\n"
        );
    }

    #[test]
    fn never_panics() {
        let lines = v(&["options vfio-pci ids=A,B disable_vga=1", "softdep x pre: vfio-pci", "# c", "options"]);
        let words = ["options ", "vfio-pci ", "vfio_pci ", "ids=", "A,", "softdep "];
        for s in fuzzgen::strings(41, 3000, 24, &words) {
            let once = owned_file(Some(&s), HEADER, &lines);
            assert_eq!(owned_file(Some(&once), HEADER, &lines), once, "{s:?}");
        }
    }
}
