//! The apply journal: `/var/lib/vfioctl/journal/ID/journal.json`, the original files in
//! `before/N`, the applied contents in `after/N`, command output in `output/N`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::meta::{FileMeta, Xattr};
use super::{atomic_write, ApplyError, Command, CommandResult};
use crate::root::HostRoot;

pub const JOURNAL_DIR: &str = "/var/lib/vfioctl/journal";

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

impl JournalState {
    /// The journal's own spelling (`rolled-back`), as journal.json has it.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalState::Writing => "writing",
            JournalState::Applied => "applied",
            JournalState::Failed => "failed",
            JournalState::Incomplete => "incomplete",
            JournalState::RolledBack => "rolled-back",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalFile {
    pub path: PathBuf,
    /// False: the apply creates it; rollback deletes it.
    pub existed: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The SHA-256 of the saved copy (`before/N`), which rollback checks before it trusts
    /// it (older journals have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_sha256: Option<String>,
    /// The SHA-256 of what the apply wrote (`after/N`): rollback restores or deletes only
    /// a file that still holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_sha256: Option<String>,
    /// When the host path is a symbolic link: the link, as the host names it (`path` is
    /// then the file it points to, which is what was edited; the link is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<PathBuf>,
    /// The apply deleted the file (rollback puts it back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// Its extended attributes (SELinux label, ACLs, user attributes), put back with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

impl JournalFile {
    /// Mode, owner and attributes as they were before the apply (`None`: created by it).
    pub fn meta(&self) -> Option<FileMeta> {
        Some(FileMeta { mode: self.mode?, uid: self.uid?, gid: self.gid?, xattrs: self.xattrs.clone() })
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
    /// What was applied, for people (`gpu --memory 16G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
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
        super::fault::step("create directory", &base).map_err(io(base.clone()))?;
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
            summary: None,
        };
        for d in ["before", "after", "output"] {
            let p = j.real(root, d);
            super::fault::step("create directory", &p).map_err(io(p.clone()))?;
            fs::create_dir_all(&p).map_err(io(p))?;
        }
        Ok(j)
    }

    /// Records a file before it changes: its contents (absent: created by the apply),
    /// mode, owner and attributes, and what it will hold.
    pub fn record(
        &mut self,
        root: &HostRoot,
        path: &Path,
        before: Option<&[u8]>,
        meta: Option<FileMeta>,
        after: &[u8],
    ) -> Result<(), ApplyError> {
        let n = self.files.len();
        if let Some(b) = before {
            let p = self.real(root, &format!("before/{n}"));
            atomic_write(&p, b, Some(&FileMeta::private())).map_err(io(p))?;
        }
        let p = self.real(root, &format!("after/{n}"));
        atomic_write(&p, after, Some(&FileMeta::private())).map_err(io(p))?;
        self.files.push(JournalFile {
            path: path.to_path_buf(),
            existed: before.is_some(),
            mode: meta.as_ref().map(|m| m.mode),
            uid: meta.as_ref().map(|m| m.uid),
            gid: meta.as_ref().map(|m| m.gid),
            before_sha256: before.map(super::sha256),
            after_sha256: Some(super::sha256(after)),
            link: None,
            removed: false,
            xattrs: meta.map(|m| m.xattrs).unwrap_or_default(),
        });
        Ok(())
    }

    /// Writes journal.json (atomically) and marks this journal the last one.
    pub fn save(&self, root: &HostRoot) -> Result<(), ApplyError> {
        let p = self.real(root, "journal.json");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ApplyError::Journal { path: p.clone(), err: std::io::Error::other(e) })?;
        atomic_write(&p, text.as_bytes(), Some(&FileMeta::private())).map_err(io(p))
    }

    /// Removes a journal that never stood for a change (its apply failed before the first
    /// file was written). Best effort: one left behind is still consistent, as every file
    /// still holds what its `before` copy says.
    pub fn discard(&self, root: &HostRoot) {
        let dir = self.real(root, "");
        if super::fault::step("remove directory", &dir).is_ok() {
            let _ = fs::remove_dir_all(&dir);
        }
    }

    pub fn save_output(&self, root: &HostRoot, i: usize, output: &str) -> Result<(), ApplyError> {
        let p = self.real(root, &format!("output/{i}"));
        atomic_write(&p, output.as_bytes(), Some(&FileMeta::private())).map_err(io(p))
    }

    /// The saved copy of file `i` (`None`: the apply created the file), checked against
    /// its recorded hash: a copy that is missing, unreadable or does not match is an error
    /// naming it, never a reason to delete the file.
    pub fn backup(&self, root: &HostRoot, i: usize) -> Result<Option<Vec<u8>>, ApplyError> {
        let Some(f) = self.files.get(i) else { return Ok(None) };
        if !f.existed {
            return Ok(None);
        }
        let rel = format!("before/{i}");
        let p = self.host_dir().join(&rel);
        let bytes = fs::read(self.real(root, &rel)).map_err(|e| ApplyError::BadBackup {
            path: f.path.clone(),
            backup: p.clone(),
            reason: e.to_string(),
        })?;
        if let Some(want) = &f.before_sha256 {
            if super::sha256(&bytes) != *want {
                return Err(ApplyError::BadBackup {
                    path: f.path.clone(),
                    backup: p,
                    reason: "it does not match the SHA-256 the journal recorded".into(),
                });
            }
        }
        Ok(Some(bytes))
    }

    /// The journal's copy of what the apply wrote to file `i`.
    pub fn after(&self, root: &HostRoot, i: usize) -> Option<Vec<u8>> {
        fs::read(self.real(root, &format!("after/{i}"))).ok()
    }

    /// Whether `bytes` is what the apply wrote to file `i` (by the recorded hash, else the
    /// saved copy).
    pub fn is_applied(&self, root: &HostRoot, i: usize, bytes: &[u8]) -> bool {
        match self.files.get(i).and_then(|f| f.after_sha256.as_ref()) {
            Some(h) => super::sha256(bytes) == *h,
            None => self.after(root, i).is_some_and(|a| a == bytes),
        }
    }

    /// Whether the journal's changes may still be on the host: applied, or stopped half
    /// way (a crash while writing, a restore that failed).
    pub fn in_effect(&self) -> bool {
        matches!(self.state, JournalState::Applied | JournalState::Writing | JournalState::Incomplete)
    }

    /// Every journal under the root, oldest first. A journal directory that cannot be read
    /// is an error naming it: rollback must not skip what it cannot see.
    pub fn all(root: &HostRoot) -> Result<Vec<Journal>, ApplyError> {
        let base = root.path(JOURNAL_DIR);
        let entries = match fs::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ApplyError::BadJournal { path: base, reason: e.to_string() }),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|err| ApplyError::BadJournal { path: base.clone(), reason: err.to_string() })?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(order) = order_of(&name) else { continue };
            let path = e.path().join("journal.json");
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                // A directory a crash left before its journal.json was written holds no
                // change yet (the journal is saved before the first file is written).
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(ApplyError::BadJournal { path, reason: err.to_string() }),
            };
            let j: Journal = serde_json::from_str(&text)
                .map_err(|err| ApplyError::BadJournal { path: path.clone(), reason: err.to_string() })?;
            out.push((order, j));
        }
        out.sort_by_key(|(o, _)| *o);
        Ok(out.into_iter().map(|(_, j)| j).collect())
    }

    /// The newest journal whose changes are still in effect.
    pub fn last_applied(root: &HostRoot) -> Result<Option<Journal>, ApplyError> {
        Ok(Journal::all(root)?.into_iter().rev().find(Journal::in_effect))
    }

    /// The newest journal, if any.
    pub fn last(root: &HostRoot) -> Result<Option<Journal>, ApplyError> {
        Ok(Journal::all(root)?.pop())
    }
}

/// A journal id's place in time: `SECONDS-N`.
fn order_of(id: &str) -> Option<(u64, u64)> {
    let (s, n) = id.split_once('-')?;
    Some((s.parse().ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::JournalState;

    #[test]
    fn state_names_are_journal_json_s() {
        for s in [
            JournalState::Writing,
            JournalState::Applied,
            JournalState::Failed,
            JournalState::Incomplete,
            JournalState::RolledBack,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
