//! The `switchyard` command line. Only argument handling and printing live here; everything
//! a library user needs is in the library.

use std::io::{IsTerminal, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use switchyard::{Alert, Format, RuleSet, Source};

/// mimalloc instead of the system allocator: under load, glibc's malloc took about 30% of
/// the server's CPU (fragmentation across the runtime's and the outbox writer's threads).
/// Measured in `benches/load/`; the library leaves the choice to the program that embeds it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Alert routing with rules written as files.
#[derive(Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server: senders post alerts, the rules route them, the outbox delivers.
    /// With no flags and no config file: rules from `rules/`, the outbox in `./data`,
    /// listening on 127.0.0.1:9095.
    #[cfg(feature = "server")]
    Serve {
        /// A YAML configuration file (docs/server.md lists every key).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The address to listen on (overrides the config file).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The rules folder (overrides the config file).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// The data directory, holding the outbox (overrides the config file).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Start even if the outbox's ledger shows that its database lost committed
        /// deliveries (a damaged write-ahead log); the loss is logged and counted.
        #[arg(long)]
        accept_outbox_loss: bool,
    },
    /// A receiver for trying rules out: answers every request with 200 and prints it on
    /// standard output as one line, `METHOD PATH AUTHORIZATION BODY`. The example rules
    /// deliver to it on its default address. Stops on SIGTERM or Ctrl-C.
    #[cfg(feature = "server")]
    Receive {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:9099")]
        listen: std::net::SocketAddr,
    },
    /// Check a rules folder; exit 0 when it loads (warnings allowed), 1 on errors, 2 on usage or I/O errors.
    Check {
        /// The rules folder.
        #[arg(default_value = "rules")]
        dir: PathBuf,
        /// How to print diagnostics.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Format rules files in canonical layout, every comment kept; exit 0 when done (with
    /// `--check`: when nothing would change), 1 when a file would change (`--check`) or does
    /// not parse, 2 on I/O errors.
    Fmt {
        /// Rules files, or folders whose `.rules` files (at any depth) are formatted.
        #[arg(default_value = "rules")]
        paths: Vec<PathBuf>,
        /// Change nothing: print each file that would change, and exit 1 if any would.
        #[arg(long)]
        check: bool,
    },
    /// Run the language server on standard input and output, for an editor to start
    /// (docs/editors.md): diagnostics as you type, quick fixes, hover, definition,
    /// references, completion, symbols and formatting.
    #[cfg(feature = "lsp")]
    Lsp {
        /// Accepted for editors that pass it; stdio is the only transport.
        #[arg(long, hide = true)]
        stdio: bool,
    },
    /// Decide recorded alerts under two rules folders and print the alerts whose decision
    /// differs, grouped by change (docs/changing-rules.md); exit 0 when none differs, 1 when
    /// some do, 2 when a folder does not load or the alerts cannot be read.
    Diff {
        /// The rules folder as it is (what runs now).
        old: PathBuf,
        /// The rules folder as it would be.
        new: PathBuf,
        /// The alerts: a file of one JSON document a line (a sender's payload, or a line
        /// the server recorded), a folder the server records into (`record:`), or `-` for
        /// standard input.
        #[arg(long)]
        alerts: PathBuf,
        /// The sender of every alert; detected from each payload's shape if omitted.
        #[arg(long, value_parser = source_parser())]
        source: Option<Source>,
        /// Decide as if the alerts arrived at this moment (RFC 3339), for `during`; recorded
        /// lines are otherwise decided at the moment they were received, others now.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
        /// How to print the changes.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Route one alert (JSON) and print the decision as one line of JSON per alert.
    Route {
        /// The rules folder.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The sender, which sets `@source` and normalizes the payload; detected from the shape if omitted.
        #[arg(long, value_parser = source_parser())]
        source: Option<Source>,
        /// Route as if the alerts arrived at this moment (RFC 3339: `2026-12-24T09:00:00+01:00`), for `during`.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
        /// The alert file (one JSON document, or one per line), or `-` for standard input.
        file: PathBuf,
    },
    /// Run every `test` block of a rules folder; exit 1 if any fails.
    Test {
        /// The rules folder.
        #[arg(default_value = "rules")]
        dir: PathBuf,
        /// Also list the rules that no test makes fire (docs/changing-rules.md).
        #[arg(long)]
        coverage: bool,
        /// With `--coverage`, also count what real traffic makes fire: a recording (a file
        /// of one payload a line, or the folder the server records into).
        #[arg(long, requires = "coverage")]
        alerts: Option<PathBuf>,
        /// How to print the report: `junit` is JUnit XML for CI systems.
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
    },
    /// Route alerts and deliver them durably without a server: queue every delivery in the
    /// outbox (on disk before anything is sent), then send until the outbox is empty or
    /// `--wait` runs out; what is left stays queued for the next run. Without FILE, only
    /// delivers what is already pending. Exit 0 when everything was delivered, 3 when some
    /// deliveries are still pending, 4 when none is pending but some became dead letters,
    /// 1 on rule errors, 2 on usage or I/O errors.
    #[cfg(feature = "dispatch")]
    Send {
        /// The rules folder.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The data directory holding the outbox.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The sender; detected from each payload's shape if omitted.
        #[arg(long, value_parser = source_parser())]
        source: Option<Source>,
        /// How long to keep delivering, in seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
        /// Alerts: one JSON document, or one per line; `-` for standard input.
        file: Option<PathBuf>,
        /// Go on even if the outbox's ledger shows that its database lost committed
        /// deliveries (a damaged write-ahead log); the loss is logged and counted.
        #[arg(long)]
        accept_outbox_loss: bool,
    },
    /// Inspect, replay and purge the deliveries that could not be made (stop the server first).
    #[cfg(feature = "dispatch")]
    DeadLetters {
        /// The data directory holding the outbox.
        #[arg(long, default_value = "data", global = true)]
        data: PathBuf,
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Add, list and expire silences on a running server (`/api/silences`).
    #[cfg(feature = "dispatch")]
    Silence {
        /// The server's address.
        #[arg(
            long,
            env = "SWITCHYARD_URL",
            default_value = "http://127.0.0.1:9095",
            global = true
        )]
        server: String,
        /// The admin bearer token, when the server requires one.
        #[arg(
            long,
            env = "SWITCHYARD_ADMIN_TOKEN",
            hide_env_values = true,
            global = true
        )]
        token: Option<String>,
        #[command(subcommand)]
        action: SilenceAction,
    },
    /// Show how one alert is routed: each rule tried, each predicate and the values it saw.
    Explain {
        /// The rules folder.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The sender, which sets `@source` and normalizes the payload; detected from the shape if omitted.
        #[arg(long, value_parser = source_parser())]
        source: Option<Source>,
        /// Print the trace as JSON.
        #[arg(long)]
        json: bool,
        /// Explain as if the alerts arrived at this moment (RFC 3339: `2026-12-24T09:00:00+01:00`), for `during`.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
        /// The alert file (one JSON document, or one per line), or `-` for standard input.
        /// Several alerts go through the rules' memory in order, from empty.
        file: PathBuf,
    },
}

/// What to do with silences, against a running server.
#[cfg(feature = "dispatch")]
#[derive(Subcommand)]
enum SilenceAction {
    /// Add a silence: firings that match CONDITION are held until it ends (or is
    /// expired), then go out if they still fire.
    Add {
        /// The condition, in the rule language: `labels.team == "db"`.
        condition: String,
        /// How long it lasts: `2h`, `90m`, `1d` (or give `--ends`).
        #[arg(long = "for", conflicts_with = "ends")]
        lasts: Option<String>,
        /// When it starts (RFC 3339); now if omitted.
        #[arg(long)]
        starts: Option<String>,
        /// When it ends (RFC 3339).
        #[arg(long)]
        ends: Option<String>,
        /// Who silences (default: $USER or $LOGNAME).
        #[arg(long)]
        created_by: Option<String>,
        /// Why.
        #[arg(long)]
        comment: String,
    },
    /// List silences, newest first.
    List {
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Expire a silence now: what it held and still fires goes out at once.
    Expire {
        /// The silence's id.
        id: u64,
    },
}

/// What to do with dead letters.
#[cfg(feature = "dispatch")]
#[derive(Subcommand)]
enum DeadLetterAction {
    /// List dead letters, oldest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter in full, body included.
    Show {
        /// The dead letter's id.
        id: u64,
    },
    /// Queue a dead letter again, due now; the next `serve` or `send` on this data directory sends it.
    Retry {
        /// The dead letter's id.
        id: u64,
    },
    /// Delete one dead letter, or all with `--all`.
    Purge {
        /// The dead letter's id.
        #[arg(required_unless_present = "all")]
        id: Option<u64>,
        /// Delete every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

/// How `switchyard test` prints its report.
#[derive(Clone, Copy, ValueEnum)]
enum TestFormat {
    Text,
    Json,
    Junit,
}

/// `--source`: one of the senders' names, listed in `--help` and in the error for others.
fn source_parser() -> impl clap::builder::TypedValueParser<Value = Source> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Source::ALL.iter().map(|s| s.as_str()))
        .try_map(|name| Source::from_name(&name).ok_or("unknown source"))
}

/// Writes a line to standard output; a failed write is an error of the command (see
/// [`closed_pipe`]), never a panic as `println!` would make it.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// Writes to standard output without a newline; see [`outln`].
macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `switchyard explain --json | head`: the reader has what it wanted. Exit quietly,
        // as cargo and ripgrep do.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, `outer: cause: cause`. Many errors already print
/// their cause in their own message; a cause whose text the line already ends with is not
/// said twice.
fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Whether an error is standard output's reader having gone away.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn diagnostics_format() -> Format {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Format::Color
    } else {
        Format::Text
    }
}

/// Loads a folder; rule errors are printed and become exit code 1.
/// The `.rules` files of `paths` (a file as given; a folder's at any depth), sorted per
/// folder.
fn rules_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut stack = vec![p.clone()];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read the folder {}", dir.display()))?;
            for entry in entries {
                let path = entry
                    .with_context(|| format!("cannot read the folder {}", dir.display()))?
                    .path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rules") {
                    found.push(path);
                }
            }
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// `switchyard fmt`: formats each file in place (written whole, then renamed over the old),
/// or with `check` lists those that would change.
fn fmt(paths: &[PathBuf], check: bool) -> anyhow::Result<ExitCode> {
    let files = match rules_files(paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let (mut changed, mut broken, mut unreadable) = (0usize, 0usize, 0usize);
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                unreadable += 1;
                continue;
            }
        };
        let formatted = match switchyard::format_rules(&path.display().to_string(), &text) {
            Ok(f) => f,
            Err(d) => {
                let color = if std::io::stderr().is_terminal() {
                    Format::Color
                } else {
                    Format::Text
                };
                eprint!("{}", d.render(color));
                eprintln!(
                    "error: {} does not parse; it is left as it is",
                    path.display()
                );
                broken += 1;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        changed += 1;
        if check {
            outln!("{}", path.display());
            continue;
        }
        let tmp = path.with_extension("rules.fmt-tmp");
        let written = std::fs::write(&tmp, &formatted).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            eprintln!("error: cannot write {}: {e}", path.display());
            unreadable += 1;
        }
    }
    Ok(if unreadable > 0 {
        ExitCode::from(2)
    } else if broken > 0 || (check && changed > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn load(dir: &Path, format: OutputFormat) -> anyhow::Result<Result<RuleSet, ExitCode>> {
    match RuleSet::load_dir(dir) {
        Ok(set) => {
            let w = set.warnings();
            match format {
                OutputFormat::Json => outln!("{}", w.render(Format::Json)),
                OutputFormat::Text => eprint!("{}", w.render(diagnostics_format())),
            }
            Ok(Ok(set))
        }
        Err(e) => match e.diagnostics() {
            Some(d) => {
                match format {
                    OutputFormat::Json => outln!("{}", d.render(Format::Json)),
                    OutputFormat::Text => {
                        eprint!("{}", d.render(diagnostics_format()));
                        eprintln!(
                            "error: {}: {} error(s), {} warning(s)",
                            dir.display(),
                            d.error_count(),
                            d.warning_count()
                        );
                    }
                }
                Ok(Err(ExitCode::from(1)))
            }
            None => Err(anyhow::Error::new(e)
                .context(format!("cannot load rules from `{}`", dir.display()))),
        },
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "server")]
        Command::Serve {
            config,
            listen,
            rules,
            data,
            accept_outbox_loss,
        } => serve(config, listen, rules, data, accept_outbox_loss),
        #[cfg(feature = "server")]
        Command::Receive { listen } => receive(listen),
        Command::Fmt { paths, check } => fmt(&paths, check),
        #[cfg(feature = "lsp")]
        // The protocol's exit codes: 0 after `shutdown` then `exit`, 1 otherwise.
        Command::Lsp { .. } => match switchyard::lsp::serve_stdio() {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("switchyard lsp: {e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Check { dir, format } => {
            let set = match load(&dir, format)? {
                Ok(set) => set,
                Err(code) => return Ok(code),
            };
            if let OutputFormat::Text = format {
                let w = set.warnings().warning_count();
                eprintln!(
                    "ok: {}: {} rules, {} targets, {} tests, {w} warning(s)",
                    dir.display(),
                    set.rule_count(),
                    set.targets().len(),
                    set.test_count()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff {
            old,
            new,
            alerts,
            source,
            at,
            format,
        } => {
            // Warnings go to standard error, whatever the format: standard output is the diff.
            let (Ok(old), Ok(new)) = (
                load(&old, OutputFormat::Text)?,
                load(&new, OutputFormat::Text)?,
            ) else {
                return Ok(ExitCode::from(2));
            };
            let diff = diff_recorded(&alerts, source, at, &old, &new)?;
            match format {
                OutputFormat::Json => outln!("{}", serde_json::to_string(&diff)?),
                OutputFormat::Text => out!("{diff}"),
            }
            Ok(ExitCode::from(u8::from(!diff.is_empty())))
        }
        Command::Route {
            rules,
            source,
            at,
            file,
        } => {
            let set = match load(&rules, OutputFormat::Text)? {
                Ok(set) => set,
                Err(code) => return Ok(code),
            };
            for alert in read_alerts(&file, source, at)? {
                outln!(
                    "{}",
                    serde_json::to_string(&set.evaluate(&alert).summary())?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            rules,
            source,
            json,
            at,
            file,
        } => {
            let set = match load(&rules, OutputFormat::Text)? {
                Ok(set) => set,
                Err(code) => return Ok(code),
            };
            for e in set.explain_many(&read_alerts(&file, source, at)?) {
                if json {
                    outln!("{}", serde_json::to_string(&e)?);
                } else {
                    out!("{e}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "dispatch")]
        Command::DeadLetters { data, action } => dead_letters(&data, action),
        #[cfg(feature = "dispatch")]
        Command::Send {
            rules,
            data,
            source,
            wait,
            file,
            accept_outbox_loss,
        } => {
            let set = match load(&rules, OutputFormat::Text)? {
                Ok(set) => set,
                Err(code) => return Ok(code),
            };
            let alerts = match &file {
                Some(f) => read_alert_stream(f, source, None)?,
                None => Vec::new(),
            };
            send(
                set,
                &data,
                &alerts,
                std::time::Duration::from_secs(wait),
                accept_outbox_loss,
            )
        }
        #[cfg(feature = "dispatch")]
        Command::Silence {
            server,
            token,
            action,
        } => silence(&server, token.as_deref(), action),
        Command::Test {
            dir,
            coverage,
            alerts,
            format,
        } => {
            let set = match load(&dir, OutputFormat::Text)? {
                Ok(set) => set,
                Err(code) => return Ok(code),
            };
            let report = set.run_tests();
            let uncovered = coverage.then(|| report.uncovered(&set));
            let traffic = alerts.map(|path| traffic_hits(&set, &path)).transpose()?;
            match format {
                TestFormat::Text => {
                    out!("{report}");
                    if let Some(u) = &uncovered {
                        out!("{}", coverage_text(set.rule_count(), u));
                    }
                    if let Some(t) = &traffic {
                        out!("{}", t.text(set.rule_count()));
                    }
                }
                TestFormat::Json => {
                    let mut v = serde_json::to_value(&report)?;
                    v["passed"] = report.passed().into();
                    v["failed"] = report.failed().into();
                    if let Some(u) = &uncovered {
                        v["uncovered"] = serde_json::to_value(u)?;
                    }
                    if let Some(t) = &traffic {
                        v["traffic"] = serde_json::to_value(t)?;
                    }
                    outln!("{v}");
                }
                TestFormat::Junit => {
                    out!("{}", report.to_junit(&dir.display().to_string()));
                    if let Some(u) = &uncovered {
                        eprint!("{}", coverage_text(set.rule_count(), u));
                    }
                    if let Some(t) = &traffic {
                        eprint!("{}", t.text(set.rule_count()));
                    }
                }
            }
            Ok(if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The largest alert file `route` and `explain` read.
const MAX_ALERT_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a file of alerts: one JSON document, or one per line (JSON Lines), each received
/// at `at` (now when `None`).
fn read_alert_stream(
    file: &Path,
    source: Option<Source>,
    at: Option<jiff::Timestamp>,
) -> anyhow::Result<Vec<Alert>> {
    alert_stream(&read_limited(file)?, source, at)
}

/// [`read_alert_stream`] of bytes already read.
fn alert_stream(
    bytes: &[u8],
    source: Option<Source>,
    at: Option<jiff::Timestamp>,
) -> anyhow::Result<Vec<Alert>> {
    let at = at.unwrap_or_else(jiff::Timestamp::now);
    let mut alerts = Vec::new();
    for (i, doc) in serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .enumerate()
    {
        let doc = doc.map_err(|e| anyhow::anyhow!("document {} is not valid JSON: {e}", i + 1))?;
        alerts.extend(switchyard::adapt_json_at(source, doc, at).map_err(anyhow::Error::new)?);
    }
    Ok(alerts)
}

/// `test --coverage`: how many rules a test exercises, and the ones none does.
fn coverage_text(rules: usize, uncovered: &[switchyard::RuleInfo]) -> String {
    let mut out = format!(
        "\ncoverage: {} of {rules} rules are exercised by a test\n",
        rules - uncovered.len()
    );
    for r in uncovered {
        match &r.name {
            Some(name) => out.push_str(&format!("  not exercised: `{name}` ({})\n", r.location)),
            None => out.push_str(&format!("  not exercised: {}\n", r.location)),
        }
    }
    out
}

/// `test --coverage --alerts`: what a recording of real traffic makes fire.
#[derive(serde::Serialize)]
struct Traffic {
    /// How many alerts the recording holds.
    alerts: usize,
    /// How many alerts each rule fired for, by name or `file:line`, in file order (rules
    /// that fired for none included, with 0).
    hits: Vec<(String, usize)>,
    /// Lines that are not alerts, skipped (a line the server was writing when read).
    skipped: usize,
}

impl Traffic {
    fn text(&self, rules: usize) -> String {
        let unhit: Vec<&str> = self
            .hits
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(r, _)| r.as_str())
            .collect();
        let mut out = format!(
            "traffic: {} of {rules} rules fire for the {} recorded alert{}\n",
            rules - unhit.len(),
            self.alerts,
            if self.alerts == 1 { "" } else { "s" }
        );
        for r in unhit {
            out.push_str(&format!("  no recorded alert fires: {r}\n"));
        }
        if self.skipped > 0 {
            out.push_str(&format!("  {} line(s) skipped: not alerts\n", self.skipped));
        }
        out
    }
}

/// Decides every alert of a recording with `set` and counts what each rule fired for.
fn traffic_hits(set: &RuleSet, path: &Path) -> anyhow::Result<Traffic> {
    let ids: Vec<String> = set.rules().map(|r| r.name.unwrap_or(r.location)).collect();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let (mut alerts, mut skipped) = (0, 0);
    switchyard::recording::read(path, None, None, |_, _, read| {
        let Ok(list) = read else {
            skipped += 1;
            return Ok(());
        };
        for alert in &list {
            alerts += 1;
            for id in set.evaluate(alert).rule_ids() {
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        Ok(())
    })?;
    let hits = ids
        .into_iter()
        .map(|id| {
            let n = counts.get(&id).copied().unwrap_or(0);
            (id, n)
        })
        .collect();
    Ok(Traffic {
        alerts,
        hits,
        skipped,
    })
}

/// Folds every alert of the recording at `path` (a file of one payload a line, a folder
/// the server recorded into, or `-`) into a diff; a line that is not an alert stops it with
/// its `file:line`.
fn diff_recorded(
    path: &Path,
    source: Option<Source>,
    at: Option<jiff::Timestamp>,
    old: &RuleSet,
    new: &RuleSet,
) -> anyhow::Result<switchyard::RulesDiff> {
    let mut diff = switchyard::DiffBuilder::default();
    let several = path.is_dir();
    switchyard::recording::read(path, source, at, |file, number, alerts| {
        let name = several.then(|| file.file_name().unwrap_or_default().to_string_lossy());
        for alert in &alerts? {
            diff.add_from(old, new, alert, name.as_deref(), number);
        }
        Ok(())
    })?;
    Ok(diff.finish())
}

/// `send`: some deliveries are still pending when `--wait` ran out (kept for the next run).
#[cfg(feature = "dispatch")]
const EXIT_PENDING: u8 = 3;

/// `send`: nothing is pending, but some deliveries of this run became dead letters.
#[cfg(feature = "dispatch")]
const EXIT_DEAD_LETTERED: u8 = 4;

#[cfg(feature = "dispatch")]
fn send(
    set: RuleSet,
    data: &Path,
    alerts: &[Alert],
    wait: std::time::Duration,
    accept_outbox_loss: bool,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let router = switchyard::Router::builder()
            .rules(set)
            .data_dir(data)
            .accept_outbox_loss(accept_outbox_loss)
            .build()
            .await?;
        for chunk in alerts.chunks(1024) {
            for s in router.submit_many(chunk).await? {
                outln!("{}", serde_json::to_string(&s.decision)?);
            }
        }
        if !alerts.is_empty() {
            eprintln!(
                "queued: {} alert(s), durable in {}",
                alerts.len(),
                router.outbox_path().display()
            );
        }
        let started = std::time::Instant::now();
        while router.stats().pending > 0 && started.elapsed() < wait {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        router.shutdown(std::time::Duration::from_secs(5)).await;
        let s = router.stats();
        eprintln!(
            "delivered: {}, pending: {}, dead-lettered now: {}, dead letters kept: {}",
            s.delivered, s.pending, s.dead, s.dead_letters
        );
        Ok(if s.pending > 0 {
            ExitCode::from(EXIT_PENDING)
        } else if s.dead > 0 {
            ExitCode::from(EXIT_DEAD_LETTERED)
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn read_limited(file: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .take(MAX_ALERT_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_ALERT_BYTES + 1).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read `{}`", file.display()))?;
    }
    if bytes.len() as u64 > MAX_ALERT_BYTES {
        anyhow::bail!("the input is larger than {} MiB", MAX_ALERT_BYTES >> 20);
    }
    Ok(bytes)
}

fn read_alerts(
    file: &Path,
    source: Option<Source>,
    at: Option<jiff::Timestamp>,
) -> anyhow::Result<Vec<Alert>> {
    let bytes = read_limited(file)?;
    let trimmed = bytes.trim_ascii_start();
    // Alibaba CloudMonitor posts its callbacks form-encoded; accept a saved body as is.
    if !trimmed.starts_with(b"{") && !trimmed.starts_with(b"[") && trimmed.contains(&b'=') {
        let at = at.unwrap_or_else(jiff::Timestamp::now);
        return switchyard::adapt_json_at(source, switchyard::form_to_json(trimmed), at)
            .map_err(anyhow::Error::new)
            .context("cannot read the alert");
    }
    alert_stream(&bytes, source, at).context("cannot read the alert")
}

#[cfg(feature = "dispatch")]
/// `switchyard silence ...`: one request to the server's `/api/silences`. Exit 0 when it
/// was done, 1 when the server refused it (its diagnostics or message printed), 2 when the
/// server could not be reached.
#[cfg(feature = "dispatch")]
fn silence(server: &str, token: Option<&str>, action: SilenceAction) -> anyhow::Result<ExitCode> {
    use serde_json::{Value, json};
    let base = server.trim_end_matches('/');
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = switchyard::http_client()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let request = match &action {
        SilenceAction::Add {
            condition,
            lasts,
            starts,
            ends,
            created_by,
            comment,
        } => {
            let created_by = created_by
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .unwrap_or_default();
            let mut body =
                json!({"condition": condition, "created_by": created_by, "comment": comment});
            for (key, value) in [("for", lasts), ("starts", starts), ("ends", ends)] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            client
                .post(format!("{base}/api/silences"))
                .header("content-type", "application/json")
                .body(body.to_string())
        }
        SilenceAction::List { .. } => client.get(format!("{base}/api/silences")),
        SilenceAction::Expire { id } => client.delete(format!("{base}/api/silences/{id}")),
    };
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let answer = rt.block_on(async {
        let resp = request.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok::<_, reqwest::Error>((status, body))
    });
    let (status, body) = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: cannot reach the switchyard server at {base}: {e}");
            eprintln!(
                "  = help: start it (`switchyard serve`), or give its address with --server or SWITCHYARD_URL"
            );
            return Ok(ExitCode::from(2));
        }
    };
    if !status.is_success() {
        if let Some(rendered) = body.get("rendered").and_then(Value::as_str) {
            eprint!("{rendered}");
        }
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("the server refused the request");
        eprintln!("error: {message} ({status})");
        return Ok(ExitCode::from(1));
    }
    let line = |s: &Value| {
        let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        format!(
            "{:>6}  {:<8}  {:<24}  {:<24}  {:<12}  {}",
            s.get("id").and_then(Value::as_u64).unwrap_or(0),
            text("status"),
            text("starts"),
            text("ends"),
            text("created_by"),
            text("condition")
        )
    };
    match action {
        SilenceAction::List { json: true } => outln!("{body}"),
        SilenceAction::List { json: false } => {
            outln!(
                "{:>6}  {:<8}  {:<24}  {:<24}  {:<12}  condition",
                "id",
                "status",
                "starts",
                "ends",
                "created_by"
            );
            for s in body
                .get("silences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                outln!("{}", line(s));
            }
        }
        SilenceAction::Add { .. } => {
            outln!(
                "silence {} added: {} until {}",
                body.get("id").and_then(Value::as_u64).unwrap_or(0),
                body.get("status").and_then(Value::as_str).unwrap_or("-"),
                body.get("ends").and_then(Value::as_str).unwrap_or("-")
            );
        }
        SilenceAction::Expire { id } => {
            outln!(
                "silence {id} expired at {}; what it held and still fires goes out now",
                body.get("ends").and_then(Value::as_str).unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dead_letters(data: &Path, action: DeadLetterAction) -> anyhow::Result<ExitCode> {
    if !data.join("outbox.sqlite3").exists() {
        anyhow::bail!(
            "no outbox in `{}` (is this the data directory of a switchyard server?)",
            data.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outbox = switchyard::Outbox::open(data)?;
    match action {
        DeadLetterAction::List { limit, json } => {
            let dead = outbox.dead_letters(limit)?;
            if json {
                for d in &dead {
                    outln!(
                        "{}",
                        serde_json::json!({"id": d.id, "target": d.target, "alert_id": d.alert_id, "attempts": d.attempts, "error": d.error, "created_ms": d.created_ms, "dead_ms": d.dead_ms})
                    );
                }
            } else {
                outln!(
                    "{:>8}  {:<24}  {:>8}  {:<24}  error",
                    "id",
                    "target",
                    "attempts",
                    "alert"
                );
                for d in &dead {
                    outln!(
                        "{:>8}  {:<24}  {:>8}  {:<24}  {}",
                        d.id,
                        d.target,
                        d.attempts,
                        d.alert_id.as_deref().unwrap_or("-"),
                        d.error
                    );
                }
                let (pending, total) = outbox.depth()?;
                eprintln!(
                    "{} shown; {total} dead letter(s), {pending} pending deliveries",
                    dead.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterAction::Show { id } => match outbox.dead_letter(id)? {
            Some(d) => {
                let body: serde_json::Value = serde_json::from_str(d.body())
                    .unwrap_or(serde_json::Value::String(d.body().to_owned()));
                let shown = serde_json::json!({"id": d.id, "target": d.target, "method": d.method(), "alert_id": d.alert_id, "attempts": d.attempts, "error": d.error, "created_ms": d.created_ms, "dead_ms": d.dead_ms, "body": body});
                outln!("{}", serde_json::to_string_pretty(&shown)?);
                Ok(ExitCode::SUCCESS)
            }
            None => anyhow::bail!("no dead letter {id} in `{}`", data.display()),
        },
        DeadLetterAction::Retry { id } => {
            if rt.block_on(outbox.retry(id))? {
                eprintln!("dead letter {id} queued again; the next `switchyard serve` sends it");
                Ok(ExitCode::SUCCESS)
            } else {
                anyhow::bail!("no dead letter {id} in `{}`", data.display())
            }
        }
        DeadLetterAction::Purge { id, all } => {
            let n = rt.block_on(outbox.purge(if all { None } else { id }))?;
            eprintln!("{n} dead letter(s) deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "server")]
fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    rules: Option<PathBuf>,
    data: Option<PathBuf>,
    accept_outbox_loss: bool,
) -> anyhow::Result<ExitCode> {
    use switchyard::server::{Config, LogFormat};

    let mut cfg = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(r) = rules {
        cfg.rules = r;
    }
    if let Some(d) = data {
        cfg.data = d;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.logging.level))
        .map_err(|e| {
            anyhow::anyhow!(
                "logging.level `{}` is not a valid filter: {e}",
                cfg.logging.level
            )
        })?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.logging.format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    let set = match load(&cfg.rules, OutputFormat::Text)? {
        Ok(set) => set,
        Err(code) => return Ok(code),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(
        switchyard::server::Server::new(cfg, set)
            .accept_outbox_loss(accept_outbox_loss)
            .run(switchyard::server::shutdown_signal(), |addr| {
                eprintln!("listening on http://{addr}");
            }),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "server")]
fn receive(listen: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!(
            "receiving on http://{}; each request is printed on standard output",
            listener.local_addr()?
        );
        switchyard::server::receive(listener, switchyard::server::shutdown_signal()).await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
