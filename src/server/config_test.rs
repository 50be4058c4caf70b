//! Unit tests of the config's errors.

use std::error::Error as _;

use super::{Config, ConfigErrorKind};

/// Found by a review: config errors were one string, so a caller could not tell a missing
/// file from a typo from an unset secret, and `main` flattened the chain. Each now has a
/// kind, and an I/O cause stays chained.
#[test]
fn config_errors_have_a_kind_and_keep_their_cause() {
    let missing = Config::load(std::path::Path::new("/nonexistent/switchyard.yaml"))
        .expect_err("no such file");
    assert_eq!(missing.kind(), ConfigErrorKind::Unreadable);
    let cause = missing.source().expect("the I/O error is chained");
    assert!(cause.downcast_ref::<std::io::Error>().is_some(), "{cause}");
    assert!(
        missing
            .to_string()
            .starts_with("cannot read `/nonexistent/switchyard.yaml`: "),
        "{missing}"
    );

    let typo = Config::parse("listen: [1, 2]\n", "typo.yaml").expect_err("a list is no address");
    assert_eq!(typo.kind(), ConfigErrorKind::Invalid, "{typo}");
    assert!(typo.to_string().contains("typo.yaml"), "{typo}");

    let config = Config::parse("admin:\n  bearer:\n    env: SWITCHYARD_NOT_SET\n", "c.yaml")
        .expect("parses");
    let unset = config.admin_auth(&|_| None).expect_err("unset secret");
    assert_eq!(unset.kind(), ConfigErrorKind::Secret, "{unset}");
    assert!(
        unset
            .to_string()
            .contains("`SWITCHYARD_NOT_SET` is not set"),
        "{unset}"
    );
}

/// `state:` with the nats backend: every mistake is refused at start naming its key and a
/// fix; a secret never appears in an error or in the settings' `Debug`; sqlite needs none
/// of it.
#[cfg(feature = "nats")]
#[test]
fn the_nats_settings_are_checked_at_start_and_keep_their_secret() {
    let no_env = |_: &str| None;
    let settings = |yaml: &str| {
        Config::parse(yaml, "s.yaml")
            .expect("parses")
            .nats_settings(&|name| (name == "NATS_PASSWORD").then(|| String::from("hunter2")))
    };
    let sqlite = Config::parse("", "s.yaml").unwrap();
    assert!(sqlite.nats_settings(&no_env).unwrap().is_none());

    let refused = |yaml: &str, key: &str| {
        let e = settings(yaml).expect_err(yaml);
        assert_eq!(e.kind(), ConfigErrorKind::Invalid, "{e}");
        assert!(e.to_string().contains(key), "{e}");
        e.to_string()
    };
    refused("state: { backend: nats }\n", "state.urls");
    let shown = refused(
        "state: { backend: nats, urls: [\"nats://u:hunter2@h:4222\"] }\n",
        "state.urls",
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    refused(
        "state: { backend: nats, urls: [\"http://h:4222\"] }\n",
        "state.urls",
    );
    let ok = "state: { backend: nats, urls: [\"nats://h:4222\"]";
    refused(&format!("{ok}, replicas: 7 }}\n"), "state.replicas");
    refused(&format!("{ok}, timeout_ms: 10 }}\n"), "state.timeout_ms");
    refused(&format!("{ok}, lease_ms: 0 }}\n"), "state.lease_ms");
    refused(&format!("{ok}, stream: \"a.b\" }}\n"), "state.stream");
    refused(&format!("{ok}, user: me }}\n"), "state:");
    let unset =
        settings(&format!("{ok}, token: {{ env: NATS_TOKEN_UNSET }} }}\n")).expect_err("unset");
    assert_eq!(unset.kind(), ConfigErrorKind::Secret, "{unset}");

    let good = settings(&format!(
        "{ok}, user: me, password: {{ env: NATS_PASSWORD }}, replicas: 1, lease_ms: 5000 }}\n"
    ))
    .unwrap()
    .expect("nats");
    assert_eq!((good.replicas, good.prefix.as_str()), (1, "SWITCHYARD"));
    assert_eq!(good.lease, std::time::Duration::from_secs(5));
    assert_eq!(good.timeout, std::time::Duration::from_secs(4));
    assert!(!format!("{good:?}").contains("hunter2"));
}
