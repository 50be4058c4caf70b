use super::*;

const A: &str = "target pager { url = \"https://example.test/p\" }\nrule \"a1\" when team == \"a\" -> post pager\n";
const B: &str = "rule \"b1\" when team == \"b\" -> post pager\n";

/// A folder with `files`, and a `RulesFolder` of the set loaded from it under `policy`.
fn folder(name: &str, files: &[(&str, &str)], policy: Policy) -> (RulesFolder, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-reload-unit-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(std::fs::create_dir_all(&dir).is_ok());
    for (file, text) in files {
        assert!(std::fs::write(dir.join(file), text).is_ok());
    }
    let set = RuleSet::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    (RulesFolder::of_set(&dir, &set).with_policy(policy), dir)
}

const PER_FILE: Policy = Policy {
    require_tests: false,
    isolation: Isolation::PerFile,
};

fn write(dir: &Path, file: &str, text: &str) {
    assert!(std::fs::write(dir.join(file), text).is_ok());
}

fn rule_names(set: &RuleSet) -> Vec<String> {
    set.rules().filter_map(|r| r.name).collect()
}

#[test]
fn a_broken_file_keeps_its_last_good_version_while_another_files_edit_applies() {
    let (folder, dir) = folder("partial", &[("a.rules", A), ("b.rules", B)], PER_FILE);
    write(
        &dir,
        "a.rules",
        "target pager { url = \"https://example.test/p\" }\nrule \"a1\" when team == \"a\" -> post pager\nwhen team = \"x\" -> post pager\n",
    );
    write(
        &dir,
        "b.rules",
        "rule \"b2\" when team == \"b\" -> post pager\n",
    );
    let Outcome::Partial(set, held) = folder.reload(false) else {
        panic!("expected a partial reload");
    };
    assert_eq!(
        rule_names(&set),
        ["a1", "b2"],
        "b's edit applies, a runs as it last loaded"
    );
    assert_eq!(held.len(), 1);
    let a = &held[0];
    assert_eq!(a.file, "a.rules");
    assert!(a.last_good);
    assert!(a.depends_on.is_empty());
    assert_eq!(a.diagnostics.error_count(), 1);
    assert_eq!(a.used_by, ["b.rules:1 posts to pager"]);
    let shown = a.to_json();
    assert_eq!(shown["running"], "last_good");
    assert_eq!(
        shown["diagnostics"][0]["file"]
            .as_str()
            .map(|f| f.ends_with("a.rules")),
        Some(true)
    );
    // Nothing changed since: unchanged, not a second partial reload.
    assert!(matches!(folder.reload(false), Outcome::Unchanged));
    // The fix is loaded whole.
    write(&dir, "a.rules", A);
    assert!(
        matches!(folder.reload(false), Outcome::Loaded(ref s) if rule_names(s) == ["a1", "b2"])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_broken_file_is_left_out_and_a_file_that_needs_a_held_ones_new_version_is_held_too() {
    let (folder, dir) = folder("rounds", &[("a.rules", A), ("b.rules", B)], PER_FILE);
    write(&dir, "c.rules", "when -> post pager\n");
    let Outcome::Partial(set, held) = folder.reload(false) else {
        panic!("expected a partial reload");
    };
    assert_eq!(set.sources().files().count(), 2);
    assert_eq!(held[0].file, "c.rules");
    assert!(!held[0].last_good);
    assert_eq!(held[0].to_json()["running"], "left_out");

    // a's new version declares `chat` and has an error; b's new version posts to `chat`.
    std::fs::remove_file(dir.join("c.rules")).unwrap_or_default();
    write(
        &dir,
        "a.rules",
        "target pager { url = \"https://example.test/p\" }\ntarget chat { url = \"https://example.test/c\" }\nwhen team = \"a\" -> post pager\n",
    );
    write(
        &dir,
        "b.rules",
        "rule \"b3\" when team == \"b\" -> post chat\n",
    );
    let Outcome::Partial(set, held) = folder.reload(false) else {
        panic!("expected a partial reload");
    };
    assert_eq!(
        rule_names(&set),
        ["a1", "b1"],
        "both run as they last loaded"
    );
    let files: Vec<(&str, &[String])> = held
        .iter()
        .map(|h| (h.file.as_str(), h.depends_on.as_slice()))
        .collect();
    assert_eq!(
        files,
        [
            ("a.rules", &[][..]),
            ("b.rules", &[String::from("a.rules")][..])
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_edit_that_breaks_an_unchanged_file_is_refused_whole() {
    let (folder, dir) = folder("blame", &[("a.rules", A), ("b.rules", B)], PER_FILE);
    // a no longer declares `pager`, which the unchanged b posts to: a has no error, b's
    // error is a's doing. Holding b would change nothing; the edit is refused.
    write(
        &dir,
        "a.rules",
        "target chat { url = \"https://example.test/c\" }\nrule \"a1\" when team == \"a\" -> post chat\n",
    );
    let Outcome::Rejected(e) = folder.reload(false) else {
        panic!("expected a rejection");
    };
    assert_eq!(
        e.diagnostics().and_then(Diagnostics::files_with_errors),
        Some(vec![String::from("b.rules")])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn whole_isolation_and_a_folder_given_by_hash_refuse_every_error() {
    let (folder, dir) = folder(
        "whole",
        &[("a.rules", A), ("b.rules", B)],
        Policy::default(),
    );
    write(&dir, "b.rules", "when team = \"b\" -> post pager\n");
    assert!(matches!(folder.reload(false), Outcome::Rejected(_)));
    let by_hash = RulesFolder::new(&dir, 0).with_policy(PER_FILE);
    assert!(
        matches!(by_hash.reload(false), Outcome::Rejected(_)),
        "no last good version is known"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn required_tests_refuse_a_folder_whose_tests_fail_and_a_dry_run_changes_nothing() {
    let policy = Policy {
        require_tests: true,
        isolation: Isolation::Whole,
    };
    let test = |team: &str| {
        format!("test \"a pages\" {{ alert {{ \"team\": \"{team}\" }} expect post pager }}\n")
    };
    let (folder, dir) = folder(
        "tests",
        &[("a.rules", &format!("{A}{}", test("a")))],
        policy,
    );
    write(&dir, "a.rules", &format!("{A}{}", test("b")));
    // A dry run says what the reload would say, and the reload still sees a change.
    let Outcome::TestsFailed(report) = folder.candidate() else {
        panic!("expected failing tests");
    };
    assert_eq!(report.failed(), 1);
    assert!(matches!(folder.reload(false), Outcome::TestsFailed(_)));
    write(&dir, "a.rules", &format!("{A}{}", test("a")));
    write(&dir, "b.rules", B);
    assert!(matches!(folder.candidate(), Outcome::Loaded(_)));
    assert!(matches!(folder.reload(false), Outcome::Loaded(_)));
    let _ = std::fs::remove_dir_all(&dir);
}
