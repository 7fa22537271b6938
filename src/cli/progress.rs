//! How `apply` shows progress: one live line per node (indicatif) when
//! stderr is a terminal, plain timestamped lines when it is not (CI, logs),
//! nothing with `-q`. The only place that knows indicatif; the core talks to
//! [`crate::report::Reporter`].
//!
//! Progress quotes what Contabo and the nodes said (a status, an error), so
//! each line is escaped for the terminal: one event, one line.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::plan::{Step, StepId};
use crate::report::{Reporter, Stage, StepOutcome};
use crate::text::escape_for_terminal;

/// The reporter the CLI uses for one apply.
#[derive(Debug)]
pub(super) enum CliReporter {
    /// Live lines on a terminal.
    Bars(Bars),
    /// Timestamped lines on stderr.
    Lines,
    /// Nothing (`-q`).
    Quiet,
}

impl CliReporter {
    /// Picks the form for this run.
    pub(super) fn new(quiet: bool) -> Self {
        if quiet {
            CliReporter::Quiet
        } else if std::io::stderr().is_terminal() {
            CliReporter::Bars(Bars::new())
        } else {
            CliReporter::Lines
        }
    }

    /// Stops the live lines, leaving each node's last state on screen.
    pub(super) fn finish(&self) {
        if let CliReporter::Bars(bars) = self {
            bars.finish();
        }
    }
}

/// One spinner line per node.
pub(super) struct Bars {
    multi: MultiProgress,
    lines: Mutex<HashMap<String, ProgressBar>>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix:<36} {wide_msg} {elapsed:>5}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            lines: Mutex::new(HashMap::new()),
            style,
        }
    }

    fn line(&self, slot: &str) -> Option<ProgressBar> {
        let mut lines = self.lines.lock().ok()?;
        // A node that reached a final stage and moves on (bootstrapping
        // after running) gets a fresh line.
        if lines.get(slot).is_some_and(|b| b.is_finished()) {
            lines.remove(slot);
        }
        let bar = lines.entry(slot.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(self.style.clone());
            bar.set_prefix(escape_for_terminal(slot).into_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Some(bar.clone())
    }

    fn println(&self, text: &str) {
        let _ = self.multi.println(escape_for_terminal(text));
    }

    fn finish(&self) {
        if let Ok(lines) = self.lines.lock() {
            for bar in lines.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bars").finish_non_exhaustive()
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Account-wide steps and failures get their own line; node stages are
/// shown by the node's line.
fn worth_a_line(step: &StepId, outcome: &StepOutcome) -> bool {
    !matches!(outcome, StepOutcome::Done(_))
        || step.0.starts_with("secret:")
        || step.0.starts_with("tag:")
}

impl Reporter for CliReporter {
    fn step_started(&self, step: &Step) {
        tracing::debug!(step = %step.id, "step started");
    }

    fn step_finished(&self, step: &StepId, outcome: &StepOutcome) {
        match self {
            CliReporter::Bars(bars) => {
                if worth_a_line(step, outcome) {
                    bars.println(&format!("{step}: {outcome}"));
                }
            }
            CliReporter::Lines => eprintln!(
                "{} {}",
                now(),
                escape_for_terminal(&format!("{step} {outcome}"))
            ),
            CliReporter::Quiet => {}
        }
    }

    fn node_stage(&self, slot: &str, stage: &Stage) {
        let stage_is_final = stage.is_final();
        match self {
            CliReporter::Bars(bars) => {
                if let Some(bar) = bars.line(slot) {
                    let stage = escape_for_terminal(&stage.to_string()).into_owned();
                    if stage_is_final {
                        bar.finish_with_message(stage);
                    } else {
                        bar.set_message(stage);
                    }
                }
            }
            CliReporter::Lines => eprintln!(
                "{} {}",
                now(),
                escape_for_terminal(&format!("{slot} {stage}"))
            ),
            CliReporter::Quiet => {}
        }
    }

    fn message(&self, text: &str) {
        match self {
            CliReporter::Bars(bars) => bars.println(text),
            CliReporter::Lines => eprintln!("{} {}", now(), escape_for_terminal(text)),
            CliReporter::Quiet => {}
        }
    }
}
