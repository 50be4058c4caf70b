use super::*;

#[test]
fn counts_are_grouped_by_thousands_and_moments_are_utc_seconds() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1_000), "1\u{202f}000");
    assert_eq!(count(12_345_678), "12\u{202f}345\u{202f}678");
    assert_eq!(moment(1_764_450_000_123), "2025-11-29T21:00:00Z");
}

#[test]
fn the_frame_marks_its_tab_repeats_the_token_and_escapes_the_flash() {
    let frame = Frame {
        tab: "rules",
        title: "Rules <1>",
        csrf: "abc",
        flash: Some((false, String::from("<b>no</b>"))),
        refresh: Some(5),
    };
    let html = page(&frame, html! { p { "body" } }).into_string();
    assert!(
        html.contains(r#"<a href="/ui/rules" data-key="2" aria-current="page">"#),
        "{html}"
    );
    assert!(html.contains(r#"<meta name="csrf-token" content="abc">"#));
    assert!(html.contains("&lt;b&gt;no&lt;/b&gt;") && !html.contains("<b>no"));
    assert!(html.contains("Rules &lt;1&gt;"));
    assert!(html.contains(r#"<main data-refresh="5">"#));
    assert!(
        !page(
            &Frame {
                refresh: None,
                ..frame
            },
            html! {}
        )
        .into_string()
        .contains("data-refresh")
    );
}
