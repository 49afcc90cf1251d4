//! Running regeneration commands: on the live machine, in a chroot of the root when the
//! root holds the program, else not at all (listed as pending) so nothing runs against
//! the live host by mistake.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::root::HostRoot;

/// Where commands may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandMode {
    /// The root is `/`: run them here.
    Live,
    /// Run inside the root with `chroot` (as root, in a private mount namespace with
    /// /proc, /sys and /dev bound in) when the root holds the program.
    Chroot,
    /// Never run; list them as pending.
    Never,
}

impl CommandMode {
    /// The mode for a root: live for `/`, chroot otherwise.
    pub fn for_root(root: &HostRoot) -> CommandMode {
        if root.is_live() {
            CommandMode::Live
        } else {
            CommandMode::Chroot
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "detail")]
pub enum Status {
    Ok,
    Failed(i32),
    /// Could not be started (not installed, no permission).
    NotStarted(String),
    /// Not run: the user must run it (inside the root).
    Pending(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub argv: Vec<String>,
    pub status: Status,
    pub output: String,
}

impl CommandResult {
    pub fn describe(&self) -> String {
        let cmd = self.argv.join(" ");
        match &self.status {
            Status::Ok => format!("{cmd}: ok"),
            Status::Failed(code) => format!("{cmd} exited with {code}"),
            Status::NotStarted(why) => format!("{cmd} could not start: {why}"),
            Status::Pending(why) => format!("{cmd}: pending ({why})"),
        }
    }
}

fn find_in(root: &HostRoot, program: &str) -> bool {
    if program.contains('/') {
        return root.path(program).is_file();
    }
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .any(|d| root.path(Path::new(d).join(program)).is_file())
}

fn is_root_user() -> bool {
    // /proc/self/status "Uid:" real effective …; no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Runs one command.
pub fn run(root: &HostRoot, mode: CommandMode, argv: &[String]) -> CommandResult {
    let result = |status, output: String| CommandResult { argv: argv.to_vec(), status, output };
    let Some(program) = argv.first() else { return result(Status::NotStarted("empty command".into()), String::new()) };
    let mut cmd = match mode {
        CommandMode::Never => return result(Status::Pending("commands disabled".into()), String::new()),
        CommandMode::Live => {
            let mut c = Command::new(program);
            c.args(&argv[1..]);
            c
        }
        CommandMode::Chroot => {
            if !find_in(root, program) {
                return result(
                    Status::Pending(format!("{program} is not inside {}", root.base().display())),
                    String::new(),
                );
            }
            if !is_root_user() {
                return result(Status::Pending("running commands in a chroot needs root".into()), String::new());
            }
            let base = root.base().display().to_string();
            let script = "set -e; for d in proc sys dev; do mkdir -p \"$R/$d\"; mount --rbind \"/$d\" \"$R/$d\"; done; exec chroot \"$R\" \"$@\"";
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"]).args(argv).env("R", base);
            c
        }
    };
    cmd.stdin(Stdio::null());
    match cmd.output() {
        Err(e) => result(Status::NotStarted(e.to_string()), String::new()),
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let status =
                if out.status.success() { Status::Ok } else { Status::Failed(out.status.code().unwrap_or(-1)) };
            result(status, text)
        }
    }
}
