//! Applying host configuration as one transaction that can always be undone.
//!
//! A [`Changeset`] says what every file should contain, what it held when the change was
//! computed ([`FileChange::before`], with its SHA-256), and which commands regenerate what
//! depends on them (GRUB's config, the initramfs). [`apply`]:
//! 0. reads every file to change once more and refuses, writing nothing, when any of them
//!    no longer holds what the plan was computed from (edited while the confirmation
//!    prompt waited, or by another apply);
//! 1. writes a journal under `/var/lib/vfioctl/journal/ID/` (inside the root) holding a
//!    copy of every file it will touch, its mode and owner, and the list of files it
//!    will create; the journal is complete and synced before the first change;
//! 2. writes each file as write-temp, fsync, rename, fsync the directory;
//! 3. runs the commands (live; in a chroot of the root when it holds them; else
//!    listed as pending), keeping their output in the journal;
//! 4. on any failure restores every file from the journal, and says what failed; when
//!    restoring fails too it says both and leaves the journal for `rollback`.
//!
//! [`rollback`] restores the state before the last apply byte for byte (content, mode,
//! owner) from the journal and reruns the commands; [`status`] compares the files with
//! what was applied.

mod baseline;
pub mod changes;
pub mod fault;
mod journal;
pub mod lock;
pub mod meta;
mod run;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use baseline::{BaseFile, Baseline};
pub use fault::Fault;
pub use journal::{Journal, JournalFile, JournalState, JOURNAL_DIR};
pub use meta::FileMeta;
pub use run::{CommandMode, CommandResult};

use crate::root::HostRoot;

/// What a file held when its change was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// It did not exist.
    Absent,
    /// Its text, and the SHA-256 of its bytes.
    Content { text: Arc<str>, sha256: String },
}

impl Before {
    pub fn of(text: Option<&str>) -> Before {
        match text {
            None => Before::Absent,
            Some(t) => Before::Content { text: Arc::from(t), sha256: sha256(t.as_bytes()) },
        }
    }

    /// The text, `None` when the file was absent.
    pub fn text(&self) -> Option<&str> {
        match self {
            Before::Absent => None,
            Before::Content { text, .. } => Some(text),
        }
    }

    /// Whether `now` (the file's bytes now, `None` when absent) is still what it was.
    pub fn matches(&self, now: Option<&[u8]>) -> bool {
        match (self, now) {
            (Before::Absent, None) => true,
            (Before::Content { sha256: h, .. }, Some(b)) => *h == sha256(b),
            _ => false,
        }
    }
}

/// The SHA-256 of some bytes, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What one file should contain after the apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The host path (`/etc/default/grub`).
    pub path: PathBuf,
    pub after: Vec<u8>,
    /// Why it changes, for people.
    pub why: String,
    /// Mode for a file the apply creates (default 0644); existing files keep theirs.
    pub new_mode: Option<u32>,
    /// What the file held when `after` was computed from it; [`apply`] refuses a change
    /// without it, and one whose file holds something else by then.
    pub before: Option<Before>,
    /// The apply deletes the file (one vfioctl wrote that this plan no longer wants);
    /// `after` is then empty.
    pub remove: bool,
}

impl FileChange {
    pub fn new(path: impl Into<PathBuf>, after: impl Into<Vec<u8>>, why: impl Into<String>) -> FileChange {
        FileChange {
            path: path.into(),
            after: after.into(),
            why: why.into(),
            new_mode: None,
            before: None,
            remove: false,
        }
    }

    /// Deletes the file.
    pub fn removal(path: impl Into<PathBuf>, why: impl Into<String>) -> FileChange {
        FileChange { remove: true, ..FileChange::new(path, Vec::new(), why) }
    }

    /// The mode of the file when the apply creates it.
    pub fn mode(mut self, mode: u32) -> FileChange {
        self.new_mode = Some(mode);
        self
    }

    /// Records the text `after` was computed from (`None`: the file did not exist).
    pub fn computed_from(mut self, text: Option<&str>) -> FileChange {
        self.before = Some(Before::of(text));
        self
    }

    /// Whether the apply changes the file (its content was not `after` already).
    pub fn changes(&self) -> bool {
        if self.remove {
            return !matches!(self.before, Some(Before::Absent));
        }
        match &self.before {
            Some(Before::Content { text, .. }) => text.as_bytes() != &self.after[..],
            _ => true,
        }
    }
}

/// A command that regenerates something from the files (`update-initramfs -u`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Command {
    pub argv: Vec<String>,
    pub why: String,
}

/// Everything an apply does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changeset {
    pub files: Vec<FileChange>,
    pub commands: Vec<Command>,
    /// What the host should look like after the reboot, kept in the journal for `verify`.
    pub expect: Option<vfioctl_core::verify::Expectation>,
    /// What is applied, for people (`gpu --memory 16G`), kept in the journal.
    pub summary: Option<String>,
}

impl Changeset {
    /// Records, for every change without it, what its file holds: the text `root` read
    /// (the same read the change was computed from, since the root remembers it).
    pub fn record_before(&mut self, root: &HostRoot) -> Result<(), crate::root::RootError> {
        for f in self.files.iter_mut().filter(|f| f.before.is_none()) {
            let text = root.read_shared(&f.path)?;
            f.before = Some(Before::of(text.as_deref()));
        }
        Ok(())
    }

    /// The files whose content changes.
    pub fn pending(&self) -> Vec<&FileChange> {
        self.files.iter().filter(|f| f.changes()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot write the journal {path}: {err}")]
    Journal { path: PathBuf, err: std::io::Error },
    #[error("{what} failed; every file was restored to its state before the apply")]
    Restored { what: String },
    #[error("{what} failed, and restoring failed too ({restore}); the journal {journal} holds the original files: run `vfioctl rollback`")]
    Stuck { what: String, restore: String, journal: PathBuf },
    #[error("nothing to roll back: no applied change is recorded under {0}")]
    NothingToRollBack(PathBuf),
    #[error("rolling back failed: {0}")]
    Rollback(String),
    #[error("the journal {path} cannot be read: {reason}")]
    BadJournal { path: PathBuf, reason: String },
    #[error("nothing was written: {} changed after the plan was made", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ChangedSincePlan { paths: Vec<PathBuf> },
    #[error("nothing was written: cannot read {path}: {err}")]
    Unreadable { path: PathBuf, err: std::io::Error },
    #[error("nothing was written: the change of {0} was not computed from the file (no record of what it held)")]
    Unplanned(PathBuf),
    #[error("another vfioctl apply or rollback still holds {} after {waited} s", lock.display())]
    Busy { lock: PathBuf, waited: u64 },
    #[error("nothing was restored: the saved copy of {} ({}) cannot be trusted: {reason}", path.display(), backup.display())]
    BadBackup { path: PathBuf, backup: PathBuf, reason: String },
    #[error("nothing was restored: {} changed since vfioctl applied {}", conflicts.iter().map(|c| c.path.display().to_string()).collect::<Vec<_>>().join(", "), if conflicts.len() == 1 { "it" } else { "them" })]
    ChangedSinceApply { conflicts: Vec<Conflict> },
    #[error("nothing was written: the earlier apply {} did not finish (a crash, or a restore that failed): its files are partly old, partly new", journal.display())]
    Unfinished { journal: PathBuf },
    #[error("no journal {0} is in effect on this host")]
    NoSuchJournal(String),
}

/// A file rollback would overwrite although it no longer holds what the apply wrote: the
/// three versions, as host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The file.
    pub path: PathBuf,
    /// What it held before the apply (`None`: the apply created it).
    pub before: Option<PathBuf>,
    /// What the apply wrote.
    pub applied: PathBuf,
    /// The journal.
    pub journal: String,
}

impl ApplyError {
    pub fn remedy(&self) -> Option<String> {
        match self {
            ApplyError::Journal { .. } => {
                Some("run as root, or check that /var/lib/vfioctl under the root is writable".into())
            }
            ApplyError::Stuck { .. } => Some("vfioctl rollback restores the files from the journal".into()),
            ApplyError::Restored { .. } => Some("fix the cause above and apply again".into()),
            ApplyError::NothingToRollBack(_) => None,
            ApplyError::ChangedSincePlan { .. } => Some(
                "someone (or another vfioctl) edited it meanwhile: look at the file, then run the command again, which plans from it as it is now".into(),
            ),
            ApplyError::Unreadable { .. } => Some("run as root, or as a user that can read the file".into()),
            ApplyError::Unplanned(_) => Some("this is a bug in vfioctl; please report it".into()),
            ApplyError::Rollback(_) | ApplyError::BadJournal { .. } => Some(
                "the saved copies are plain files, /var/lib/vfioctl/journal/ID/before/N (N in the order of `files` in its journal.json): copy them back by hand".into(),
            ),
            ApplyError::Busy { .. } => Some(
                "wait for the other vfioctl to finish (or stop it), then run this again; VFIOCTL_LOCK_TIMEOUT=SECONDS waits longer".into(),
            ),
            ApplyError::BadBackup { .. } => Some(
                "nothing was changed; compare the file with the saved copy and restore by hand what you trust".into(),
            ),
            ApplyError::ChangedSinceApply { .. } => Some(
                "look at the three versions named above; `vfioctl rollback --force` restores anyway and keeps each changed file beside it as FILE.vfioctl-kept-ID".into(),
            ),
            ApplyError::Unfinished { .. } => Some(
                "`vfioctl rollback` returns every file to the state before that apply; then apply again".into(),
            ),
            ApplyError::NoSuchJournal(_) => Some("`vfioctl history` lists the journals".into()),
        }
    }
}

/// How an apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub journal: Option<PathBuf>,
    pub written: Vec<PathBuf>,
    pub commands: Vec<CommandResult>,
}

/// The current contents of a host file, `None` when absent.
pub fn current(root: &HostRoot, path: &Path) -> Option<Vec<u8>> {
    fs::read(root.path(path)).ok()
}

/// Reads each file the apply will change, once, and checks it still holds what its change
/// was computed from. The bytes read are the ones the journal keeps.
/// A file to change: the path written (links followed inside the root) and its bytes now.
type Target = (PathBuf, Option<Vec<u8>>);

fn still_as_planned(root: &HostRoot, todo: &[&FileChange]) -> Result<Vec<Target>, ApplyError> {
    let mut now = Vec::new();
    let mut changed = Vec::new();
    for f in todo {
        let before = f.before.as_ref().ok_or_else(|| ApplyError::Unplanned(f.path.clone()))?;
        let target = root
            .resolve(&f.path)
            .map_err(|e| ApplyError::Unreadable { path: f.path.clone(), err: std::io::Error::other(e.to_string()) })?;
        let bytes = read_regular(root, &target).map_err(|err| ApplyError::Unreadable { path: f.path.clone(), err })?;
        if !before.matches(bytes.as_deref()) {
            changed.push(f.path.clone());
        }
        now.push((target, bytes));
    }
    if !changed.is_empty() {
        return Err(ApplyError::ChangedSincePlan { paths: changed });
    }
    Ok(now)
}

/// A file's bytes, `None` only when it does not exist; anything but a regular file (a
/// directory, a FIFO, a device) is an error, as is any other failure to read it.
fn read_regular(root: &HostRoot, host_path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let real = root.path(host_path);
    match fs::symlink_metadata(&real) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(m) if !m.is_file() => return Err(std::io::Error::other("not a regular file")),
        Ok(_) => {}
    }
    fs::read(&real).map(Some)
}

/// Writes `bytes` to `real` atomically: a temporary file in the same directory, fsync,
/// rename over, fsync the directory. Mode and owner are `meta`'s when given.
pub fn atomic_write(real: &Path, bytes: &[u8], meta: Option<&FileMeta>) -> std::io::Result<()> {
    let dir = real.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    if !dir.is_dir() {
        fault::step("create directory", dir)?;
        fs::create_dir_all(dir)?;
    }
    let tmp = temp_name(real);
    let result = (|| {
        fault::step("create", &tmp)?;
        let mut f = fs::File::create(&tmp)?;
        fault::step("write", &tmp)?;
        f.write_all(bytes)?;
        fault::step("fsync", &tmp)?;
        f.sync_all()?;
        if let Some(meta) = meta {
            fault::step("chmod", &tmp)?;
            meta.set_on(&tmp)?;
        }
        fault::step("rename", real)?;
        fs::rename(&tmp, real)?;
        fault::step("fsync directory", dir)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The temporary file [`atomic_write`] writes beside `real` before renaming it over.
fn temp_name(real: &Path) -> PathBuf {
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    real.with_file_name(format!(".{name}.vfioctl-tmp-{}", std::process::id()))
}

/// Removes what a crashed [`atomic_write`] of `real` left: its temporary files, of any
/// process (the name is vfioctl's own, `.NAME.vfioctl-tmp-PID`). Returns the ones removed.
pub(crate) fn remove_stray_temps(real: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else { return Vec::new() };
    let prefix = format!(".{}.vfioctl-tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let is_temp =
            n.strip_prefix(&prefix).is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if is_temp && e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// Deletes a file and syncs its directory; a file already gone (its directory too,
/// perhaps) is fine and syncs nothing.
fn remove_synced(real: &Path) -> std::io::Result<()> {
    fault::step("remove", real)?;
    match fs::remove_file(real) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    match real.parent() {
        Some(dir) => {
            fault::step("fsync directory", dir)?;
            fs::File::open(dir)?.sync_all()
        }
        None => Ok(()),
    }
}

/// Removes an empty directory (one an apply created).
fn remove_dir(real: &Path) -> std::io::Result<()> {
    fault::step("remove directory", real)?;
    fs::remove_dir(real)
}

/// Puts a file back as a journal saved it: its bytes and mode, or no file when the apply
/// had created it.
fn put_back(real: &Path, saved: Option<&[u8]>, meta: Option<&FileMeta>) -> std::io::Result<()> {
    match saved {
        Some(bytes) => atomic_write(real, bytes, meta),
        None => remove_synced(real),
    }
}

/// Applies a changeset as a transaction.
pub fn apply(
    root: &HostRoot,
    changes: &Changeset,
    mode: CommandMode,
    fault: Option<Fault>,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, ApplyError> {
    let todo = changes.pending();
    if todo.is_empty() {
        return Ok(Outcome { journal: None, written: Vec::new(), commands: Vec::new() });
    }
    let _lock = lock::lock(root, lock::timeout(), progress)?;
    if let Some(j) =
        Journal::all(root)?.into_iter().find(|j| matches!(j.state, JournalState::Writing | JournalState::Incomplete))
    {
        return Err(ApplyError::Unfinished { journal: j.host_dir() });
    }
    let now = still_as_planned(root, &todo)?;
    let mut journal = Journal::create(root)?;
    // Nothing on the host changed yet: a journal that could not be completed is removed, so
    // that it does not stand for an unfinished apply.
    if let Err(e) = prepare_journal(root, &mut journal, changes, &todo, &now) {
        journal.discard(root);
        return Err(e);
    }
    progress(&format!("journal {}", journal.host_dir().display()));

    let mut written = Vec::new();
    for (i, f) in todo.iter().enumerate() {
        let real = root.path(&journal.files[i].path);
        let meta = journal.files[i].meta().unwrap_or_else(|| FileMeta::new_file(f.new_mode.unwrap_or(0o644)));
        let last = i + 1 == todo.len();
        let r = if fault == Some(Fault::Write(i)) || (last && matches!(fault, Some(Fault::Restore(_)))) {
            Err(std::io::Error::other("injected fault"))
        } else if f.remove {
            remove_synced(&real)
        } else {
            atomic_write(&real, &f.after, Some(&meta))
        };
        if let Err(e) = r {
            return Err(fail(
                root,
                &mut journal,
                format!("writing {}: {e}", f.path.display()),
                fault,
                false,
                mode,
                progress,
            ));
        }
        if f.remove {
            progress(&format!("removed {}", f.path.display()));
        } else {
            progress(&format!("wrote {}", f.path.display()));
        }
        written.push(f.path.clone());
        if fault == Some(Fault::Crash(i)) {
            // A crash between two writes: no destructors, no restore.
            std::process::abort();
        }
    }

    let mut results = Vec::new();
    for (i, c) in changes.commands.iter().enumerate() {
        if mode == CommandMode::Never {
            progress(&format!("not running {} ({}): left for you", c.argv.join(" "), c.why));
        } else {
            progress(&format!("running {} ({})", c.argv.join(" "), c.why));
        }
        let r = if fault == Some(Fault::Command(i)) {
            CommandResult { argv: c.argv.clone(), status: run::Status::Failed(1), output: "injected fault\n".into() }
        } else {
            run::run(root, mode, &c.argv)
        };
        let failed = matches!(r.status, run::Status::Failed(_) | run::Status::NotStarted(_));
        let mut text = r.describe();
        // The host changed and the journal cannot keep the output: undo rather than go on
        // with a journal that does not say all.
        let kept = journal.save_output(root, i, &r.output);
        if let Err(e) = &kept {
            text = format!("{text}; then {e}");
        }
        let failed = failed || kept.is_err();
        results.push(r);
        journal.results = results.clone();
        if failed {
            return Err(fail(root, &mut journal, text, fault, true, mode, progress));
        }
    }
    journal.state = JournalState::Applied;
    journal.results = results.clone();
    if let Err(e) = journal.save(root) {
        // On disk the journal still says `writing`: restore, and say so there.
        return Err(fail(root, &mut journal, e.to_string(), fault, !changes.commands.is_empty(), mode, progress));
    }
    Ok(Outcome { journal: Some(journal.host_dir()), written, commands: results })
}

/// Fills a new journal with a copy of every file `todo` changes (as `now` read them) and
/// what each will hold, the directories the writes create, the summary and commands, and
/// saves it, synced, in the state `writing`.
fn prepare_journal(
    root: &HostRoot,
    journal: &mut Journal,
    changes: &Changeset,
    todo: &[&FileChange],
    now: &[Target],
) -> Result<(), ApplyError> {
    for (f, (target, before)) in todo.iter().zip(now) {
        let real = root.path(target);
        let meta = FileMeta::of(&real).map_err(|err| ApplyError::Unreadable { path: target.clone(), err })?;
        journal.record(root, target, before.as_deref(), meta, &f.after)?;
        if let Some(j) = journal.files.last_mut() {
            if target != &f.path {
                j.link = Some(f.path.clone());
            }
            if f.remove {
                j.removed = true;
                j.after_sha256 = None;
            }
        }
    }
    let targets: Vec<&Path> = now.iter().map(|(t, _)| t.as_path()).collect();
    journal.created_dirs = missing_dirs(root, &targets);
    journal.summary = changes.summary.clone();
    journal.commands = changes.commands.clone();
    journal.expect = changes.expect.clone();
    journal.state = JournalState::Writing;
    journal.save(root)
}

/// The directories writing `todo` will create: the missing ancestors of each file, outermost
/// first, each once.
fn missing_dirs(root: &HostRoot, todo: &[&Path]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for f in todo {
        let mut missing: Vec<PathBuf> =
            f.ancestors().skip(1).take_while(|d| !root.path(d).exists()).map(Path::to_path_buf).collect();
        missing.reverse();
        for d in missing {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Restores every file of the journal; reruns the commands when some ran already.
fn fail(
    root: &HostRoot,
    journal: &mut Journal,
    what: String,
    fault: Option<Fault>,
    rerun: bool,
    mode: CommandMode,
    progress: &mut dyn FnMut(&str),
) -> ApplyError {
    progress(&format!("{what}: restoring"));
    match restore_files(root, journal, fault) {
        Ok(()) => {
            if rerun {
                for c in &journal.commands {
                    let _ = run::run(root, mode, &c.argv);
                }
            }
            journal.state = JournalState::Failed;
            // Every file is back: a journal that cannot say so (a full disk) is removed
            // rather than left saying `writing`, which would stand for an unfinished apply.
            if journal.save(root).is_err() {
                journal.discard(root);
            }
            ApplyError::Restored { what }
        }
        Err(restore) => {
            journal.state = JournalState::Incomplete;
            let _ = journal.save(root);
            ApplyError::Stuck { what, restore, journal: journal.host_dir() }
        }
    }
}

fn restore_files(root: &HostRoot, journal: &Journal, fault: Option<Fault>) -> Result<(), String> {
    let mut errors = Vec::new();
    for (i, f) in journal.files.iter().enumerate().rev() {
        let real = root.path(&f.path);
        remove_stray_temps(&real);
        let r = if fault == Some(Fault::Restore(i)) {
            Err(std::io::Error::other("injected fault"))
        } else {
            match journal.backup(root, i) {
                // Not written yet (or already back): left alone, so that a file that cannot
                // be written (immutable, on a read-only or full filesystem) that the apply
                // never got to does not make the restore fail.
                Ok(saved) if as_saved(&real, saved.as_deref(), f.meta().as_ref()) => Ok(()),
                Ok(saved) => put_back(&real, saved.as_deref(), f.meta().as_ref()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        };
        if let Err(e) = r {
            errors.push(format!("{}: {e}", f.path.display()));
        }
    }
    // The directories the apply created, deepest first; one that holds something else by now
    // (someone put a file there) stays.
    for d in journal.created_dirs.iter().rev() {
        match remove_dir(&root.path(d)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
            }
            Err(e) => errors.push(format!("{}: {e}", d.display())),
            Ok(()) => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Whether `real` holds `saved` (absent for `None`) with the saved mode and owner.
fn as_saved(real: &Path, saved: Option<&[u8]>, meta: Option<&FileMeta>) -> bool {
    match (saved, FileMeta::of(real)) {
        (None, Ok(None)) => true,
        (Some(bytes), Ok(Some(now))) if now.mode & 0o170000 == 0o100000 => {
            meta.is_none_or(|want| *want == now) && fs::read(real).is_ok_and(|b| b == bytes)
        }
        _ => false,
    }
}

/// Which applies a rollback undoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The newest apply still in effect.
    Last,
    /// Every apply still in effect, newest first: the host as before the oldest.
    All,
    /// This journal and every newer one still in effect: the host as before it.
    To(String),
}

/// Restores the state before the chosen applies (also after a failed or crashed one),
/// newest first. The whole history is checked first, and nothing changes when any saved
/// copy is missing or does not match its hash, or when a file no longer holds what the
/// apply wrote (with `force`, such a file is kept beside itself as
/// `FILE.vfioctl-kept-ID` and restored).
pub fn rollback(
    root: &HostRoot,
    mode: CommandMode,
    target: &RollbackTarget,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, ApplyError> {
    let _lock = lock::lock(root, lock::timeout(), progress)?;
    let effective: Vec<Journal> = Journal::all(root)?.into_iter().filter(Journal::in_effect).collect();
    let mut chosen: Vec<Journal> = match target {
        RollbackTarget::Last => effective.last().cloned().into_iter().collect(),
        RollbackTarget::All => effective.clone(),
        RollbackTarget::To(id) => {
            let at = effective.iter().position(|j| j.id == *id).ok_or_else(|| ApplyError::NoSuchJournal(id.clone()))?;
            effective[at..].to_vec()
        }
    };
    chosen.reverse();
    if chosen.is_empty() {
        return Err(ApplyError::NothingToRollBack(root.path(JOURNAL_DIR)));
    }

    // Check everything first: what each file should hold when its journal's turn comes.
    struct Step {
        journal: usize,
        file: usize,
        restore: Option<Vec<u8>>,
        keep: Option<Vec<u8>>,
        noop: bool,
    }
    let mut expected: std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> = Default::default();
    let mut steps = Vec::new();
    let mut conflicts = Vec::new();
    for (ji, j) in chosen.iter().enumerate() {
        for (i, f) in j.files.iter().enumerate().rev() {
            let backup = j.backup(root, i)?;
            let now = match expected.get(&f.path) {
                Some(n) => n.clone(),
                None => {
                    read_regular(root, &f.path).map_err(|err| ApplyError::Unreadable { path: f.path.clone(), err })?
                }
            };
            let applied = match &now {
                None => f.removed,
                Some(n) => !f.removed && j.is_applied(root, i, n),
            };
            // Already as it was before the apply (absent included).
            let noop = backup == now;
            let mut keep = None;
            if !applied && !noop {
                if force {
                    keep = now.clone();
                } else {
                    conflicts.push(Conflict {
                        path: f.path.clone(),
                        before: f.existed.then(|| j.host_dir().join(format!("before/{i}"))),
                        applied: j.host_dir().join(format!("after/{i}")),
                        journal: j.id.clone(),
                    });
                }
            }
            expected.insert(f.path.clone(), backup.clone());
            steps.push(Step { journal: ji, file: i, restore: backup, keep, noop });
        }
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::ChangedSinceApply { conflicts });
    }

    let mut written = Vec::new();
    let mut errors = Vec::new();
    for st in &steps {
        let j = &chosen[st.journal];
        let f = &j.files[st.file];
        let real = root.path(&f.path);
        for t in remove_stray_temps(&real) {
            progress(&format!("removed {}, which an interrupted vfioctl left", root.host_path(&t).display()));
        }
        if let Some(kept) = &st.keep {
            let name = format!("{}.vfioctl-kept-{}", f.path.display(), j.id);
            match atomic_write(&root.path(&name), kept, FileMeta::of(&real).ok().flatten().as_ref()) {
                Ok(()) => progress(&format!("kept {} as it was, as {name}", f.path.display())),
                Err(e) => {
                    errors.push(format!("keeping {}: {e}", f.path.display()));
                    break;
                }
            }
        }
        if st.noop {
            continue;
        }
        match put_back(&real, st.restore.as_deref(), f.meta().as_ref()) {
            Ok(()) => {
                match &st.restore {
                    Some(_) => progress(&format!("restored {}", f.path.display())),
                    None => progress(&format!("removed {} (the apply had created it)", f.path.display())),
                }
                if !written.contains(&f.path) {
                    written.push(f.path.clone());
                }
            }
            Err(e) => errors.push(format!("{}: {e}", f.path.display())),
        }
    }
    if !errors.is_empty() {
        return Err(ApplyError::Rollback(errors.join("; ")));
    }
    for j in &chosen {
        for d in j.created_dirs.iter().rev() {
            if remove_dir(&root.path(d)).is_ok() {
                progress(&format!("removed the directory {} (the apply had created it)", d.display()));
            }
        }
    }
    // Each regeneration once, after every file is back.
    let mut commands: Vec<&Command> = Vec::new();
    for j in &chosen {
        for c in &j.commands {
            if !commands.iter().any(|k| k.argv == c.argv) {
                commands.push(c);
            }
        }
    }
    let mut results = Vec::new();
    for c in commands {
        if mode == CommandMode::Never {
            progress(&format!("not running {}: left for you", c.argv.join(" ")));
        } else {
            progress(&format!("running {}", c.argv.join(" ")));
        }
        results.push(run::run(root, mode, &c.argv));
    }
    for j in &mut chosen {
        j.state = JournalState::RolledBack;
        j.save(root)?;
    }
    Ok(Outcome { journal: chosen.first().map(Journal::host_dir), written, commands: results })
}

/// One applied file and whether it still holds what was applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileStatus {
    pub path: PathBuf,
    pub created: bool,
    /// `unchanged` (as applied), `removed` (the apply removed it and it is still absent),
    /// `changed since apply`, `missing`, or, for a journal rolled back, `rolled back`.
    pub state: &'static str,
}

impl FileStatus {
    /// Whether the file is as the journal's last act (the apply, or its rollback) left it.
    pub fn as_left(&self) -> bool {
        matches!(self.state, "unchanged" | "removed" | "rolled back")
    }
}

/// What the last apply did and whether its files were changed since.
pub fn status(root: &HostRoot) -> Result<Option<(Journal, Vec<FileStatus>)>, ApplyError> {
    let Some(j) = Journal::last_applied(root)?.map_or_else(|| Journal::last(root), |j| Ok(Some(j)))? else {
        return Ok(None);
    };
    let files = j
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let now = current(root, &f.path);
            let state = match (now, j.after(root, i)) {
                // Rolled back (perhaps with the journals before it, to an older state):
                // what the apply wrote is no measure any more.
                _ if j.state == JournalState::RolledBack => "rolled back",
                (None, _) if f.removed => "removed",
                (Some(_), _) if f.removed => "changed since apply",
                (None, _) => "missing",
                (Some(n), Some(a)) if n == a => "unchanged",
                _ => "changed since apply",
            };
            FileStatus { path: f.path.clone(), created: !f.existed, state }
        })
        .collect();
    Ok(Some((j, files)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn setup() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        fs::create_dir_all(root.path("/etc/default")).unwrap();
        fs::write(root.path("/etc/default/grub"), "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n").unwrap();
        fs::set_permissions(root.path("/etc/default/grub"), fs::Permissions::from_mode(0o640)).unwrap();
        (dir, root)
    }

    fn changes_for(root: &HostRoot) -> Changeset {
        let mut c = Changeset {
            files: vec![
                FileChange::new("/etc/default/grub", "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"\n", "cmdline"),
                FileChange::new("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:1b06\n", "vfio"),
            ],
            commands: vec![Command { argv: vec!["true".into()], why: "regenerate".into() }],
            expect: None,
            summary: None,
        };
        // As a command would: from a fresh read of the root.
        c.record_before(&HostRoot::new(root.base())).unwrap();
        c
    }

    fn snapshot(root: &HostRoot) -> (Vec<u8>, u32, bool) {
        let g = root.path("/etc/default/grub");
        (
            fs::read(&g).unwrap(),
            fs::metadata(&g).unwrap().mode() & 0o7777,
            root.path("/etc/modprobe.d/vfio.conf").exists(),
        )
    }

    #[test]
    fn apply_is_idempotent_and_rollback_restores_bytes_and_mode() {
        let (_d, root) = setup();
        let before = snapshot(&root);
        let out = apply(&root, &changes_for(&root), CommandMode::Live, None, &mut |_| {}).unwrap();
        assert_eq!(out.written.len(), 2);
        assert_eq!(
            fs::read_to_string(root.path("/etc/modprobe.d/vfio.conf")).unwrap(),
            "options vfio-pci ids=10de:1b06\n"
        );
        assert_eq!(fs::metadata(root.path("/etc/default/grub")).unwrap().mode() & 0o7777, 0o640, "mode kept");
        let (j, files) = status(&root).unwrap().unwrap();
        assert_eq!(j.state, JournalState::Applied);
        assert!(files.iter().all(|f| f.state == "unchanged"));
        // Twice: nothing to do.
        let again = apply(&root, &changes_for(&root), CommandMode::Live, None, &mut |_| {}).unwrap();
        assert!(again.written.is_empty() && again.journal.is_none());
        // Someone edits a file: status says so.
        fs::write(root.path("/etc/default/grub"), "edited\n").unwrap();
        assert_eq!(status(&root).unwrap().unwrap().1[0].state, "changed since apply");
        fs::write(root.path("/etc/default/grub"), "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"\n").unwrap();
        rollback(&root, CommandMode::Live, &RollbackTarget::Last, false, &mut |_| {}).unwrap();
        assert_eq!(snapshot(&root), before);
        assert!(matches!(
            rollback(&root, CommandMode::Live, &RollbackTarget::Last, false, &mut |_| {}),
            Err(ApplyError::NothingToRollBack(_))
        ));
    }

    /// Regression: status called a file the last apply removed "unchanged", and after a
    /// rollback compared the restored files with what the apply had written.
    #[test]
    fn status_names_a_removal_and_a_rollback() {
        let (_d, root) = setup();
        apply(&root, &changes_for(&root), CommandMode::Live, None, &mut |_| {}).unwrap();
        let mut c = Changeset {
            files: vec![FileChange::removal("/etc/modprobe.d/vfio.conf", "no longer needed")],
            commands: Vec::new(),
            expect: None,
            summary: None,
        };
        c.record_before(&HostRoot::new(root.base())).unwrap();
        apply(&root, &c, CommandMode::Live, None, &mut |_| {}).unwrap();
        let (_, files) = status(&root).unwrap().unwrap();
        assert_eq!(files[0].state, "removed");
        assert!(files[0].as_left());
        fs::write(root.path("/etc/modprobe.d/vfio.conf"), "mine\n").unwrap();
        assert_eq!(status(&root).unwrap().unwrap().1[0].state, "changed since apply");
        fs::remove_file(root.path("/etc/modprobe.d/vfio.conf")).unwrap();
        rollback(&root, CommandMode::Live, &RollbackTarget::All, false, &mut |_| {}).unwrap();
        let (j, files) = status(&root).unwrap().unwrap();
        assert_eq!(j.state, JournalState::RolledBack);
        assert!(files.iter().all(|f| f.state == "rolled back"), "{files:?}");
    }

    #[test]
    fn every_injected_failure_restores_everything() {
        for fault in [Fault::Write(0), Fault::Write(1), Fault::Command(0)] {
            let (_d, root) = setup();
            let before = snapshot(&root);
            let e = apply(&root, &changes_for(&root), CommandMode::Live, Some(fault), &mut |_| {}).unwrap_err();
            assert!(matches!(e, ApplyError::Restored { .. }), "{fault:?}: {e}");
            assert_eq!(snapshot(&root), before, "{fault:?}");
            assert_eq!(Journal::last(&root).unwrap().unwrap().state, JournalState::Failed);
        }
    }

    #[test]
    fn a_failing_command_is_a_failure_too() {
        let (_d, root) = setup();
        let before = snapshot(&root);
        let mut c = changes_for(&root);
        c.commands[0].argv = vec!["false".into()];
        let e = apply(&root, &c, CommandMode::Live, None, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("false exited with 1"), "{e}");
        assert_eq!(snapshot(&root), before);
    }

    #[test]
    fn when_restoring_fails_too_rollback_finishes_the_job() {
        let (_d, root) = setup();
        let before = snapshot(&root);
        let e = apply(&root, &changes_for(&root), CommandMode::Live, Some(Fault::Restore(0)), &mut |_| {}).unwrap_err();
        assert!(matches!(e, ApplyError::Stuck { .. }), "{e}");
        assert!(e.to_string().contains("vfioctl rollback"));
        assert_eq!(Journal::last(&root).unwrap().unwrap().state, JournalState::Incomplete);
        rollback(&root, CommandMode::Live, &RollbackTarget::Last, false, &mut |_| {}).unwrap();
        assert_eq!(snapshot(&root), before);
    }

    /// The plan was made, then the file changed (while the prompt waited): nothing is
    /// written, no journal is made.
    #[test]
    fn a_file_changed_after_the_plan_is_refused() {
        let (_d, root) = setup();
        let c = changes_for(&root);
        fs::write(root.path("/etc/default/grub"), "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\n").unwrap();
        let before = snapshot(&root);
        let e = apply(&root, &c, CommandMode::Live, None, &mut |_| {}).unwrap_err();
        assert!(
            matches!(&e, ApplyError::ChangedSincePlan { paths } if paths == &[PathBuf::from("/etc/default/grub")]),
            "{e}"
        );
        assert!(e.to_string().starts_with("nothing was written"), "{e}");
        assert_eq!(snapshot(&root), before);
        assert!(Journal::last(&root).unwrap().is_none());
        // A file the plan would create appeared meanwhile.
        let (_d, root) = setup();
        let c = changes_for(&root);
        fs::create_dir_all(root.path("/etc/modprobe.d")).unwrap();
        fs::write(root.path("/etc/modprobe.d/vfio.conf"), "options vfio-pci disable_vga=1\n").unwrap();
        assert!(matches!(
            apply(&root, &c, CommandMode::Live, None, &mut |_| {}),
            Err(ApplyError::ChangedSincePlan { .. })
        ));
        // A change that records nothing of its file is refused too.
        let (_d, root) = setup();
        let mut c = changes_for(&root);
        c.files[0].before = None;
        assert!(matches!(apply(&root, &c, CommandMode::Live, None, &mut |_| {}), Err(ApplyError::Unplanned(_))));
    }

    #[test]
    fn commands_outside_a_live_root_are_pending_unless_the_root_holds_them() {
        let (_d, root) = setup();
        let r = run::run(&root, CommandMode::Chroot, &["update-initramfs".into(), "-u".into()]);
        assert!(matches!(r.status, run::Status::Pending(_)), "{r:?}");
        assert!(r.describe().contains("not inside"));
    }
}
