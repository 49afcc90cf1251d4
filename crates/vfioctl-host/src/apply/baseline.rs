//! The host as its user had it, before vfioctl's applies still in effect.
//!
//! A second apply plans from this baseline, not from what the first one wrote: the first
//! apply's edits are vfioctl's, and only the journals know which parts of a file those are
//! (the ids in modprobe.d, a `default_hugepagesz=2M` that the first plan replaced). So
//! `apply A; apply B` leaves exactly what `apply B` alone would have left: every file B
//! edits is edited from its baseline text, and every file an earlier apply changed that B
//! does not want is put back as it was. The new journal still records each file as it is
//! now, so `rollback` undoes B alone and `rollback --all` everything.
//!
//! A file is planned from its baseline only while vfioctl's last write to it is still
//! there, and while each apply's saved copy is what the apply before it wrote: a file the
//! user changed in between is planned from as it is now (with a note), since its text is
//! then part theirs, part vfioctl's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{read_regular, ApplyError, Changeset, Command, FileChange, Journal, JournalState};
use crate::root::HostRoot;

/// One file as it was before the earliest apply still in effect that changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseFile {
    /// The file (the target of its link, if it has one).
    pub path: PathBuf,
    /// The link the host names it by, when it is one.
    pub link: Option<PathBuf>,
    /// Its text then; `None`: it did not exist.
    pub text: Option<Arc<str>>,
    /// Its mode then.
    pub mode: Option<u32>,
    /// What regenerates what depends on it (the commands of the applies that changed it).
    pub commands: Vec<Command>,
    /// Whether it holds something else now.
    pub differs: bool,
}

/// Every file vfioctl's applies in effect changed, as it was before them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    pub files: Vec<BaseFile>,
    /// Files planned from as they are now, and why.
    pub notes: Vec<String>,
}

impl Baseline {
    /// The baseline of the journals in effect under `root`. None when an apply did not
    /// finish (the next apply refuses then) or none is in effect.
    pub fn of(root: &HostRoot) -> Result<Baseline, ApplyError> {
        let all = Journal::all(root)?;
        if all.iter().any(|j| matches!(j.state, JournalState::Writing | JournalState::Incomplete)) {
            return Ok(Baseline::default());
        }
        let applied: Vec<&Journal> = all.iter().filter(|j| j.state == JournalState::Applied).collect();
        // Each path, with the (journal, file) entries that changed it, oldest first.
        let mut chains: BTreeMap<&PathBuf, Vec<(&Journal, usize)>> = BTreeMap::new();
        for j in &applied {
            for (i, f) in j.files.iter().enumerate() {
                chains.entry(&f.path).or_default().push((j, i));
            }
        }
        let mut out = Baseline::default();
        for (path, chain) in chains {
            let (first, fi) = chain[0];
            let (last, li) = chain[chain.len() - 1];
            let continuous = chain.windows(2).all(|w| {
                let ((a, ai), (b, bi)) = (w[0], w[1]);
                let wrote = if a.files[ai].removed { None } else { a.after(root, ai) };
                b.backup(root, bi).ok() == Some(wrote)
            });
            let now = read_regular(root, path).ok();
            let still = match &now {
                Some(None) => last.files[li].removed,
                Some(Some(bytes)) => !last.files[li].removed && last.is_applied(root, li, bytes),
                None => false,
            };
            let before = first.backup(root, fi);
            match (continuous && still, before) {
                (true, Ok(before)) => out.files.push(BaseFile {
                    differs: now.as_ref() != Some(&before),
                    path: path.clone(),
                    link: chain.iter().find_map(|(j, i)| j.files[*i].link.clone()),
                    text: before.map(|b| Arc::from(String::from_utf8_lossy(&b).as_ref())),
                    mode: first.files[fi].mode,
                    commands: chain.iter().flat_map(|(j, _)| j.commands.iter().cloned()).collect(),
                }),
                _ => out.notes.push(format!(
                    "{} changed since vfioctl last wrote it: planned from it as it is now, your changes and vfioctl's earlier ones alike",
                    path.display()
                )),
            }
        }
        Ok(out)
    }

    /// `root` as it was before the applies: each baseline file read as it was, under its
    /// own name and its link's.
    pub fn root(&self, root: &HostRoot) -> HostRoot {
        let mut files = Vec::new();
        for f in &self.files {
            files.push((f.path.clone(), f.text.clone()));
            if let Some(l) = &f.link {
                files.push((l.clone(), f.text.clone()));
            }
        }
        root.with_baseline(files)
    }

    /// Puts back every baseline file the plan's `changes` do not write, with the commands
    /// that regenerate what depends on it.
    pub fn restore_untouched(&self, changes: &mut Changeset) {
        for f in &self.files {
            let named = |c: &FileChange| c.path == f.path || f.link.as_ref() == Some(&c.path);
            if !f.differs || changes.files.iter().any(named) {
                continue;
            }
            let name = f.link.clone().unwrap_or_else(|| f.path.clone());
            let change = match &f.text {
                Some(t) => FileChange::new(
                    name,
                    t.as_bytes(),
                    "as it was before vfioctl's earlier apply: this plan does not change it",
                )
                .mode(f.mode.unwrap_or(0o644) & 0o7777),
                None => FileChange::removal(name, "an earlier vfioctl apply created it; this plan does not need it"),
            };
            changes.files.push(change);
            for c in &f.commands {
                if !changes.commands.iter().any(|k| k.argv == c.argv) {
                    changes.commands.push(c.clone());
                }
            }
        }
    }
}
