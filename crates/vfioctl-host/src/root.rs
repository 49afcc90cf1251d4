//! The host root: the directory every host file is read from (`/` on a live machine, a
//! snapshot or a fixture tree otherwise). Paths inside it are written as the host sees
//! them (`/sys/kernel/iommu_groups`) and joined here, so nothing else in vfioctl builds
//! file-system paths by hand.
//!
//! One root, one read: a text file is read from the disk once per command and kept
//! ([`HostRoot::read`] hands every later caller the same text), and so is a directory's
//! listing, so every part of vfioctl judges the same bytes even if the file changes
//! meanwhile (sysfs attributes and binary files, read by one reader each, are not kept). Clones share that memory.
//! A [`ReadLog`] (switched on by the `VFIOCTL_READ_LOG` environment variable in the CLI)
//! counts every real read, listing and program run, which is how the tests prove that no
//! command reads a host file twice.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A failed read of a host file, with the path as the host names it and the real path.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("cannot list {path}: {err}")]
    List { path: PathBuf, err: io::Error },
    #[error("cannot follow link {path}: {err}")]
    Link { path: PathBuf, err: io::Error },
    #[error("{path}: {what} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, what: &'static str, limit: u64 },
}

impl RootError {
    /// The file or directory that could not be read.
    pub fn path(&self) -> &Path {
        match self {
            RootError::Read { path, .. }
            | RootError::List { path, .. }
            | RootError::Link { path, .. }
            | RootError::TooLarge { path, .. } => path,
        }
    }

    /// The file does not exist (as opposed to existing but being unreadable).
    pub fn is_not_found(&self) -> bool {
        match self {
            RootError::Read { err, .. } | RootError::List { err, .. } | RootError::Link { err, .. } => {
                err.kind() == io::ErrorKind::NotFound
            }
            RootError::TooLarge { .. } => false,
        }
    }
}

/// Largest sysfs/procfs text file read whole (sysfs attributes are at most a page; the
/// limit is generous for /proc files and keeps a wrong `--root` from reading a disk image).
const MAX_TEXT: u64 = 16 << 20;

/// What a command read of its host: every real file read, directory listing and program
/// run, with how often. Shared by the clones of a [`HostRoot`].
#[derive(Debug, Default)]
pub struct ReadLog {
    counts: Mutex<BTreeMap<String, u32>>,
}

impl ReadLog {
    /// Counts one `kind` (`read`, `list`, `run`, `connect`) of `what`.
    pub fn note(&self, kind: &str, what: &Path) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(format!("{kind} {}", what.display())).or_default() += 1;
        }
    }

    /// Records that a program was run (`run /usr/bin/qemu-system-x86_64 --version`).
    pub fn note_program(&self, argv: &[&str]) {
        self.note("run", Path::new(&argv.join(" ")));
    }

    /// `KIND PATH COUNT` lines, sorted (`read /proc/cpuinfo 1`).
    pub fn render(&self) -> String {
        let c = self.counts.lock().map(|c| c.clone()).unwrap_or_default();
        c.iter().map(|(k, n)| format!("{k} {n}\n")).collect()
    }
}

/// A text file as it was read: its text, `None` when it does not exist, or why it could
/// not be read.
type Remembered = Result<Option<Arc<str>>, Unreadable>;

/// A failed read, kept so that a second caller gets the same error.
#[derive(Debug, Clone)]
enum Unreadable {
    Os(i32),
    Other(io::ErrorKind, String),
    TooLarge,
}

/// `ENOENT`: what a read of a file that does not exist fails with.
const ENOENT: i32 = 2;

/// Where the host is. Cheap to clone; clones share the memory of what was read.
#[derive(Debug, Clone)]
pub struct HostRoot {
    base: PathBuf,
    memo: Arc<Mutex<BTreeMap<PathBuf, Remembered>>>,
    listed: Arc<Mutex<BTreeMap<PathBuf, Listed>>>,
    log: Option<Arc<ReadLog>>,
    /// Files shown as they were rather than as they are ([`HostRoot::with_baseline`]):
    /// their text then, `None` when they did not exist.
    baseline: Option<Arc<BTreeMap<PathBuf, Option<Arc<str>>>>>,
}

/// A directory as it was listed: its sorted names, or why it could not be listed.
type Listed = Result<Arc<Vec<String>>, Unreadable>;

impl PartialEq for HostRoot {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base
    }
}

impl Eq for HostRoot {}

impl HostRoot {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        HostRoot { base: base.into(), memo: Arc::default(), listed: Arc::default(), log: None, baseline: None }
    }

    /// The same root, counting what it reads into `log`.
    pub fn with_log(mut self, log: Arc<ReadLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// The same root as it was before some of its files changed: reading one of `files`
    /// gives the text it had then (`None`: it did not exist), and listing its directory
    /// shows or hides it accordingly; everything else reads as usual. For planning from the
    /// host as its user had it, before vfioctl's own applies still in effect; and for
    /// reading the host as an edit would leave it. Over a root that is such a view
    /// already, the view's other files stay as it shows them.
    pub fn with_baseline(&self, files: impl IntoIterator<Item = (PathBuf, Option<Arc<str>>)>) -> HostRoot {
        let files = files.into_iter().map(|(p, text)| (Path::new("/").join(p.strip_prefix("/").unwrap_or(&p)), text));
        // Over a view already: its files stay as it shows them, unless given again.
        let mut all = self.baseline.as_deref().cloned().unwrap_or_default();
        all.extend(files);
        HostRoot {
            base: self.base.clone(),
            // What else is read is shared with this root: read once for both.
            memo: self.memo.clone(),
            // Listings are the disk's; each view shows or hides its own files.
            listed: self.listed.clone(),
            log: self.log.clone(),
            baseline: Some(Arc::new(all)),
        }
    }

    /// A directory's names with the baseline's files shown or hidden.
    fn as_shown(&self, dir: &Path, mut names: Vec<String>) -> Vec<String> {
        let Some(baseline) = &self.baseline else { return names };
        for (p, text) in baseline.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            match (text.is_some(), names.binary_search(&name)) {
                (true, Err(at)) => names.insert(at, name),
                (false, Ok(at)) => {
                    names.remove(at);
                }
                _ => {}
            }
        }
        names
    }

    /// The read log, when one is kept.
    pub fn log(&self) -> Option<&ReadLog> {
        self.log.as_deref()
    }

    fn note(&self, kind: &str, host_path: &Path) {
        if let Some(l) = &self.log {
            l.note(kind, host_path);
        }
    }

    /// The live machine.
    pub fn live() -> Self {
        HostRoot::new("/")
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// True when reading the running machine rather than a copy of one.
    pub fn is_live(&self) -> bool {
        self.base == Path::new("/") || fs::canonicalize(&self.base).map(|p| p == Path::new("/")).unwrap_or(false)
    }

    /// The real path of a host path: `/sys/bus/pci` → `ROOT/sys/bus/pci`.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        self.base.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The host path `host_path` names once its symbolic links are followed the way the
    /// kernel follows them inside a chroot of the root: an absolute link target starts
    /// again at the root, `..` stops at the root, so the result never leaves it. A
    /// component that does not exist ends the walk (the rest is kept as written: a file
    /// about to be created). More than 40 links is `ELOOP`; an unreadable link is an error.
    pub fn resolve(&self, host_path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        use std::path::Component;
        let wanted = host_path.as_ref();
        let mut todo: Vec<std::ffi::OsString> = Vec::new();
        let push_all = |todo: &mut Vec<std::ffi::OsString>, p: &Path| {
            for c in p.components().rev() {
                todo.push(c.as_os_str().to_os_string());
            }
        };
        push_all(&mut todo, wanted);
        let mut done = PathBuf::from("/");
        let mut links = 0;
        let mut missing = false;
        while let Some(c) = todo.pop() {
            let comp = Path::new(&c);
            match comp.components().next() {
                Some(Component::RootDir) => done = PathBuf::from("/"),
                Some(Component::CurDir) | None => {}
                Some(Component::ParentDir) => {
                    done.pop();
                }
                Some(Component::Normal(name)) => {
                    let next = done.join(name);
                    if missing {
                        done = next;
                        continue;
                    }
                    match fs::symlink_metadata(self.path(&next)) {
                        Ok(m) if m.file_type().is_symlink() => {
                            links += 1;
                            if links > 40 {
                                return Err(RootError::Link {
                                    path: wanted.to_path_buf(),
                                    err: io::Error::from_raw_os_error(40),
                                });
                            }
                            let target = fs::read_link(self.path(&next))
                                .map_err(|err| RootError::Link { path: next.clone(), err })?;
                            push_all(&mut todo, &target);
                            if target.is_absolute() {
                                done = PathBuf::from("/");
                            }
                        }
                        Ok(_) => done = next,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            missing = true;
                            done = next;
                        }
                        Err(err) => return Err(RootError::Read { path: next, err }),
                    }
                }
                Some(Component::Prefix(_)) => {}
            }
        }
        Ok(done)
    }

    /// The real path of `host_path` with its links followed inside the root
    /// ([`HostRoot::resolve`]); on the live machine (`/`) the kernel does that already.
    pub fn real_path(&self, host_path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        if self.base == Path::new("/") {
            return Ok(self.path(host_path));
        }
        Ok(self.path(self.resolve(host_path)?))
    }

    /// Maps a real path under the root back to the host's name for it.
    pub fn host_path(&self, real: &Path) -> PathBuf {
        match real.strip_prefix(&self.base) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => real.to_path_buf(),
        }
    }

    /// Reads a text file (once per command: later calls get the same text). Errors name
    /// the host path.
    pub fn read(&self, host_path: impl AsRef<Path>) -> Result<String, RootError> {
        let host_path = host_path.as_ref();
        match self.read_shared(host_path)? {
            Some(text) => Ok(text.to_string()),
            None => Err(RootError::Read { path: host_path.to_path_buf(), err: io::Error::from_raw_os_error(ENOENT) }),
        }
    }

    /// Reads a text file that may legitimately be absent: `Ok(None)` when it does not exist.
    pub fn read_optional(&self, host_path: impl AsRef<Path>) -> Result<Option<String>, RootError> {
        Ok(self.read_shared(host_path.as_ref())?.map(|t| t.to_string()))
    }

    /// [`HostRoot::read_optional`] without a copy: the text as it was read the first time.
    pub fn read_shared(&self, host_path: &Path) -> Result<Option<Arc<str>>, RootError> {
        let key = Path::new("/").join(host_path.strip_prefix("/").unwrap_or(host_path));
        if let Some(text) = self.baseline.as_ref().and_then(|b| b.get(&key)) {
            return Ok(text.clone());
        }
        let remembered = self.memo.lock().ok().and_then(|m| m.get(&key).cloned());
        let r = match remembered {
            Some(r) => r,
            None => {
                self.note("read", &key);
                // Configuration files are read through their links inside the root;
                // the kernel's own trees (sysfs, procfs) use relative links only.
                let kernel = ["/sys", "/proc", "/dev"].iter().any(|k| key.starts_with(k));
                let real = if kernel { Ok(self.path(&key)) } else { self.real_path(&key) };
                let r = match real
                    .map_err(|e| match e {
                        RootError::Read { err, .. } | RootError::Link { err, .. } | RootError::List { err, .. } => {
                            Limited::Io(err)
                        }
                        RootError::TooLarge { .. } => Limited::TooLarge,
                    })
                    .and_then(|real| read_limited(&real, MAX_TEXT))
                {
                    Ok(bytes) => Ok(Some(Arc::from(String::from_utf8_lossy(&bytes).as_ref()))),
                    Err(Limited::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(Limited::Io(e)) => Err(match e.raw_os_error() {
                        Some(code) => Unreadable::Os(code),
                        None => Unreadable::Other(e.kind(), e.to_string()),
                    }),
                    Err(Limited::TooLarge) => Err(Unreadable::TooLarge),
                };
                if let Ok(mut m) = self.memo.lock() {
                    m.insert(key, r.clone());
                }
                r
            }
        };
        r.map_err(|u| {
            let path = host_path.to_path_buf();
            match u {
                Unreadable::TooLarge => RootError::TooLarge { path, what: "file", limit: MAX_TEXT },
                Unreadable::Os(code) => RootError::Read { path, err: io::Error::from_raw_os_error(code) },
                Unreadable::Other(kind, msg) => RootError::Read { path, err: io::Error::new(kind, msg) },
            }
        })
    }

    /// Reads a sysfs attribute: one `read` of up to a page, which is how the kernel hands
    /// out an attribute (whole, in one call). Cheaper than [`HostRoot::read`] when reading
    /// thousands of attributes; not for /proc files, which come a page at a time.
    pub fn read_attr(&self, host_path: impl AsRef<Path>) -> Result<String, RootError> {
        let host_path = host_path.as_ref();
        let err = |err| RootError::Read { path: host_path.to_path_buf(), err };
        self.note("read", host_path);
        let mut f = fs::File::open(self.path(host_path)).map_err(err)?;
        let mut buf = [0u8; 4096];
        let n = io::Read::read(&mut f, &mut buf).map_err(err)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// [`HostRoot::read_attr`] for an attribute that may be absent: `Ok(None)` then.
    pub fn read_attr_optional(&self, host_path: impl AsRef<Path>) -> Result<Option<String>, RootError> {
        match self.read_attr(host_path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a binary file (PCI `config`), at most `limit` bytes.
    pub fn read_bytes(&self, host_path: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, RootError> {
        let host_path = host_path.as_ref();
        let real = self.path(host_path);
        let err = |err| RootError::Read { path: host_path.to_path_buf(), err };
        self.note("read", host_path);
        let mut f = fs::File::open(&real).map_err(err)?;
        // Read until the limit or the end, without the probing reads of `read_to_end`.
        let mut out = vec![0u8; usize::try_from(limit).unwrap_or(usize::MAX).min(1 << 24)];
        let mut n = 0;
        while n < out.len() {
            match io::Read::read(&mut f, &mut out[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// Names of the entries of a directory, sorted.
    /// Like files, a directory is listed once per command: later calls get the same names.
    pub fn list(&self, host_path: impl AsRef<Path>) -> Result<Vec<String>, RootError> {
        let host_path = host_path.as_ref();
        let key = Path::new("/").join(host_path.strip_prefix("/").unwrap_or(host_path));
        let remembered = self.listed.lock().ok().and_then(|m| m.get(&key).cloned());
        let r = match remembered {
            Some(r) => r,
            None => {
                self.note("list", &key);
                let r = self.list_now(&key).map(Arc::new).map_err(|e| match e.raw_os_error() {
                    Some(code) => Unreadable::Os(code),
                    None => Unreadable::Other(e.kind(), e.to_string()),
                });
                if let Ok(mut m) = self.listed.lock() {
                    m.insert(key.clone(), r.clone());
                }
                r
            }
        };
        // The listing is the disk's, shared with every view of this root; a view shows
        // or hides its own files (in a directory it makes, too).
        let r = match r {
            Ok(names) => Ok(self.as_shown(&key, names.to_vec())),
            Err(Unreadable::Os(code))
                if io::Error::from_raw_os_error(code).kind() == io::ErrorKind::NotFound
                    && self
                        .baseline
                        .as_ref()
                        .is_some_and(|b| b.iter().any(|(p, t)| t.is_some() && p.parent() == Some(key.as_path()))) =>
            {
                Ok(self.as_shown(&key, Vec::new()))
            }
            Err(u) => Err(u),
        };
        r.map_err(|u| RootError::List {
            path: host_path.to_path_buf(),
            err: match u {
                Unreadable::Os(code) => io::Error::from_raw_os_error(code),
                Unreadable::Other(kind, msg) => io::Error::new(kind, msg),
                Unreadable::TooLarge => io::Error::other("too large"),
            },
        })
    }

    fn list_now(&self, host_path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.path(host_path))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// The last component of a symlink's target (`driver` → `vfio-pci`,
    /// `iommu_group` → `20`), without resolving it: works on dangling links too.
    pub fn link_name(&self, host_path: impl AsRef<Path>) -> Result<String, RootError> {
        let host_path = host_path.as_ref();
        self.note("link", host_path);
        let target = fs::read_link(self.path(host_path))
            .map_err(|err| RootError::Link { path: host_path.to_path_buf(), err })?;
        Ok(target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    }

    /// Whether a host path exists (following links).
    pub fn exists(&self, host_path: impl AsRef<Path>) -> bool {
        let p = host_path.as_ref();
        let key = Path::new("/").join(p.strip_prefix("/").unwrap_or(p));
        if let Some(text) = self.baseline.as_ref().and_then(|b| b.get(&key)) {
            return text.is_some();
        }
        self.path(p).exists()
    }
}

impl HostRoot {
    /// Holds a host directory open, so that reading many files in it looks up only their
    /// names: `/sys/bus/pci/devices/X/vendor` read by full path walks eight components and
    /// a symlink each time, read from the held directory one. For sysfs device
    /// directories, a dozen attributes each on thousands of devices.
    pub fn open_dir(&self, host_path: impl AsRef<Path>) -> Result<HostDir<'_>, RootError> {
        let host_path = host_path.as_ref();
        let fd = rustix::fs::open(
            self.path(host_path),
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| RootError::List { path: host_path.to_path_buf(), err: e.into() })?;
        Ok(HostDir { root: self, host_path: host_path.to_path_buf(), fd })
    }
}

/// A directory of the host held open ([`HostRoot::open_dir`]). Its reads behave as the
/// [`HostRoot`] methods of the same names on `DIR/NAME`, errors naming that host path.
#[derive(Debug)]
pub struct HostDir<'a> {
    root: &'a HostRoot,
    host_path: PathBuf,
    fd: rustix::fd::OwnedFd,
}

impl HostDir<'_> {
    /// The root this directory was opened from.
    pub fn root(&self) -> &HostRoot {
        self.root
    }

    /// The directory as the host names it.
    pub fn host_path(&self) -> &Path {
        &self.host_path
    }

    /// The host path of an entry, for messages.
    pub fn entry_path(&self, name: &str) -> PathBuf {
        self.host_path.join(name)
    }

    fn open(&self, name: &str) -> Result<rustix::fd::OwnedFd, RootError> {
        self.root.note("read", &self.entry_path(name));
        rustix::fs::openat(
            &self.fd,
            name,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| RootError::Read { path: self.entry_path(name), err: e.into() })
    }

    /// [`HostRoot::read_attr`] of `DIR/NAME`: one `read` of up to a page.
    pub fn read_attr(&self, name: &str) -> Result<String, RootError> {
        let fd = self.open(name)?;
        let mut buf = [0u8; 4096];
        let n = rustix::io::read(&fd, &mut buf[..])
            .map_err(|e| RootError::Read { path: self.entry_path(name), err: e.into() })?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// [`HostRoot::read_attr_optional`] of `DIR/NAME`: `Ok(None)` when it does not exist.
    pub fn read_attr_optional(&self, name: &str) -> Result<Option<String>, RootError> {
        match self.read_attr(name) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`HostRoot::read_bytes`] of `DIR/NAME`: at most `limit` bytes.
    pub fn read_bytes(&self, name: &str, limit: usize) -> Result<Vec<u8>, RootError> {
        let fd = self.open(name)?;
        let mut out = vec![0u8; limit.min(1 << 24)];
        let mut n = 0;
        while n < out.len() {
            match rustix::io::read(&fd, &mut out[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(RootError::Read { path: self.entry_path(name), err: e.into() }),
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// [`HostRoot::link_name`] of `DIR/NAME`: the last component of the link's target.
    pub fn link_name(&self, name: &str) -> Result<String, RootError> {
        self.root.note("link", &self.entry_path(name));
        let target = rustix::fs::readlinkat(&self.fd, name, Vec::new())
            .map_err(|e| RootError::Link { path: self.entry_path(name), err: e.into() })?;
        let target = Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()));
        Ok(target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    }
}

enum Limited {
    Io(io::Error),
    TooLarge,
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Limited> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so that a FIFO planted where a file should be cannot hang the open;
    // then anything but a regular file is refused (sysfs and procfs files are regular).
    let nonblock = i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0);
    let f = fs::OpenOptions::new().read(true).custom_flags(nonblock).open(path).map_err(Limited::Io)?;
    let meta = f.metadata().map_err(Limited::Io)?;
    if !meta.is_file() {
        return Err(Limited::Io(io::Error::other("not a regular file")));
    }
    let mut out = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(f, limit + 1), &mut out).map_err(Limited::Io)?;
    if out.len() as u64 > limit {
        return Err(Limited::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_shows_files_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc/modprobe.d")).unwrap();
        fs::write(dir.path().join("etc/modprobe.d/vfio.conf"), "options vfio-pci ids=1:2\n").unwrap();
        fs::write(dir.path().join("etc/modprobe.d/other.conf"), "blacklist x\n").unwrap();
        fs::write(dir.path().join("etc/hosts"), "now\n").unwrap();
        let root = HostRoot::new(dir.path());
        let then = root.with_baseline([
            (PathBuf::from("etc/modprobe.d/vfio.conf"), None),
            (PathBuf::from("/etc/modprobe.d/gone.conf"), Some(Arc::from("was\n"))),
            (PathBuf::from("/etc/hosts"), Some(Arc::from("then\n"))),
        ]);
        assert_eq!(then.list("/etc/modprobe.d").unwrap(), ["gone.conf", "other.conf"]);
        assert!(then.read_optional("/etc/modprobe.d/vfio.conf").unwrap().is_none());
        assert!(!then.exists("/etc/modprobe.d/vfio.conf"));
        assert!(then.exists("/etc/modprobe.d/gone.conf"));
        assert_eq!(then.read("/etc/hosts").unwrap(), "then\n");
        assert_eq!(then.read("/etc/modprobe.d/other.conf").unwrap(), "blacklist x\n");
        // The root it was made from still reads the host as it is.
        assert_eq!(root.read("/etc/hosts").unwrap(), "now\n");
        assert_eq!(root.list("/etc/modprobe.d").unwrap(), ["other.conf", "vfio.conf"]);
    }

    #[test]
    fn joins_and_reads_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        fs::create_dir_all(dir.path().join("sys/x")).unwrap();
        fs::write(dir.path().join("sys/x/a"), "0x1002\n").unwrap();
        std::os::unix::fs::symlink("../../bus/pci/drivers/vfio-pci", dir.path().join("sys/x/driver")).unwrap();
        assert_eq!(root.read("/sys/x/a").unwrap(), "0x1002\n");
        assert_eq!(root.link_name("/sys/x/driver").unwrap(), "vfio-pci");
        assert_eq!(root.list("/sys/x").unwrap(), ["a", "driver"]);
        assert!(root.read_optional("/sys/x/missing").unwrap().is_none());
        let e = root.read("/sys/x/missing").unwrap_err();
        assert!(e.to_string().starts_with("cannot read /sys/x/missing"), "{e}");
        assert_eq!(root.host_path(&dir.path().join("sys/x/a")), Path::new("/sys/x/a"));
        assert!(!root.is_live());
        assert!(HostRoot::live().is_live());
    }

    #[test]
    fn a_held_directory_reads_like_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        fs::create_dir_all(dir.path().join("sys/devices/d0")).unwrap();
        fs::create_dir_all(dir.path().join("sys/bus")).unwrap();
        std::os::unix::fs::symlink("../devices/d0", dir.path().join("sys/bus/d0")).unwrap();
        fs::write(dir.path().join("sys/devices/d0/vendor"), "0x1002\n").unwrap();
        fs::write(dir.path().join("sys/devices/d0/config"), [1u8, 2, 3, 4]).unwrap();
        std::os::unix::fs::symlink("../../bus/pci/drivers/vfio-pci", dir.path().join("sys/devices/d0/driver")).unwrap();
        let d = root.open_dir("/sys/bus/d0").unwrap();
        assert_eq!(d.read_attr("vendor").unwrap(), root.read_attr("/sys/bus/d0/vendor").unwrap());
        assert_eq!(d.read_bytes("config", 3).unwrap(), [1, 2, 3]);
        assert_eq!(d.read_bytes("config", 64).unwrap(), [1, 2, 3, 4]);
        assert_eq!(d.link_name("driver").unwrap(), "vfio-pci");
        assert!(d.read_attr_optional("boot_vga").unwrap().is_none());
        let e = d.read_attr("class").unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), root.read_attr("/sys/bus/d0/class").unwrap_err().to_string());
        assert!(d.link_name("vendor").is_err());
        let gone = root.open_dir("/sys/bus/d1").unwrap_err();
        assert!(gone.is_not_found() && gone.path() == Path::new("/sys/bus/d1"), "{gone}");
    }
}
