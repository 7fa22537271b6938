//! `kiwi-infra completions SHELL`: the shell completion script, generated
//! from the same clap definition that parses the command line, so it always
//! knows every subcommand and flag of this build.
//!
//! clap_complete's bash script (4.6) names its per-subcommand cases
//! inconsistently when the binary's name has a hyphen: the loop that finds
//! the subcommand sets `kiwi__infra__subcmd__plan`, the cases are spelled
//! `kiwi__subcmd__infra__subcmd__plan`, so bash never completed past the
//! subcommand. [`repair_bash`] spells the cases as the loop does. The tests
//! below complete every subcommand's flags and every enum flag's values in
//! a real bash (and fish), so a clap_complete that changes either spelling
//! is noticed.

use std::io::Write;

use clap::CommandFactory;
use clap::ValueEnum;
use clap_complete::Shell;

use super::args::{Cli, CompletionsArgs};
use super::CliError;

/// The binary's name, as the scripts register it.
const BIN: &str = "kiwi-infra";

/// Prints the completion script for the chosen shell.
pub(super) fn run(args: &CompletionsArgs) -> Result<(), CliError> {
    std::io::stdout()
        .write_all(script(args.shell).as_bytes())
        .map_err(|e| CliError::User(format!("cannot write the completion script: {e}")))
}

/// The completion script for `shell`.
fn script(shell: Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    match shell {
        Shell::Bash => repair_bash(&script),
        Shell::Fish => repair_fish(&script),
        _ => script,
    }
}

/// Two gaps of clap_complete's fish script: a global option that takes a
/// value, typed before the subcommand (`kiwi-infra --color <TAB>`), makes
/// its `argparse` fail and nothing is completed (files are offered); so
/// the last word is dropped and the line parsed again. And positional
/// values clap_complete leaves out (the shells of `completions`, the
/// subcommands after `help`) are added.
fn repair_fish(script: &str) -> String {
    let fn_name = BIN.replace('-', "_");
    let parse = format!(
        "    argparse -s (__fish_{fn_name}_global_optspecs) -- $cmd 2>/dev/null\n    or return\n"
    );
    let tolerant = format!(
        "    argparse -s (__fish_{fn_name}_global_optspecs) -- $cmd 2>/dev/null\n    or begin\n        \
         set -e cmd[-1]\n        argparse -s (__fish_{fn_name}_global_optspecs) -- $cmd 2>/dev/null\n    \
         end\n    or return\n"
    );
    let mut script = script.replacen(&parse, &tolerant, 1);
    let shells: Vec<String> = Shell::value_variants()
        .iter()
        .filter_map(|s| s.to_possible_value().map(|v| v.get_name().to_string()))
        .collect();
    script.push_str(&format!(
        "complete -c {BIN} -n \"__fish_{fn_name}_using_subcommand completions\" -f -a \"{}\"\n",
        shells.join(" ")
    ));
    let commands: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    // Only right after `help`: `help plan <TAB>` takes no second topic.
    script.push_str(&format!(
        "complete -c {BIN} -n \"__fish_{fn_name}_using_subcommand help; and not \
         __fish_seen_subcommand_from {list}\" -f -a \"{list}\"\n",
        list = commands.join(" ")
    ));
    script
}

/// Spells the bash script's subcommand cases as its subcommand loop does
/// (see the module docs): `kiwi__subcmd__infra__…` → `kiwi__infra__…`.
fn repair_bash(script: &str) -> String {
    let good = BIN.replace('-', "__");
    let bad = BIN.replace('-', "__subcmd__");
    script.replace(&format!("{bad}__"), &format!("{good}__"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What bash offers for the command line `words`, the last word being
    /// the one completed, with the script sourced as the user's shell does.
    fn bash_completes(script_path: &std::path::Path, words: &[&str]) -> Vec<String> {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cword = words.len() - 1;
        let prev = if cword > 0 { words[cword - 1] } else { "" };
        let program = format!(
            "source '{}'\n\
             COMP_WORDS=({})\n\
             COMP_CWORD={cword}\n\
             COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
             COMP_POINT=${{#COMP_LINE}}\n\
             _kiwi__infra {BIN} '{}' '{prev}'\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script_path.display(),
            quoted.join(" "),
            words[cword],
        );
        let out = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &program])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bash failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every subcommand path (`["plan"]`, `["sandbox", "up"]`, …) with its
    /// command, `help` excluded.
    fn subcommands(
        cmd: &clap::Command,
        path: Vec<String>,
        out: &mut Vec<(Vec<String>, clap::Command)>,
    ) {
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            out.push((p.clone(), sub.clone()));
            subcommands(sub, p, out);
        }
    }

    fn all_subcommands() -> Vec<(Vec<String>, clap::Command)> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = Vec::new();
        subcommands(&cmd, Vec::new(), &mut out);
        assert!(out.len() > 5, "{out:?}");
        out
    }

    fn write_script(shell: Shell) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), script(shell)).unwrap();
        file
    }

    #[test]
    fn bash_completes_every_subcommands_flags_past_the_subcommand() {
        let file = write_script(Shell::Bash);
        for (path, cmd) in all_subcommands() {
            let mut words: Vec<&str> = vec![BIN];
            words.extend(path.iter().map(String::as_str));
            words.push("--");
            let offered = bash_completes(file.path(), &words);
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    let flag = format!("--{long}");
                    assert!(
                        offered.contains(&flag),
                        "`{} <TAB>` does not offer {flag}: {offered:?}",
                        words.join(" ")
                    );
                }
            }
        }
    }

    #[test]
    fn bash_completes_plan_flags_and_subcommand_names() {
        let file = write_script(Shell::Bash);
        let offered = bash_completes(file.path(), &[BIN, "plan", "--"]);
        for flag in ["--out", "--detailed-exitcode", "--json", "--allow-destroy"] {
            assert!(offered.iter().any(|o| o == flag), "{flag}: {offered:?}");
        }
        let offered = bash_completes(file.path(), &[BIN, "pl"]);
        assert_eq!(offered, ["plan"]);
        let offered = bash_completes(file.path(), &[BIN, "sandbox", "d"]);
        assert!(
            offered.iter().any(|o| o == "down") && offered.iter().any(|o| o == "demo"),
            "{offered:?}"
        );
    }

    #[test]
    fn bash_completes_the_values_of_every_enum_flag_and_argument() {
        let file = write_script(Shell::Bash);
        let mut checked = 0;
        for (path, cmd) in all_subcommands() {
            for arg in cmd.get_arguments() {
                let values: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .filter(|v| !v.is_hide_set())
                    .map(|v| v.get_name().to_string())
                    .collect();
                // Flags that take no value (`--json`) list true/false.
                if values.is_empty() || !arg.get_action().takes_values() {
                    continue;
                }
                let mut words: Vec<String> = vec![BIN.to_string()];
                words.extend(path.iter().cloned());
                match arg.get_long() {
                    Some(long) => words.push(format!("--{long}")),
                    None if arg.is_positional() => {}
                    None => continue,
                }
                words.push(String::new());
                let refs: Vec<&str> = words.iter().map(String::as_str).collect();
                let offered = bash_completes(file.path(), &refs);
                for v in &values {
                    assert!(
                        offered.contains(v),
                        "`{} <TAB>` does not offer {v}: {offered:?}",
                        words.join(" ")
                    );
                }
                checked += 1;
            }
        }
        // --color on every subcommand, --tier, completions SHELL, schema FILE.
        assert!(checked >= 4, "{checked}");
    }

    fn have(shell: &str) -> bool {
        Command::new(shell).arg("--version").output().is_ok()
    }

    #[test]
    fn zsh_and_fish_scripts_parse_and_fish_completes_plan_flags() {
        // .ci/run installs both; elsewhere a missing shell is skipped,
        // said on stderr.
        if have("zsh") {
            let file = write_script(Shell::Zsh);
            let out = Command::new("zsh")
                .arg("-n")
                .arg(file.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            eprintln!("zsh not installed: its script was not checked");
        }
        if have("fish") {
            let file = write_script(Shell::Fish);
            let out = Command::new("fish")
                .arg("-n")
                .arg(file.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let complete = |line: &str| {
                let out = Command::new("fish")
                    .args(["--no-config", "-c"])
                    .arg(format!(
                        "source '{}'; complete -C '{line}'",
                        file.path().display()
                    ))
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let offered = complete("kiwi-infra plan --");
            for flag in ["--out", "--detailed-exitcode", "--json"] {
                assert!(
                    offered.lines().any(|l| l.starts_with(&format!("{flag}\t"))),
                    "{offered}"
                );
            }
            let offered = complete("kiwi-infra plan --color ");
            for v in ["auto", "always", "never"] {
                assert!(
                    offered.lines().any(|l| l.starts_with(&format!("{v}\t"))),
                    "{offered}"
                );
            }
            // A global flag's values before the subcommand, the shells of
            // `completions`, the subcommands after `help`.
            let offered = complete("kiwi-infra --color ");
            for v in ["auto", "always", "never"] {
                assert!(
                    offered.lines().any(|l| l.starts_with(&format!("{v}\t"))),
                    "{offered}"
                );
            }
            let offered = complete("kiwi-infra completions ");
            for v in ["bash", "zsh", "fish"] {
                assert!(offered.lines().any(|l| l == v), "{offered}");
            }
            let offered = complete("kiwi-infra help ");
            for v in ["plan", "apply", "status"] {
                assert!(
                    offered.lines().any(|l| l.split('\t').next() == Some(v)),
                    "{offered}"
                );
            }
            let offered = complete("kiwi-infra help plan ");
            assert!(
                !offered
                    .lines()
                    .any(|l| l.split('\t').next() == Some("apply")),
                "a second help topic is offered: {offered}"
            );
        } else {
            eprintln!("fish not installed: its script was not checked");
        }
    }
}
