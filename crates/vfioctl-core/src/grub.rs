//! Reading `/etc/default/grub`: a shell fragment of `KEY=value` assignments. Only what
//! vfioctl needs to know is read here (the kernel command line GRUB will pass); editing
//! it surgically is the apply step's job.

use std::collections::BTreeMap;

/// Unquotes one shell word as `/etc/default/grub` writes them: `"…"` (with `$VAR`
/// expansion of earlier assignments and `\"` escapes), `'…'` (literal), or bare.
fn shell_value(raw: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = raw.trim().chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') => break,
            (None, c) if c.is_whitespace() => break,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (Some('"') | None, '$') => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if braced && chars.peek() == Some(&'}') {
                    chars.next();
                }
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            }
            (_, c) => out.push(c),
        }
    }
    out
}

/// The assignments of a `/etc/default/grub`-style file, later ones winning, values
/// unquoted and expanded. `export KEY=…` counts too; anything else is ignored.
pub fn assignments(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = shell_value(value, &vars);
        vars.insert(key.to_string(), v);
    }
    vars
}

/// The command line GRUB gives the default Linux entry: `GRUB_CMDLINE_LINUX` then
/// `GRUB_CMDLINE_LINUX_DEFAULT`, across the given files in order (`/etc/default/grub`
/// then `/etc/default/grub.d/*.cfg`, which GRUB sources after it).
pub fn kernel_cmdline<'a>(files: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut vars = BTreeMap::new();
    let mut seen = false;
    for text in files {
        for (k, v) in assignments(&prefix(&vars, text)) {
            seen |= k.starts_with("GRUB_CMDLINE_LINUX");
            vars.insert(k, v);
        }
    }
    if !seen {
        return None;
    }
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    Some(format!("{} {}", get("GRUB_CMDLINE_LINUX"), get("GRUB_CMDLINE_LINUX_DEFAULT")).trim().to_string())
}

/// Feeds earlier files' variables to a later file's `$VAR` expansions.
fn prefix(vars: &BTreeMap<String, String>, text: &str) -> String {
    let mut s = String::new();
    for (k, v) in vars {
        s.push_str(&format!("{k}='{}'\n", v.replace('\'', "")));
    }
    s.push_str(text);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guides_grub_line() {
        let text = "# If you change this file, run 'update-grub'\nGRUB_DEFAULT=0\n\
                    GRUB_CMDLINE_LINUX_DEFAULT=\"amd_iommu=on iommu=pt kvm_amd.npt=1 rd.modules-load=vfio-pci\"\n\
                    GRUB_CMDLINE_LINUX=\"\"\n";
        assert_eq!(
            kernel_cmdline([text]).as_deref(),
            Some("amd_iommu=on iommu=pt kvm_amd.npt=1 rd.modules-load=vfio-pci")
        );
    }

    #[test]
    fn quoting_expansion_and_drop_ins() {
        let main = "GRUB_CMDLINE_LINUX='rhgb quiet'\nexport GRUB_CMDLINE_LINUX_DEFAULT=splash # comment\n";
        let dropin = "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=on \\\"x\\\"\"\n";
        assert_eq!(kernel_cmdline([main, dropin]).as_deref(), Some("rhgb quiet splash intel_iommu=on \"x\""));
        assert_eq!(kernel_cmdline(["GRUB_TIMEOUT=5\n"]), None);
        assert_eq!(assignments("not an assignment\n=x\nA B=c\n").len(), 0);
    }
}
