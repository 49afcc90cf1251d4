//! Choosing the guest's UEFI firmware among the OVMF files this host has: the code image
//! (a secure-boot build when asked) and its matching variable store template.

use vfioctl_core::domain::Firmware;

use crate::root::HostRoot;

/// The VARS templates that go with a CODE image, most likely first, across the
/// distributions' naming (`OVMF_CODE_4M.fd`/`OVMF_VARS_4M.fd`, `.secboot` with `.ms`
/// keys on Debian, `OVMF_VARS.secboot.fd` on Fedora, `.4m` on Arch).
pub fn vars_candidates(code: &str) -> Vec<String> {
    let base = code.replace("CODE", "VARS");
    let mut v = vec![base.replace(".secboot", ".ms"), base.clone(), base.replace(".secboot", "")];
    v.dedup();
    v
}

/// The firmware for a guest: a secure-boot image when `secure` (Windows 11) and the host
/// has one, else a plain one.
pub fn choose(root: &HostRoot, ovmf: &[String], secure: bool) -> Option<Firmware> {
    let is_secure = |c: &String| c.contains("secboot") || c.contains("secure") || c.contains(".ms.");
    let mut codes: Vec<&String> = ovmf.iter().filter(|c| c.contains("CODE") || c.ends_with("code.bin")).collect();
    codes.sort_by_key(|c| (is_secure(c) != secure, !c.contains("4M") && !c.contains("4m")));
    let code = codes.first()?;
    let vars = vars_candidates(code).into_iter().find(|v| root.path(v).is_file());
    Some(Firmware { code: code.to_string(), vars, secure: secure && is_secure(code) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_code_and_vars() {
        let d = tempfile::tempdir().unwrap();
        let r = HostRoot::new(d.path());
        let files = [
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
            "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
        ];
        for f in files {
            std::fs::create_dir_all(r.path(f).parent().unwrap()).unwrap();
            std::fs::write(r.path(f), "").unwrap();
        }
        let ovmf: Vec<String> = files.iter().filter(|f| f.contains("CODE")).map(|s| s.to_string()).collect();
        let plain = choose(&r, &ovmf, false).unwrap();
        assert_eq!(plain.code, "/usr/share/OVMF/OVMF_CODE_4M.fd");
        assert_eq!(plain.vars.as_deref(), Some("/usr/share/OVMF/OVMF_VARS_4M.fd"));
        let secure = choose(&r, &ovmf, true).unwrap();
        assert!(secure.secure);
        assert_eq!(secure.vars.as_deref(), Some("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"));
        assert!(choose(&r, &[], false).is_none());
        assert!(vars_candidates("/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd")
            .contains(&"/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd".to_string()));
    }
}
