//! How `apply` shows progress: one live line per node (indicatif) when
//! stderr is a terminal, plain timestamped lines when it is not (CI, logs),
//! nothing with `-q`. The only place that knows indicatif; the core talks to
//! [`crate::report::Reporter`].
//!
//! One reporter serves the whole apply, follow-up rounds included: on a
//! terminal each node keeps exactly one line from its first stage to the
//! end, and that line ends on the node's final state for the run
//! (`joined, Ready`, `labelled`, `failed: …`, `held: …`), never on a stage
//! it has left. Without a terminal no line is printed twice.
//!
//! Progress quotes what Contabo and the nodes said (a status, an error), so
//! each line is escaped for the terminal: one event, one line.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Timestamped lines on stderr; each text (without its time) once.
    Lines(Mutex<HashSet<String>>),
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
            CliReporter::Lines(Mutex::default())
        }
    }

    /// Stops the live lines, leaving on each node's line its final state
    /// (`states`, slot → words; see `apply::summary::node_states`).
    pub(super) fn finish(&self, states: &BTreeMap<String, String>) {
        if let CliReporter::Bars(bars) = self {
            bars.finish(states);
        }
    }

    /// Runs `f` (which prints to stdout) with the live lines out of its way,
    /// so a plan printed between rounds is not torn by a redraw.
    pub(super) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match self {
            CliReporter::Bars(bars) => bars.multi.suspend(f),
            _ => f(),
        }
    }

    /// Prints `text` on stderr with a timestamp, unless it was printed before.
    fn line_once(seen: &Mutex<HashSet<String>>, text: String) {
        let text = escape_for_terminal(&text).into_owned();
        let new = seen
            .lock()
            .map_or(true, |mut seen| seen.insert(text.clone()));
        if new {
            eprintln!("{} {text}", now());
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
        Self::with_target(ProgressDrawTarget::stderr())
    }

    fn with_target(target: ProgressDrawTarget) -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix:<36} {wide_msg} {elapsed:>5}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Bars {
            multi: MultiProgress::with_draw_target(target),
            lines: Mutex::new(HashMap::new()),
            style,
        }
    }

    /// The node's one line, made on its first stage. It is never finished
    /// before the run ends: a node moves on (running → bootstrapping →
    /// labelling) on the same line.
    fn line(&self, slot: &str) -> Option<ProgressBar> {
        let mut lines = self.lines.lock().ok()?;
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

    fn finish(&self, states: &BTreeMap<String, String>) {
        if let Ok(lines) = self.lines.lock() {
            for (slot, bar) in lines.iter() {
                match states.get(slot) {
                    Some(state) => {
                        bar.finish_with_message(escape_for_terminal(state).into_owned());
                    }
                    None => bar.abandon(),
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
            CliReporter::Lines(seen) => Self::line_once(seen, format!("{step} {outcome}")),
            CliReporter::Quiet => {}
        }
    }

    fn node_stage(&self, slot: &str, stage: &Stage) {
        match self {
            CliReporter::Bars(bars) => {
                if let Some(bar) = bars.line(slot) {
                    bar.set_message(escape_for_terminal(&stage.to_string()).into_owned());
                }
            }
            CliReporter::Lines(seen) => Self::line_once(seen, format!("{slot} {stage}")),
            CliReporter::Quiet => {}
        }
    }

    fn message(&self, text: &str) {
        match self {
            CliReporter::Bars(bars) => bars.println(text),
            CliReporter::Lines(seen) => Self::line_once(seen, text.to_string()),
            CliReporter::Quiet => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hidden_bars() -> Bars {
        Bars::with_target(ProgressDrawTarget::hidden())
    }

    #[test]
    fn a_node_that_moves_on_after_running_keeps_one_line_ending_on_its_final_state() {
        let reporter = CliReporter::Bars(hidden_bars());
        reporter.node_stage("kiwi-a-general-01", &Stage::Ordering);
        let CliReporter::Bars(bars) = &reporter else {
            unreachable!()
        };
        let first = bars.lines.lock().unwrap()["kiwi-a-general-01"].clone();
        for stage in [
            Stage::Provisioning,
            Stage::Running,
            Stage::Connecting,
            Stage::Reachable,
            Stage::Bootstrapping,
            Stage::Labelling,
        ] {
            reporter.node_stage("kiwi-a-general-01", &stage);
        }
        // A follow-up round of the same apply.
        reporter.node_stage("kiwi-a-general-01", &Stage::Labelling);
        reporter.node_stage("kiwi-a-general-02", &Stage::Running);
        let states = BTreeMap::from([
            (
                "kiwi-a-general-01".to_string(),
                "joined, Ready, labelled".to_string(),
            ),
            (
                "kiwi-a-general-02".to_string(),
                "failed: no route".to_string(),
            ),
        ]);
        reporter.finish(&states);
        let lines = bars.lines.lock().unwrap();
        assert_eq!(lines.len(), 2, "one line per node");
        // The line the node started on is the one that ends true.
        assert!(first.is_finished());
        assert_eq!(first.message(), "joined, Ready, labelled");
        for (slot, bar) in lines.iter() {
            assert!(bar.is_finished(), "{slot}");
            assert_eq!(bar.message(), states[slot], "{slot}");
        }
    }

    #[test]
    fn without_a_terminal_no_line_is_printed_twice() {
        let seen = Mutex::default();
        CliReporter::line_once(&seen, "kiwi-a-general-01 running".into());
        CliReporter::line_once(&seen, "kiwi-a-general-01 running".into());
        CliReporter::line_once(&seen, "kiwi-a-general-01 reachable over SSH".into());
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
