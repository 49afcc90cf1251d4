//! # libvirt: the running libvirtd
//!
//! A connection to libvirt ([`Libvirt::open`] with a URI such as `qemu:///system`) and the
//! few calls vfioctl makes through it: the libvirt and QEMU versions, the domain
//! capabilities for a q35 KVM guest (read with `vfioctl_core::domain::caps::parse`), a
//! domain's inactive XML, defining and undefining a domain.
//!
//! The calls go through libvirt's C library, opened at run time the first time a command
//! connects (`vfioctl-libvirt`): commands that do not talk to libvirt never load it, and a
//! host without the library gets [`LibvirtError::Unavailable`], which says what to install.
//!
//! Errors carry the URI and libvirt's own message text, unchanged, so what libvirt said
//! reaches the user; [`LibvirtError::remedy`] says what to do about it.

/// libvirt's version and the hypervisor's, each (major, minor, release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// The libvirt the connection talks to (`virConnectGetLibVersion`: the daemon's, for a
    /// remote or daemon URI).
    pub libvirt: (u32, u32, u32),
    /// The hypervisor's (`virConnectGetVersion`: QEMU's for `qemu://`); `None` when the
    /// driver does not say.
    pub hypervisor: Option<(u32, u32, u32)>,
}

/// The virtualization type domain capabilities were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtType {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's emulation (TCG): what libvirt still answers for when KVM is unusable.
    Qemu,
}

impl VirtType {
    /// The name libvirt uses (`kvm`, `qemu`).
    pub fn as_str(self) -> &'static str {
        match self {
            VirtType::Kvm => "kvm",
            VirtType::Qemu => "qemu",
        }
    }
}

/// The domain capabilities XML as libvirt wrote it, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCapsXml {
    pub xml: String,
    pub virttype: VirtType,
    /// When libvirt refused `kvm` and these are the `qemu` (emulation) capabilities: its
    /// message for `kvm`.
    pub kvm_refused: Option<String>,
}

/// A domain libvirt has defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defined {
    pub name: String,
    pub uuid: String,
}

/// What went wrong talking to libvirt. `message` is libvirt's own text, unchanged (but for
/// trailing whitespace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibvirtError {
    /// No connection: libvirtd not running, a wrong URI, no permission on its socket.
    #[error("cannot connect to libvirt at {uri}: {message}")]
    Connect { uri: String, message: String },
    /// No domain of that name.
    #[error("libvirt at {uri} has no domain named '{name}'")]
    NoDomain { name: String, uri: String },
    /// libvirt refused to define the domain (invalid XML, a name taken, an unsupported
    /// device or machine type…).
    #[error("libvirt at {uri} refused to define {}: {message}", domain_name(.name))]
    Refused { uri: String, name: Option<String>, message: String },
    /// No domain capabilities, for `kvm` nor for `qemu`.
    #[error("libvirt at {uri} gave no domain capabilities for x86_64 q35: {message}")]
    Capabilities { uri: String, message: String },
    /// Any other call that failed: which one, and libvirt's message.
    #[error("libvirt at {uri}: {call} failed: {message}")]
    Call { uri: String, call: &'static str, message: String },
    /// libvirt's client library could not be opened (not installed, or not libvirt).
    #[error("cannot use libvirt: cannot open its library {library}: {message}")]
    Unavailable { library: String, message: String },
}

fn domain_name(name: &Option<String>) -> String {
    match name {
        Some(n) => format!("domain '{n}'"),
        None => "the domain".to_string(),
    }
}

impl LibvirtError {
    /// What the user can do about it (lines; the CLI prints them under `fix:`).
    pub fn remedy(&self) -> Option<String> {
        match self {
            LibvirtError::Connect { uri, message } => {
                let m = message.to_ascii_lowercase();
                let denied = ["permission denied", "access denied", "authentication", "authorization", "polkit"]
                    .iter()
                    .any(|w| m.contains(w));
                let mut lines = Vec::new();
                if denied {
                    lines.push(
                        "qemu:///system needs root or membership of the libvirt group: \
                         `sudo usermod -aG libvirt $USER`, then log in again"
                            .to_string(),
                    );
                } else {
                    lines.push(
                        "start libvirt: `sudo systemctl enable --now libvirtd` \
                         (or virtqemud.socket where libvirt runs as modular daemons)"
                            .to_string(),
                    );
                    lines.push(
                        "if it runs, the URI may be wrong or its socket unreadable: qemu:///system needs root \
                         or the libvirt group"
                            .to_string(),
                    );
                }
                lines.push(format!(
                    "check the URI given with --connect ({uri}); `virsh -c '{uri}' version` must answer"
                ));
                Some(lines.join("\n"))
            }
            LibvirtError::NoDomain { uri, .. } => {
                Some(format!("see the defined domains with `virsh -c '{uri}' list --all`"))
            }
            LibvirtError::Refused { uri, name, message } => {
                let m = message.to_ascii_lowercase();
                if m.contains("already exists") {
                    let n = name.as_deref().unwrap_or("NAME");
                    Some(format!(
                        "choose another --name, or remove the old domain first: `virsh -c '{uri}' undefine --keep-nvram {n}`"
                    ))
                } else if m.contains("schema") {
                    Some("the XML does not match libvirt's schema: `virt-xml-validate FILE domain` shows where".into())
                } else {
                    Some(
                        "change what libvirt names above, or write the XML with --out and define it by hand \
                         (`virsh define --validate FILE`)"
                            .into(),
                    )
                }
            }
            LibvirtError::Capabilities { .. } => Some(
                "check that QEMU for x86_64 is installed (qemu-system-x86) and that libvirt knows it: \
                 `virsh domcapabilities --machine q35 --arch x86_64`"
                    .into(),
            ),
            LibvirtError::Call { .. } => None,
            LibvirtError::Unavailable { .. } => Some(format!(
                "install libvirt's client library (Debian and Ubuntu: libvirt0; Fedora and RHEL: libvirt-libs; \
                 Arch: libvirt), or name the file in {}=/path/to/libvirt.so.0",
                vfioctl_libvirt::LIBRARY_ENV
            )),
        }
    }
}

/// A connection to libvirt.
#[derive(Debug)]
pub struct Libvirt {
    uri: String,
    conn: vfioctl_libvirt::Connect,
}

impl Libvirt {
    /// Connects to `uri` (e.g. `qemu:///system`; `""` is libvirt's default URI), read-write.
    /// Libvirt's default error printing to stderr is turned off: its messages come back in
    /// the errors.
    pub fn open(uri: &str) -> Result<Self, LibvirtError> {
        backend::open(uri)
    }

    /// The URI this connection was asked for.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// libvirt's version and QEMU's.
    pub fn versions(&self) -> Result<Versions, LibvirtError> {
        backend::versions(self)
    }

    /// The domain capabilities for an x86_64 q35 guest under KVM, of `emulator` (the
    /// default QEMU when `None`). When libvirt refuses `kvm` (no usable /dev/kvm), those
    /// for `qemu` (emulation), with libvirt's reason in [`DomainCapsXml::kvm_refused`].
    pub fn domain_capabilities(&self, emulator: Option<&str>) -> Result<DomainCapsXml, LibvirtError> {
        backend::domain_capabilities(self, emulator)
    }

    /// The inactive (persistent) definition of a domain, as `virsh dumpxml --inactive`
    /// gives it. [`LibvirtError::NoDomain`] when there is none of that name.
    pub fn domain_xml(&self, name: &str) -> Result<String, LibvirtError> {
        backend::domain_xml(self, name)
    }

    /// Defines (does not start) a domain, validating the XML against libvirt's schema as
    /// `virsh define --validate` does. A domain of the same name and UUID is replaced; the
    /// same name without a UUID (or with another) is refused. Refusals are
    /// [`LibvirtError::Refused`] with libvirt's message.
    pub fn define(&self, xml: &str) -> Result<Defined, LibvirtError> {
        backend::define(self, xml)
    }

    /// Removes a domain's definition, keeping its NVRAM file (`virsh undefine
    /// --keep-nvram`); a running domain keeps running, as a transient one.
    pub fn undefine(&self, name: &str) -> Result<(), LibvirtError> {
        backend::undefine(self, name)
    }
}

/// A version number as libvirt encodes it: major * 1,000,000 + minor * 1,000 + release.
pub fn split_version(v: u64) -> (u32, u32, u32) {
    let part = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
    (part(v / 1_000_000), part(v / 1_000 % 1_000), part(v % 1_000))
}

/// The `<name>` of a domain XML, for error messages; `None` when it cannot be told.
fn name_of(xml: &str) -> Option<String> {
    let doc = vfioctl_core::xml::parse(xml).ok()?;
    doc.root.child("name").map(|n| n.text()).filter(|n| !n.is_empty())
}

mod backend {
    use vfioctl_libvirt::{code, flags, Connect, Domain, Error};

    use super::{name_of, split_version, Defined, DomainCapsXml, Libvirt, LibvirtError, Versions, VirtType};

    fn message(e: &Error) -> String {
        e.message().trim_end().to_string()
    }

    fn call(lv: &Libvirt, call: &'static str, e: &Error) -> LibvirtError {
        LibvirtError::Call { uri: lv.uri.clone(), call, message: message(e) }
    }

    pub(super) fn open(uri: &str) -> Result<Libvirt, LibvirtError> {
        if uri.contains('\0') {
            return Err(LibvirtError::Connect {
                uri: uri.escape_debug().to_string(),
                message: "the URI contains a NUL byte".into(),
            });
        }
        match Connect::open(uri) {
            Ok(conn) => Ok(Libvirt { uri: uri.to_string(), conn }),
            Err(Error::Load { library, message }) => Err(LibvirtError::Unavailable { library, message }),
            Err(e) => Err(LibvirtError::Connect { uri: uri.to_string(), message: message(&e) }),
        }
    }

    pub(super) fn versions(lv: &Libvirt) -> Result<Versions, LibvirtError> {
        let libvirt = lv.conn.lib_version().map_err(|e| call(lv, "virConnectGetLibVersion", &e))?;
        let hypervisor = match lv.conn.hyp_version() {
            Ok(0) => None,
            Ok(v) => Some(split_version(v)),
            Err(e) if e.code() == Some(code::NO_SUPPORT) => None,
            Err(e) => return Err(call(lv, "virConnectGetVersion", &e)),
        };
        Ok(Versions { libvirt: split_version(libvirt), hypervisor })
    }

    pub(super) fn domain_capabilities(lv: &Libvirt, emulator: Option<&str>) -> Result<DomainCapsXml, LibvirtError> {
        if emulator.is_some_and(|e| e.contains('\0')) {
            return Err(LibvirtError::Capabilities {
                uri: lv.uri.clone(),
                message: "the emulator path contains a NUL byte".into(),
            });
        }
        let get = |virttype: VirtType| {
            lv.conn.domain_capabilities(emulator, Some("x86_64"), Some("q35"), Some(virttype.as_str()))
        };
        let kvm = match get(VirtType::Kvm) {
            Ok(xml) => return Ok(DomainCapsXml { xml, virttype: VirtType::Kvm, kvm_refused: None }),
            Err(e) => message(&e),
        };
        match get(VirtType::Qemu) {
            Ok(xml) => Ok(DomainCapsXml { xml, virttype: VirtType::Qemu, kvm_refused: Some(kvm) }),
            Err(e) => {
                let qemu = message(&e);
                let message = if qemu == kvm { kvm } else { format!("kvm: {kvm}; qemu: {qemu}") };
                Err(LibvirtError::Capabilities { uri: lv.uri.clone(), message })
            }
        }
    }

    fn lookup<'a>(lv: &'a Libvirt, name: &str) -> Result<Domain<'a>, LibvirtError> {
        lv.conn.lookup_domain_by_name(name).map_err(|e| {
            if e.code() == Some(code::NO_DOMAIN) {
                LibvirtError::NoDomain { name: name.to_string(), uri: lv.uri.clone() }
            } else {
                call(lv, "virDomainLookupByName", &e)
            }
        })
    }

    pub(super) fn domain_xml(lv: &Libvirt, name: &str) -> Result<String, LibvirtError> {
        let dom = lookup(lv, name)?;
        dom.xml_desc(flags::XML_INACTIVE).map_err(|e| call(lv, "virDomainGetXMLDesc", &e))
    }

    pub(super) fn define(lv: &Libvirt, xml: &str) -> Result<Defined, LibvirtError> {
        let dom = lv.conn.define_domain_xml_flags(xml, flags::DEFINE_VALIDATE).map_err(|e| {
            // A lost connection is not a refusal of the domain.
            if e.code().is_some_and(|c| [code::NO_CONNECT, code::INVALID_CONN, code::RPC].contains(&c)) {
                call(lv, "virDomainDefineXMLFlags", &e)
            } else {
                LibvirtError::Refused { uri: lv.uri.clone(), name: name_of(xml), message: message(&e) }
            }
        })?;
        let name = dom.name().map_err(|e| call(lv, "virDomainGetName", &e))?;
        let uuid = dom.uuid_string().map_err(|e| call(lv, "virDomainGetUUIDString", &e))?;
        Ok(Defined { name, uuid })
    }

    pub(super) fn undefine(lv: &Libvirt, name: &str) -> Result<(), LibvirtError> {
        let dom = lookup(lv, name)?;
        match dom.undefine_flags(flags::UNDEFINE_KEEP_NVRAM) {
            Ok(()) => Ok(()),
            // Drivers without NVRAM (the test driver) refuse the flag: without it then.
            Err(e) if e.code() == Some(code::INVALID_ARG) => {
                dom.undefine().map_err(|e| call(lv, "virDomainUndefine", &e))
            }
            Err(e) => Err(call(lv, "virDomainUndefineFlags", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_split_and_errors_say_what_to_do() {
        assert_eq!(split_version(9_000_000), (9, 0, 0));
        assert_eq!(split_version(7_002_022), (7, 2, 22));
        assert_eq!(name_of("<domain><name> w1 </name></domain>").as_deref(), Some("w1"));
        assert_eq!(name_of("<domain>"), None);
        let e = LibvirtError::Connect { uri: "qemu:///system".into(), message: "Failed to connect socket".into() };
        assert!(e
            .remedy()
            .is_some_and(|r| r.contains("systemctl enable --now libvirtd") && r.contains("qemu:///system")));
        let e = LibvirtError::Connect { uri: "qemu:///system".into(), message: "Permission denied".into() };
        assert!(e.remedy().is_some_and(|r| r.contains("libvirt group")));
        let e = LibvirtError::Refused {
            uri: "qemu:///system".into(),
            name: Some("w1".into()),
            message: "operation failed: domain 'w1' already exists with uuid 1234".into(),
        };
        assert_eq!(
            e.to_string(),
            "libvirt at qemu:///system refused to define domain 'w1': operation failed: domain 'w1' already exists with uuid 1234"
        );
        assert!(e.remedy().is_some_and(|r| r.contains("undefine --keep-nvram w1")));
        let e = LibvirtError::Unavailable { library: "libvirt.so.0".into(), message: "not found".into() };
        assert!(e.remedy().is_some_and(|r| r.contains("libvirt0") && r.contains("VFIOCTL_LIBVIRT_LIBRARY")));
    }
}

/// Tests against a real libvirt: the built-in `test:///default` driver always, and
/// `qemu:///system` when a libvirtd answers there (else they print "skipped").
#[cfg(test)]
mod live_tests {
    use std::process::Command;
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    const SYSTEM: &str = "qemu:///system";

    fn system_answers() -> bool {
        let ok = Command::new("timeout")
            .args(["30", "virsh", "-c", SYSTEM, "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipped: `virsh -c {SYSTEM} version` does not answer");
        }
        ok
    }

    fn unique(prefix: &str) -> String {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        format!("{prefix}-{}-{nanos}", std::process::id())
    }

    fn minimal(name: &str, machine: &str, extra: &str) -> String {
        format!(
            "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='KiB'>65536</memory>\n  <vcpu>1</vcpu>\n  \
             <os>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n  </os>{extra}\n</domain>\n"
        )
    }

    /// Undefines the domain when dropped, so a failed assertion leaves nothing behind.
    struct Cleanup<'a>(&'a Libvirt, String);

    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            match self.0.undefine(&self.1) {
                Ok(()) | Err(LibvirtError::NoDomain { .. }) => {}
                Err(e) => eprintln!("cleanup of {}: {e}", self.1),
            }
        }
    }

    /// What `virsh define --validate` prints for the same XML.
    fn virsh_define_error(uri: &str, xml: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.xml");
        std::fs::write(&file, xml).unwrap();
        let out = Command::new("virsh").args(["-c", uri, "define", "--validate"]).arg(&file).output().unwrap();
        assert!(!out.status.success(), "virsh accepted it");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn bogus_uri_is_a_connect_error() {
        let uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
        let e = Libvirt::open(uri).unwrap_err();
        match &e {
            LibvirtError::Connect { uri: u, message } => {
                assert_eq!(u, uri);
                assert!(message.contains("/nonexistent/libvirt-sock"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with(&format!("cannot connect to libvirt at {uri}: ")), "{e}");
        assert!(e.remedy().is_some_and(|r| r.contains("libvirtd") && r.contains(uri)));
        assert!(matches!(Libvirt::open("test:///default\0x"), Err(LibvirtError::Connect { .. })));
    }

    #[test]
    fn test_driver_defines_reads_back_and_refuses() {
        let lv = Libvirt::open("test:///default").unwrap();
        assert_eq!(lv.uri(), "test:///default");
        let v = lv.versions().unwrap();
        assert!(v.libvirt >= (1, 0, 0), "{v:?}");
        let name = unique("vfioctl-test");
        let defined = lv.define(&minimal(&name, "pc", "")).unwrap();
        let _cleanup = Cleanup(&lv, name.clone());
        assert_eq!(defined.name, name);
        let xml = lv.domain_xml(&name).unwrap();
        assert!(xml.contains(&format!("<name>{name}</name>")) && xml.contains(&defined.uuid), "{xml}");
        // The same name again, without the UUID: libvirt's refusal, word for word.
        let again = lv.define(&minimal(&name, "pc", "")).unwrap_err();
        assert!(
            matches!(&again, LibvirtError::Refused { name: Some(n), message, .. }
                if *n == name && message.contains("already exists")),
            "{again:?}"
        );
        let missing = lv.domain_xml("vfioctl-no-such-domain").unwrap_err();
        assert_eq!(
            missing,
            LibvirtError::NoDomain { name: "vfioctl-no-such-domain".into(), uri: "test:///default".into() }
        );
        assert!(matches!(lv.undefine("vfioctl-no-such-domain"), Err(LibvirtError::NoDomain { .. })));
        lv.undefine(&name).unwrap();
        assert!(matches!(lv.domain_xml(&name), Err(LibvirtError::NoDomain { .. })));
        // The test driver has no domain capabilities: an error, not a panic.
        assert!(matches!(lv.domain_capabilities(None), Err(LibvirtError::Capabilities { .. })));
    }

    #[test]
    fn qemu_system_round_trip() {
        if !system_answers() {
            return;
        }
        let lv = Libvirt::open(SYSTEM).unwrap();
        let v = lv.versions().unwrap();
        assert!(v.libvirt >= (1, 0, 0) && v.hypervisor.is_some_and(|q| q >= (1, 0, 0)), "{v:?}");

        let caps = lv.domain_capabilities(None).unwrap();
        assert_eq!(caps.kvm_refused.is_some(), caps.virttype == VirtType::Qemu);
        let parsed = vfioctl_core::domain::caps::parse(&caps.xml).unwrap();
        assert_eq!(parsed.virttype.as_deref(), Some(caps.virttype.as_str()));
        assert_eq!(parsed.arch.as_deref(), Some("x86_64"));
        assert!(parsed.machine.as_deref().is_some_and(|m| m.contains("q35")), "{parsed:?}");
        let emulator = parsed.emulator.clone().unwrap();
        assert_eq!(lv.domain_capabilities(Some(&emulator)).unwrap().virttype, caps.virttype);
        assert!(matches!(
            lv.domain_capabilities(Some("/nonexistent/qemu-system-x86_64")),
            Err(LibvirtError::Capabilities { .. })
        ));

        let name = unique("vfioctl-test");
        let defined = lv.define(&minimal(&name, "q35", "")).unwrap();
        let _cleanup = Cleanup(&lv, name.clone());
        assert_eq!(defined.name, name);
        let xml = lv.domain_xml(&name).unwrap();
        assert!(xml.starts_with("<domain type='qemu'>"), "{xml}");
        assert!(xml.contains(&format!("<uuid>{}</uuid>", defined.uuid)), "{xml}");
        assert!(xml.contains("machine='pc-q35-"), "libvirt expands q35: {xml}");
        let virsh = Command::new("virsh").args(["-c", SYSTEM, "dumpxml", "--inactive", &name]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&virsh.stdout).trim_end(), xml.trim_end());

        // Refusals carry libvirt's message, the one virsh prints.
        for (what, bad) in [
            ("unknown machine type", minimal(&unique("vfioctl-bad"), "no-such-machine", "")),
            ("schema", minimal(&unique("vfioctl-bad"), "q35", "\n  <bogus/>")),
        ] {
            let e = lv.define(&bad).unwrap_err();
            let LibvirtError::Refused { uri, message, .. } = &e else { panic!("{what}: {e:?}") };
            assert_eq!(uri, SYSTEM);
            let first = message.lines().next().unwrap();
            assert!(virsh_define_error(SYSTEM, &bad).contains(first), "{what}: {message}");
            assert!(e.remedy().is_some());
        }
        assert!(matches!(lv.domain_xml("vfioctl-no-such-domain"), Err(LibvirtError::NoDomain { .. })));
        lv.undefine(&name).unwrap();
        assert!(matches!(lv.domain_xml(&name), Err(LibvirtError::NoDomain { .. })));
    }
}
