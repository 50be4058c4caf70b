//! A dry-run reload (`POST /-/reload?dry_run=true`): the candidate folder (sent in the
//! body, or the rules folder on disk) checked under the reload policy, and its decisions
//! diffed against the live set's over the recorded traffic. Changes nothing: not the
//! running rules, not `rejected_reload`, not the reload metrics.

use axum::body::Body;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, rejected_diagnostics, rules_summary, tests_json};

impl AppState {
    /// What reloading the folder now would do, changing nothing: `None` when the service
    /// has no rules folder.
    pub(super) async fn dry_run(
        &self,
        files: Option<Vec<(String, Vec<u8>)>>,
    ) -> Option<(StatusCode, Value)> {
        use crate::reload::Outcome;
        let folder = self.rules_folder.clone()?;
        // One at a time: each may hold a whole candidate folder and read the recording.
        let Ok(_one) = self.dry_runs.acquire().await else {
            return Some((
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "stopping", "dry_run": true, "message": "shutting down"}),
            ));
        };
        let live = self.router.rules();
        let recording = self.recorder.as_ref().map(|r| r.dir().to_owned());
        let work = move || -> (StatusCode, Value) {
            let candidate = match files {
                Some(files) => folder.candidate_of(files),
                None => folder.candidate(),
            };
            let (set, held) = match candidate {
                Outcome::Loaded(set) => (set, Vec::new()),
                Outcome::Partial(set, held) => (set, held),
                Outcome::Rejected(e) => {
                    let (diagnostics, _) = rejected_diagnostics(&e);
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({"status": "rejected", "dry_run": true, "message": "the folder has errors: a reload would keep the running rules", "diagnostics": diagnostics}),
                    );
                }
                Outcome::TestsFailed(report) => {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({"status": "tests_failed", "dry_run": true, "message": "the folder's tests fail (reload.require_tests): a reload would keep the running rules", "tests": tests_json(&report)}),
                    );
                }
                Outcome::Unchanged | Outcome::WatchError(_) => {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"status": "reload_error", "dry_run": true, "message": "the dry run could not read the folder"}),
                    );
                }
            };
            let mut answer = json!({
                "status": "dry_run",
                "would": if held.is_empty() { "reload" } else { "partial" },
                "unchanged": set.content_hash() == live.content_hash(),
                "rules": rules_summary(&set),
                "state": set.memory_changes(&live),
                "last_good": held.iter().map(crate::reload::HeldFile::to_json).collect::<Vec<_>>(),
                "recorded": Value::Null,
                "diff": Value::Null,
            });
            match recording {
                Some(dir) => {
                    let mut diff = crate::DiffBuilder::default();
                    let mut skipped = 0usize;
                    let read = crate::recording::read(&dir, None, None, |file, line, alerts| {
                        let Ok(alerts) = alerts else {
                            // A line being written as it was read, or a sender's payload
                            // this version no longer reads: not a reason to refuse.
                            skipped += 1;
                            return Ok(());
                        };
                        let name = file.file_name().map(|n| n.to_string_lossy());
                        for alert in &alerts {
                            diff.add_from(&live, &set, alert, name.as_deref(), line);
                        }
                        Ok(())
                    });
                    if let Err(e) = read {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({"status": "reload_error", "dry_run": true, "message": format!("the recording cannot be read: {e}")}),
                        );
                    }
                    let diff = diff.finish();
                    answer["recorded"] = json!({"dir": dir.display().to_string(), "alerts": diff.alerts, "skipped_lines": skipped});
                    answer["diff"] = serde_json::to_value(&diff).unwrap_or(Value::Null);
                }
                None => {
                    answer["message"] = json!(
                        "no recorded traffic to diff against: turn on `record:` in the config (docs/changing-rules.md)"
                    );
                }
            }
            (StatusCode::OK, answer)
        };
        Some(
            tokio::task::spawn_blocking(work)
                .await
                .unwrap_or_else(|_| {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"status": "reload_error", "dry_run": true, "message": "the dry run failed unexpectedly"}),
                    )
                }),
        )
    }
}

/// The candidate folder a dry run may be sent: `{"files": {"name.rules": "text", ...}}`,
/// every file of the folder (an empty body: the rules folder as it is on disk).
pub(super) async fn candidate_files(
    body: Body,
) -> Result<Option<Vec<(String, Vec<u8>)>>, ApiError> {
    // The most a folder may hold, and room for JSON's quoting.
    let limit = crate::MAX_TOTAL_BYTES + (crate::MAX_TOTAL_BYTES >> 2);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "a candidate folder is at most {} MiB of rules",
                crate::MAX_TOTAL_BYTES >> 20
            ),
        )
    })?;
    if bytes.trim_ascii().is_empty() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Candidate {
        files: std::collections::BTreeMap<String, String>,
    }
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_candidate", message);
    let candidate: Candidate = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "the body is not a candidate folder: {e}; send {{\"files\": {{\"name.rules\": \"text\", ...}}}} with every file of the folder, or no body for the folder on disk"
        ))
    })?;
    if candidate.files.len() > crate::MAX_FILES {
        return Err(bad(format!(
            "the candidate folder has more than {} files",
            crate::MAX_FILES
        )));
    }
    for name in candidate.files.keys() {
        let plain =
            !name.starts_with('.') && name.ends_with(".rules") && !name.contains(['/', '\\', '\0']);
        if !plain {
            return Err(bad(format!(
                "`{name}` is not a rules file's name: a name in the folder (no path), not hidden, ending in `.rules`"
            )));
        }
    }
    Ok(Some(
        candidate
            .files
            .into_iter()
            .map(|(name, text)| (name, text.into_bytes()))
            .collect(),
    ))
}
