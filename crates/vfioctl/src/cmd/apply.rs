//! `vfioctl apply`: the plan's host configuration as one transaction.

use similar::TextDiff;
use vfioctl_host::apply::{self, changes, CommandMode, Fault};
use vfioctl_host::host::Host;

use crate::cli::{ApplyArgs, BootEntry};
use crate::error::{CliError, Exit};
use crate::{ops, output};

/// Unified diffs of every changing file (from the text the change was computed from), then
/// the commands.
pub fn render_changes(prepared: &changes::Prepared, mode: CommandMode) -> String {
    let mut out = String::new();
    for f in prepared.changes.pending() {
        let before = f.before.as_ref().and_then(|b| b.text());
        let after = String::from_utf8_lossy(&f.after).into_owned();
        let old_name = match before {
            Some(_) => format!("a{}", f.path.display()),
            None => "/dev/null".to_string(),
        };
        let new_name = if f.remove { "/dev/null".to_string() } else { format!("b{}", f.path.display()) };
        let diff = TextDiff::from_lines(before.unwrap_or(""), &after);
        out.push_str(&format!("# {}: {}\n", f.path.display(), f.why));
        out.push_str(&diff.unified_diff().context_radius(3).header(&old_name, &new_name).to_string());
    }
    if !prepared.changes.commands.is_empty() {
        out.push_str(match mode {
            CommandMode::Live => "\nThen it runs:\n",
            CommandMode::Chroot => {
                "\nThen it runs, inside the root (chroot) when the root holds them, else lists them for you:\n"
            }
            CommandMode::Never => "\nThese commands are left for you to run:\n",
        });
        for c in &prepared.changes.commands {
            out.push_str(&format!("  {}   # {}\n", c.argv.join(" "), c.why));
        }
    }
    for n in &prepared.notes {
        out.push_str(&format!("\nNote: {n}\n"));
    }
    out
}

pub fn run(host: &Host, args: &ApplyArgs) -> Result<Exit, CliError> {
    let root = host.root();
    // Planned from the host as its user had it, before vfioctl's applies in effect: an
    // apply after another leaves what it alone would have left.
    let baseline = apply::Baseline::of(root).map_err(CliError::Apply)?;
    let planning = if baseline.files.is_empty() { None } else { Some(Host::new(baseline.root(root))) };
    let planning = planning.as_ref().unwrap_or(host);
    let p = ops::plan(planning, &args.plan.request()?)?;
    for w in &p.warnings {
        eprintln_safe!("vfioctl: warning: {w}");
    }
    let evdev = ops::evdev_paths(root, &args.evdev);
    let lg = match args.looking_glass {
        Some(resolution) => Some((
            vfioctl_core::looking_glass::LookingGlass {
                resolution,
                backing: ops::looking_glass_backing(host, args.looking_glass_memory),
            },
            ops::looking_glass_user(args.looking_glass_user.as_deref())?,
        )),
        None => None,
    };
    let mut prepared = ops::prepare_apply(
        planning,
        &p,
        args.boot_entry == BootEntry::Separate,
        &evdev,
        lg.as_ref().map(|(l, u)| (l, u.as_str())),
    )?;
    baseline.restore_untouched(&mut prepared.changes);
    prepared.finish(root).map_err(CliError::Change)?;
    prepared.notes.extend(baseline.notes.iter().cloned());
    // What was asked for, in the journal for `vfioctl history`: the arguments after `apply`.
    let argv: Vec<String> = std::env::args().skip_while(|a| a != "apply").skip(1).collect();
    prepared.changes.summary = Some(argv.join(" "));
    let mode = if args.no_commands { CommandMode::Never } else { CommandMode::for_root(root) };
    if prepared.changes.pending().is_empty() {
        output::print("Nothing to do: this host already has the plan's configuration.\n")?;
        return Ok(Exit::Ok);
    }
    let text = render_changes(&prepared, mode);
    output::print(&format!(
        "Boot loader: {}; initramfs: {}\n\n{text}",
        prepared.bootloader.as_deref().unwrap_or("none"),
        prepared.initramfs.as_deref().unwrap_or("none")
    ))?;
    if args.dry_run {
        return Ok(Exit::Ok);
    }
    if !args.yes && !output::confirm("Apply these changes?")? {
        eprintln_safe!("vfioctl: nothing changed");
        return Ok(Exit::Finding);
    }
    let fault = injected_fault();
    let _armed = apply::fault::arm(fault);
    let out = apply::apply(root, &prepared.changes, mode, fault, &mut |m| eprintln_safe!("vfioctl: {m}"))
        .map_err(CliError::Apply)?;
    let mut t = format!(
        "\nApplied: {} files written; journal {}.\n",
        out.written.len(),
        out.journal.as_ref().map(|j| j.display().to_string()).unwrap_or_default()
    );
    for r in &out.commands {
        t.push_str(&format!("  {}\n", r.describe()));
    }
    t.push_str(
        "Reboot, then `vfioctl verify` checks the host against this plan. `vfioctl rollback` undoes this apply; `vfioctl history` lists them all.\n",
    );
    output::print(&t)?;
    Ok(Exit::Ok)
}

/// Test hook: `VFIOCTL_FAULT=KIND:N` (see [`apply::fault`]) for `apply` and `rollback`.
pub fn injected_fault() -> Option<Fault> {
    std::env::var("VFIOCTL_FAULT").ok().and_then(|f| f.parse::<Fault>().ok())
}
