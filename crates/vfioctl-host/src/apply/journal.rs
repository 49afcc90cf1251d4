//! The apply journal: `/var/lib/vfioctl/journal/ID/journal.json`, the original files in
//! `before/N`, the applied contents in `after/N`, command output in `output/N`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{atomic_write, ApplyError, Command, CommandResult};
use crate::root::HostRoot;

pub const JOURNAL_DIR: &str = "/var/lib/vfioctl/journal";
const LAST: &str = "/var/lib/vfioctl/last";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JournalState {
    /// Backups taken, files being written.
    Writing,
    Applied,
    /// Something failed and every file was restored.
    Failed,
    /// Something failed and restoring failed too: `rollback` needed.
    Incomplete,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalFile {
    pub path: PathBuf,
    /// False: the apply creates it; rollback deletes it.
    pub existed: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl JournalFile {
    pub fn meta(&self) -> Option<(u32, u32, u32)> {
        Some((self.mode?, self.uid?, self.gid?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub state: JournalState,
    pub files: Vec<JournalFile>,
    pub commands: Vec<Command>,
    pub results: Vec<CommandResult>,
    /// What the plan said the host would look like after the reboot (older journals have none).
    #[serde(default)]
    pub expect: Option<vfioctl_core::verify::Expectation>,
    /// Directories the apply creates for its new files (host paths, outermost first);
    /// restoring removes them again when they are empty.
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
}

fn io(path: PathBuf) -> impl FnOnce(std::io::Error) -> ApplyError {
    move |err| ApplyError::Journal { path, err }
}

impl Journal {
    pub fn host_dir(&self) -> PathBuf {
        Path::new(JOURNAL_DIR).join(&self.id)
    }

    fn real(&self, root: &HostRoot, rel: &str) -> PathBuf {
        root.path(self.host_dir().join(rel))
    }

    /// A new, empty journal directory.
    pub fn create(root: &HostRoot) -> Result<Journal, ApplyError> {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let base = root.path(JOURNAL_DIR);
        fs::create_dir_all(&base).map_err(io(base.clone()))?;
        let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o700));
        let mut n = 0;
        let id = loop {
            let id = format!("{created}-{n}");
            if !base.join(&id).exists() {
                break id;
            }
            n += 1;
        };
        let j = Journal {
            id,
            created,
            state: JournalState::Writing,
            files: Vec::new(),
            commands: Vec::new(),
            results: Vec::new(),
            expect: None,
            created_dirs: Vec::new(),
        };
        for d in ["before", "after", "output"] {
            let p = j.real(root, d);
            fs::create_dir_all(&p).map_err(io(p))?;
        }
        Ok(j)
    }

    /// Records a file before it changes: its contents (absent: created by the apply),
    /// mode and owner, and what it will hold.
    pub fn record(
        &mut self,
        root: &HostRoot,
        path: &Path,
        before: Option<&[u8]>,
        meta: Option<(u32, u32, u32)>,
        after: &[u8],
    ) -> Result<(), ApplyError> {
        let n = self.files.len();
        if let Some(b) = before {
            let p = self.real(root, &format!("before/{n}"));
            atomic_write(&p, b, Some((0o100600, 0, 0))).map_err(io(p))?;
        }
        let p = self.real(root, &format!("after/{n}"));
        atomic_write(&p, after, Some((0o100600, 0, 0))).map_err(io(p))?;
        self.files.push(JournalFile {
            path: path.to_path_buf(),
            existed: before.is_some(),
            mode: meta.map(|m| m.0),
            uid: meta.map(|m| m.1),
            gid: meta.map(|m| m.2),
        });
        Ok(())
    }

    /// Writes journal.json (atomically) and marks this journal the last one.
    pub fn save(&self, root: &HostRoot) -> Result<(), ApplyError> {
        let p = self.real(root, "journal.json");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ApplyError::Journal { path: p.clone(), err: std::io::Error::other(e) })?;
        atomic_write(&p, text.as_bytes(), Some((0o100600, 0, 0))).map_err(io(p))?;
        let last = root.path(LAST);
        atomic_write(&last, format!("{}\n", self.id).as_bytes(), Some((0o100600, 0, 0))).map_err(io(last))
    }

    pub fn save_output(&self, root: &HostRoot, i: usize, output: &str) -> Result<(), ApplyError> {
        let p = self.real(root, &format!("output/{i}"));
        atomic_write(&p, output.as_bytes(), Some((0o100600, 0, 0))).map_err(io(p))
    }

    pub fn backup(&self, root: &HostRoot, i: usize) -> Option<Vec<u8>> {
        self.files.get(i).filter(|f| f.existed)?;
        fs::read(self.real(root, &format!("before/{i}"))).ok()
    }

    pub fn after(&self, root: &HostRoot, i: usize) -> Option<Vec<u8>> {
        fs::read(self.real(root, &format!("after/{i}"))).ok()
    }

    /// The last journal, if any.
    pub fn last(root: &HostRoot) -> Result<Option<Journal>, ApplyError> {
        let Ok(id) = fs::read_to_string(root.path(LAST)) else { return Ok(None) };
        let path = root.path(Path::new(JOURNAL_DIR).join(id.trim()).join("journal.json"));
        let text = fs::read_to_string(&path)
            .map_err(|e| ApplyError::BadJournal { path: path.clone(), reason: e.to_string() })?;
        serde_json::from_str(&text).map(Some).map_err(|e| ApplyError::BadJournal { path, reason: e.to_string() })
    }
}
