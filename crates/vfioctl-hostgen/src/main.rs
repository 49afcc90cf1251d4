//! `hostgen`: writes a host root (sysfs/procfs tree) from a TOML spec, or a large
//! synthetic host for benchmarks. See the `vfioctl_hostgen::spec` docs for the format.
//!
//! ```text
//! hostgen SPEC.toml OUTDIR
//! hostgen --large OUTDIR [--devices N] [--groups G] [--cpus C]
//! ```
//!
//! OUTDIR is deleted and recreated; hostgen refuses to touch an existing non-empty
//! directory that has no `.hostgen` marker file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use vfioctl_hostgen::{large, Error};

const USAGE: &str =
    "usage: hostgen SPEC.toml OUTDIR\n       hostgen --large OUTDIR [--devices N] [--groups G] [--cpus C]";

enum Cmd {
    Spec(PathBuf, PathBuf),
    Large(PathBuf, large::Params),
}

fn parse_args(args: &[String]) -> Result<Cmd, String> {
    if args.first().map(String::as_str) == Some("--large") {
        let mut out = None;
        let mut p = large::Params::default();
        let mut it = args[1..].iter();
        while let Some(a) = it.next() {
            let mut num = |name: &str| -> Result<u32, String> {
                let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
                v.parse().map_err(|_| format!("{name}: `{v}` is not a number"))
            };
            match a.as_str() {
                "--devices" => p.devices = num("--devices")?,
                "--groups" => p.groups = num("--groups")?,
                "--cpus" => p.cpus = num("--cpus")?,
                s if s.starts_with('-') => return Err(format!("unknown option {s}")),
                s if out.is_none() => out = Some(PathBuf::from(s)),
                s => return Err(format!("unexpected argument {s}")),
            }
        }
        let out = out.ok_or("--large needs OUTDIR")?;
        return Ok(Cmd::Large(out, p));
    }
    match args {
        [spec, out] if !spec.starts_with('-') && !out.starts_with('-') => Ok(Cmd::Spec(spec.into(), out.into())),
        _ => Err("expected SPEC.toml OUTDIR".into()),
    }
}

fn run(cmd: Cmd) -> Result<(), Error> {
    let start = Instant::now();
    let (spec, out) = match cmd {
        Cmd::Spec(path, out) => (vfioctl_hostgen::load(&path)?, out),
        Cmd::Large(out, p) => (large::spec(&p)?, out),
    };
    let tree = vfioctl_hostgen::build(&spec)?;
    let built = start.elapsed().as_secs_f64();
    vfioctl_hostgen::write_tree(&tree, &out)?;
    eprintln!(
        "hostgen: wrote {} ({} PCI functions, {} files and links): built in {built:.2} s, total {:.2} s",
        out.display(),
        spec.pci.devices.len(),
        tree.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hostgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_arguments() {
        assert!(matches!(parse_args(&args("a.toml out")), Ok(Cmd::Spec(..))));
        match parse_args(&args("--large out --devices 10 --groups 9 --cpus 16")) {
            Ok(Cmd::Large(o, p)) => {
                assert_eq!(o, PathBuf::from("out"));
                assert_eq!((p.devices, p.groups, p.cpus), (10, 9, 16));
            }
            _ => panic!("not parsed"),
        }
        assert!(parse_args(&args("--large")).is_err());
        assert!(parse_args(&args("--large out --devices x")).is_err());
        assert!(parse_args(&args("a.toml")).is_err());
        assert!(parse_args(&args("--large out --bogus 1")).is_err());
    }
}
