use super::*;
use crate::state::{Verdict, VerdictKind};
use serde::Serialize;

/// The answer as serde derived it before the writer: the reference the writer's bytes are
/// held to.
#[derive(Serialize)]
struct Reference<'a> {
    accepted: usize,
    alerts: Vec<ReferenceAlert<'a>>,
}

#[derive(Serialize)]
struct ReferenceAlert<'a> {
    deliveries: &'a [u64],
    dropped: bool,
    id: Option<&'a str>,
    rules: &'a [String],
    source: &'static str,
    state: &'static str,
    targets: &'a [String],
    unrouted: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    verdicts: &'a [Verdict],
}

fn reference(alerts: &[Arc<Recorded>]) -> Vec<u8> {
    serde_json::to_vec(&Reference {
        accepted: alerts.len(),
        alerts: alerts
            .iter()
            .map(|d| ReferenceAlert {
                deliveries: &d.deliveries,
                dropped: d.dropped,
                id: d.id.as_deref(),
                rules: &d.rules,
                source: d.source,
                state: d.state,
                targets: &d.targets,
                unrouted: d.unrouted,
                verdicts: &d.verdicts,
            })
            .collect(),
    })
    .unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_answer_is_byte_for_byte_what_serde_json_writes() {
    // Strings that need escaping, and some that do not but are not ASCII.
    let awkward = [
        "a1",
        "",
        "say \"hi\"",
        "back\\slash",
        "tab\there",
        "line\nbreak",
        "\u{1}\u{1f}",
        "\u{7f} is not escaped",
        "über → 警告 🚨",
        "</script>",
    ];
    let mut alerts = Vec::new();
    for (i, s) in awkward.iter().enumerate() {
        let mut d = Recorded::for_test();
        d.id = (i % 3 != 0).then(|| (*s).to_owned());
        d.rules = strings(&[s, "pages", "file.rules:3"][..(i % 4).min(3)]);
        d.targets = strings(&[s, "pager"][..(i % 3).min(2)]);
        d.deliveries = (0..(i as u64 % 3))
            .map(|k| k * 1_000_000_007 + u64::MAX / 3)
            .collect();
        d.dropped = i % 2 == 0;
        d.unrouted = i % 5 == 0;
        d.source = ["yandex", "prometheus", "generic"][i % 3];
        d.state = ["firing", "resolved"][i % 2];
        if i % 2 == 1 {
            d.verdicts = vec![
                Verdict {
                    rule: (*s).to_owned(),
                    target: String::from("pager"),
                    kind: VerdictKind::Delivered { delivery: 7 },
                    key: None,
                },
                Verdict {
                    rule: String::from("pages"),
                    target: (*s).to_owned(),
                    kind: VerdictKind::Duplicate {
                        of: 7,
                        at: 1_796_039_551_710,
                        until: None,
                    },
                    key: Some((*s).to_owned()),
                },
            ];
        }
        alerts.push(Arc::new(d));
    }
    for n in [0, 1, 2, alerts.len()] {
        let part = alerts[..n].to_vec();
        let written = Accepted {
            alerts: part.clone(),
        }
        .to_json();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(reference(&part)).unwrap(),
            "{n} alerts"
        );
    }
}

#[test]
fn every_kind_of_verdict_is_written_byte_for_byte_as_serde_json_writes_it() {
    let s = |t: &str| t.to_owned();
    let big = u64::MAX - 1;
    let kinds = [
        VerdictKind::Delivered { delivery: 7 },
        VerdictKind::Duplicate {
            of: 7,
            at: 1_796_039_551_710,
            until: Some(big),
        },
        VerdictKind::Duplicate {
            of: 0,
            at: 0,
            until: None,
        },
        VerdictKind::Throttled {
            limit: 5,
            per_ms: 3_600_000,
        },
        VerdictKind::Diverted {
            to: s("say \"hi\""),
            delivery: big,
        },
        VerdictKind::Unannounced,
        VerdictKind::Held {
            delivery: 9,
            until: 1_796_039_551_710,
        },
        VerdictKind::Muted {
            window: s("über → 警告"),
            until: 1,
        },
        VerdictKind::Cancelled { of: 3 },
        VerdictKind::Inhibited {
            inhibit: s("line\nbreak"),
            by: s("\u{1}\u{1f}"),
        },
        VerdictKind::Grouped {
            group: s("{\"alertname\":\"Disk\"}"),
            flush: 1_796_039_551_710,
            members: 1_000,
        },
        VerdictKind::Silenced {
            silence: 4,
            until: 5,
            delivery: Some(6),
        },
        VerdictKind::Silenced {
            silence: 4,
            until: 5,
            delivery: None,
        },
    ];
    let mut d = Recorded::for_test();
    d.id = Some(s("a1"));
    d.verdicts = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| Verdict {
            rule: [s("pages"), s("back\\slash"), s("")][i % 3].clone(),
            target: [s("pager"), s("tab\there")][i % 2].clone(),
            kind: kind.clone(),
            key: (i % 3 == 1).then(|| [s("labels.team=db"), s("</script>")][i % 2].clone()),
        })
        .collect();
    let alerts = vec![Arc::new(d)];
    let written = Accepted {
        alerts: alerts.clone(),
    }
    .to_json();
    assert_eq!(
        String::from_utf8(written).unwrap(),
        String::from_utf8(reference(&alerts)).unwrap()
    );
}

#[test]
fn the_answer_is_a_202_with_json() {
    let mut d = Recorded::for_test();
    d.id = Some(String::from("a1"));
    d.deliveries = vec![1];
    let r = Accepted {
        alerts: vec![Arc::new(d)],
    }
    .into_response();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
}
