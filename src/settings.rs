//! Settings in one place: every environment variable kiwi-infra reads is
//! declared here once, with what it means, its unit, default and range, and
//! whether it is an operator knob, a test-only timing or the system's.
//!
//! This module is the only code of `src/` that reads the process
//! environment (`std::env::var`); everything else asks it. Operator knobs
//! are flags first: clap reads their variable as the flag's fallback (the
//! flag wins) and shows it in `--help`, under the name declared in
//! [`EnvVars`]. Test-only timings carry the `KIWI_INTERNAL_` prefix, are in
//! no `--help`, and are described in `docs/internal-knobs.md`.
//!
//! A knob's value comes from outside the code, so it is parsed where it
//! enters ([`parse_count`], [`parse_wait`], [`parse_millis`]): a value that is
//! not what the knob expects (zero, negative, not a number, a fraction, an
//! unknown unit) is an error naming the variable or the flag, never ignored.
//! A legal value that is merely too large is cut to the knob's maximum
//! ([`MOST_CONCURRENT`], [`LONGEST_WAIT`]), so no clock or buffer overflows.
//!
//! Modelled on uv's `uv_static::EnvVars` registry and its settings resolver.

use std::ffi::OsString;
use std::time::Duration;

/// The names of the environment variables kiwi-infra reads. Each one is
/// described in [`VARIABLES`]; code refers to a variable only through these
/// constants.
#[derive(Debug)]
pub struct EnvVars;

impl EnvVars {
    // Operator knobs of `apply` (flags with these fallbacks).
    /// `--concurrency`: Contabo steps at once.
    pub const KIWI_CONCURRENCY: &'static str = "KIWI_CONCURRENCY";
    /// `--node-concurrency`: node steps at once.
    pub const KIWI_NODE_CONCURRENCY: &'static str = "KIWI_NODE_CONCURRENCY";
    /// `--status-timeout`: time limit per Contabo status while waiting for `running`.
    pub const KIWI_STATUS_TIMEOUT: &'static str = "KIWI_STATUS_TIMEOUT";
    /// `--unlisted-order-wait`: how long to look for an order Contabo lists late.
    pub const KIWI_UNLISTED_ORDER_WAIT: &'static str = "KIWI_UNLISTED_ORDER_WAIT";
    /// `--node-ready-timeout`: how long a node may take to answer and turn Ready.
    pub const KIWI_NODE_READY_TIMEOUT: &'static str = "KIWI_NODE_READY_TIMEOUT";

    // Operator settings every command understands (flags with these fallbacks).
    /// `--inventory`.
    pub const KIWI_INVENTORY: &'static str = "KIWI_INVENTORY";
    /// `--api-url`.
    pub const KIWI_API_URL: &'static str = "KIWI_API_URL";
    /// `--auth-url`.
    pub const KIWI_AUTH_URL: &'static str = "KIWI_AUTH_URL";
    /// `--ssh-identity`.
    pub const KIWI_SSH_IDENTITY: &'static str = "KIWI_SSH_IDENTITY";
    /// `--rate-limit`.
    pub const KIWI_RATE_LIMIT: &'static str = "KIWI_RATE_LIMIT";
    /// `--page-size`.
    pub const KIWI_PAGE_SIZE: &'static str = "KIWI_PAGE_SIZE";
    /// `sandbox --dir`.
    pub const KIWI_SANDBOX_DIR: &'static str = "KIWI_SANDBOX_DIR";
    /// `--client-id`.
    pub const CNTB_OAUTH2_CLIENT_ID: &'static str = "CNTB_OAUTH2_CLIENT_ID";
    /// `--client-secret`.
    pub const CNTB_OAUTH2_CLIENT_SECRET: &'static str = "CNTB_OAUTH2_CLIENT_SECRET";
    /// `--api-user`.
    pub const CNTB_OAUTH2_USER: &'static str = "CNTB_OAUTH2_USER";
    /// `--api-password`.
    pub const CNTB_OAUTH2_PASS: &'static str = "CNTB_OAUTH2_PASS";

    // Test-only timings: no flag, no `--help`.
    /// First pause between two looks at an instance's status, in ms.
    pub const KIWI_INTERNAL_POLL_MS: &'static str = "KIWI_INTERNAL_POLL_MS";
    /// How long a new instance may stay unlisted or `unknown`, in ms.
    pub const KIWI_INTERNAL_START_GRACE_MS: &'static str = "KIWI_INTERNAL_START_GRACE_MS";
    /// Pause between two readiness checks of a node, in ms.
    pub const KIWI_INTERNAL_NODE_POLL_MS: &'static str = "KIWI_INTERNAL_NODE_POLL_MS";

    // The system's.
    /// Non-empty: no colour with `--color auto` (no-color.org).
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// A `tracing` filter that replaces `-v`/`-q`.
    pub const RUST_LOG: &'static str = "RUST_LOG";
    /// Where the sandbox's preflight looks for `ssh`, `unshare`, `nsenter`.
    pub const PATH: &'static str = "PATH";
    /// The login name recorded as the apply lock's holder.
    pub const USER: &'static str = "USER";
    /// The login name, where `USER` is unset.
    pub const USERNAME: &'static str = "USERNAME";
    /// The login name, where `USER` and `USERNAME` are unset.
    pub const LOGNAME: &'static str = "LOGNAME";
    /// The host name, where `/proc/sys/kernel/hostname` cannot be read.
    pub const HOSTNAME: &'static str = "HOSTNAME";
    /// The host name, where `HOSTNAME` is unset too.
    pub const COMPUTERNAME: &'static str = "COMPUTERNAME";
}

/// Who a variable is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An operator setting: the fallback of the named flag, shown in its
    /// `--help`.
    Operator {
        /// The flag, e.g. `--concurrency`.
        flag: &'static str,
    },
    /// A test-only timing (tests, benchmarks): in no `--help`.
    Internal,
    /// Set by the system or the operator's shell for every program.
    System,
}

/// What a variable holds, and so how its value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A number of tasks at once ([`parse_count`]).
    Count,
    /// A wait such as `90s` ([`parse_wait`]).
    Wait,
    /// A whole number of milliseconds; `zero_ok` says whether 0 is allowed
    /// ([`parse_millis`]).
    Millis {
        /// 0 is a meaningful value (no wait at all).
        zero_ok: bool,
    },
    /// Text that clap or the caller checks.
    Text,
}

/// One environment variable kiwi-infra reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// Its name (one of [`EnvVars`]).
    pub name: &'static str,
    /// Who it is for.
    pub audience: Audience,
    /// What it holds.
    pub kind: Kind,
    /// What it changes: unit, default and range.
    pub doc: &'static str,
}

const fn operator(
    name: &'static str,
    flag: &'static str,
    kind: Kind,
    doc: &'static str,
) -> Variable {
    Variable {
        name,
        audience: Audience::Operator { flag },
        kind,
        doc,
    }
}

const fn internal(name: &'static str, zero_ok: bool, doc: &'static str) -> Variable {
    Variable {
        name,
        audience: Audience::Internal,
        kind: Kind::Millis { zero_ok },
        doc,
    }
}

const fn system(name: &'static str, doc: &'static str) -> Variable {
    Variable {
        name,
        audience: Audience::System,
        kind: Kind::Text,
        doc,
    }
}

/// Every environment variable kiwi-infra reads.
pub const VARIABLES: &[Variable] = &[
    operator(
        EnvVars::KIWI_CONCURRENCY,
        "--concurrency",
        Kind::Count,
        "Contabo steps (orders, tags, cancels, ...) apply runs at once. A whole number, \
         default 8, at least 1; more than 1024 counts as 1024.",
    ),
    operator(
        EnvVars::KIWI_NODE_CONCURRENCY,
        "--node-concurrency",
        Kind::Count,
        "Node steps (bootstraps, joins, labels, drains) apply runs at once. A whole number, \
         default 32, at least 1; more than 1024 counts as 1024.",
    ),
    operator(
        EnvVars::KIWI_STATUS_TIMEOUT,
        "--status-timeout",
        Kind::Wait,
        "Time limit per Contabo status (provisioning, installing, ...) while apply waits for \
         `running`. A duration such as 90s, 10m or 2h (plain numbers are seconds), default \
         30m, more than zero; longer than a week counts as a week.",
    ),
    operator(
        EnvVars::KIWI_UNLISTED_ORDER_WAIT,
        "--unlisted-order-wait",
        Kind::Wait,
        "How long apply keeps looking for an order whose outcome is unknown before stopping \
         its slot for the operator. A duration (500ms, 90s, 2m), default 2m, more than zero; \
         longer than a week counts as a week.",
    ),
    operator(
        EnvVars::KIWI_NODE_READY_TIMEOUT,
        "--node-ready-timeout",
        Kind::Wait,
        "How long a node may take to answer over SSH, finish its first boot and turn Ready. \
         A duration, default 10m for Ready and 30m for a first boot, more than zero; longer \
         than a week counts as a week.",
    ),
    operator(
        EnvVars::KIWI_INVENTORY,
        "--inventory",
        Kind::Text,
        "The inventory directory.",
    ),
    operator(
        EnvVars::KIWI_API_URL,
        "--api-url",
        Kind::Text,
        "Contabo API base URL.",
    ),
    operator(
        EnvVars::KIWI_AUTH_URL,
        "--auth-url",
        Kind::Text,
        "Contabo OAuth2 token URL.",
    ),
    operator(
        EnvVars::KIWI_SSH_IDENTITY,
        "--ssh-identity",
        Kind::Text,
        "Private key to log in to nodes with.",
    ),
    operator(
        EnvVars::KIWI_RATE_LIMIT,
        "--rate-limit",
        Kind::Text,
        "Contabo requests per second (0.01-10000), default 10.",
    ),
    operator(
        EnvVars::KIWI_PAGE_SIZE,
        "--page-size",
        Kind::Text,
        "Items asked for per page of a Contabo list (1-1000).",
    ),
    operator(
        EnvVars::KIWI_SANDBOX_DIR,
        "--dir",
        Kind::Text,
        "The sandbox's directory, default /tmp/kiwi-sandbox.",
    ),
    operator(
        EnvVars::CNTB_OAUTH2_CLIENT_ID,
        "--client-id",
        Kind::Text,
        "Contabo OAuth2 client id.",
    ),
    operator(
        EnvVars::CNTB_OAUTH2_CLIENT_SECRET,
        "--client-secret",
        Kind::Text,
        "Contabo OAuth2 client secret.",
    ),
    operator(
        EnvVars::CNTB_OAUTH2_USER,
        "--api-user",
        Kind::Text,
        "Contabo API user.",
    ),
    operator(
        EnvVars::CNTB_OAUTH2_PASS,
        "--api-password",
        Kind::Text,
        "Contabo API password.",
    ),
    internal(
        EnvVars::KIWI_INTERNAL_POLL_MS,
        false,
        "First pause between two looks at an instance's status, in ms (the longest pause is \
         five times it). Default 5000, at least 1; more than a week counts as a week.",
    ),
    internal(
        EnvVars::KIWI_INTERNAL_START_GRACE_MS,
        true,
        "How long a new instance may stay unlisted or `unknown` before that counts against \
         it, in ms. Default 60000, 0 allowed; more than a week counts as a week.",
    ),
    internal(
        EnvVars::KIWI_INTERNAL_NODE_POLL_MS,
        false,
        "Pause between two readiness checks of a node, in ms. Default 3000, at least 1; more \
         than a week counts as a week.",
    ),
    system(
        EnvVars::NO_COLOR,
        "Non-empty: no colour with `--color auto`.",
    ),
    system(
        EnvVars::RUST_LOG,
        "A tracing filter (e.g. `kiwi_infra=debug`) that replaces -v and -q.",
    ),
    system(
        EnvVars::PATH,
        "Searched by the sandbox's preflight for ssh, unshare and nsenter.",
    ),
    system(
        EnvVars::USER,
        "The login name recorded as the apply lock's holder.",
    ),
    system(EnvVars::USERNAME, "The login name, where USER is unset."),
    system(
        EnvVars::LOGNAME,
        "The login name, where USER and USERNAME are unset.",
    ),
    system(
        EnvVars::HOSTNAME,
        "The host name, where /proc/sys/kernel/hostname cannot be read.",
    ),
    system(
        EnvVars::COMPUTERNAME,
        "The host name, where HOSTNAME is unset too.",
    ),
];

/// The declaration of `name`, if it is one of [`VARIABLES`].
pub fn variable(name: &str) -> Option<&'static Variable> {
    VARIABLES.iter().find(|v| v.name == name)
}

/// A knob that is set to a value it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?}{flag}: {reason}")]
pub struct SettingsError {
    /// The variable.
    pub name: &'static str,
    /// ` (--flag)` for an operator knob, else empty.
    flag: String,
    /// The value, cut to 40 characters (it is shown, and came from outside).
    pub value: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

/// Most tasks at once any concurrency knob may ask for; more is cut to this.
pub const MOST_CONCURRENT: usize = 1024;

/// No knob sets a wait longer than this; a longer one is cut to it. Waits
/// are added to clocks and multiplied in back-off; a week keeps all of that
/// far from overflowing, and no wait of kiwi-infra's is meant to be longer.
pub const LONGEST_WAIT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A number of tasks at once: a whole number of at least 1; more than
/// [`MOST_CONCURRENT`] is cut to it. The error says what is expected.
pub fn parse_count(text: &str) -> Result<usize, String> {
    let n: u64 = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a whole number; expected a number of tasks at once, e.g. 8")
    })?;
    if n == 0 {
        return Err("0 tasks at once would never start anything; expected at least 1".into());
    }
    Ok(usize::try_from(n)
        .unwrap_or(MOST_CONCURRENT)
        .min(MOST_CONCURRENT))
}

/// A wait: a whole number with a unit, `ms`, `s`, `m` or `h` (`500ms`, `90s`,
/// `10m`, `2h`; a plain number is seconds), more than zero. Longer than
/// [`LONGEST_WAIT`] is cut to it. The error says what is expected.
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let expected = "expected a duration such as 500ms, 90s, 10m or 2h";
    let (number, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => trimmed.split_at(i),
        None => (trimmed, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; {expected}"))?;
    let wait = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ if unit.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err(format!("unknown unit in {text:?}; {expected}"))
        }
        _ => {
            return Err(format!(
                "{text:?} is not a whole number with a unit; {expected}"
            ))
        }
    };
    if wait.is_zero() {
        return Err(format!(
            "a wait of {trimmed:?} would give up at once; {expected}, more than zero"
        ));
    }
    Ok(wait.min(LONGEST_WAIT))
}

/// A whole number of milliseconds (0 only when `zero_ok`); more than
/// [`LONGEST_WAIT`] is cut to it.
pub fn parse_millis(text: &str, zero_ok: bool) -> Result<Duration, String> {
    let ms: u64 = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a whole number of milliseconds; expected e.g. 500")
    })?;
    if ms == 0 && !zero_ok {
        return Err("expected at least 1 millisecond".into());
    }
    Ok(Duration::from_millis(ms).min(LONGEST_WAIT))
}

/// The raw value of a registered variable (`None` when unset).
fn raw(name: &'static str) -> Option<OsString> {
    debug_assert!(
        variable(name).is_some(),
        "{name} is not declared in VARIABLES"
    );
    std::env::var_os(name)
}

/// The text of a registered variable; unset and non-UTF-8 values are `None`.
fn text(name: &'static str) -> Option<String> {
    raw(name).and_then(|v| v.into_string().ok())
}

/// Checks `value` for `var`'s kind.
fn check(var: &Variable, value: &str) -> Result<(), String> {
    match var.kind {
        Kind::Count => parse_count(value).map(drop),
        Kind::Wait => parse_wait(value).map(drop),
        Kind::Millis { zero_ok } => parse_millis(value, zero_ok).map(drop),
        Kind::Text => Ok(()),
    }
}

fn error(var: &Variable, value: &str, reason: String) -> SettingsError {
    SettingsError {
        name: var.name,
        flag: match var.audience {
            Audience::Operator { flag } => format!(" ({flag})"),
            _ => String::new(),
        },
        value: value.chars().take(40).collect(),
        reason,
    }
}

/// Refuses, before the command does anything, a numeric knob that is set to
/// a value it cannot take, naming it (and its flag). Every command checks
/// every knob: a typo in a CI job's environment is found on the first run,
/// not on the first `apply`. Text variables are clap's to check.
pub fn check_environment() -> Result<(), SettingsError> {
    for var in VARIABLES.iter().filter(|v| v.kind != Kind::Text) {
        if let Some(value) = raw(var.name) {
            let value = value.to_string_lossy();
            check(var, &value).map_err(|reason| error(var, &value, reason))?;
        }
    }
    Ok(())
}

/// A test-only timing in milliseconds, `None` when unset.
fn internal_millis(name: &'static str) -> Result<Option<Duration>, SettingsError> {
    let Some(var) = variable(name) else {
        return Ok(None);
    };
    let zero_ok = matches!(var.kind, Kind::Millis { zero_ok: true });
    match raw(name) {
        None => Ok(None),
        Some(value) => {
            let value = value.to_string_lossy();
            parse_millis(&value, zero_ok)
                .map(Some)
                .map_err(|reason| error(var, &value, reason))
        }
    }
}

/// The test-only timings (`KIWI_INTERNAL_*`); `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InternalTimings {
    /// [`EnvVars::KIWI_INTERNAL_POLL_MS`].
    pub poll: Option<Duration>,
    /// [`EnvVars::KIWI_INTERNAL_START_GRACE_MS`].
    pub start_grace: Option<Duration>,
    /// [`EnvVars::KIWI_INTERNAL_NODE_POLL_MS`].
    pub node_poll: Option<Duration>,
}

impl InternalTimings {
    /// Read from the environment; a bad value is an error naming it.
    pub fn from_env() -> Result<Self, SettingsError> {
        Ok(InternalTimings {
            poll: internal_millis(EnvVars::KIWI_INTERNAL_POLL_MS)?,
            start_grace: internal_millis(EnvVars::KIWI_INTERNAL_START_GRACE_MS)?,
            node_poll: internal_millis(EnvVars::KIWI_INTERNAL_NODE_POLL_MS)?,
        })
    }
}

/// What the operator (flags, their variables) and the test-only timings
/// change in an apply; `None` keeps [`ApplySettings::production`]'s value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyKnobs {
    /// `--concurrency`.
    pub concurrency: Option<usize>,
    /// `--node-concurrency`.
    pub node_concurrency: Option<usize>,
    /// `--status-timeout`: every status's limit.
    pub status_timeout: Option<Duration>,
    /// `--unlisted-order-wait`.
    pub unlisted_order_wait: Option<Duration>,
    /// The `KIWI_INTERNAL_*` timings.
    pub internal: InternalTimings,
}

/// What `--node-ready-timeout` and the node poll timing change in reaching
/// nodes; `None` keeps the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeKnobs {
    /// `--node-ready-timeout`: Ready, first boot and the first SSH answer.
    pub ready_timeout: Option<Duration>,
    /// The `KIWI_INTERNAL_*` timings (`node_poll`).
    pub internal: InternalTimings,
}

/// Whether `NO_COLOR` asks for no colour (set and not empty).
pub fn no_color() -> bool {
    raw(EnvVars::NO_COLOR).is_some_and(|v| !v.is_empty())
}

/// `RUST_LOG`, when set.
pub fn log_filter() -> Option<String> {
    text(EnvVars::RUST_LOG)
}

/// `PATH`, when set.
pub fn search_path() -> Option<OsString> {
    raw(EnvVars::PATH)
}

/// The login name from `USER`, `USERNAME` or `LOGNAME` (the first set and
/// not empty).
pub fn login_name() -> Option<String> {
    [EnvVars::USER, EnvVars::USERNAME, EnvVars::LOGNAME]
        .into_iter()
        .find_map(|n| text(n).filter(|v| !v.is_empty()))
}

/// The host name from `HOSTNAME` or `COMPUTERNAME` (the first set and not
/// empty).
pub fn host_name() -> Option<String> {
    [EnvVars::HOSTNAME, EnvVars::COMPUTERNAME]
        .into_iter()
        .find_map(|n| text(n).filter(|v| !v.is_empty()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::apply::ApplySettings;
    #[allow(unused_imports)]
    use crate::node::NodeSettings;
    #[allow(unused_imports)]
    use crate::ssh::SshSettings;

    #[test]
    fn every_variable_is_declared_once_with_a_doc() {
        let mut names: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a variable is declared twice");
        for v in VARIABLES {
            assert!(!v.doc.is_empty(), "{} has no doc", v.name);
        }
    }

    #[test]
    fn test_only_timings_and_only_they_carry_the_internal_prefix() {
        for v in VARIABLES {
            assert_eq!(
                v.audience == Audience::Internal,
                v.name.starts_with("KIWI_INTERNAL_"),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn a_bad_count_is_refused_and_a_huge_one_is_cut() {
        for bad in [
            "0",
            "-1",
            "soon",
            "",
            "1.5",
            "8 tasks",
            "99999999999999999999999",
        ] {
            assert!(parse_count(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_count(" 8 "), Ok(8));
        assert_eq!(parse_count("1"), Ok(1));
        assert_eq!(parse_count("18446744073709551615"), Ok(MOST_CONCURRENT));
    }

    #[test]
    fn a_bad_wait_is_refused_and_a_huge_one_is_cut() {
        for bad in [
            "0",
            "0s",
            "0ms",
            "-1",
            "-5s",
            "soon",
            "",
            "1.5s",
            "10d",
            "s",
            "1e300",
            "99999999999999999999999s",
        ] {
            assert!(parse_wait(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_wait("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_wait("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_wait("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_wait("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_wait("18446744073709551615"), Ok(LONGEST_WAIT));
        assert_eq!(parse_wait("18446744073709551615h"), Ok(LONGEST_WAIT));
    }

    #[test]
    fn internal_millis_refuse_nonsense_and_zero_where_zero_means_spin() {
        for bad in ["-1", "soon", "", "1.5", "30ms"] {
            assert!(parse_millis(bad, true).is_err(), "{bad:?}");
        }
        assert!(parse_millis("0", false).is_err());
        assert_eq!(parse_millis("0", true), Ok(Duration::ZERO));
        assert_eq!(parse_millis("30", false), Ok(Duration::from_millis(30)));
        assert_eq!(parse_millis(&u64::MAX.to_string(), false), Ok(LONGEST_WAIT));
    }

    #[test]
    fn an_error_names_the_variable_and_its_flag() {
        let var = variable(EnvVars::KIWI_CONCURRENCY).unwrap();
        let e = error(var, "soon", parse_count("soon").unwrap_err()).to_string();
        assert!(e.contains("KIWI_CONCURRENCY"), "{e}");
        assert!(e.contains("--concurrency"), "{e}");
        assert!(e.contains("whole number"), "{e}");
    }

    #[test]
    fn the_documented_defaults_are_the_production_ones() {
        // VARIABLES' docs (and the flags' help) state these defaults.
        let s = ApplySettings::production(String::new());
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.node_concurrency, 32);
        assert_eq!(s.wait.provisioning_limit, Duration::from_secs(30 * 60));
        assert_eq!(s.wait.installing_limit, Duration::from_secs(30 * 60));
        assert_eq!(s.wait.other_limit, Duration::from_secs(30 * 60));
        assert_eq!(s.unlisted_order_wait, Duration::from_secs(120));
        assert_eq!(s.wait.poll_min, Duration::from_secs(5));
        assert_eq!(s.wait.start_grace, Duration::from_secs(60));
        let b = NodeSettings::default();
        assert_eq!(b.ready_timeout, Duration::from_secs(600));
        assert_eq!(b.first_boot_timeout, Duration::from_secs(30 * 60));
        assert_eq!(b.poll, Duration::from_secs(3));
    }

    #[test]
    fn knobs_change_only_what_is_given() {
        let mut s = ApplySettings::production(String::new());
        let before = format!("{s:?}");
        ApplyKnobs::default().tune(&mut s);
        assert_eq!(format!("{s:?}"), before);
        ApplyKnobs {
            concurrency: Some(2),
            status_timeout: Some(Duration::from_secs(7)),
            internal: InternalTimings {
                poll: Some(Duration::from_millis(30)),
                ..InternalTimings::default()
            },
            ..ApplyKnobs::default()
        }
        .tune(&mut s);
        assert_eq!(s.concurrency, 2);
        assert_eq!(s.node_concurrency, 32);
        assert_eq!(s.wait.installing_limit, Duration::from_secs(7));
        assert_eq!(s.wait.poll_max, Duration::from_millis(150));
        assert_eq!(s.unlisted_order_wait, Duration::from_secs(120));
    }
}
