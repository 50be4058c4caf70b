//! Embedding the engine in a daemon: load a rules folder once, then route alerts read from
//! standard input, one JSON document per line, printing one decision per alert.
//!
//! ```sh
//! echo '{"alertId":"a1","alertName":"cpu","folderId":"f","status":"ALARM"}' \
//!   | cargo run --example embed -- rules
//! ```

use std::io::BufRead;

use switchyard::{RuleSet, adapt_json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| String::from("rules"));
    let rules = match RuleSet::load_dir(&dir) {
        Ok(rules) => rules,
        Err(e) => {
            // Every problem of every file, rustc-style, with a fix for each.
            if let Some(d) = e.diagnostics() {
                eprint!("{}", d.render(switchyard::Format::Text));
            }
            return Err(e.into());
        }
    };
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(&line)?;
        // `None`: detect the sender from the payload's shape; grouped payloads give several alerts.
        for alert in adapt_json(None, body)? {
            let decision = rules.evaluate(&alert);
            for target in decision.targets() {
                // A real daemon would send `target.render_body(&alert)` to `target.url()`.
                eprintln!(
                    "-> {} {} {}",
                    target.method(),
                    target.url_display(),
                    target.render_body_display(&alert)
                );
            }
            println!("{}", serde_json::to_string(&decision.summary())?);
        }
    }
    Ok(())
}
