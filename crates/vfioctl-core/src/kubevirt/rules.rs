//! The rules KubeVirt's admission webhook (virt-api's VMI create admitter, KubeVirt 1.9) enforces
//! on the parts of a VM vfioctl writes, and the limits KubeVirt's API documents for them:
//! - Hyper-V: synic needs vpindex, synictimer synic, tlbflush and ipi vpindex, evmcs vapic
//!   and the CPU feature vmx (Intel VT-x; KubeVirt also pins evmcs VMs to Intel nodes);
//!   `hyperv` and `hypervPassthrough` not both (webhooks/hyperv.go);
//! - spinlocks at least 4096 and a vendor id of at most 12 characters (the API's own docs);
//! - the guest's memory at least one hugepage and a whole number of them;
//! - `isolateEmulatorThread` only with `dedicatedCpuPlacement`; with it at most 2 threads per
//!   core, cores (or a CPU request) given, CPU request equal to the limit, the memory given;
//! - EFI secure boot (its default) only with SMM;
//! - every disk on a bus KubeVirt knows and backed by a volume of its name.
//!
//! `vfioctl export kubevirt` checks its own objects with [`validate_rules`] before writing
//! them, so it never writes a VM the cluster would refuse; the tests check them too.
//!
//! Where vfioctl is stricter than the webhook it says so: a requirement must be on in the
//! object itself (the webhook's mutating half would switch on a missing one), and a feature
//! written as `{}` counts as on (KubeVirt's converter turns it on; its validator only
//! counts `enabled: true`).

use serde_json::Value;

/// (feature, the feature it needs) under `features.hyperv`, as KubeVirt's webhook checks
/// them (pkg/virt-api/webhooks/hyperv.go).
pub const HYPERV_REQUIRES: &[(&str, &str)] =
    &[("synic", "vpindex"), ("synictimer", "synic"), ("tlbflush", "vpindex"), ("ipi", "vpindex"), ("evmcs", "vapic")];

/// KubeVirt's API: "Retries … Must be a value greater or equal 4096."
pub const MIN_SPINLOCKS: u64 = 4096;

/// Everything in a `VirtualMachine` (or `VirtualMachineInstance`) KubeVirt would refuse,
/// one message per problem, naming the field; empty when it would be admitted (as far as
/// these rules go).
pub fn validate_rules(obj: &Value) -> Vec<String> {
    let (spec, path) = if obj.get("kind").and_then(Value::as_str) == Some("VirtualMachineInstance") {
        (obj.get("spec"), "spec")
    } else {
        (obj.pointer("/spec/template/spec"), "spec.template.spec")
    };
    let Some(spec) = spec else {
        return vec![format!("{path}: missing")];
    };
    let Some(domain) = spec.get("domain") else {
        return vec![format!("{path}.domain: missing")];
    };
    let d = format!("{path}.domain");
    let mut out = Vec::new();
    hyperv(domain, &d, &mut out);
    memory(domain, &d, &mut out);
    cpu(domain, &d, &mut out);
    firmware(domain, &d, &mut out);
    disks(spec, &d, &mut out);
    out
}

/// The disk buses KubeVirt takes (`ide` is refused, `virtio` only for disks).
const DISK_BUSES: &[&str] = &["virtio", "scsi", "sata", "usb"];

/// Every disk on a known bus, and backed by a volume of its name.
fn disks(spec: &Value, d: &str, out: &mut Vec<String>) {
    let volumes: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(|x| x.get("name").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    let list = spec.pointer("/domain/devices/disks").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, disk) in list.iter().enumerate() {
        let name = disk.get("name").and_then(Value::as_str).unwrap_or("");
        if !volumes.contains(&name) {
            out.push(format!("{d}.devices.disks[{i}] ({name}) does not have a matching volume"));
        }
        if let Some(bus) = disk.pointer("/disk/bus").and_then(Value::as_str) {
            if !DISK_BUSES.contains(&bus) {
                out.push(format!("{d}.devices.disks[{i}].disk.bus: `{bus}` is not one of {}", DISK_BUSES.join(", ")));
            }
        }
    }
}

/// On: present, and not `enabled: false`.
fn on(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v.get("enabled").and_then(Value::as_bool) != Some(false))
}

fn hyperv(domain: &Value, d: &str, out: &mut Vec<String>) {
    let features = domain.get("features");
    let hv = features.and_then(|f| f.get("hyperv"));
    if hv.is_some() && features.and_then(|f| f.get("hypervPassthrough")).is_some() {
        out.push(format!("{d}.features: hyperv and hypervPassthrough cannot both be set"));
    }
    let Some(hv) = hv else { return };
    for &(feature, needs) in HYPERV_REQUIRES {
        if on(hv.get(feature)) && !on(hv.get(needs)) {
            out.push(format!("{d}.features.hyperv.{feature} requires {d}.features.hyperv.{needs}, which is not on"));
        }
    }
    if on(hv.get("evmcs")) {
        let vmx = domain.pointer("/cpu/features").and_then(Value::as_array).is_some_and(|fs| {
            fs.iter().any(|f| {
                f.get("name").and_then(Value::as_str) == Some("vmx")
                    && f.get("policy").and_then(Value::as_str) == Some("require")
            })
        });
        if !vmx {
            out.push(format!(
                "{d}.features.hyperv.evmcs needs the CPU feature vmx with policy require in {d}.cpu.features (Intel VT-x: evmcs is for Intel hosts only)"
            ));
        }
    }
    if let Some(s) = hv.get("spinlocks").filter(|s| on(Some(s))) {
        match s.get("spinlocks") {
            None => {}
            Some(n) => match n.as_u64() {
                Some(n) if n >= MIN_SPINLOCKS => {}
                _ => out
                    .push(format!("{d}.features.hyperv.spinlocks.spinlocks must be at least {MIN_SPINLOCKS} (is {n})")),
            },
        }
    }
    if let Some(id) = hv.pointer("/vendorid/vendorid").and_then(Value::as_str) {
        if id.chars().count() > 12 {
            out.push(format!("{d}.features.hyperv.vendorid.vendorid: at most 12 characters (`{id}`)"));
        }
    }
}

/// The guest's memory as KubeVirt's hugepage check takes it: the memory request, else
/// `memory.guest`, else the memory limit.
fn guest_memory(domain: &Value, d: &str, out: &mut Vec<String>) -> Option<u128> {
    for p in ["/resources/requests/memory", "/memory/guest", "/resources/limits/memory"] {
        if let Some(q) = domain.pointer(p) {
            match quantity(q) {
                Some(b) if b > 0 => return Some(b),
                Some(_) => {}
                None => {
                    out.push(format!("{d}{}: `{q}` is not a quantity", p.replace('/', ".")));
                    return None;
                }
            }
        }
    }
    None
}

fn memory(domain: &Value, d: &str, out: &mut Vec<String>) {
    let Some(hp) = domain.pointer("/memory/hugepages") else { return };
    let page = hp.get("pageSize");
    let Some(size) = page.and_then(quantity).filter(|s| *s > 0) else {
        out.push(format!("{d}.memory.hugepages.pageSize: `{}` is not a page size", page.unwrap_or(&Value::Null)));
        return;
    };
    if let Some(mem) = guest_memory(domain, d, out) {
        if mem < size {
            out.push(format!("{d}: the guest's memory ({mem} bytes) is smaller than the hugepage size ({size} bytes)"));
        } else if mem % size != 0 {
            out.push(format!(
                "{d}: the guest's memory ({mem} bytes) is not a multiple of the hugepage size ({size} bytes)"
            ));
        }
    }
}

fn cpu(domain: &Value, d: &str, out: &mut Vec<String>) {
    let Some(cpu) = domain.get("cpu") else { return };
    let flag = |k: &str| cpu.get(k).and_then(Value::as_bool) == Some(true);
    let dedicated = flag("dedicatedCpuPlacement");
    if flag("isolateEmulatorThread") && !dedicated {
        out.push(format!("{d}.cpu.isolateEmulatorThread is only allowed with {d}.cpu.dedicatedCpuPlacement"));
    }
    if !dedicated {
        return;
    }
    let threads = cpu.get("threads").and_then(Value::as_u64).unwrap_or(1);
    if threads > 2 {
        out.push(format!("{d}.cpu.threads: at most 2 with dedicatedCpuPlacement (is {threads})"));
    }
    let count = |p: &str| domain.pointer(p).and_then(quantity).unwrap_or(0);
    let (req, lim) = (count("/resources/requests/cpu"), count("/resources/limits/cpu"));
    let topology = ["sockets", "cores", "threads"].iter().any(|k| cpu.get(*k).and_then(Value::as_u64).unwrap_or(0) > 0);
    if req == 0 && lim == 0 && !topology {
        out.push(format!("{d}.cpu: dedicatedCpuPlacement needs cores (or a CPU request or limit)"));
    }
    if req > 0 && lim > 0 && req != lim {
        out.push(format!("{d}.resources: CPU request and limit must be equal with dedicatedCpuPlacement"));
    }
    let memory_given = ["/resources/requests/memory", "/resources/limits/memory", "/memory/hugepages", "/memory/guest"]
        .iter()
        .any(|p| domain.pointer(p).is_some());
    if !memory_given {
        out.push(format!("{d}: dedicatedCpuPlacement needs the guest's memory (memory.guest, hugepages or a request)"));
    }
}

fn firmware(domain: &Value, d: &str, out: &mut Vec<String>) {
    let Some(efi) = domain.pointer("/firmware/bootloader/efi") else { return };
    let secure = efi.get("secureBoot").and_then(Value::as_bool) != Some(false);
    if secure && !on(domain.pointer("/features/smm")) {
        out.push(format!("{d}.firmware.bootloader.efi: secure boot (the default with EFI) needs {d}.features.smm"));
    }
}

/// A Kubernetes quantity in bytes (or units): `16Gi`, `2Mi`, `4`, `1G`. Integers only;
/// fractions (`1.5Gi`) and exponents are not read (vfioctl never writes them).
pub fn quantity(v: &Value) -> Option<u128> {
    if let Some(n) = v.as_u64() {
        return Some(n.into());
    }
    let s = v.as_str()?.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (num, suffix) = s.split_at(digits);
    let mult: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    num.parse::<u128>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(domain: Value) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
               "spec": {"template": {"spec": {"domain": domain}}}})
    }

    fn good() -> Value {
        json!({
            "cpu": {"cores": 4, "threads": 2, "dedicatedCpuPlacement": true, "isolateEmulatorThread": true},
            "memory": {"guest": "16Gi", "hugepages": {"pageSize": "1Gi"}},
            "features": {"smm": {"enabled": true}, "hyperv": {
                "vpindex": {"enabled": true}, "synic": {"enabled": true},
                "synictimer": {"enabled": true, "direct": {"enabled": true}},
                "tlbflush": {"enabled": true}, "ipi": {"enabled": true}, "vapic": {"enabled": true},
                "spinlocks": {"enabled": true, "spinlocks": 8191}, "vendorid": {"enabled": true, "vendorid": "vfioctl"}}},
            "firmware": {"bootloader": {"efi": {"secureBoot": true}}},
            "devices": {}
        })
    }

    /// `good()` with one change at a JSON pointer (`None` removes it).
    fn with(pointer: &str, value: Option<Value>) -> Value {
        let mut d = good();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let obj = d.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match value {
            Some(v) => obj.insert(key.to_string(), v),
            None => obj.remove(key),
        };
        vm(d)
    }

    fn one(v: &Value, want: &str) {
        let found = validate_rules(v);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains(want), "{found:?} lacks {want}");
    }

    #[test]
    fn a_sound_vm_passes() {
        assert_eq!(validate_rules(&vm(good())), Vec::<String>::new());
        let vmi = json!({"kind": "VirtualMachineInstance", "spec": {"domain": good()}});
        assert!(validate_rules(&vmi).is_empty());
        assert_eq!(validate_rules(&json!({"kind": "VirtualMachine"})), ["spec.template.spec: missing"]);
    }

    #[test]
    fn hyperv_requirements() {
        let found = validate_rules(&with("/features/hyperv/vpindex", None));
        assert_eq!(found.len(), 3, "synic, tlbflush and ipi: {found:?}");
        assert!(found[0].contains("hyperv.synic requires spec.template.spec.domain.features.hyperv.vpindex"));
        one(&with("/features/hyperv/synic", Some(json!({"enabled": false}))), "synictimer requires");
        let mut d = good();
        d["features"]["hyperv"]["vpindex"] = json!({"enabled": false});
        let found = validate_rules(&vm(d));
        for f in ["synic requires", "tlbflush requires", "ipi requires"] {
            assert!(found.iter().any(|m| m.contains(f)), "{found:?}");
        }
        // A feature that is off needs nothing.
        let mut d = good();
        d["features"]["hyperv"]["vpindex"] = json!({"enabled": false});
        for f in ["synic", "synictimer", "tlbflush", "ipi"] {
            d["features"]["hyperv"][f] = json!({"enabled": false});
        }
        assert!(validate_rules(&vm(d)).is_empty());
        // `{}` is on, as a feature and as a requirement.
        one(&with("/features/hyperv", Some(json!({"ipi": {}}))), "ipi requires");
        let mut d = good();
        d["features"]["hyperv"]["vpindex"] = json!({});
        assert!(validate_rules(&vm(d)).is_empty());
    }

    #[test]
    fn evmcs_needs_vapic_and_intels_vmx() {
        let mut d = good();
        d["features"]["hyperv"]["evmcs"] = json!({"enabled": true});
        one(&vm(d.clone()), "vmx");
        d["cpu"]["features"] = json!([{"name": "vmx", "policy": "require"}]);
        assert!(validate_rules(&vm(d.clone())).is_empty());
        d["cpu"]["features"] = json!([{"name": "vmx", "policy": "optional"}]);
        one(&vm(d.clone()), "vmx");
        d["cpu"]["features"] = json!([{"name": "vmx", "policy": "require"}]);
        d["features"]["hyperv"]["vapic"] = json!({"enabled": false});
        one(&vm(d), "evmcs requires spec.template.spec.domain.features.hyperv.vapic");
    }

    #[test]
    fn spinlocks_and_vendor_id() {
        one(&with("/features/hyperv/spinlocks", Some(json!({"spinlocks": 4095}))), "at least 4096");
        assert!(validate_rules(&with("/features/hyperv/spinlocks", Some(json!({"spinlocks": 4096})))).is_empty());
        assert!(validate_rules(&with("/features/hyperv/spinlocks", Some(json!({"enabled": false, "spinlocks": 1}))))
            .is_empty());
        one(&with("/features/hyperv/vendorid", Some(json!({"vendorid": "thirteen-char"}))), "12 characters");
        let mut d = good();
        d["features"]["hypervPassthrough"] = json!({"enabled": true});
        one(&vm(d), "hypervPassthrough");
    }

    #[test]
    fn memory_is_a_multiple_of_the_hugepage_size() {
        one(&with("/memory/guest", Some(json!("1025Mi"))), "not a multiple");
        assert!(validate_rules(&with("/memory/hugepages", Some(json!({"pageSize": "2Mi"})))).is_empty());
        one(&with("/memory/guest", Some(json!("512Mi"))), "smaller than");
        one(&with("/memory/hugepages", Some(json!({"pageSize": "1 GB"}))), "not a page size");
        // The request wins over memory.guest.
        let mut d = good();
        d["resources"] = json!({"requests": {"memory": "3Gi"}});
        d["memory"]["guest"] = json!("3000Mi");
        assert!(validate_rules(&vm(d)).is_empty());
        // Decimal units are bytes too: 2G is not a multiple of 1Gi.
        one(&with("/memory/guest", Some(json!("2G"))), "not a multiple");
    }

    #[test]
    fn dedicated_placement_rules() {
        one(&with("/cpu/dedicatedCpuPlacement", Some(json!(false))), "isolateEmulatorThread is only allowed");
        one(&with("/cpu/threads", Some(json!(4))), "at most 2");
        let mut d = good();
        d["cpu"] = json!({"dedicatedCpuPlacement": true});
        one(&vm(d.clone()), "needs cores");
        d["cpu"]["cores"] = json!(2);
        d["resources"] = json!({"requests": {"cpu": "2"}, "limits": {"cpu": "3"}});
        one(&vm(d.clone()), "must be equal");
        d.as_object_mut().unwrap().remove("resources");
        d.as_object_mut().unwrap().remove("memory");
        one(&vm(d), "needs the guest's memory");
    }

    #[test]
    fn secure_boot_needs_smm() {
        one(&with("/features/smm", None), "needs spec.template.spec.domain.features.smm");
        one(&with("/features/smm", Some(json!({"enabled": false}))), "smm");
        assert!(validate_rules(&with("/firmware/bootloader/efi", Some(json!({"secureBoot": false})))).is_empty());
        let mut d = good();
        d["features"].as_object_mut().unwrap().remove("smm");
        d["firmware"] = json!({"bootloader": {"efi": {}}});
        one(&vm(d), "secure boot (the default with EFI)");
    }

    #[test]
    fn disks_need_a_volume_and_a_known_bus() {
        let mut d = good();
        d["devices"] = json!({"disks": [{"name": "root", "disk": {"bus": "scsi"}}]});
        let mut v = vm(d);
        one(&v, "disks[0] (root) does not have a matching volume");
        v["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "root", "persistentVolumeClaim": {"claimName": "c"}}]);
        assert!(validate_rules(&v).is_empty());
        v["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] = json!("ide");
        one(&v, "`ide` is not one of");
    }

    #[test]
    fn quantities() {
        for (q, want) in [
            (json!("16Gi"), Some(16u128 << 30)),
            (json!("2Mi"), Some(2 << 20)),
            (json!("1G"), Some(1_000_000_000)),
            (json!("4"), Some(4)),
            (json!(8), Some(8)),
            (json!("1.5Gi"), None),
            (json!("Gi"), None),
            (json!("1Xi"), None),
            (json!(null), None),
        ] {
            assert_eq!(quantity(&q), want, "{q}");
        }
    }
}
