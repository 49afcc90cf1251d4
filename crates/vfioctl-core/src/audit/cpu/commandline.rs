//! `<qemu:commandline>` arguments that override what the domain says: QEMU takes the last
//! `-cpu`, `-smp` and `-machine` it is given, and libvirt puts the domain's own first. The
//! domain's `<cpu>`, Hyper-V enlightenments, vCPU topology or machine type (and every fix
//! vfioctl makes to them) then do nothing.

use super::super::{Area, Cx, Finding, Rule, Severity};

pub const COMMANDLINE_OVERRIDE: Rule = Rule {
    id: "cpu-qemu-commandline-override",
    severity: Severity::Warning,
    area: Area::Cpu,
    title: "a qemu:commandline -cpu, -smp or -machine that overrides the domain's own",
};

pub(in crate::audit) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(cl) = cx.root.child("qemu:commandline") else { return };
    let args: Vec<(&crate::xml::Element, &str)> =
        cl.elements().filter(|e| e.name == "qemu:arg").filter_map(|e| Some((e, e.attr("value")?))).collect();
    for (i, (el, v)) in args.iter().enumerate() {
        let (what, instead) = match *v {
            "-cpu" => (
                "the domain's <cpu> and the Hyper-V enlightenments and KVM hiding of its <features>",
                "<cpu mode='host-passthrough'> with <feature> elements, and <features><hyperv>/<kvm><hidden state='on'/>",
            ),
            "-smp" => ("the domain's <vcpu> count and <cpu><topology> (and with them the vCPU pinning)", "<vcpu> and <cpu><topology>"),
            "-machine" | "-M" => ("the domain's machine type (<os><type machine=…>)", "<os><type machine=…> and <features>"),
            _ => continue,
        };
        let value = args.get(i + 1).map(|(_, v)| *v).unwrap_or("");
        out.push(
            Finding::at(&COMMANDLINE_OVERRIDE, "qemu:commandline/qemu:arg", Some(el))
                .message(format!("qemu:commandline passes {v} {value}, which overrides {what}"))
                .why("QEMU takes the last of these options, and libvirt's own come first: what the domain says (and what vfioctl fixes in it) does nothing while these arguments are there")
                .fix(format!("say it in the domain instead ({instead}), then remove the two <qemu:arg> lines ({v} and its value)")),
        );
    }
}
