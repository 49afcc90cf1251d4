//! One apply or rollback at a time: an exclusive `flock` on `/var/lib/vfioctl/lock`
//! inside the root, held for the whole transaction. A second one waits, says so, and gives
//! up after a timeout (`VFIOCTL_LOCK_TIMEOUT` seconds, default 60).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use super::ApplyError;
use crate::root::HostRoot;

/// The lock file, as the host names it.
pub const LOCK: &str = "/var/lib/vfioctl/lock";

/// The environment variable with the wait in seconds.
pub const TIMEOUT_ENV: &str = "VFIOCTL_LOCK_TIMEOUT";

/// Held while it lives; the kernel drops the lock when the file closes (also on a crash).
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

/// How long to wait for another apply or rollback.
pub fn timeout() -> Duration {
    let secs = std::env::var(TIMEOUT_ENV).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

/// Takes the lock, waiting up to `wait` for another vfioctl to finish.
pub fn lock(root: &HostRoot, wait: Duration, progress: &mut dyn FnMut(&str)) -> Result<StateLock, ApplyError> {
    let real = root.path(LOCK);
    let journal = |err| ApplyError::Journal { path: real.clone(), err };
    if let Some(dir) = real.parent() {
        fs::create_dir_all(dir).map_err(journal)?;
    }
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&real).map_err(journal)?;
    let start = Instant::now();
    let mut said = false;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(StateLock { _file: file }),
            Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
            Err(e) => return Err(journal(e.into())),
        }
        if start.elapsed() >= wait {
            return Err(ApplyError::Busy { lock: Path::new(LOCK).to_path_buf(), waited: wait.as_secs() });
        }
        if !said {
            progress(&format!(
                "another vfioctl apply or rollback holds {LOCK}: waiting up to {} s for it to finish",
                wait.as_secs()
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
