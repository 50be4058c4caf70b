//! The series held for each source count exactly as the labelled families would.

use crate::alert::Source;
use crate::dispatch::Router;
use crate::engine::RuleSet;

/// Accepted requests and received alerts count through series held per source (made at
/// the first count, then found without hashing a label). Every source, and a request whose
/// source is detected, lands in its own series of the text `/metrics` serves; other
/// statuses go through the family as before; counts add up over repeated requests.
#[tokio::test]
async fn requests_and_alerts_count_under_their_own_source_labels() {
    let rules = RuleSet::from_files([(
        "r.rules",
        "target t { url = \"http://127.0.0.1:9/x\" }\nwhen never == 1 -> post t\n",
    )])
    .expect("the rules load");
    let router = Router::builder()
        .rules(rules)
        .in_memory(true)
        .hold_deliveries(true)
        .build()
        .await
        .expect("the router starts");
    let m = super::ServerMetrics::new(&router);
    for (n, source) in Source::ALL.into_iter().enumerate() {
        for _ in 0..=n {
            m.request(Some(source), 202);
            m.alert(source);
        }
    }
    m.request(None, 202);
    m.request(None, 202);
    m.request(Some(Source::Yandex), 400);
    m.request(None, 413);
    let text = m.encode().expect("the metrics encode");
    for (n, source) in Source::ALL.into_iter().enumerate() {
        let name = source.as_str();
        for line in [
            format!(
                "switchyard_http_ingest_requests_total{{source=\"{name}\",status=\"202\"}} {}\n",
                n + 1
            ),
            format!(
                "switchyard_alerts_received_total{{source=\"{name}\"}} {}\n",
                n + 1
            ),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
    for line in [
        "switchyard_http_ingest_requests_total{source=\"detect\",status=\"202\"} 2\n",
        "switchyard_http_ingest_requests_total{source=\"yandex\",status=\"400\"} 1\n",
        "switchyard_http_ingest_requests_total{source=\"detect\",status=\"413\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(m.alerts_total(), 21);
}
