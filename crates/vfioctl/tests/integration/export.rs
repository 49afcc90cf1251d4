//! `vfioctl export kubevirt`: every object it writes validates against KubeVirt's own
//! OpenAPI schema (made strict on unknown fields), keeps the rules KubeVirt's admission
//! webhook enforces, and says what `vfioctl domain` says for the same plan.
//!
//! The schema is `../shared/reference/kubevirt-openapi-swagger.json` beside the workspace
//! (KubeVirt's api/openapi-spec/swagger.json, v1.9). Without it the schema test prints
//! `skipped: …`, unless `VFIOCTL_REQUIRE_LAB=1` (CI), where that is a failure.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::util::{example_host, vfioctl, workspace};

const HOSTS: &[&str] = &["tr1950x", "r2600x", "i7-12700k", "xeon-2s"];
const OSES: &[&str] = &["win10", "win11", "linux"];

/// Plan options to try on every host: the defaults, and each hugepage choice.
const PLANS: &[&[&str]] = &[
    &["--memory", "8G"],
    &["--vcpus", "4", "--memory", "6G", "--hugepages", "2M"],
    &["--memory", "4G", "--hugepages", "none"],
];

/// A missing prerequisite: a `skipped: …` line, or a failure when `VFIOCTL_REQUIRE_LAB=1`.
fn skip(test: &str, why: &str) {
    if std::env::var("VFIOCTL_REQUIRE_LAB").is_ok_and(|v| v == "1") {
        panic!("{test}: VFIOCTL_REQUIRE_LAB=1 but {why}");
    }
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

fn export_json(host: &str, args: &[&str]) -> Value {
    let mut a = vec!["export", "kubevirt", "gpu", "--name", "vm", "--format", "json"];
    a.extend_from_slice(args);
    let run = vfioctl(&example_host(host), &a);
    assert_eq!(run.code, 0, "{host} {args:?}: {}", run.stderr);
    serde_json::from_str(&run.stdout).expect("json")
}

/// Every (host, arguments, export) the tests look at.
fn exports() -> Vec<(String, Vec<&'static str>, Value)> {
    let mut out = Vec::new();
    for host in HOSTS {
        for os in OSES {
            for plan in PLANS {
                let mut args: Vec<&'static str> = plan.to_vec();
                args.extend(["--os", os]);
                let v = export_json(host, &args);
                out.push((host.to_string(), args, v));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// (1) KubeVirt's OpenAPI schema, strict.

fn schema_file() -> PathBuf {
    workspace().join("../shared/reference/kubevirt-openapi-swagger.json")
}

/// Makes every object schema with `properties` refuse other properties. Kubernetes'
/// swagger leaves `additionalProperties` out (the API server prunes or refuses unknown
/// fields on its own); without this, a misspelt field would pass. Maps (`labels`,
/// `resources.requests`) keep their `additionalProperties` schema.
fn strict(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), json!(false));
            }
            for x in m.values_mut() {
                strict(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

/// Swagger 2.0's schema objects are JSON Schema draft 4; a root that refers to one
/// definition, with the `apiVersion` and `kind` the swagger has no enum for.
fn validator(
    definitions: &Value,
    definition: &str,
    api_version: Option<&str>,
    kind: Option<&str>,
) -> jsonschema::Validator {
    let mut fixed = json!({});
    if let Some(a) = api_version {
        fixed["apiVersion"] = json!({"enum": [a]});
    }
    if let Some(k) = kind {
        fixed["kind"] = json!({"enum": [k]});
    }
    let required: Vec<&str> = [api_version.map(|_| "apiVersion"), kind.map(|_| "kind")].into_iter().flatten().collect();
    let mut identity = json!({"properties": fixed});
    if !required.is_empty() {
        identity["required"] = json!(required);
    }
    let schema = json!({
        "definitions": definitions,
        "allOf": [{"$ref": format!("#/definitions/{definition}")}, identity],
    });
    jsonschema::draft4::new(&schema).unwrap_or_else(|e| panic!("schema for {definition}: {e}"))
}

struct Schemas {
    vm: jsonschema::Validator,
    kubevirt: jsonschema::Validator,
}

fn schemas(test: &str) -> Option<Schemas> {
    let path = schema_file();
    let Ok(text) = std::fs::read_to_string(&path) else {
        skip(test, &format!("no KubeVirt OpenAPI schema at {}", path.display()));
        return None;
    };
    let swagger: Value = serde_json::from_str(&text).expect("swagger json");
    let mut definitions = swagger["definitions"].clone();
    assert!(definitions.get("v1.VirtualMachine").is_some() && definitions.get("v1.KubeVirt").is_some());
    strict(&mut definitions);
    Some(Schemas {
        vm: validator(&definitions, "v1.VirtualMachine", Some("kubevirt.io/v1"), Some("VirtualMachine")),
        // A merge patch is a partial object: no apiVersion or kind, but the fields it has must fit.
        kubevirt: validator(&definitions, "v1.KubeVirt", None, None),
    })
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn every_object_validates_against_kubevirts_schema() {
    let Some(s) = schemas("every_object_validates_against_kubevirts_schema") else { return };
    for (host, args, v) in exports() {
        let vm = &v["vm"];
        let e = errors(&s.vm, vm);
        assert!(e.is_empty(), "{host} {args:?}: the VirtualMachine does not fit KubeVirt's schema: {e:#?}\n{vm:#}");
        let patch = &v["kubevirt_patch"];
        let e = errors(&s.kubevirt, patch);
        assert!(e.is_empty(), "{host} {args:?}: the KubeVirt patch does not fit KubeVirt's schema: {e:#?}\n{patch:#}");
    }
    // And the files, as kubectl reads them: YAML.
    let out = tempfile::tempdir().expect("tempdir");
    let run = vfioctl(
        &example_host("tr1950x"),
        &["export", "kubevirt", "gpu", "--name", "vm", "--os", "win11", "--out", out.path().to_str().expect("utf8")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(errors(&s.vm, &read_yaml(&out.path().join("vm.yaml"))).is_empty());
    assert!(errors(&s.kubevirt, &read_yaml(&out.path().join("kubevirt-patch.yaml"))).is_empty());
}

/// One change to a good object.
type Change = fn(&mut Value);

/// The strict schema is strict: a misspelt field, a wrong type, a wrong kind, a missing
/// required field are all caught.
#[test]
fn the_schema_check_catches_mistakes() {
    let Some(s) = schemas("the_schema_check_catches_mistakes") else { return };
    let v = export_json("tr1950x", &["--memory", "8G"]);
    let good = v["vm"].clone();
    assert!(errors(&s.vm, &good).is_empty());
    let cases: [(&str, Change); 5] = [
        ("misspelt field", |vm| {
            let cpu = vm.pointer_mut("/spec/template/spec/domain/cpu").and_then(Value::as_object_mut).expect("cpu");
            let d = cpu.remove("dedicatedCpuPlacement").expect("dedicated");
            cpu.insert("dedicatedCPUPlacement".into(), d);
        }),
        ("libvirt's name", |vm| {
            vm["spec"]["template"]["spec"]["domain"]["features"]["hyperv"]["stimer"] = json!({"enabled": true});
        }),
        ("wrong type", |vm| vm["spec"]["template"]["spec"]["domain"]["cpu"]["cores"] = json!("4")),
        ("wrong kind", |vm| vm["kind"] = json!("VirtualMachineInstance")),
        ("missing name of a GPU", |vm| {
            vm["spec"]["template"]["spec"]["domain"]["devices"]["gpus"][0].as_object_mut().expect("gpu").remove("name");
        }),
    ];
    for (what, change) in cases {
        let mut bad = good.clone();
        change(&mut bad);
        assert!(!errors(&s.vm, &bad).is_empty(), "{what} was not caught");
    }
    let mut patch = v["kubevirt_patch"].clone();
    patch["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"][0]["vendorSelector"] = json!("x");
    assert!(!errors(&s.kubevirt, &patch).is_empty(), "misspelt patch field was not caught");
}

// ---------------------------------------------------------------------------------------
// (2) The admission webhook's rules.

/// A quantity in bytes (the forms vfioctl writes: `16Gi`, `1536Mi`).
fn bytes(q: &Value) -> u64 {
    let s = q.as_str().expect("quantity");
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().expect("number");
    n * match unit {
        "Gi" => 1 << 30,
        "Mi" => 1 << 20,
        "Ki" => 1 << 10,
        other => panic!("unit {other}"),
    }
}

fn on(v: &Value) -> bool {
    v.is_object() && v.get("enabled") != Some(&json!(false))
}

#[test]
fn kubevirts_admission_rules_hold() {
    for (host, args, v) in exports() {
        let what = format!("{host} {args:?}");
        let vm = &v["vm"];
        assert_eq!(vfioctl_core::kubevirt::validate_rules(vm), Vec::<String>::new(), "{what}: vfioctl's own check");
        let d = &vm["spec"]["template"]["spec"]["domain"];
        // Hyper-V: each feature that is on has its requirement on (explicitly `enabled: true`,
        // which is all KubeVirt's validator counts).
        let hv = &d["features"]["hyperv"];
        for (feature, needs) in [
            ("synic", "vpindex"),
            ("synictimer", "synic"),
            ("tlbflush", "vpindex"),
            ("ipi", "vpindex"),
            ("evmcs", "vapic"),
        ] {
            if on(&hv[feature]) {
                assert_eq!(hv[needs]["enabled"], json!(true), "{what}: {feature} needs {needs}");
            }
        }
        if on(&hv["evmcs"]) {
            assert!(["i7-12700k", "xeon-2s"].contains(&host.as_str()), "{what}: evmcs on a non-Intel host");
        }
        if hv.is_object() {
            assert!(hv["spinlocks"]["spinlocks"].as_u64().expect("spinlocks") >= 4096, "{what}");
            assert!(hv["vendorid"]["vendorid"].as_str().expect("vendorid").len() <= 12, "{what}");
        }
        // Memory: a whole number of hugepages.
        if let Some(page) = d["memory"].get("hugepages") {
            let (mem, size) = (bytes(&d["memory"]["guest"]), bytes(&page["pageSize"]));
            assert!(mem >= size && mem % size == 0, "{what}: {mem} bytes on pages of {size}");
        }
        // Dedicated CPUs.
        let cpu = &d["cpu"];
        assert_eq!(cpu["dedicatedCpuPlacement"], json!(true), "{what}");
        assert_eq!(cpu["isolateEmulatorThread"], json!(true), "{what}");
        assert!(cpu["threads"].as_u64().expect("threads") <= 2, "{what}");
        assert!(cpu["cores"].as_u64().expect("cores") >= 1, "{what}");
        // Secure boot needs SMM.
        if d["firmware"]["bootloader"]["efi"]["secureBoot"] != json!(false) {
            assert!(on(&d["features"]["smm"]), "{what}: secure boot without SMM");
        }
        // The gates the webhook asks for.
        let gates = &v["kubevirt_patch"]["spec"]["configuration"]["developerConfiguration"]["featureGates"];
        if d["devices"].get("hostDevices").is_some() {
            assert!(gates.as_array().expect("gates").contains(&json!("HostDevices")), "{what}");
        }
        assert!(gates.as_array().expect("gates").contains(&json!("CPUManager")), "{what}");
    }
}

#[test]
fn a_vm_kubevirt_would_refuse_is_not_written() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("vm");
    let run = vfioctl(
        &example_host("r2600x"),
        &[
            "export",
            "kubevirt",
            "gpu",
            "--memory",
            "1025M",
            "--hugepages",
            "2M",
            "--name",
            "vm",
            "--out",
            dir.to_str().expect("utf8"),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("KubeVirt would refuse this VirtualMachine"), "{}", run.stderr);
    assert!(run.stderr.contains("not a multiple of the hugepage size"), "{}", run.stderr);
    assert!(!dir.exists(), "nothing written");
    for (bad, want) in [
        (&["--name", "VM"][..], "a VM name must be a DNS label"),
        (&["--name", "vm", "--resource-prefix", "nodot"][..], "--resource-prefix nodot"),
        (&["--name", "vm", "--namespace", "a_b"][..], "--namespace a_b"),
    ] {
        let mut a = vec!["export", "kubevirt", "gpu"];
        a.extend_from_slice(bad);
        let run = vfioctl(&example_host("r2600x"), &a);
        assert_eq!(run.code, 2, "{bad:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{bad:?}: {}", run.stderr);
    }
}

// ---------------------------------------------------------------------------------------
// (3) The same plan, exported to libvirt and to KubeVirt.

/// libvirt's `<hyperv>` element → KubeVirt's field (written here, not taken from vfioctl).
fn kubevirt_field(libvirt: &str) -> &str {
    match libvirt {
        "stimer" => "synictimer",
        "vendor_id" => "vendorid",
        n => n,
    }
}

fn attr<'a>(n: roxmltree::Node<'a, 'a>, path: &[&str], name: &str) -> Option<&'a str> {
    let mut node = n;
    for p in path {
        node = node.children().find(|c| c.has_tag_name(*p))?;
    }
    node.attribute(name)
}

fn hex(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

#[test]
fn kubevirt_and_libvirt_say_the_same_for_the_same_plan() {
    for host in HOSTS {
        for os in OSES {
            for plan in PLANS {
                let what = format!("{host} {os} {plan:?}");
                let mut a = vec!["domain", "gpu", "--name", "vm", "--os", os];
                a.extend_from_slice(plan);
                let dom = vfioctl(&example_host(host), &a);
                assert_eq!(dom.code, 0, "{what}: {}", dom.stderr);
                let mut p = vec!["plan", "gpu", "--format", "json"];
                p.extend_from_slice(plan);
                let planned = vfioctl(&example_host(host), &p);
                assert_eq!(planned.code, 0, "{what}: {}", planned.stderr);
                let planned: Value = serde_json::from_str(&planned.stdout).expect("plan json");
                let mut args = plan.to_vec();
                args.extend(["--os", os]);
                let v = export_json(host, &args);
                compare(&what, &dom.stdout, &planned, &v["vm"]);
            }
        }
    }
}

fn compare(what: &str, xml: &str, planned: &Value, vm: &Value) {
    let doc = roxmltree::Document::parse(xml).expect("domain xml");
    let root = doc.root_element();
    let d = &vm["spec"]["template"]["spec"]["domain"];

    // Devices: the domain's host addresses, named by their ids, are the VM's resources.
    let ids = |address: &str| -> (String, String, bool) {
        let dev = planned["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .find(|x| x["address"] == address)
            .unwrap_or_else(|| panic!("{what}: {address} is not in the plan"));
        let s = |k: &str| dev[k].as_str().expect("id").to_string();
        (s("vendor_id"), s("device_id"), s("class").starts_with("03"))
    };
    let (mut gpus, mut others) = (Vec::new(), Vec::new());
    for h in root.descendants().filter(|n| n.has_tag_name("hostdev")) {
        let a = |k| hex(attr(h, &["source", "address"], k).expect("source address"));
        let address = format!("{:04x}:{:02x}:{:02x}.{:x}", a("domain"), a("bus"), a("slot"), a("function"));
        let (v, dev, display) = ids(&address);
        let name = format!("vfioctl.io/{}_{}", v.to_uppercase(), dev.to_uppercase());
        if display {
            gpus.push(name)
        } else {
            others.push(name)
        }
    }
    let names = |list: &str| -> Vec<String> {
        let mut n: Vec<String> = d["devices"]
            .get(list)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| x["deviceName"].as_str().expect("deviceName").to_string()).collect())
            .unwrap_or_default();
        n.sort();
        n
    };
    gpus.sort();
    others.sort();
    assert!(!gpus.is_empty(), "{what}: no GPU");
    assert_eq!(names("gpus"), gpus, "{what}: gpus");
    assert_eq!(names("hostDevices"), others, "{what}: hostDevices");

    // Enlightenments, by name and value.
    let features = root.children().find(|n| n.has_tag_name("features")).expect("features");
    let hyperv = features.children().find(|n| n.has_tag_name("hyperv"));
    let domain_hv: BTreeSet<String> = hyperv
        .map(|h| {
            h.children().filter(|n| n.is_element()).map(|n| kubevirt_field(n.tag_name().name()).to_string()).collect()
        })
        .unwrap_or_default();
    let vm_hv: BTreeSet<String> =
        d["features"].get("hyperv").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    assert_eq!(vm_hv, domain_hv, "{what}: enlightenments");
    if let Some(h) = hyperv {
        let retries = attr(h, &["spinlocks"], "retries").expect("retries");
        assert_eq!(d["features"]["hyperv"]["spinlocks"]["spinlocks"].to_string(), retries, "{what}");
        assert_eq!(d["features"]["hyperv"]["vendorid"]["vendorid"], json!(attr(h, &["vendor_id"], "value")), "{what}");
        assert_eq!(attr(h, &["stimer", "direct"], "state"), Some("on"), "{what}");
        assert_eq!(d["features"]["hyperv"]["synictimer"]["direct"], json!({"enabled": true}), "{what}");
    }
    assert_eq!(attr(features, &["kvm", "hidden"], "state"), Some("on"), "{what}");
    assert_eq!(d["features"]["kvm"]["hidden"], json!(true), "{what}");

    // CPU shape.
    let topo = |k| attr(root, &["cpu", "topology"], k).expect("topology").parse::<u64>().expect("number");
    for k in ["sockets", "cores", "threads"] {
        assert_eq!(d["cpu"][k].as_u64(), Some(topo(k)), "{what}: {k}");
    }
    let vcpus: u64 =
        root.children().find(|n| n.has_tag_name("vcpu")).and_then(|n| n.text()).expect("vcpu").parse().expect("n");
    assert_eq!(topo("sockets") * topo("cores") * topo("threads"), vcpus, "{what}");
    assert_eq!(d["cpu"]["model"], "host-passthrough");
    assert_eq!(attr(root, &["cpu"], "mode"), Some("host-passthrough"));

    // Memory and its pages.
    let mem = root.children().find(|n| n.has_tag_name("memory")).expect("memory");
    assert_eq!(mem.attribute("unit"), Some("KiB"));
    let kib: u64 = mem.text().expect("memory").parse().expect("kib");
    assert_eq!(bytes(&d["memory"]["guest"]), kib * 1024, "{what}: memory");
    let page =
        attr(root, &["memoryBacking", "hugepages", "page"], "size").map(|s| s.parse::<u64>().expect("size") * 1024);
    assert_eq!(d["memory"].get("hugepages").map(|h| bytes(&h["pageSize"])), page, "{what}: hugepage size");

    // Clock: the same timers.
    let timer = |name: &str, a: &str| -> Option<String> {
        root.descendants()
            .find(|n| n.has_tag_name("timer") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute(a))
            .map(str::to_string)
    };
    let t = &d["clock"]["timer"];
    assert_eq!(t["rtc"]["tickPolicy"].as_str().map(str::to_string), timer("rtc", "tickpolicy"), "{what}");
    assert_eq!(t["pit"]["tickPolicy"].as_str().map(str::to_string), timer("pit", "tickpolicy"), "{what}");
    assert_eq!(timer("hpet", "present").as_deref(), Some("no"));
    assert_eq!(t["hpet"]["present"], json!(false), "{what}");
    assert_eq!(timer("hypervclock", "present").is_some(), t.get("hyperv").is_some(), "{what}: hyperv clock");
    // Secure boot exactly where the domain has a secure-boot loader (when the host has OVMF).
    if let Some(secure) = attr(root, &["os", "loader"], "secure") {
        assert_eq!(d["firmware"]["bootloader"]["efi"]["secureBoot"], json!(secure == "yes"), "{what}");
    }
    assert_eq!(d["features"].get("smm").is_some(), features.children().any(|n| n.has_tag_name("smm")), "{what}: smm");
}

// ---------------------------------------------------------------------------------------
// (4) --out and stdout.

/// A YAML value as JSON.
fn to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Hash(h) => {
            Value::Object(h.iter().map(|(k, v)| (k.as_str().expect("key").to_string(), to_json(v))).collect())
        }
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::String(s) => json!(s),
        Yaml::Integer(i) => json!(i),
        Yaml::Boolean(b) => json!(b),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML {other:?}"),
    }
}

fn parse_yaml(text: &str) -> Value {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("yaml");
    assert_eq!(docs.len(), 1, "one document");
    to_json(&docs[0])
}

fn read_yaml(path: &Path) -> Value {
    parse_yaml(&std::fs::read_to_string(path).expect("read"))
}

#[test]
fn out_writes_the_three_files() {
    let out = tempfile::tempdir().expect("tempdir");
    // The folder may be new; its parent must exist.
    let dir = out.path().join("new");
    let host = example_host("tr1950x");
    let base =
        ["export", "kubevirt", "gpu", "--vcpus", "8", "--memory", "16G", "--name", "beast", "--namespace", "vms"];
    let mut a = base.to_vec();
    a.extend(["--format", "json"]);
    let json: Value = serde_json::from_str(&vfioctl(&host, &a).stdout).expect("json");
    let mut a = base.to_vec();
    a.extend(["--out", dir.to_str().expect("utf8")]);
    for round in 0..2 {
        let run = vfioctl(&host, &a);
        assert_eq!(run.code, 0, "{}", run.stderr);
        for f in ["vm.yaml", "kubevirt-patch.yaml", "NODES.md"] {
            assert!(
                run.stderr.contains(&format!("vfioctl: wrote {}", dir.join(f).display())),
                "{round}: {}",
                run.stderr
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["NODES.md", "kubevirt-patch.yaml", "vm.yaml"], "no temporary files left");
    }
    let vm_text = std::fs::read_to_string(dir.join("vm.yaml")).expect("vm.yaml");
    assert!(vm_text.starts_with("# VirtualMachine beast, written by `vfioctl export kubevirt`"), "{vm_text}");
    assert_eq!(read_yaml(&dir.join("vm.yaml")), json["vm"]);
    assert_eq!(json["vm"]["metadata"], json!({"name": "beast", "namespace": "vms"}));
    let patch_text = std::fs::read_to_string(dir.join("kubevirt-patch.yaml")).expect("patch");
    assert!(patch_text
        .contains("#   kubectl patch kubevirt kubevirt -n kubevirt --type merge --patch-file kubevirt-patch.yaml"));
    assert_eq!(read_yaml(&dir.join("kubevirt-patch.yaml")), json["kubevirt_patch"]);
    assert_eq!(
        json["kubevirt_patch"]["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"],
        json!([
            {"pciVendorSelector": "1002:66AF", "resourceName": "vfioctl.io/1002_66AF"},
            {"pciVendorSelector": "1002:AB20", "resourceName": "vfioctl.io/1002_AB20"}
        ])
    );
    let nodes = std::fs::read_to_string(dir.join("NODES.md")).expect("NODES.md");
    assert_eq!(json["nodes_md"], json!(nodes));
    for want in [
        "    vfioctl apply gpu --vcpus 8 --memory 16G\n",
        "16 pages of 1 GiB, reserved when the kernel boots",
        "cpuManagerPolicy: static",
        "reservedSystemCPUs: \"0,16\"",
        "topologyManagerPolicy: single-numa-node",
        "9 CPUs",
        "JSON merge patch",
        "--type merge --patch-file kubevirt-patch.yaml",
        "HostDevices and CPUManager",
        "PersistentVolumeClaim `beast-root` in namespace `vms`",
        "virtctl start beast",
    ] {
        assert!(nodes.contains(want), "NODES.md lacks {want:?}:\n{nodes}");
    }
    // --format json with --out lists the files.
    let mut a = base.to_vec();
    a.extend(["--out", dir.to_str().expect("utf8"), "--format", "json"]);
    let j: Value = serde_json::from_str(&vfioctl(&host, &a).stdout).expect("json");
    assert_eq!(j["files"].as_array().map(Vec::len), Some(3));
    assert_eq!(j["summary"]["feature_gates"], json!(["HostDevices", "CPUManager"]));
}

#[test]
fn without_out_stdout_is_the_commented_summary_and_the_vm() {
    let host = example_host("r2600x");
    let run = vfioctl(&host, &["export", "kubevirt", "gpu", "--memory", "8G", "--name", "vm", "--os", "linux"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("# VirtualMachine vm (kubevirt.io/v1)"), "{}", run.stdout);
    let json = export_json("r2600x", &["--memory", "8G", "--os", "linux"]);
    assert_eq!(parse_yaml(&run.stdout), json["vm"], "kubectl apply -f - reads the VM");
}

// ---------------------------------------------------------------------------------------
// (5) The text summary.

#[test]
fn the_summary_of_the_guides_threadripper() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = vfioctl(
        &example_host("tr1950x"),
        &[
            "export",
            "kubevirt",
            "gpu",
            "--vcpus",
            "8",
            "--memory",
            "16G",
            "--name",
            "compromised-beast",
            "--out",
            out.path().to_str().expect("utf8"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("export-kubevirt-tr1950x", run.stdout);
}
