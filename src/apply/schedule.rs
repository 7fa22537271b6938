//! A generic step scheduler: it runs a graph of tasks, each once every task
//! it depends on succeeded, independent ones at once up to a limit per
//! class, the most urgent first, and settles without running them the
//! tasks whose prerequisites did not succeed.
//!
//! It exists apart from the executor so that the order of work can be read
//! (and changed) without the Contabo and node details in the way: it knows
//! nothing of what a task does. A [`Runner`] runs each task (`Fn(task) ->
//! future`), says whether its result is a success, and reports it.

use std::collections::HashMap;
use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::plan::StepId;

/// The target of the scheduler's debug lines: `task started task=<id>
/// after=<ids>` and `task finished task=<id> done=<bool>`, which
/// `benches/apply_at_scale.rs` reads back from a run's log. It stays the
/// executor's, where these lines have always come from.
const LOG_TARGET: &str = "kiwi_infra::apply::executor";

/// One task of the graph.
#[derive(Debug)]
pub(super) struct Task<W> {
    /// Its id, which dependencies name.
    pub id: StepId,
    /// The tasks that must succeed first. An id that is not in the graph
    /// (done already, or left out of this run) does not hold it back.
    pub deps: Vec<StepId>,
    /// The concurrency limit it counts against (an index into the limits
    /// given to [`run_graph`]); `None`: not limited.
    pub class: Option<usize>,
    /// Among ready tasks competing for a limit, lower starts first; within
    /// the same urgency, graph order.
    pub urgency: u8,
    /// What the runner needs to carry it out.
    pub work: W,
}

/// Carries out tasks for [`run_graph`] and reports how they ended.
pub(super) trait Runner<W>: Sync {
    /// How one task ended.
    type Out: Send;

    /// Runs one task.
    fn run<'a>(&'a self, task: &'a Task<W>) -> impl Future<Output = Self::Out> + Send + 'a;

    /// True when `out` lets the tasks that depend on it start.
    fn succeeded(&self, out: &Self::Out) -> bool;

    /// Told once a task that ran has ended (after the debug line).
    fn finished(&self, task: &Task<W>, out: &Self::Out);

    /// The end of a task that never starts because `because`, one of its
    /// dependencies, did not succeed (reported here too).
    fn not_started(&self, task: &Task<W>, because: &StepId) -> Self::Out;

    /// The end of a task left pending because its dependencies form a
    /// cycle (a plan bug).
    fn on_cycle(&self, task: &Task<W>) -> Self::Out;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Running,
    Done,
    NotDone,
}

/// Runs every task of `tasks` through `runner`, at most `limits[c]` of
/// class `c` at once (a limit of 0 counts as 1), and returns their ends in
/// the order of `tasks`. Never fails as a whole.
pub(super) async fn run_graph<W: Sync, R: Runner<W>>(
    runner: &R,
    tasks: &[Task<W>],
    limits: &[usize],
) -> Vec<R::Out> {
    let index: HashMap<&StepId, usize> =
        tasks.iter().enumerate().map(|(i, t)| (&t.id, i)).collect();
    let mut state = vec![State::Pending; tasks.len()];
    let mut results: Vec<Option<R::Out>> = tasks.iter().map(|_| None).collect();
    let mut running = FuturesUnordered::new();
    let limits: Vec<usize> = limits.iter().map(|&l| l.max(1)).collect();
    let mut busy = vec![0usize; limits.len()];
    // Ready tasks start in graph order within their urgency: with 180
    // slots, tag assignments must not hold the last orders back for
    // seconds of rate-limited requests.
    let mut scan: Vec<usize> = (0..tasks.len()).collect();
    scan.sort_by_key(|&i| tasks[i].urgency);
    loop {
        // Settle what can be settled without running anything, then start
        // what is ready.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for &i in &scan {
                if state[i] != State::Pending {
                    continue;
                }
                let task = &tasks[i];
                let mut blocked = None;
                let mut ready = true;
                for dep in &task.deps {
                    match index.get(dep).map(|&d| state[d]) {
                        // Not part of this run (done already, or deferred
                        // by --contabo-only and not a prerequisite here).
                        None => {}
                        Some(State::Done) => {}
                        Some(State::NotDone) => {
                            blocked = Some(dep);
                            break;
                        }
                        Some(State::Pending | State::Running) => ready = false,
                    }
                }
                if let Some(because) = blocked {
                    state[i] = State::NotDone;
                    results[i] = Some(runner.not_started(task, because));
                    progressed = true;
                    continue;
                }
                let free = task.class.is_none_or(|c| {
                    busy.get(c).copied().unwrap_or(0) < limits.get(c).copied().unwrap_or(1)
                });
                if ready && free {
                    state[i] = State::Running;
                    if let Some(b) = task.class.and_then(|c| busy.get_mut(c)) {
                        *b += 1;
                    }
                    // With its dependencies, so a run's timing can be read
                    // back from a debug log (benches/apply_at_scale.rs).
                    tracing::debug!(
                        target: LOG_TARGET,
                        task = %task.id,
                        after = %task.deps.iter().map(|d| d.0.as_str()).collect::<Vec<_>>().join(","),
                        "task started"
                    );
                    running.push(async move { (i, runner.run(task).await) });
                }
            }
        }
        let Some((i, out)) = running.next().await else {
            break;
        };
        let task = &tasks[i];
        if let Some(b) = task.class.and_then(|c| busy.get_mut(c)) {
            *b -= 1;
        }
        let done = runner.succeeded(&out);
        tracing::debug!(target: LOG_TARGET, task = %task.id, done, "task finished");
        state[i] = if done { State::Done } else { State::NotDone };
        runner.finished(task, &out);
        results[i] = Some(out);
    }
    // Anything still pending sits on a dependency cycle (a plan bug).
    results
        .into_iter()
        .zip(tasks)
        .map(|(r, t)| r.unwrap_or_else(|| runner.on_cycle(t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Runs every task at once and records the order tasks started in;
    /// a task named `fail:*` does not succeed.
    #[derive(Default)]
    struct Recorder {
        started: Mutex<Vec<String>>,
    }

    impl Runner<()> for Recorder {
        type Out = Result<String, String>;

        async fn run(&self, task: &Task<()>) -> Self::Out {
            self.started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(task.id.0.clone());
            tokio::task::yield_now().await;
            if task.id.0.starts_with("fail:") {
                Err(format!("{} failed", task.id))
            } else {
                Ok(format!("{} done", task.id))
            }
        }
        fn succeeded(&self, out: &Self::Out) -> bool {
            out.is_ok()
        }
        fn finished(&self, _task: &Task<()>, _out: &Self::Out) {}
        fn not_started(&self, task: &Task<()>, because: &StepId) -> Self::Out {
            Err(format!("{} skipped because of {because}", task.id))
        }
        fn on_cycle(&self, task: &Task<()>) -> Self::Out {
            Err(format!("{} on a cycle", task.id))
        }
    }

    fn task(id: &str, deps: &[&str], class: Option<usize>, urgency: u8) -> Task<()> {
        Task {
            id: StepId(id.into()),
            deps: deps.iter().map(|d| StepId((*d).into())).collect(),
            class,
            urgency,
            work: (),
        }
    }

    #[tokio::test]
    async fn what_depends_on_a_failure_is_not_started_and_the_rest_runs() {
        let tasks = [
            task("fail:a", &[], Some(0), 0),
            task("b", &["fail:a"], Some(0), 0),
            task("c", &["b"], None, 0),
            task("d", &[], Some(0), 0),
        ];
        let r = Recorder::default();
        let out = run_graph(&r, &tasks, &[1]).await;
        assert_eq!(
            out,
            vec![
                Err("fail:a failed".to_string()),
                Err("b skipped because of fail:a".to_string()),
                Err("c skipped because of b".to_string()),
                Ok("d done".to_string()),
            ]
        );
        let started = r.started.into_inner().unwrap_or_default();
        assert_eq!(started, vec!["fail:a".to_string(), "d".to_string()]);
    }

    #[tokio::test]
    async fn under_a_limit_the_most_urgent_ready_task_starts_first() {
        let tasks = [
            task("tag", &[], Some(0), 2),
            task("order", &[], Some(0), 0),
            task("wait", &["order"], None, 0),
        ];
        let r = Recorder::default();
        let out = run_graph(&r, &tasks, &[1]).await;
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        let started = r.started.into_inner().unwrap_or_default();
        assert_eq!(started[0], "order");
    }

    #[tokio::test]
    async fn tasks_on_a_dependency_cycle_end_as_such_instead_of_hanging() {
        let tasks = [task("a", &["b"], None, 0), task("b", &["a"], None, 0)];
        let out = run_graph(&Recorder::default(), &tasks, &[]).await;
        assert_eq!(
            out,
            vec![
                Err("a on a cycle".to_string()),
                Err("b on a cycle".to_string())
            ]
        );
    }
}
