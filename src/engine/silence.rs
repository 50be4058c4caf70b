//! A silence's condition, compiled: checked as a rule's is (`check::check_silence`, with
//! every diagnostic pointing into the condition as written) and evaluated like one.
//!
//! Owns: turning a condition's text into a matcher. Never: decides what a silence does
//! (the step, `state/`, does).

use std::sync::Arc;

use crate::alert::Alert;
use crate::diagnostic::{Diagnostic, Diagnostics, FileId, SourceMap};

use super::{Beside, RuleSet};

/// A silence's condition, compiled. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SilenceMatcher {
    set: RuleSet,
}

impl SilenceMatcher {
    /// Compiles `condition` (`labels.team == "db" and labels.severity != "critical"`).
    /// Errors are diagnostics whose spans point into `condition` itself, in a file named
    /// `silence`.
    pub fn compile(condition: &str) -> Result<SilenceMatcher, Diagnostics> {
        let mut sources = SourceMap::default();
        let file = sources.add("silence", condition.to_owned());
        SilenceMatcher::compile_at(condition, file, 0)
            .map_err(|items| Diagnostics::new(Arc::new(sources), items))
    }

    /// [`SilenceMatcher::compile`], with diagnostics pointing `offset` bytes into `file`.
    pub(crate) fn compile_at(
        condition: &str,
        file: FileId,
        offset: usize,
    ) -> Result<SilenceMatcher, Vec<Diagnostic>> {
        let place = crate::check::silence::Place::at(file, offset);
        crate::check::check_silence(condition, &place, |checked, sources| SilenceMatcher {
            set: RuleSet::compile(checked, sources.clone(), || {
                Beside::of(&sources, Vec::new())
            }),
        })
    }

    /// Whether `alert` matches the condition.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.set.evaluate_unindexed(alert).dropped()
    }
}
