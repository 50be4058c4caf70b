use super::*;

const FILE: &str = r#"# pages
target pager {
    url     = "${env.PAGER_URL:-http://127.0.0.1:9099/pager}"
    headers = { "Authorization": "Bearer s3cr3t-literal", "X-Team": "${env.TEAM:-ops-token}" }
    body    = { "id": alertId, "text": "${env.GREETING:-hello}" }
}

rule "cpu" when metricName == "CPU" and @source == "alibaba" -> post pager
"#;

#[test]
fn header_values_and_env_defaults_are_masked_and_nothing_else() {
    let shown = masked(FILE, &secrets(FILE));
    assert!(!shown.contains("s3cr3t-literal"), "{shown}");
    assert!(!shown.contains("ops-token"), "{shown}");
    assert!(
        !shown.contains("http://127.0.0.1:9099/pager"),
        "an env default: {shown}"
    );
    assert!(!shown.contains("hello"), "{shown}");
    assert!(shown.contains(r#""Authorization": "•••""#), "{shown}");
    assert!(shown.contains("${env.PAGER_URL:-•••}"), "{shown}");
    assert!(
        shown.contains(r#"metricName == "CPU""#),
        "rules are shown: {shown}"
    );
    assert_eq!(
        shown.lines().count(),
        FILE.lines().count(),
        "lines keep their numbers"
    );
}

#[test]
fn a_file_that_does_not_parse_masks_every_string() {
    let broken = "target t { headers = { \"A\": \"tok\" } \nrule when x == \"y\" ->";
    let shown = masked(broken, &secrets(broken));
    assert!(
        !shown.contains("tok") && !shown.contains("\"y\""),
        "{shown}"
    );
}

#[test]
fn the_render_has_a_line_anchor_each_and_escapes_markup() {
    let text = "# <script>alert(1)</script>\nrule when a == \"<b>\" -> stop\n";
    let html = render(text).into_string();
    assert!(
        html.contains(r#"id="L1""#) && html.contains(r#"id="L2""#),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("<b>"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(html.contains(r#"<span class="hl-k">rule</span>"#), "{html}");
    assert!(html.contains(r#"<span class="hl-c">"#), "{html}");
    assert!(html.contains(r#"<span class="hl-o">==</span>"#), "{html}");
}

#[test]
fn tokens_cover_every_byte_of_any_line() {
    for line in [
        "",
        "rule \"a\" when x =~ \"^a\" and n >= 5.5 -> post t # done",
        "\u{feff}ünïcödé @source ••• \"unterminated",
        "•••x•••",
        "\\\"",
    ] {
        let joined: String = tokens(line).iter().map(|(_, p)| *p).collect();
        assert_eq!(joined, line);
    }
}
