//! Property: printing a parsed file and parsing it again gives the same tree.

use proptest::prelude::*;

use super::{parse_for_tests, print};

fn ast_json(text: &str) -> serde_json::Value {
    let ast = parse_for_tests(text).unwrap_or_else(|e| panic!("does not parse: {e:?}\n{text}"));
    serde_json::to_value(&ast).unwrap()
}

/// A string literal that is valid anywhere, including where strings are interpolated: a
/// `${` appears only escaped as `$${`.
fn quoted() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _./:-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect::<String>().replace("${", "$ {")),
        Just(String::from("$${escaped} and a $ alone")),
        Just(String::from("quote \" backslash \\ slash / tab \t")),
    ]
    .prop_map(|s| serde_json::Value::String(s).to_string())
}

fn ident() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-zA-Z0-9_]{0,8}",
        "[a-z][a-z0-9]{0,4}-[a-z0-9]{1,4}"
    ]
    .prop_filter("keywords need quotes", |s| {
        !matches!(
            s.as_str(),
            "and" | "or" | "not" | "in" | "true" | "false" | "null" | "exists"
        )
    })
}

fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        ident().prop_map(|k| format!(".{k}")),
        Just(String::from(".in")),
        quoted().prop_map(|q| format!(".{q}")),
        (0u32..100).prop_map(|i| format!("[{i}]")),
        Just(String::from("[*]")),
    ];
    prop_oneof![
        3 => (ident(), prop::collection::vec(seg, 0..4)).prop_map(|(r, s)| format!("{r}{}", s.concat())),
        1 => prop::sample::select(vec!["@source", "@state", "@name", "@id"]).prop_map(String::from),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        quoted(),
        any::<i64>().prop_map(|n| n.to_string()),
        (-1e6f64..1e6).prop_map(|f| format!("{f:.3}")),
        Just(String::from("1e3")),
        Just(String::from("true")),
        Just(String::from("null")),
    ]
}

fn comparison() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => prop::sample::select(vec!["/^disk_/", "/a\\/b/i", "/x+/ms", "/\\d{2}/x"]).prop_map(String::from),
        1 => prop::sample::select(vec!["5s", "250ms", "1h"]).prop_map(String::from),
    ];
    let op = prop::sample::select(vec![
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "=~",
        "!~",
        "in",
        "not in",
        "not  in",
        "contains",
        "starts_with",
        "ends_with",
    ]);
    prop_oneof![
        (path(), op, value).prop_map(|(p, o, v)| format!("{p} {o} {v}")),
        path().prop_map(|p| format!("exists({p})")),
        ident().prop_map(|w| format!("during {w}")),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    comparison().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join(" and ")),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.join(" or ")),
            inner.clone().prop_map(|c| format!("not {c}")),
            inner.prop_map(|c| format!("({c})")),
        ]
    })
}

fn template() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        scalar(),
        path(),
        Just(String::from(
            "\"${env.TOKEN} and ${labels.a} $${literal} cost $\""
        )),
        Just(String::from("\"$${env.X}${a}\"")),
        Just(String::from("\"100$${a.b}\"")),
        Just(String::from("\"${env.X:-fall back}\"")),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((quoted(), inner), 0..3).prop_map(|v| format!(
                "{{ {} }}",
                v.into_iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ]
    })
}

pub(super) fn item() -> impl Strategy<Value = String> {
    let actions = prop::collection::vec(
        prop_oneof![
            ident().prop_map(|t| format!("post {t}")),
            Just(String::from("stop")),
            Just(String::from("drop")),
            Just(String::from("delay 2m unless resolved")),
            ident().prop_map(|w| format!("hold during {w}")),
            ident().prop_map(|w| format!("mute during {w}")),
            Just(String::from("mute flapping 4 changes in 30m")),
        ],
        1..3,
    )
    .prop_map(|a| a.join(", "));
    let rule =
        (prop::option::of(quoted()), condition(), actions).prop_map(|(name, c, a)| match name {
            Some(n) => format!("rule {n} when {c} -> {a}"),
            None => format!("when {c}\n  -> {a}  # trailing comment"),
        });
    let setting = prop_oneof![
        template().prop_map(|t| format!("body = {t}")),
        Just(String::from("timeout = 5s")),
        Just(String::from("retries = 3,")),
        Just(String::from("url = \"https://x.test/${env.P}\"")),
    ];
    let target = (ident(), prop::collection::vec(setting, 0..3))
        .prop_map(|(n, s)| format!("target {n} {{\n  {}\n}}", s.join("\n  ")));
    let stmt = prop_oneof![
        ident().prop_map(|s| format!("source {s}")),
        template().prop_map(|t| format!("alert {t}")),
        ident().prop_map(|t| format!("expect post {t}")),
        ident().prop_map(|t| format!("expect no post {t}")),
        Just(String::from("expect drop")),
        Just(String::from("expect unrouted")),
        ident().prop_map(|t| format!("expect held {t}")),
        (ident(), template()).prop_map(|(t, b)| format!("expect body {t} {b}")),
        Just(String::from("at 2026-12-24 09:00 Europe/Berlin")),
        Just(String::from("at 5m")),
        Just(String::from("after 90s")),
    ];
    let test = (quoted(), prop::collection::vec(stmt, 0..4))
        .prop_map(|(n, s)| format!("test {n} {{ {} }}", s.join("\n")));
    let part = prop_oneof![
        Just(String::from("daily")),
        Just(String::from("mon-fri 09:00-18:00")),
        Just(String::from("sat,sun")),
        Just(String::from("fri 22:00-6:00")),
        Just(String::from("daily 22:00-24:00")),
        Just(String::from("2026-12-24 .. 2026-12-26")),
        Just(String::from("2026-12-31 18:00 .. 2027-01-01 12:00")),
    ];
    let zone = prop_oneof![
        Just("UTC"),
        Just("Europe/Berlin"),
        Just("America/Argentina/Buenos_Aires"),
        Just("Etc/GMT+3")
    ];
    let window = (ident(), prop::collection::vec(part, 1..3), zone)
        .prop_map(|(n, p, z)| format!("window {n} = {} {z}", p.join(" or ")));
    prop_oneof![3 => rule, 1 => target, 1 => window, 1 => test]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_gives_the_same_tree(items in prop::collection::vec(item(), 1..5)) {
        let text = items.join("\n# a comment\n");
        let tree = ast_json(&text);
        let printed = print::file(&parse_for_tests(&text).unwrap());
        prop_assert_eq!(&ast_json(&printed), &tree, "printed:\n{}", printed);
        let again = print::file(&parse_for_tests(&printed).unwrap());
        prop_assert_eq!(again, printed, "printing is stable");
    }
}

#[test]
fn the_card_line_parses_exactly_as_written() {
    let text = r#"when alertState == "ALARM" and metricName == "CPUUtilization" -> post alarm_url"#;
    let printed = print::file(&parse_for_tests(text).unwrap());
    assert_eq!(printed.trim_end(), text);
}

/// Regression: found by the parse fuzzer. serde_json's default float parsing is not
/// correctly rounded, so a long decimal literal changed value when printed and parsed again.
#[test]
fn fuzz_long_decimal_literals_round_trip_exactly() {
    for lit in [
        "484444444454444444444846.440",
        "0.30000000000000004",
        "1.7976931348623157e308",
        "9007199254740993.5",
    ] {
        let text = format!("when curValue > {lit} -> post t");
        let tree = ast_json(&text);
        let printed = print::file(&parse_for_tests(&text).unwrap());
        assert_eq!(ast_json(&printed), tree, "{lit} printed as {printed}");
    }
}
