//! The clock: HPET off, the Hyper-V clock for Windows, catch-up and delay tick policies.

use super::{Area, Cx, Finding, Rule, Severity};
use crate::domain::Timer;
use crate::xml::Element;

const AREA: Area = Area::Clock;

pub const HPET: Rule =
    Rule { id: "clock-hpet", severity: Severity::Warning, area: AREA, title: "the HPET timer is present" };
pub const NO_HYPERVCLOCK: Rule = Rule {
    id: "clock-no-hypervclock",
    severity: Severity::Warning,
    area: AREA,
    title: "a Windows guest without the hypervclock timer",
};
pub const RTC_TICKPOLICY: Rule = Rule {
    id: "clock-rtc-tickpolicy",
    severity: Severity::Info,
    area: AREA,
    title: "the RTC does not catch up missed ticks",
};
pub const PIT_TICKPOLICY: Rule = Rule {
    id: "clock-pit-tickpolicy",
    severity: Severity::Info,
    area: AREA,
    title: "the PIT does not delay missed ticks",
};

fn timer<'a>(clock: Option<&'a Element>, name: &str) -> Option<&'a Element> {
    clock?.children_named("timer").find(|t| t.attr("name") == Some(name))
}

pub(super) fn check<'a>(cx: &Cx<'a>, out: &mut Vec<Finding>) {
    let clock = cx.root.find("clock");
    let parent = clock.or_else(|| cx.closest("clock"));
    let at = |t: Option<&'a Element>| t.or(parent);
    let hpet = timer(clock, "hpet");
    if hpet.is_none_or(|t| t.attr("present") != Some("no")) {
        out.push(
            Finding::at(&HPET, "clock/timer[@name='hpet']", at(hpet))
                .message("the HPET timer is present")
                .why("an emulated HPET costs a VM exit per access; Windows polls it heavily and burns CPU at idle")
                .fix(Timer::Hpet.element().to_xml()),
        );
    }
    let hv = timer(clock, "hypervclock");
    if cx.windows && hv.is_none_or(|t| t.attr("present") == Some("no")) {
        out.push(
            Finding::at(&NO_HYPERVCLOCK, "clock/timer[@name='hypervclock']", at(hv))
                .message("a Windows guest without the hypervclock timer")
                .why("the Hyper-V reference clock is Windows' cheapest time source; without it Windows reads emulated timers")
                .fix(Timer::Hypervclock.element().to_xml()),
        );
    }
    let rtc = timer(clock, "rtc");
    if rtc.and_then(|t| t.attr("tickpolicy")) != Some("catchup") {
        out.push(
            Finding::at(&RTC_TICKPOLICY, "clock/timer[@name='rtc']", at(rtc))
                .message("the RTC timer does not catch up missed ticks")
                .why("when the guest misses RTC ticks (host load), its clock drifts unless they are caught up")
                .fix(Timer::Rtc.element().to_xml()),
        );
    }
    let pit = timer(clock, "pit");
    if pit.and_then(|t| t.attr("tickpolicy")) != Some("delay") {
        out.push(
            Finding::at(&PIT_TICKPOLICY, "clock/timer[@name='pit']", at(pit))
                .message("the PIT timer does not delay missed ticks")
                .why("delaying missed PIT ticks avoids bursts of interrupts after the guest was descheduled")
                .fix(Timer::Pit.element().to_xml()),
        );
    }
}
