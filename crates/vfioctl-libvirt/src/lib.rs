//! # vfioctl-libvirt: libvirt's C library, opened only when a command needs it
//!
//! The dozen libvirt calls vfioctl makes (connect, versions, domain capabilities, a domain's
//! XML, define, undefine), with `libvirt.so.0` opened at run time by `dlopen` the first time
//! one is made, instead of linked into the binary.
//!
//! Linking libvirt made every run of vfioctl pay for it: the dynamic loader mapped and
//! relocated libvirt and the fifty-odd libraries it pulls in before `main`, about 25 ms and
//! 15 MiB, for `vfioctl list` as much as for `vfioctl domain --define`. Opened at run time,
//! only the commands that talk to libvirt load it, vfioctl builds without libvirt's
//! development files, and a host without libvirt's client library gets an error that says
//! so instead of a binary that does not start.
//!
//! This is the only crate of the workspace with `unsafe` code: the C calls and the symbol
//! lookup. Each `unsafe` block says why it is sound. Everything above it is safe Rust:
//! [`Connect`] and [`Domain`] free what libvirt allocated when they are dropped.
//!
//! `VFIOCTL_LIBVIRT_LIBRARY` names another library file to open (a path or a soname), for
//! a libvirt installed outside the loader's path and for tests.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};
use std::fmt;
use std::ptr::NonNull;
use std::sync::OnceLock;

/// The library opened unless `VFIOCTL_LIBVIRT_LIBRARY` names another.
pub const LIBRARY: &str = "libvirt.so.0";

/// The environment variable naming another library file to open.
pub const LIBRARY_ENV: &str = "VFIOCTL_LIBVIRT_LIBRARY";

/// libvirt's error codes (`virErrorNumber`) vfioctl tells apart.
pub mod code {
    /// `VIR_ERR_NO_SUPPORT`: the driver does not do this.
    pub const NO_SUPPORT: i32 = 3;
    /// `VIR_ERR_NO_CONNECT`: no connection to the hypervisor.
    pub const NO_CONNECT: i32 = 5;
    /// `VIR_ERR_INVALID_CONN`: the connection is not valid (any more).
    pub const INVALID_CONN: i32 = 6;
    /// `VIR_ERR_INVALID_ARG`: an argument (a flag) the driver refuses.
    pub const INVALID_ARG: i32 = 8;
    /// `VIR_ERR_RPC`: the daemon could not be talked to.
    pub const RPC: i32 = 39;
    /// `VIR_ERR_NO_DOMAIN`: no such domain.
    pub const NO_DOMAIN: i32 = 42;
}

/// Flags of the calls (`libvirt-domain.h`).
pub mod flags {
    /// `VIR_DOMAIN_XML_INACTIVE`: the persistent definition, not the running one.
    pub const XML_INACTIVE: u32 = 1 << 1;
    /// `VIR_DOMAIN_DEFINE_VALIDATE`: check the XML against libvirt's schema.
    pub const DEFINE_VALIDATE: u32 = 1 << 0;
    /// `VIR_DOMAIN_UNDEFINE_KEEP_NVRAM`: keep the UEFI variable store.
    pub const UNDEFINE_KEEP_NVRAM: u32 = 1 << 3;
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The library could not be opened, or lacks a function vfioctl calls.
    Load {
        /// The library file asked for.
        library: String,
        /// The loader's message (`dlerror`).
        message: String,
    },
    /// A call failed: libvirt's error code (`virErrorNumber`, 0 when it gave none) and its
    /// message.
    Call {
        /// libvirt's `virErrorNumber`.
        code: i32,
        /// libvirt's message, as it gave it.
        message: String,
    },
}

impl Error {
    /// libvirt's error code, when a call failed.
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Call { code, .. } => Some(*code),
            Error::Load { .. } => None,
        }
    }

    /// The message: libvirt's, or the loader's.
    pub fn message(&self) -> &str {
        match self {
            Error::Call { message, .. } | Error::Load { message, .. } => message,
        }
    }

    fn nul(what: &str) -> Error {
        Error::Call { code: code::INVALID_ARG, message: format!("the {what} contains a NUL byte") }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Load { library, message } => write!(f, "cannot open libvirt's library {library}: {message}"),
            Error::Call { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// The leading fields of `virError`, the only ones read.
#[repr(C)]
struct RawError {
    code: c_int,
    domain: c_int,
    message: *const c_char,
}

type Ptr = *mut c_void;
type ErrorFunc = unsafe extern "C" fn(Ptr, *const RawError);

/// The functions, looked up once.
struct Api {
    connect_open: unsafe extern "C" fn(*const c_char) -> Ptr,
    connect_close: unsafe extern "C" fn(Ptr) -> c_int,
    lib_version: unsafe extern "C" fn(Ptr, *mut c_ulong) -> c_int,
    hyp_version: unsafe extern "C" fn(Ptr, *mut c_ulong) -> c_int,
    domain_capabilities:
        unsafe extern "C" fn(Ptr, *const c_char, *const c_char, *const c_char, *const c_char, c_uint) -> *mut c_char,
    lookup_by_name: unsafe extern "C" fn(Ptr, *const c_char) -> Ptr,
    xml_desc: unsafe extern "C" fn(Ptr, c_uint) -> *mut c_char,
    define_xml_flags: unsafe extern "C" fn(Ptr, *const c_char, c_uint) -> Ptr,
    domain_name: unsafe extern "C" fn(Ptr) -> *const c_char,
    uuid_string: unsafe extern "C" fn(Ptr, *mut c_char) -> c_int,
    undefine_flags: unsafe extern "C" fn(Ptr, c_uint) -> c_int,
    undefine: unsafe extern "C" fn(Ptr) -> c_int,
    domain_free: unsafe extern "C" fn(Ptr) -> c_int,
    last_error: unsafe extern "C" fn() -> *const RawError,
    reset_last_error: unsafe extern "C" fn(),
    set_error_func: unsafe extern "C" fn(Ptr, Option<ErrorFunc>),
}

type Initialize = unsafe extern "C" fn() -> c_int;

/// libvirt calls this instead of printing its errors to stderr: they come back in [`Error`].
unsafe extern "C" fn quiet(_: Ptr, _: *const RawError) {}

fn dlerror() -> String {
    // SAFETY: dlerror takes no arguments; it returns NULL or a NUL-terminated string that
    // stays valid until the next dl* call on this thread, and it is copied at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: non-NULL, NUL-terminated (see above).
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// The library asked for: `VFIOCTL_LIBVIRT_LIBRARY` when set, else [`LIBRARY`].
pub fn library() -> String {
    std::env::var(LIBRARY_ENV).ok().filter(|l| !l.is_empty()).unwrap_or_else(|| LIBRARY.to_string())
}

fn open_library(library: &str) -> Result<Api, Error> {
    let load = |message: String| Error::Load { library: library.to_string(), message };
    let name = CString::new(library).map_err(|_| load("the name contains a NUL byte".into()))?;
    // SAFETY: `name` is a valid C string. Opening a library runs its constructors;
    // libvirt's only initialise its own state. The handle is never closed, so the
    // functions looked up below stay valid for the life of the process.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(load(dlerror()));
    }
    macro_rules! sym {
        ($name:literal, $ty:ty) => {{
            // SAFETY: `handle` is an open library and the name a NUL-terminated literal.
            let p = unsafe { libc::dlsym(handle, concat!($name, "\0").as_ptr().cast()) };
            if p.is_null() {
                return Err(load(format!("it has no function {}: {}", $name, dlerror())));
            }
            // SAFETY: the symbol is libvirt's public function of that name, whose C
            // signature (libvirt-host.h, libvirt-domain.h, virterror.h; stable since
            // libvirt 1.2.12, the newest of them) is the field's type; a function pointer
            // has the size of a data pointer on every platform libvirt supports.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }};
    }
    let initialize = sym!("virInitialize", Initialize);
    // SAFETY: takes nothing; sets up libvirt's global and per-thread state (its error
    // storage among them), which every other call, virResetLastError too, needs.
    if unsafe { initialize() } < 0 {
        return Err(load("virInitialize failed".into()));
    }
    let api = Api {
        connect_open: sym!("virConnectOpen", unsafe extern "C" fn(*const c_char) -> Ptr),
        connect_close: sym!("virConnectClose", unsafe extern "C" fn(Ptr) -> c_int),
        lib_version: sym!("virConnectGetLibVersion", unsafe extern "C" fn(Ptr, *mut c_ulong) -> c_int),
        hyp_version: sym!("virConnectGetVersion", unsafe extern "C" fn(Ptr, *mut c_ulong) -> c_int),
        domain_capabilities: sym!(
            "virConnectGetDomainCapabilities",
            unsafe extern "C" fn(
                Ptr,
                *const c_char,
                *const c_char,
                *const c_char,
                *const c_char,
                c_uint,
            ) -> *mut c_char
        ),
        lookup_by_name: sym!("virDomainLookupByName", unsafe extern "C" fn(Ptr, *const c_char) -> Ptr),
        xml_desc: sym!("virDomainGetXMLDesc", unsafe extern "C" fn(Ptr, c_uint) -> *mut c_char),
        define_xml_flags: sym!("virDomainDefineXMLFlags", unsafe extern "C" fn(Ptr, *const c_char, c_uint) -> Ptr),
        domain_name: sym!("virDomainGetName", unsafe extern "C" fn(Ptr) -> *const c_char),
        uuid_string: sym!("virDomainGetUUIDString", unsafe extern "C" fn(Ptr, *mut c_char) -> c_int),
        undefine_flags: sym!("virDomainUndefineFlags", unsafe extern "C" fn(Ptr, c_uint) -> c_int),
        undefine: sym!("virDomainUndefine", unsafe extern "C" fn(Ptr) -> c_int),
        domain_free: sym!("virDomainFree", unsafe extern "C" fn(Ptr) -> c_int),
        last_error: sym!("virGetLastError", unsafe extern "C" fn() -> *const RawError),
        reset_last_error: sym!("virResetLastError", unsafe extern "C" fn()),
        set_error_func: sym!("virSetErrorFunc", unsafe extern "C" fn(Ptr, Option<ErrorFunc>)),
    };
    // SAFETY: a NULL user pointer and a handler that reads nothing.
    unsafe { (api.set_error_func)(std::ptr::null_mut(), Some(quiet)) };
    Ok(api)
}

/// The library, opened the first time it is asked for; the same answer after.
fn api() -> Result<&'static Api, Error> {
    static API: OnceLock<Result<Api, Error>> = OnceLock::new();
    API.get_or_init(|| open_library(&library())).as_ref().map_err(Clone::clone)
}

/// Whether the library can be opened (opens it).
pub fn available() -> Result<(), Error> {
    api().map(|_| ())
}

impl Api {
    /// The error of the call that just failed on this thread.
    fn error(&self) -> Error {
        // SAFETY: virGetLastError returns NULL or this thread's last error, valid until
        // the next libvirt call on this thread; its fields are copied at once.
        let e = unsafe { (self.last_error)() };
        if e.is_null() {
            return Error::Call { code: 0, message: "libvirt reported a failure without an error".into() };
        }
        // SAFETY: non-NULL, points to a virError, whose first fields RawError declares.
        let (code, message) = unsafe { ((*e).code, (*e).message) };
        let message = if message.is_null() {
            format!("libvirt error {code} without a message")
        } else {
            // SAFETY: a NUL-terminated string owned by the error, copied at once.
            unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
        };
        Error::Call { code, message }
    }

    fn reset(&self) {
        // SAFETY: takes nothing; clears this thread's last error.
        unsafe { (self.reset_last_error)() }
    }

    /// Takes a string libvirt allocated for the caller: copies it and frees it.
    fn owned(&self, s: *mut c_char) -> Result<String, Error> {
        if s.is_null() {
            return Err(self.error());
        }
        // SAFETY: non-NULL, a NUL-terminated string libvirt allocated with malloc for the
        // caller to free; copied before it is freed, and freed once.
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        // SAFETY: see above.
        unsafe { libc::free(s.cast()) };
        Ok(text)
    }
}

fn cstring(s: &str, what: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::nul(what))
}

/// A connection to libvirt (`virConnectPtr`), closed when dropped.
pub struct Connect {
    api: &'static Api,
    ptr: NonNull<c_void>,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect").field("ptr", &self.ptr).finish()
    }
}

impl Connect {
    /// Connects to `uri` read-write (`virConnectOpen`; `""` is libvirt's default URI).
    /// Opens the library the first time.
    pub fn open(uri: &str) -> Result<Connect, Error> {
        let api = api()?;
        let uri = cstring(uri, "URI")?;
        api.reset();
        // SAFETY: a valid C string; returns NULL or a connection the caller owns.
        let ptr = unsafe { (api.connect_open)(uri.as_ptr()) };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Connect { api, ptr }),
            None => Err(api.error()),
        }
    }

    // c_ulong is u64 only on 64-bit targets.
    #[allow(clippy::useless_conversion)]
    fn version(&self, f: unsafe extern "C" fn(Ptr, *mut c_ulong) -> c_int) -> Result<u64, Error> {
        let mut v: c_ulong = 0;
        self.api.reset();
        // SAFETY: an open connection and a pointer to a c_ulong that outlives the call.
        let rc = unsafe { f(self.ptr.as_ptr(), &mut v) };
        if rc < 0 {
            Err(self.api.error())
        } else {
            Ok(u64::from(v))
        }
    }

    /// The libvirt the connection talks to (`virConnectGetLibVersion`), encoded as
    /// major * 1,000,000 + minor * 1,000 + release.
    pub fn lib_version(&self) -> Result<u64, Error> {
        self.version(self.api.lib_version)
    }

    /// The hypervisor's version (`virConnectGetVersion`), encoded alike; 0 when unknown.
    pub fn hyp_version(&self) -> Result<u64, Error> {
        self.version(self.api.hyp_version)
    }

    /// The domain capabilities XML (`virConnectGetDomainCapabilities`).
    pub fn domain_capabilities(
        &self,
        emulator: Option<&str>,
        arch: Option<&str>,
        machine: Option<&str>,
        virttype: Option<&str>,
    ) -> Result<String, Error> {
        let c = |s: Option<&str>, what| s.map(|s| cstring(s, what)).transpose();
        let (emulator, arch, machine, virttype) =
            (c(emulator, "emulator")?, c(arch, "arch")?, c(machine, "machine")?, c(virttype, "virttype")?);
        let p = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        self.api.reset();
        // SAFETY: an open connection and C strings (or NULL, which libvirt takes for
        // "the default") that outlive the call; returns NULL or a string to free.
        let xml = unsafe {
            (self.api.domain_capabilities)(self.ptr.as_ptr(), p(&emulator), p(&arch), p(&machine), p(&virttype), 0)
        };
        self.api.owned(xml)
    }

    /// The domain of that name (`virDomainLookupByName`).
    pub fn lookup_domain_by_name(&self, name: &str) -> Result<Domain<'_>, Error> {
        let name = cstring(name, "domain name")?;
        self.api.reset();
        // SAFETY: an open connection and a valid C string; returns NULL or a domain the
        // caller owns.
        let ptr = unsafe { (self.api.lookup_by_name)(self.ptr.as_ptr(), name.as_ptr()) };
        self.domain(ptr)
    }

    /// Defines a domain from its XML (`virDomainDefineXMLFlags`).
    pub fn define_domain_xml_flags(&self, xml: &str, flags: u32) -> Result<Domain<'_>, Error> {
        let xml = cstring(xml, "domain XML")?;
        self.api.reset();
        // SAFETY: an open connection and a valid C string; returns NULL or a domain the
        // caller owns.
        let ptr = unsafe { (self.api.define_xml_flags)(self.ptr.as_ptr(), xml.as_ptr(), flags) };
        self.domain(ptr)
    }

    fn domain(&self, ptr: Ptr) -> Result<Domain<'_>, Error> {
        match NonNull::new(ptr) {
            Some(ptr) => Ok(Domain { conn: self, ptr }),
            None => Err(self.api.error()),
        }
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        // SAFETY: the connection is open and owned by this value, closed once. A failure
        // to close leaves nothing to do.
        unsafe { (self.api.connect_close)(self.ptr.as_ptr()) };
    }
}

/// A domain (`virDomainPtr`) of a connection, freed when dropped.
pub struct Domain<'c> {
    conn: &'c Connect,
    ptr: NonNull<c_void>,
}

impl fmt::Debug for Domain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Domain").field("ptr", &self.ptr).finish()
    }
}

impl Domain<'_> {
    fn api(&self) -> &'static Api {
        self.conn.api
    }

    /// The domain's XML (`virDomainGetXMLDesc`).
    pub fn xml_desc(&self, flags: u32) -> Result<String, Error> {
        self.api().reset();
        // SAFETY: a live domain; returns NULL or a string to free.
        let xml = unsafe { (self.api().xml_desc)(self.ptr.as_ptr(), flags) };
        self.api().owned(xml)
    }

    /// The domain's name (`virDomainGetName`).
    pub fn name(&self) -> Result<String, Error> {
        self.api().reset();
        // SAFETY: a live domain; returns NULL or a string the domain owns, copied at once.
        let name = unsafe { (self.api().domain_name)(self.ptr.as_ptr()) };
        if name.is_null() {
            return Err(self.api().error());
        }
        // SAFETY: non-NULL, NUL-terminated, valid while the domain lives.
        Ok(unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned())
    }

    /// The domain's UUID as text (`virDomainGetUUIDString`).
    pub fn uuid_string(&self) -> Result<String, Error> {
        // VIR_UUID_STRING_BUFLEN: 36 characters and the NUL.
        let mut buf: [c_char; 37] = [0; 37];
        self.api().reset();
        // SAFETY: a live domain and a buffer of VIR_UUID_STRING_BUFLEN bytes.
        let rc = unsafe { (self.api().uuid_string)(self.ptr.as_ptr(), buf.as_mut_ptr()) };
        if rc < 0 {
            return Err(self.api().error());
        }
        let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Removes the definition (`virDomainUndefineFlags`).
    pub fn undefine_flags(&self, flags: u32) -> Result<(), Error> {
        self.api().reset();
        // SAFETY: a live domain.
        let rc = unsafe { (self.api().undefine_flags)(self.ptr.as_ptr(), flags) };
        if rc < 0 {
            Err(self.api().error())
        } else {
            Ok(())
        }
    }

    /// Removes the definition (`virDomainUndefine`).
    pub fn undefine(&self) -> Result<(), Error> {
        self.api().reset();
        // SAFETY: a live domain.
        let rc = unsafe { (self.api().undefine)(self.ptr.as_ptr()) };
        if rc < 0 {
            Err(self.api().error())
        } else {
            Ok(())
        }
    }
}

impl Drop for Domain<'_> {
    fn drop(&mut self) {
        // SAFETY: the domain is owned by this value and freed once, before its connection
        // (the borrow keeps the connection alive).
        unsafe { (self.api().domain_free)(self.ptr.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_load_error_naming_it() {
        let e = open_library("/nonexistent/libvirt.so.0").err().unwrap();
        let Error::Load { library, message } = &e else { panic!("{e:?}") };
        assert_eq!(library, "/nonexistent/libvirt.so.0");
        assert!(message.contains("/nonexistent/libvirt.so.0"), "{message}");
        assert!(e.to_string().starts_with("cannot open libvirt's library /nonexistent/libvirt.so.0: "), "{e}");
        assert_eq!(e.code(), None);
        // A library that is not libvirt: the first function it lacks is named.
        let e = open_library("libc.so.6").err().unwrap();
        assert!(e.message().contains("has no function virInitialize"), "{e}");
    }

    #[test]
    fn the_test_driver_answers() {
        if let Err(e) = available() {
            eprintln!("skipped: {e}");
            return;
        }
        let c = Connect::open("test:///default").unwrap();
        assert!(c.lib_version().unwrap() >= 1_000_000);
        let d = c.lookup_domain_by_name("test").unwrap();
        assert_eq!(d.name().unwrap(), "test");
        assert_eq!(d.uuid_string().unwrap().len(), 36);
        assert!(d.xml_desc(flags::XML_INACTIVE).unwrap().contains("<name>test</name>"));
        let e = c.lookup_domain_by_name("no-such-domain").unwrap_err();
        assert_eq!(e.code(), Some(code::NO_DOMAIN), "{e:?}");
        assert_eq!(c.lookup_domain_by_name("a\0b").unwrap_err().code(), Some(code::INVALID_ARG));
        let e = Connect::open("qemu+unix:///system?socket=/nonexistent/sock").unwrap_err();
        assert!(e.message().contains("/nonexistent/sock"), "{e}");
    }
}
