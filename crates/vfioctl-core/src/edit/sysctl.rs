//! sysctl configuration (`/etc/sysctl.conf`, `sysctl.d/*.conf`): `key = value` lines, the
//! key's parts separated by `.` or `/`, comments on lines starting with `#` or `;`, a
//! leading `-` meaning "ignore errors". [`settings`] reads the lines that set some keys;
//! [`comment_out`] turns them into comments that keep the old line, so a reservation that
//! conflicts with the plan's stops counting and stays readable.

/// The keys that reserve hugepages of the default size at boot.
pub const HUGEPAGE_KEYS: &[&str] = &["vm.nr_hugepages", "vm.nr_hugepages_mempolicy", "vm.nr_overcommit_hugepages"];

/// The normalized key (`vm.nr_hugepages`) and value of a setting line.
fn setting(line: &str) -> Option<(String, String)> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
        return None;
    }
    let (k, v) = l.split_once('=')?;
    let k = k.trim().trim_start_matches('-').trim().replace('/', ".");
    Some((k, v.trim().to_string()))
}

/// The lines of `text` that set one of `keys`: (line number from 1, key, value).
pub fn settings(text: &str, keys: &[&str]) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| setting(l).filter(|(k, _)| keys.contains(&k.as_str())).map(|(k, v)| (i + 1, k, v)))
        .collect()
}

/// `text` with every line setting one of `keys` made a comment that keeps it:
/// `# vfioctl (WHY): vm.nr_hugepages = 8600`. Line ends and every other byte stay.
pub fn comment_out(text: &str, keys: &[&str], why: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for piece in text.split_inclusive('\n') {
        let (line, end) = match piece.strip_suffix("\r\n") {
            Some(l) => (l, "\r\n"),
            None => match piece.strip_suffix('\n') {
                Some(l) => (l, "\n"),
                None => (piece, ""),
            },
        };
        if setting(line).is_some_and(|(k, _)| keys.contains(&k.as_str())) {
            out.push_str(&format!("# vfioctl ({why}): {}{end}", line.trim()));
        } else {
            out.push_str(piece);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_comments_out_the_reservations() {
        let text = "# hugepages for the VM\nvm.nr_hugepages = 8600\r\n-vm/nr_overcommit_hugepages=4\nvm.swappiness = 10\n; vm.nr_hugepages = 1";
        assert_eq!(
            settings(text, HUGEPAGE_KEYS),
            [(2, "vm.nr_hugepages".into(), "8600".into()), (3, "vm.nr_overcommit_hugepages".into(), "4".into())]
        );
        let out = comment_out(text, HUGEPAGE_KEYS, "1 GiB pages on the command line");
        assert_eq!(
            out,
            "# hugepages for the VM\n# vfioctl (1 GiB pages on the command line): vm.nr_hugepages = 8600\r\n# vfioctl (1 GiB pages on the command line): -vm/nr_overcommit_hugepages=4\nvm.swappiness = 10\n; vm.nr_hugepages = 1"
        );
        assert!(settings(&out, HUGEPAGE_KEYS).is_empty());
        assert_eq!(comment_out(&out, HUGEPAGE_KEYS, "x"), out);
    }
}
