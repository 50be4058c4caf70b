//! A headless Chromium for tests, driven over WebDriver: Debian's chromium and
//! chromium-driver, installed by `scripts/chromium`, ChromeDriver on 127.0.0.1 with a port
//! of its own, stopped by PID (after its session is deleted, which ends the browser).
//!
//! The WebDriver calls a test needs, and no more: open a page, find, click, type, read,
//! run a script, take a screenshot, read the browser's console.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why a browser did not start.
pub(crate) enum StartError {
    /// Chromium cannot be installed here: the test skips, saying why.
    Unavailable(String),
    /// It was installed but did not start: the test fails.
    Failed(String),
}

/// Sends a WebDriver request (its body as JSON) and reads the JSON answer.
async fn answer(req: reqwest::RequestBuilder, body: Option<&Value>) -> Result<Value, String> {
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(b).unwrap_or_default()),
        None => req,
    };
    let bytes = req
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&bytes)))
}

pub(crate) struct Browser {
    driver: Child,
    url: String,
    session: String,
    http: reqwest::Client,
    profile: PathBuf,
}

impl Browser {
    /// ChromeDriver and a headless Chromium with an empty profile of its own.
    pub(crate) async fn start(name: &str) -> Result<Browser, StartError> {
        let driver = super::nats::installed("scripts/chromium").map_err(StartError::Unavailable)?;
        let profile =
            std::env::temp_dir().join(format!("switchyard-browser-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let http = switchyard::http_client()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| StartError::Failed(e.to_string()))?;
        // A port taken between the OS's answer and ChromeDriver's bind: another one.
        for _ in 0..3 {
            let port = super::nats::free_port();
            let mut child = Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    StartError::Failed(format!("cannot start {}: {e}", driver.display()))
                })?;
            let url = format!("http://127.0.0.1:{port}");
            let started = Instant::now();
            let mut up = false;
            while started.elapsed() < Duration::from_secs(20) {
                if http.get(format!("{url}/status")).send().await.is_ok() {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !up {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let caps = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--window-size=1280,900", "--hide-scrollbars",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
                "goog:loggingPrefs": {"browser": "ALL"},
                "unhandledPromptBehavior": "accept",
            }}});
            let made = match answer(http.post(format!("{url}/session")), Some(&caps)).await {
                Ok(v) => v,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(StartError::Failed(format!("no WebDriver session: {e}")));
                }
            };
            let Some(session) = made["value"]["sessionId"].as_str() else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartError::Failed(format!("no WebDriver session: {made}")));
            };
            return Ok(Browser {
                driver: child,
                url,
                session: session.to_owned(),
                http,
                profile,
            });
        }
        Err(StartError::Failed(String::from(
            "ChromeDriver did not answer on three ports",
        )))
    }

    fn at(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.url, self.session)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let v = answer(self.http.request(method, self.at(path)), body.as_ref())
            .await
            .unwrap();
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    /// Opens `url` and waits for it to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The first element `css` selects, waiting (at most 10 s) for it to appear.
    pub(crate) async fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let find = json!({"using": "css selector", "value": css});
            let v = answer(self.http.post(self.at("/element")), Some(&find))
                .await
                .unwrap();
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no element `{css}` within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the element `css` selects.
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The rendered text of the element `css` selects.
    pub(crate) async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (at most 10 s) until the text of `css` contains `want`; returns the text.
    pub(crate) async fn wait_text(&self, css: &str, want: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css).await;
            if text.contains(want) || started.elapsed() > Duration::from_secs(10) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` (a function body; `arguments[0]` is the callback) in the page and
    /// answers what it passes to the callback.
    pub(crate) async fn run_async(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Runs `script` (a function body) in the page and answers what it returns.
    pub(crate) async fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The page's URL now.
    pub(crate) async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The errors the page logged on the browser's console since the last read (a failed
    /// load, a script error, a refused by the content policy).
    pub(crate) async fn console_errors(&self) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A PNG of the window, written to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Resizes the window (a narrow one shows the phone layout).
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Deleting the session ends the browser; then ChromeDriver is stopped by PID.
        let url = self.at("");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let client = super::http::client();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), client.delete(url).send())
                            .await;
                });
            }
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
