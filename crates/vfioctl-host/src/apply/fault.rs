//! Injected faults, for the tests of the transaction (`VFIOCTL_FAULT=KIND:N`).
//!
//! Every side effect of an apply or a rollback on the host (creating a temporary file,
//! writing it, syncing it, setting its mode, renaming it over the target, syncing the
//! directory, removing a file or a directory; the journal's own files included) is one
//! numbered *step*, counted from 0 on the thread that armed the fault. `step:N` makes step N
//! fail with an I/O error; `die:N` kills the process just before step N, as a crash or a
//! power cut would. A test walks N up until the command no longer meets its fault, which
//! proves that every step was covered. The other kinds name a file or command by its index
//! in the apply: `write:N` (writing file N fails), `crash:N` (the process dies right after
//! writing file N), `command:N` (command N fails), `restore:N` (writing the last file
//! fails, then restoring file N fails too).

use std::cell::Cell;
use std::path::Path;

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Writing file N fails.
    Write(usize),
    /// The process dies right after writing file N (a crash between two writes).
    Crash(usize),
    /// Command N fails.
    Command(usize),
    /// Writing the last file fails, then restoring file N fails too.
    Restore(usize),
    /// Step N fails with an I/O error.
    Step(usize),
    /// The process dies just before step N.
    Die(usize),
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, n) = s.split_once(':').ok_or_else(|| format!("`{s}`: expected KIND:N"))?;
        let n: usize = n.parse().map_err(|_| format!("`{s}`: N is not a number"))?;
        match kind {
            "write" => Ok(Fault::Write(n)),
            "crash" => Ok(Fault::Crash(n)),
            "command" => Ok(Fault::Command(n)),
            "restore" => Ok(Fault::Restore(n)),
            "step" => Ok(Fault::Step(n)),
            "die" => Ok(Fault::Die(n)),
            _ => Err(format!("`{s}`: KIND is write, crash, command, restore, step or die")),
        }
    }
}

thread_local! {
    static ARMED: Cell<Option<Fault>> = const { Cell::new(None) };
    static STEPS: Cell<usize> = const { Cell::new(0) };
}

/// Arms a `step` or `die` fault on this thread until the guard drops (other kinds are
/// passed to [`super::apply`] and ignored here). Steps count from 0 again.
#[must_use = "the fault is disarmed when the guard drops"]
pub fn arm(fault: Option<Fault>) -> Armed {
    let step = fault.filter(|f| matches!(f, Fault::Step(_) | Fault::Die(_)));
    ARMED.with(|a| a.set(step));
    STEPS.with(|s| s.set(0));
    Armed(())
}

/// Disarms the fault when dropped.
#[derive(Debug)]
pub struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.with(|a| a.set(None));
    }
}

/// One side effect is about to happen: `what` on `path`. Fails or dies when it is the
/// armed step; otherwise counts it.
pub(crate) fn step(what: &str, path: &Path) -> std::io::Result<()> {
    let n = STEPS.with(|s| {
        let n = s.get();
        s.set(n + 1);
        n
    });
    match ARMED.with(Cell::get) {
        Some(Fault::Step(k)) if k == n => {
            Err(std::io::Error::other(format!("injected fault at step {n} ({what} {})", path.display())))
        }
        Some(Fault::Die(k)) if k == n => {
            eprintln!("vfioctl: injected crash before step {n} ({what} {})", path.display());
            // No destructors, no restore: what a crash leaves.
            std::process::abort();
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_steps_count_on_this_thread_only() {
        assert_eq!("step:3".parse::<Fault>(), Ok(Fault::Step(3)));
        assert_eq!("die:0".parse::<Fault>(), Ok(Fault::Die(0)));
        assert!("boom:1".parse::<Fault>().is_err());
        assert!("step:x".parse::<Fault>().is_err());
        let p = Path::new("/etc/x");
        {
            let _a = arm(Some(Fault::Step(2)));
            assert!(step("a", p).is_ok());
            assert!(step("b", p).is_ok());
            let e = step("c", p).unwrap_err();
            assert!(e.to_string().contains("step 2 (c /etc/x)"), "{e}");
            assert!(step("d", p).is_ok());
            // Another thread has its own, unarmed count.
            std::thread::spawn(|| assert!((0..5).all(|_| step("t", Path::new("/t")).is_ok()))).join().unwrap();
        }
        assert!((0..5).all(|_| step("after", p).is_ok()), "disarmed when the guard dropped");
        let _a = arm(Some(Fault::Write(0)));
        assert!((0..5).all(|_| step("w", p).is_ok()), "other kinds are not steps");
    }
}
