//! A readiness rule, declared once: its stable id, the group it is shown under, what it
//! checks and how bad it is when that does not hold. The checks build their [`Check`]s
//! from the declared rule, so an id or title is written in one place only.
//!
//! A rule about one of several things (a cgroup controller, a NUMA node, the named
//! device) has a `<…>` placeholder in its id and title, filled per subject with
//! [`Rule::on`]: `cgroup.<controller>` becomes `cgroup.cpu`.

use super::{Check, Status};

/// One readiness rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id (`kvm.device`, `cgroup.<controller>`).
    pub id: &'static str,
    /// Short group label for text output (`KVM`, `IOMMU`, …).
    pub area: &'static str,
    /// What is checked, completing "Checking …".
    pub title: &'static str,
    /// The verdict when what it checks does not hold (some rules give a milder one in
    /// some cases: their check says which).
    pub level: Status,
}

/// `template` with its `<…>` parts replaced by `subjects` in order (a part without a
/// subject stays as written).
fn fill(template: &str, subjects: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut subjects = subjects.iter();
    while let (Some(a), Some(b)) = (rest.find('<'), rest.find('>')) {
        if b < a {
            break;
        }
        out.push_str(&rest[..a]);
        out.push_str(subjects.next().copied().unwrap_or(&rest[a..=b]));
        rest = &rest[b + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `id` is an id this rule gives: its own, or its template filled in.
pub fn gives(rule: &Rule, id: &str) -> bool {
    match (rule.id.find('<'), rule.id.find('>')) {
        (Some(a), Some(b)) if a < b => {
            let (pre, post) = (&rule.id[..a], &rule.id[b + 1..]);
            id.len() > pre.len() + post.len() && id.starts_with(pre) && id.ends_with(post)
        }
        _ => rule.id == id,
    }
}

/// A rule applied to one subject: its id and title filled in, waiting for the verdict.
#[derive(Debug, Clone)]
pub struct Subject {
    id: String,
    area: &'static str,
    title: String,
    level: Status,
}

impl Subject {
    /// The verdict, said outright.
    pub fn verdict(self, status: Status, message: impl Into<String>, remedy: Option<String>) -> Check {
        Check { id: self.id, area: self.area, title: self.title, status, message: message.into(), remedy }
    }

    pub fn pass(self, message: impl Into<String>) -> Check {
        self.verdict(Status::Pass, message, None)
    }

    /// Something worth knowing that needs no fix (or could not be checked).
    pub fn note(self, message: impl Into<String>) -> Check {
        self.verdict(Status::Note, message, None)
    }

    /// The rule does not hold: its declared level, with the fix.
    pub fn unmet(self, message: impl Into<String>, remedy: impl Into<String>) -> Check {
        let level = self.level;
        self.verdict(level, message, Some(remedy.into()))
    }
}

impl Rule {
    /// This rule about `subject`: the `<…>` of its id and title filled with it.
    pub fn on(&self, subject: &str) -> Subject {
        self.with(&[subject], &[subject])
    }

    /// This rule with the `<…>` parts of its id and of its title filled separately, in
    /// order (`verify.cmdline.<param>` with `iommu`, "the kernel command line for <param>"
    /// with `iommu=pt`).
    pub fn with(&self, id: &[&str], title: &[&str]) -> Subject {
        Subject { id: fill(self.id, id), area: self.area, title: fill(self.title, title), level: self.level }
    }

    fn plain(&self) -> Subject {
        self.with(&[], &[])
    }

    /// See [`Subject::verdict`].
    pub fn verdict(&self, status: Status, message: impl Into<String>, remedy: Option<String>) -> Check {
        self.plain().verdict(status, message, remedy)
    }

    /// See [`Subject::pass`].
    pub fn pass(&self, message: impl Into<String>) -> Check {
        self.plain().pass(message)
    }

    /// See [`Subject::note`].
    pub fn note(&self, message: impl Into<String>) -> Check {
        self.plain().note(message)
    }

    /// See [`Subject::unmet`].
    pub fn unmet(&self, message: impl Into<String>, remedy: impl Into<String>) -> Check {
        self.plain().unmet(message, remedy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rule = Rule { id: "x.<n>", area: "X", title: "thing <n> works", level: Status::Warn };

    #[test]
    fn subjects_fill_the_template() {
        let c = R.on("node1").unmet("broken", "fix it");
        assert_eq!((c.id.as_str(), c.title.as_str(), c.status), ("x.node1", "thing node1 works", Status::Warn));
        assert_eq!(c.remedy.as_deref(), Some("fix it"));
        assert!(gives(&R, "x.node1") && !gives(&R, "x.") && !gives(&R, "y.node1"));
        let plain = Rule { id: "a.b", area: "A", title: "a", level: Status::Fail };
        assert_eq!(plain.pass("").id, "a.b");
        assert!(gives(&plain, "a.b") && !gives(&plain, "a.bc"));
        let two = Rule { id: "v.<p>", area: "V", title: "<n> of <size>", level: Status::Fail };
        let c = two.with(&["x"], &["4", "2 MiB"]).pass("");
        assert_eq!((c.id.as_str(), c.title.as_str()), ("v.x", "4 of 2 MiB"));
        assert_eq!(two.pass("").title, "<n> of <size>");
    }
}
