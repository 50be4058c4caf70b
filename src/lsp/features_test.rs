use lsp_types::Position;

use super::super::text::Encoding;
use super::super::workspace::{Doc, Workspace};
use super::{completion, enclosing, hover, word_at, words_around};

/// A workspace with one document that is not a file: checked alone.
fn alone(text: &str) -> (Workspace, String) {
    let mut ws = Workspace::new(Encoding::Utf16);
    let uri = String::from("untitled:Untitled-1");
    ws.docs.insert(
        uri.clone(),
        Doc {
            text: text.into(),
            version: 1,
        },
    );
    (ws, uri)
}

fn labels(ws: &mut Workspace, uri: &str, line: u32, character: u32) -> Vec<String> {
    completion(ws, uri, Position { line, character })
        .into_iter()
        .map(|c| c.label)
        .collect()
}

#[test]
fn the_item_around_the_cursor_is_found_from_the_line_that_starts_it() {
    let text = "target t {\n  url = \"x\"\n}\nwhen a == 1\n  and b == 2";
    assert_eq!(enclosing(text).0, "when");
    assert_eq!(enclosing(&text[..20]).0, "target");
    assert_eq!(enclosing("# only a comment\n").0, "");
    // `whenever` is not `when`.
    assert_eq!(enclosing("whenever").0, "");
}

#[test]
fn words_and_operators_under_the_cursor() {
    let text = "when curValue >= 90 -> resolve once";
    let at = |needle: &str, plus: usize| {
        let (s, e) = word_at(text, text.find(needle).unwrap() + plus).unwrap();
        &text[s..e]
    };
    assert_eq!(at("curValue", 3), "curValue");
    assert_eq!(at(">=", 1), ">=");
    // At a word's end, the word before.
    assert_eq!(at(" 90", 0), ">=");
    let (s, e) = word_at(text, text.find("once").unwrap()).unwrap();
    assert_eq!(words_around(text, s, e), ["resolve once", "once"]);
    assert_eq!(word_at("", 0), None);
    assert_eq!(word_at("a  b", 2), None);
}

#[test]
fn completion_follows_what_is_being_written() {
    let text = "target pager { url = \"https://example.test\" }\n\
                window night = daily 22:00-06:00 UTC\n\
                when @source == \"yandex\" and \n\
                when alertStatus -> hold during \n\
                when @state == \n\
                target chat {\n    \n}\n";
    let (mut ws, uri) = alone(text);
    let fields = labels(&mut ws, &uri, 2, 35);
    assert!(fields.contains(&"alertStatus".to_owned()), "{fields:?}");
    assert!(!fields.contains(&"curValue".to_owned()), "{fields:?}");
    assert_eq!(labels(&mut ws, &uri, 3, 38), ["night"]);
    let states = labels(&mut ws, &uri, 4, 15);
    assert!(states.contains(&"firing".to_owned()), "{states:?}");
    let settings = labels(&mut ws, &uri, 6, 4);
    assert!(settings.contains(&"url".to_owned()) && settings.contains(&"fallback".to_owned()));
    let items = labels(&mut ws, &uri, 8, 0);
    assert!(items.contains(&"when".to_owned()) && items.contains(&"target".to_owned()));
}

#[test]
fn hover_reads_the_docs_and_says_what_a_generic_field_is() {
    let (mut ws, uri) = alone(
        "target t { url = \"https://example.test\" }\nwhen labels.team == \"db\" -> post t, dedup for 5m\n",
    );
    let text_at = |ws: &mut Workspace, line: u32, character: u32| {
        hover(ws, &uri, Position { line, character }).map(|h| match h.contents {
            lsp_types::HoverContents::Markup(m) => m.value,
            _ => String::new(),
        })
    };
    let field = text_at(&mut ws, 1, 6).unwrap();
    assert!(field.contains("not tied to one sender"), "{field}");
    let dedup = text_at(&mut ws, 1, 39).unwrap();
    assert!(
        dedup.contains("`dedup [by <fields>] for <duration>`"),
        "{dedup}"
    );
    let setting = text_at(&mut ws, 0, 12).unwrap();
    assert!(setting.contains("absolute"), "{setting}");
    assert_eq!(text_at(&mut ws, 1, 100), None);
}
