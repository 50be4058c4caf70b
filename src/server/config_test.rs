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
