//! The compiled rule set and its evaluation: pure, no I/O, no clock.

pub(crate) mod compile;
mod eval;
mod explain;
pub(crate) mod group;
mod index;
mod inhibit;
mod junit;
mod memory;
pub(crate) mod program;
pub(crate) mod render;
mod silence;
mod tests_runner;
pub(crate) mod value;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use smallvec::SmallVec;

use crate::alert::Alert;
pub(crate) use crate::check::Method;
use crate::check::{Checked, CheckedTest, SecretText};
use crate::diagnostic::{Diagnostic, Diagnostics, SourceMap};
use compile::Compiler;
use index::Index;
use program::{Atom, Pred};

pub use explain::{Explanation, PredicateTrace, RuleTrace};
pub use memory::{Choices, MemoryChanges};
pub use silence::SilenceMatcher;
pub use tests_runner::{TestOutcome, TestReport};

/// Sets of at most this many rules are scanned: trying two rules costs less than one
/// index lookup and the per-alert field cache (measured in `benches/engine.rs`).
const SCAN_UP_TO: usize = 2;

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    /// `rule "name"`, when given; the rule's id is otherwise its location.
    pub(crate) name: Option<Box<str>>,
    pub(crate) location: Box<str>,
    pub(crate) pred: Pred,
    pub(crate) posts: Box<[u32]>,
    pub(crate) stop: bool,
    pub(crate) drop: bool,
    /// `dedup`, `resolve once`, `at most`: what the rule remembers, if anything.
    pub(crate) memory: Option<Box<memory::RuleMemory>>,
}

/// A delivery target declared in the rules: where and how to send an alert.
#[derive(Debug, Clone)]
pub struct Target {
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) url: SecretText,
    pub(crate) method: Method,
    pub(crate) headers: Vec<(String, SecretText)>,
    pub(crate) body: Option<render::Body>,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) fallback: Option<String>,
}

impl Target {
    /// The target's name: `alarm_url`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `file:line` of its declaration.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The URL to send to, with `${env.NAME}` substituted. May hold a secret: do not log it.
    pub fn url(&self) -> String {
        self.url.value()
    }

    /// The URL as written, with `${env.NAME}` placeholders: safe to log.
    pub fn url_display(&self) -> String {
        self.url.display()
    }

    /// `POST` or `PUT`.
    pub fn method(&self) -> &'static str {
        self.method.as_str()
    }

    /// Header names and values, with `${env.NAME}` substituted. Values may be secrets.
    pub fn headers(&self) -> impl Iterator<Item = (&str, String)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.value()))
    }

    /// Header names and values as written: safe to log.
    pub fn headers_display(&self) -> impl Iterator<Item = (&str, String)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.display()))
    }

    /// The per-attempt timeout (default 5 s).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Retries after the first attempt (default 3).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The target that receives what this one cannot take (`fallback = other_target`).
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The body to send for an alert: the template filled from the alert, or the alert's
    /// payload as received when the target has no `body`. Secrets are substituted.
    pub fn render_body(&self, alert: &Alert) -> Value {
        match &self.body {
            Some(b) => render::render(b, alert, render::Secrets::Reveal),
            None => alert.body().clone(),
        }
    }

    /// The body as [`Target::render_body`] makes it, serialized: what is sent. The alert
    /// as received is written straight from the alert, without a copy.
    pub fn render_body_text(&self, alert: &Alert) -> String {
        match &self.body {
            // `serde_json::to_string`, not `Display`: Display writes through a `fmt::Write`
            // adapter call by call. Writing a `Value` cannot fail: its keys are strings.
            Some(b) => serde_json::to_string(&render::render(b, alert, render::Secrets::Reveal))
                .unwrap_or_default(),
            None => serde_json::to_string(alert.body()).unwrap_or_default(),
        }
    }

    /// The body as it may be shown (in a dead letter, say) when it differs from what is
    /// sent: `Some` only when the template holds a `${env.NAME}`, which stays as written.
    pub fn render_body_shown(&self, alert: &Alert) -> Option<String> {
        let b = self.body.as_ref().filter(|b| b.has_secrets())?;
        Some(
            serde_json::to_string(&render::render(b, alert, render::Secrets::Hide))
                .unwrap_or_default(),
        )
    }

    /// The body as [`Target::render_body`] makes it, with `${env.NAME}` left in place: safe
    /// to show.
    pub fn render_body_display(&self, alert: &Alert) -> Value {
        match &self.body {
            Some(b) => render::render(b, alert, render::Secrets::Hide),
            None => alert.body().clone(),
        }
    }
}

impl CompiledRule {
    /// The rule's name, or `file:line`.
    pub(crate) fn id(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.location)
    }

    /// The rule's actions as written: `post alarm_url`, `drop`, `stop`.
    pub(crate) fn actions(&self, targets: &[Target]) -> Vec<String> {
        let mut actions: Vec<String> = self
            .posts
            .iter()
            .filter_map(|&i| targets.get(i as usize))
            .map(|t| format!("post {}", t.name))
            .collect();
        if let Some(m) = &self.memory {
            actions.extend(m.text.iter().cloned());
        }
        if self.drop {
            actions.push(String::from("drop"));
        }
        if self.stop {
            actions.push(String::from("stop"));
        }
        actions
    }
}

/// One rule of a set, for listings (`GET /api/rules`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleInfo {
    /// `rule "name"`, when the rule has one.
    pub name: Option<String>,
    /// `file:line` of the rule.
    pub location: String,
    /// The rule's actions: `post alarm_url`, `drop`, `stop`.
    pub actions: Vec<String>,
}

pub(crate) struct Compiled {
    pub(crate) rules: Vec<CompiledRule>,
    /// Every field path the rules read, once.
    pub(crate) paths: Box<[value::Path]>,
    /// Every distinct test, once.
    pub(crate) atoms: Box<[Atom]>,
    pub(crate) index: Index,
    pub(crate) targets: Vec<Target>,
    /// The declared windows: `Pred::During` indexes them.
    pub(crate) windows: Box<[crate::window::Window]>,
    /// The `inhibit` declarations, in load order.
    pub(crate) inhibits: Box<[inhibit::CompiledInhibit]>,
    /// The rules a resolved alert concerns even when it no longer matches them, by index:
    /// `resolve once` may owe it its resolution; `delay` and `hold during` may hold its
    /// firing, which the resolution cancels.
    pub(crate) on_resolve: Box<[u32]>,
    pub(crate) tests: Vec<CheckedTest>,
    /// [`RuleSet::content_hash`], computed once: the server reads it for every request.
    pub(crate) content_hash: u64,
    pub(crate) sources: Arc<SourceMap>,
    pub(crate) warnings: Diagnostics,
}

/// A compiled, immutable rule set. Cheap to clone (one `Arc`), `Send + Sync`: share one
/// between threads and swap in a new one on reload.
///
/// ```
/// use switchyard::{Alert, RuleSet};
/// let rules = RuleSet::from_files([(
///     "cloud.rules",
///     r#"target alarm_url { url = "https://example.test/alarm" }
///        when alertState == "ALARM" and metricName == "CPUUtilization" -> post alarm_url"#,
/// )])?;
/// let alert = Alert::new(serde_json::json!({"alertState": "ALARM", "metricName": "CPUUtilization"}));
/// let decision = rules.evaluate(&alert);
/// assert_eq!(decision.target_names().collect::<Vec<_>>(), ["alarm_url"]);
/// assert_eq!(decision.rule_ids().collect::<Vec<_>>(), ["cloud.rules:2"]);
/// # Ok::<(), switchyard::Error>(())
/// ```
#[derive(Clone)]
pub struct RuleSet {
    pub(crate) inner: Arc<Compiled>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
};

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.inner.rules.len())
            .field("targets", &self.inner.targets.len())
            .field("tests", &self.inner.tests.len())
            .finish()
    }
}

impl RuleSet {
    /// Compiles a checked folder. `beside` gives what was worked out from the files beside
    /// the check and the compile; it is asked for last, so that the two overlap.
    pub(crate) fn compile(
        mut checked: Checked<'_>,
        sources: Arc<SourceMap>,
        beside: impl FnOnce() -> Beside,
    ) -> RuleSet {
        let mut compiler = Compiler::new();
        let mut rules: Vec<CompiledRule> = std::mem::take(&mut checked.rules)
            .into_iter()
            .map(|r| compiler.rule(r, &checked.targets, &checked.windows))
            .collect();
        // Collected in place, into the checked rules' larger buffer: without this the set
        // kept that buffer, 400 bytes a rule (compile_test.rs).
        rules.shrink_to_fit();
        let inhibits = std::mem::take(&mut checked.inhibits)
            .into_iter()
            .map(|i| inhibit::CompiledInhibit {
                name: i.name,
                location: i.location,
                target: compiler.condition(i.target),
                source: compiler.condition(i.source),
                matching_text: i.matching.iter().map(|p| p.to_string()).collect(),
                matching: i.matching.iter().map(program::path).collect(),
            })
            .collect();
        let on_resolve = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.memory.as_ref().is_some_and(|m| m.on_resolve()))
            .map(|(i, _)| i as u32)
            .collect();
        let tables = compiler.finish();
        let index = Index::build(
            rules.iter().map(|r| &r.pred),
            &tables.atoms,
            &tables.regex_literals,
        );
        let targets = checked
            .targets
            .iter()
            .map(|t| Compiler::target(t, &checked.targets))
            .collect();
        let Beside {
            warnings: analysed,
            content_hash,
        } = beside();
        checked.warnings.extend(analysed);
        let warnings = Diagnostics::new(sources.clone(), checked.warnings);
        RuleSet {
            inner: Arc::new(Compiled {
                content_hash,
                rules,
                paths: tables.paths,
                atoms: tables.atoms,
                index,
                windows: std::mem::take(&mut checked.windows).into_boxed_slice(),
                inhibits,
                on_resolve,
                targets,
                tests: checked.tests,
                sources,
                warnings,
            }),
        }
    }

    /// Evaluates an alert: every rule in order, all that match fire, until one says `stop`
    /// or `drop`. Pure: the same alert and rule set always give the same decision.
    ///
    /// Rules guarded by an equality, `in` or literal-list regex test are found through an
    /// index, so only the rules that can match are tried; each field is read once per
    /// alert and a test several rules share runs once. The decision is exactly that of
    /// [`RuleSet::evaluate_unindexed`].
    ///
    /// The decision is filled in place by a function that is not inlined, and this one
    /// is: a decision built in the callee and returned was copied out, and that copy was a
    /// third of one small rule set's evaluation (a store-forwarding stall on reading back
    /// what `fire` had just written).
    #[inline]
    pub fn evaluate(&self, alert: &Alert) -> Decision<'_> {
        let mut d = Decision::new(self);
        if self.inner.rules.len() <= SCAN_UP_TO {
            self.scan_into(alert, &mut d);
        } else {
            self.evaluate_indexed(alert, &mut d);
        }
        d
    }

    /// [`RuleSet::evaluate`] through the index, into `d`.
    fn evaluate_indexed<'r>(&'r self, alert: &Alert, d: &mut Decision<'r>) {
        let inner = &*self.inner;
        let mut cx = eval::Ctx::new(inner, alert);
        let mut lists: SmallVec<[&[u32]; 4]> = SmallVec::new();
        inner.index.candidates(&mut cx, &mut lists);
        if let [list] = lists.as_slice() {
            // One list (the common case): already in rule order, without repeats.
            for &r in list.iter() {
                if let Some(rule) = inner.rules.get(r as usize)
                    && rule.pred.eval_in(&mut cx)
                    && d.fire(r, rule)
                {
                    break;
                }
            }
            return;
        }
        let mut heads: SmallVec<[u32; 4]> = SmallVec::from_elem(0, lists.len());
        let mut last = None;
        loop {
            // The smallest next rule number among the lists: rule order.
            let mut next: Option<(u32, usize)> = None;
            for (i, list) in lists.iter().enumerate() {
                if let Some(&r) = heads.get(i).and_then(|&h| list.get(h as usize))
                    && next.is_none_or(|(best, _)| r < best)
                {
                    next = Some((r, i));
                }
            }
            let Some((r, i)) = next else { break };
            if let Some(h) = heads.get_mut(i) {
                *h += 1;
            }
            if last == Some(r) {
                continue;
            }
            last = Some(r);
            let Some(rule) = inner.rules.get(r as usize) else {
                continue;
            };
            if rule.pred.eval_in(&mut cx) && d.fire(r, rule) {
                break;
            }
        }
    }

    /// Evaluates an alert the plain way: every rule tried in order, each test reading its
    /// field itself. The reference semantics of [`RuleSet::evaluate`], which gives the same
    /// decision faster; kept for tests, benchmarks and embedders that want to check that.
    #[inline]
    pub fn evaluate_unindexed(&self, alert: &Alert) -> Decision<'_> {
        let mut d = Decision::new(self);
        self.scan_into(alert, &mut d);
        d
    }

    /// [`RuleSet::evaluate_unindexed`], into `d`.
    fn scan_into<'r>(&'r self, alert: &Alert, d: &mut Decision<'r>) {
        let inner = &*self.inner;
        for (i, rule) in inner.rules.iter().enumerate() {
            if rule.pred.eval(inner, alert) && d.fire(i as u32, rule) {
                break;
            }
        }
    }

    /// How many rules the index serves; the others are tried for every alert.
    pub fn indexed_rule_count(&self) -> usize {
        self.inner.index.indexed_rules(self.inner.rules.len())
    }

    /// Evaluates an alert and records why: each rule tried, each predicate's outcome and the
    /// values it saw. Delivers nothing.
    pub fn explain(&self, alert: &Alert) -> Explanation {
        explain::explain(self, alert)
    }

    /// [`RuleSet::explain`] for several alerts in order, with what the rules that remember
    /// (`dedup`, `resolve once`, `at most`) do with each: the alerts go through the rules'
    /// memory at the moments they were received ([`Alert::received_at`]), from an empty
    /// memory, as a test's steps do. Each explanation's decision lists the targets that are
    /// delivered to after that memory, and its `verdicts` say why the others are not.
    /// Delivers nothing and keeps nothing.
    pub fn explain_many(&self, alerts: &[Alert]) -> Vec<Explanation> {
        explain::explain_many(self, alerts)
    }

    /// Runs every `test` block of the folder.
    pub fn run_tests(&self) -> TestReport {
        tests_runner::run(self)
    }

    /// The targets, in declaration order.
    pub fn targets(&self) -> &[Target] {
        &self.inner.targets
    }

    /// What delivering `alert` to `target` takes (see [`Delivery`]): also for a
    /// notification the router makes itself, a group's.
    pub(crate) fn delivery<'r>(&'r self, target: &'r Target, alert: &Alert) -> Delivery<'r> {
        Delivery {
            target,
            fallbacks: self.fallbacks(target),
            body: target.render_body_text(alert),
            shown_body: target.render_body_shown(alert),
        }
    }

    /// `target`'s fallback chain: see [`Delivery::fallbacks`].
    fn fallbacks(&self, target: &Target) -> Vec<&Target> {
        let mut chain: Vec<&Target> = Vec::new();
        let mut at = target;
        while chain.len() < MAX_FALLBACKS
            && let Some(next) = at.fallback().and_then(|name| self.target(name))
            && next.name() != target.name()
            && !chain.iter().any(|t| t.name() == next.name())
        {
            chain.push(next);
            at = next;
        }
        chain
    }

    /// The target with this name.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.inner.targets.iter().find(|t| t.name == name)
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo> + '_ {
        self.inner.rules.iter().map(|r| RuleInfo {
            name: r.name.as_deref().map(str::to_owned),
            location: r.location.to_string(),
            actions: r.actions(&self.inner.targets),
        })
    }

    /// The declared windows as `(name, definition)`, in declaration order:
    /// `("business", "mon-fri 09:00-18:00 Europe/Berlin")`.
    pub fn windows(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        self.inner
            .windows
            .iter()
            .map(|w| (w.name.as_str(), w.text()))
    }

    /// How many rules the set has.
    pub fn rule_count(&self) -> usize {
        self.inner.rules.len()
    }

    /// How many `test` blocks the set has.
    pub fn test_count(&self) -> usize {
        self.inner.tests.len()
    }

    /// Warnings found while loading (the set loaded anyway).
    pub fn warnings(&self) -> &Diagnostics {
        &self.inner.warnings
    }

    /// The files the set was loaded from.
    pub fn sources(&self) -> &SourceMap {
        &self.inner.sources
    }

    /// A hash of the files' names and contents (FNV-1a 64): the same folder content gives
    /// the same hash, so a reload can tell whether anything changed.
    pub fn content_hash(&self) -> u64 {
        self.inner.content_hash
    }
}

/// What a load works out from its files alone, beside the check and the compile: on a
/// thread of its own for a large folder (`load.rs`).
pub(crate) struct Beside {
    /// The warnings of `check::analyse`, for a folder that loads.
    pub(crate) warnings: Vec<Diagnostic>,
    /// [`content_hash`] of the folder's sources.
    pub(crate) content_hash: u64,
}

impl Beside {
    /// `warnings`, and the content hash of `sources`.
    pub(crate) fn of(sources: &SourceMap, warnings: Vec<Diagnostic>) -> Beside {
        Beside {
            warnings,
            content_hash: content_hash(
                sources
                    .files()
                    .map(|f| (f.short_name(), f.text().as_bytes())),
            ),
        }
    }
}

/// FNV-1a 64 over `(name, 0xff, content, 0xff)` of each file, in order.
pub fn content_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> u64 {
    let mut h = Fnv::default();
    for (name, text) in files {
        h.add(name.as_bytes());
        h.add(&[0xff]);
        h.add(text);
        h.add(&[0xff]);
    }
    h.0
}

/// FNV-1a 64 of some bytes: stable across runs and versions, for hashes that are shown
/// (`GET /api/rules`) or compared between processes (a clause's fingerprint in state keys).
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.add(bytes);
    h.0
}

/// The one FNV-1a 64 of the crate.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// What the rules decided for one alert.
///
/// Fired rules and targets live inline for the common case (a handful of each), so
/// evaluating an alert allocates nothing.
#[derive(Clone)]
pub struct Decision<'r> {
    set: &'r RuleSet,
    targets: SmallVec<[u32; 6]>,
    rules: SmallVec<[u32; 6]>,
    dropped: bool,
}

impl<'r> Decision<'r> {
    #[inline]
    fn new(set: &'r RuleSet) -> Decision<'r> {
        Decision {
            set,
            targets: SmallVec::new(),
            rules: SmallVec::new(),
            dropped: false,
        }
    }

    /// Records that rule `i` fired; true when it ends evaluation (`stop` or `drop`).
    #[inline]
    fn fire(&mut self, i: u32, r: &CompiledRule) -> bool {
        self.rules.push(i);
        for &t in r.posts.iter() {
            if !self.targets.contains(&t) {
                self.targets.push(t);
            }
        }
        if r.drop {
            self.dropped = true;
        }
        r.drop || r.stop
    }

    /// The targets to deliver to, in delivery order, each at most once.
    pub fn targets(&self) -> impl Iterator<Item = &'r Target> + '_ {
        self.targets
            .iter()
            .filter_map(|&i| self.set.inner.targets.get(i as usize))
    }

    /// What to deliver for `alert`, one per target in delivery order: the target, its
    /// fallback chain, and the body rendered. What a dispatcher needs, in one step, so it
    /// never comes back to the rule set for a target or a body.
    pub fn deliveries<'a>(&'a self, alert: &'a Alert) -> impl Iterator<Item = Delivery<'r>> + 'a {
        self.targets()
            .map(move |target| self.set.delivery(target, alert))
    }

    /// The rules that fired, in order.
    fn fired_rules(&self) -> impl Iterator<Item = &'r CompiledRule> + '_ {
        self.rules
            .iter()
            .filter_map(|&i| self.set.inner.rules.get(i as usize))
    }

    /// The names of [`Decision::targets`].
    pub fn target_names(&self) -> impl Iterator<Item = &'r str> + '_ {
        self.targets().map(Target::name)
    }

    /// The rules that fired, by name or `file:line`.
    pub fn rule_ids(&self) -> impl Iterator<Item = &'r str> + '_ {
        self.rules
            .iter()
            .filter_map(|&i| self.set.inner.rules.get(i as usize))
            .map(CompiledRule::id)
    }

    /// True when a rule with `drop` fired.
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    /// True when no rule matched: the alert is recorded as unrouted, never silently lost.
    pub fn unrouted(&self) -> bool {
        self.rules.is_empty()
    }

    /// The decision as `{"targets":[...],"rules":[...],"dropped":false,"unrouted":false}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.summary()).unwrap_or(Value::Null)
    }

    /// The decision as plain owned data.
    pub fn summary(&self) -> DecisionSummary {
        DecisionSummary {
            targets: self.target_names().map(str::to_owned).collect(),
            rules: self.rule_ids().map(str::to_owned).collect(),
            dropped: self.dropped,
            unrouted: self.unrouted(),
        }
    }
}

impl std::fmt::Debug for Decision<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.summary().fmt(f)
    }
}

/// One delivery a [`Decision`] asks for ([`Decision::deliveries`]).
#[derive(Clone, Debug)]
pub struct Delivery<'r> {
    /// Where it goes.
    pub target: &'r Target,
    /// Where it goes when `target` gives up: its `fallback`, that one's `fallback`, and so
    /// on, at most [`MAX_FALLBACKS`]. The checker refuses a cycle; one is cut where it
    /// would repeat a target all the same.
    pub fallbacks: Vec<&'r Target>,
    /// The body to send, secrets substituted ([`Target::render_body_text`]).
    pub body: String,
    /// The body as it may be shown, when it differs from `body` (a secret in the template).
    pub shown_body: Option<String>,
}

/// The longest fallback chain followed.
pub const MAX_FALLBACKS: usize = 8;

/// A decision as plain owned data, in the order `switchyard route` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecisionSummary {
    /// Target names, in delivery order.
    pub targets: Vec<String>,
    /// Fired rules, by name or `file:line`.
    pub rules: Vec<String>,
    /// A `drop` fired.
    pub dropped: bool,
    /// No rule matched.
    pub unrouted: bool,
}

#[cfg(test)]
mod property_test;

#[cfg(test)]
mod index_test;

#[cfg(test)]
#[path = "compile_test.rs"]
mod compile_test;
