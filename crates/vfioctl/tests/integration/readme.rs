//! README's examples are true: every example that runs vfioctl on a bundled example host
//! (`$ vfioctl --root examples/hosts/…`) is run, and each line it shows (but those with a
//! `…`, which stand for what is left out) is a line of what vfioctl prints, in order. (JSON examples are shown condensed and are
//! left out.)

use std::process::Command;

use crate::util::{ids_file, workspace};

/// (command line, the output lines shown) of each such example.
fn examples(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut lines = readme.lines().peekable();
    while let Some(l) = lines.next() {
        let Some(first) = l.strip_prefix("$ vfioctl --root examples/hosts/") else { continue };
        let mut cmd = format!("vfioctl --root examples/hosts/{first}");
        while cmd.ends_with('\\') {
            cmd.pop();
            cmd.push_str(lines.next().unwrap_or_default().trim());
            cmd.push(' ');
        }
        let mut shown = Vec::new();
        while let Some(l) = lines.peek() {
            if l.starts_with("```") || l.starts_with("$ ") {
                break;
            }
            shown.push(lines.next().unwrap_or_default().to_string());
        }
        while shown.last().is_some_and(|l| l.trim().is_empty()) {
            shown.pop();
        }
        out.push((cmd.trim().to_string(), shown));
    }
    out
}

#[test]
fn readme_examples_are_what_vfioctl_prints() {
    let ws = workspace();
    let readme = std::fs::read_to_string(ws.join("README.md")).expect("README.md");
    let all = examples(&readme);
    assert!(all.len() >= 10, "found only {} examples", all.len());
    for (cmd, shown) in all {
        // JSON examples are shown condensed, one group of many: their shape, not their text.
        if shown.first().is_some_and(|l| l.starts_with('{')) {
            continue;
        }
        // Commands that write files (`--out FILE`) write them into a scratch directory.
        let tmp = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(ws.join("examples"), tmp.path().join("examples")).expect("link");
        let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let run = Command::new(env!("CARGO_BIN_EXE_vfioctl"))
            .args(&args)
            .current_dir(tmp.path())
            .env_remove("VFIOCTL_ROOT")
            .env_remove("NO_COLOR")
            .env("VFIOCTL_PCI_IDS", ids_file())
            .output()
            .expect("run vfioctl");
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        // stdout and stderr are shown interleaved: each keeps its own order.
        let streams: [Vec<&str>; 2] =
            [stdout.lines().map(str::trim_end).collect(), stderr.lines().map(str::trim_end).collect()];
        let mut at = [0usize; 2];
        // A line with `…` stands for what is left out.
        for want in shown.iter().map(|l| l.trim_end()).filter(|l| !l.contains('…')) {
            let found =
                (0..2).find_map(|s| streams[s][at[s]..].iter().position(|p| *p == want).map(|i| (s, at[s] + i + 1)));
            match found {
                Some((s, next)) => at[s] = next,
                None => panic!("README example `{cmd}` shows\n  {want}\nwhich it does not print:\n{stdout}{stderr}"),
            }
        }
    }
}
