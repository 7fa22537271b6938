//! The operator's habits, as the real binary serves them: shell completions,
//! man pages, `--help` with examples, `NO_COLOR`, a JSON Schema editors can
//! check the inventory with, `customer add`, and a CLI reference in
//! `docs/cli.md` that is regenerated rather than remembered.

#![allow(clippy::unwrap_used)]

use crate::apply_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use kiwi_infra::cli::Cli;
use kiwi_mocks::contabo::{spawn, MockConfig};

fn kiwi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(args)
        .env_remove("KIWI_INVENTORY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn example_inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory")
}

/// Every command path below `kiwi-infra`, e.g. `["customer", "add"]`.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &[], &mut out);
    out
}

// --- completions and man pages ---

#[test]
fn bash_completion_offers_every_subcommand() {
    let out = kiwi(&["completions", "bash"]);
    assert!(out.status.success(), "{}", apply_support::text(&out));
    let script = stdout(&out);
    assert!(
        script.contains("complete -F"),
        "not a bash completion script"
    );
    for path in command_paths() {
        let name = path.last().unwrap();
        assert!(script.contains(name.as_str()), "`{name}` is not completed");
    }
    assert!(
        script.contains("--tier"),
        "flags of subcommands are not completed"
    );
}

#[test]
fn every_shell_gets_a_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = kiwi(&["completions", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            apply_support::text(&out)
        );
        assert!(stdout(&out).contains("kiwi-infra"), "{shell}: empty script");
    }
    let out = kiwi(&["completions", "tcsh"]);
    // Usage errors exit 1 (issue 13): 2 is `plan --detailed-exitcode`'s "changes".
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_renders_and_lists_the_subcommands() {
    let out = kiwi(&["man"]);
    assert!(out.status.success(), "{}", apply_support::text(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH kiwi-infra 1"), "no title line: {page}");
    assert!(
        page.contains("kiwi\\-infra\\-plan(1)"),
        "no see-also of a subcommand: {page}"
    );
    assert!(
        page.contains("CNTB_OAUTH2_CLIENT_SECRET"),
        "environment is not documented"
    );
}

#[test]
fn man_out_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("man1");
    let out = kiwi(&["man", "--out", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", apply_support::text(&out));
    let mut expected = vec!["kiwi-infra.1".to_string()];
    expected.extend(
        command_paths()
            .iter()
            .map(|p| format!("kiwi-infra-{}.1", p.join("-"))),
    );
    for name in &expected {
        let page = std::fs::read_to_string(target.join(name))
            .unwrap_or_else(|e| panic!("{name} not written: {e}"));
        assert!(page.contains(".TH "), "{name} is not a man page");
        assert!(stdout(&out).contains(name.as_str()), "{name} not reported");
    }
    let add = std::fs::read_to_string(target.join("kiwi-infra-customer-add.1")).unwrap();
    assert!(add.contains("\\-\\-tier"), "{add}");
}

// --- help ---

#[test]
fn every_subcommand_help_shows_an_example() {
    let paths = command_paths();
    assert!(paths.len() >= 14, "commands went missing: {paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = kiwi(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            apply_support::text(&out)
        );
        let help = stdout(&out);
        let example = help
            .lines()
            .skip_while(|l| !l.contains("Example"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            example.contains("kiwi-infra "),
            "`kiwi-infra {}` --help has no example:\n{help}",
            path.join(" ")
        );
    }
}

#[test]
fn example_lines_stay_on_lines_of_their_own() {
    // clap joins the lines of a doc-comment paragraph unless told not to; a
    // joined example block is unreadable.
    let help = stdout(&kiwi(&["plan", "--help"]));
    assert!(
        help.lines().any(|l| l.trim() == "kiwi-infra plan"),
        "examples were joined into one paragraph:\n{help}"
    );
}

// --- docs/cli.md ---

#[test]
fn docs_cli_md_is_the_generated_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let begin = text
        .find(kiwi_infra::cli::REFERENCE_BEGIN)
        .expect("docs/cli.md lost its BEGIN GENERATED line");
    let end = text
        .find(kiwi_infra::cli::REFERENCE_END)
        .expect("docs/cli.md lost its END GENERATED line")
        + kiwi_infra::cli::REFERENCE_END.len()
        + 1;
    let fresh = kiwi_infra::cli::markdown_reference();
    if text.get(begin..end) == Some(fresh.as_str()) {
        return;
    }
    if std::env::var_os("KIWI_UPDATE_DOCS").is_some_and(|v| v == "1") {
        let updated = format!("{}{fresh}{}", &text[..begin], &text[end.min(text.len())..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "docs/cli.md is out of date with the command line; regenerate it with \
         `KIWI_UPDATE_DOCS=1 cargo test --test it cli_habits::docs_cli_md` and review the diff"
    );
}

#[test]
fn the_reference_documents_every_command_and_no_environment_values() {
    let reference = kiwi_infra::cli::markdown_reference();
    for path in command_paths() {
        let heading = format!("## `kiwi-infra {}`", path.join(" "));
        assert!(reference.contains(&heading), "missing {heading}");
    }
    assert!(
        reference.contains("[env: KIWI_INVENTORY]"),
        "env names are documented"
    );
    assert!(
        !reference.contains("KIWI_INVENTORY="),
        "env values leak into the docs"
    );
}

#[test]
fn knob_flags_show_their_variable_in_help_and_internal_timings_stay_hidden() {
    let help = stdout(&kiwi(&["apply", "--help"]));
    for (flag, variable) in [
        ("--concurrency", "KIWI_CONCURRENCY"),
        ("--node-concurrency", "KIWI_NODE_CONCURRENCY"),
        ("--status-timeout", "KIWI_STATUS_TIMEOUT"),
        ("--unlisted-order-wait", "KIWI_UNLISTED_ORDER_WAIT"),
        ("--node-ready-timeout", "KIWI_NODE_READY_TIMEOUT"),
    ] {
        assert!(help.contains(flag), "{flag} missing: {help}");
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} missing: {help}"
        );
    }
    let reference = kiwi_infra::cli::markdown_reference();
    for text in [&help, &reference] {
        assert!(!text.contains("KIWI_INTERNAL_"), "test-only timings shown");
    }
    // Every variable with a flag is that flag's fallback in the reference.
    for var in kiwi_infra::settings::VARIABLES {
        if let kiwi_infra::settings::Audience::Operator { flag } = var.audience {
            assert!(
                reference.contains(&format!("[env: {}]", var.name)),
                "{} ({flag}) is not shown in the reference",
                var.name
            );
        }
    }
}

#[test]
fn every_knob_is_documented_where_its_audience_reads() {
    use kiwi_infra::settings::{Audience, Kind, VARIABLES};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let internal = std::fs::read_to_string(root.join("docs/internal-knobs.md")).unwrap();
    for var in VARIABLES.iter().filter(|v| v.kind != Kind::Text) {
        match var.audience {
            Audience::Operator { flag } => {
                assert!(readme.contains(var.name), "{} not in README", var.name);
                assert!(readme.contains(flag), "{flag} not in README");
            }
            Audience::Internal => {
                assert!(
                    internal.contains(var.name),
                    "{} not in docs/internal-knobs.md",
                    var.name
                );
                assert!(
                    !readme.contains(var.name),
                    "{} is for tests, not README",
                    var.name
                );
            }
            Audience::System => {}
        }
    }
}

// --- JSON Schema ---

fn schema(which: &str) -> jsonschema::Validator {
    let out = kiwi(&["schema", which]);
    assert!(out.status.success(), "{}", apply_support::text(&out));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::validator_for(&schema).unwrap()
}

fn toml_as_json(text: &str) -> serde_json::Value {
    toml::from_str(text).unwrap()
}

fn errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    validator
        .iter_errors(&toml_as_json(text))
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_schema_accepts_every_file_of_the_example_inventory() {
    let main = schema("main");
    let text = std::fs::read_to_string(example_inventory().join("kiwi.toml")).unwrap();
    assert_eq!(errors(&main, &text), Vec::<String>::new(), "kiwi.toml");
    let customer = schema("customer");
    let mut seen = 0;
    for entry in std::fs::read_dir(example_inventory().join("customers")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            errors(&customer, &text),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 4, "the example customers went missing");
}

#[test]
fn the_schema_rejects_what_validate_rejects_by_shape() {
    let customer = schema("customer");
    let mesh = std::fs::read_to_string(example_inventory().join("customers/stadtwerke-nord.toml"))
        .unwrap();
    let cases = [
        ("unknown top-level key", format!("tpyo = 1\n{mesh}")),
        (
            "unknown pool key",
            mesh.replace("[pools.general]\n", "[pools.general]\ncolour = \"red\"\n"),
        ),
        ("unknown product", mesh.replace("\"V97\"", "\"V999\"")),
        (
            "unknown class",
            mesh.replace("class = \"vds\"", "class = \"gpu\""),
        ),
        (
            "unknown tier",
            mesh.replace("tier = \"mesh\"", "tier = \"gold\""),
        ),
        (
            "pool name not a DNS label",
            mesh.replace("[pools.general]", "[pools.General_1]"),
        ),
        (
            "mesh without servers",
            mesh.replace("[servers]", "[pools.servers]"),
        ),
        (
            "core tier with nodes",
            mesh.replace("tier = \"mesh\"", "tier = \"core\""),
        ),
    ];
    for (what, text) in cases {
        assert!(
            !errors(&customer, &text).is_empty(),
            "the schema accepts a file with {what}:\n{text}"
        );
    }

    let main = schema("main");
    let kiwi = std::fs::read_to_string(example_inventory().join("kiwi.toml")).unwrap();
    let cases = [
        (
            "unknown provider key",
            kiwi.replace("region = \"EU\"", "region = \"EU\"\nzone = \"a\""),
        ),
        ("price as a float", kiwi.replace("\"8.49\"", "8.49")),
        (
            "price of an unknown product",
            kiwi.replace("V8 = \"38.40\"", "V8 = \"38.40\"\nX1 = \"1.00\""),
        ),
        (
            "no SSH key at all",
            kiwi.lines()
                .filter(|l| !l.starts_with("ssh_public_key ="))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    for (what, text) in cases {
        assert!(
            !main.is_valid(&toml_as_json(&text)),
            "the schema accepts a kiwi.toml with {what}"
        );
    }
}

// --- customer add ---

fn kiwi_in(inventory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiwi-infra"))
        .args(args)
        .arg("--inventory")
        .arg(inventory)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn customer_add_writes_a_file_validate_accepts() {
    let (_dir, inventory) = apply_support::inventory_copy();
    let out = kiwi_in(
        &inventory,
        &["customer", "add", "muster-gmbh", "--tier", "mesh"],
    );
    assert!(out.status.success(), "{}", apply_support::text(&out));
    let path = inventory.join("customers/muster-gmbh.toml");
    assert!(
        stdout(&out).contains(&path.display().to_string()),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("next: kiwi-infra plan"));

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("review"), "no review hint:\n{text}");
    assert!(errors(&schema("customer"), &text).is_empty(), "{text}");
    let validate = kiwi_in(&inventory, &["validate"]);
    assert!(
        validate.status.success(),
        "{}",
        apply_support::text(&validate)
    );

    let desired = kiwi_infra::inventory::load(&inventory).unwrap();
    let cluster = desired.cluster("muster-gmbh").unwrap();
    let pools: Vec<(&str, &str, u32)> = cluster
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.product.as_str(), p.count))
        .collect();
    // The products the other k3s customers run on.
    assert_eq!(
        pools,
        [
            ("server", "V94", 3),
            ("general", "V97", 1),
            ("realtime", "V8", 1)
        ]
    );
    assert!(cluster.pools[2]
        .taints
        .iter()
        .any(|t| t.key == "workload.kiwistack.io/realtime"));
}

#[test]
fn customer_add_refuses_an_existing_name_unless_forced() {
    let (_dir, inventory) = apply_support::inventory_copy();
    let path = inventory.join("customers/stadtwerke-nord.toml");
    let before = std::fs::read_to_string(&path).unwrap();
    let out = kiwi_in(
        &inventory,
        &["customer", "add", "stadtwerke-nord", "--tier", "core"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", apply_support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    let out = kiwi_in(
        &inventory,
        &[
            "customer",
            "add",
            "praxis-lindner",
            "--tier",
            "fleet",
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", apply_support::text(&out));
    let desired = kiwi_infra::inventory::load(&inventory).unwrap();
    assert_eq!(
        desired.cluster("praxis-lindner").map(|c| c.tier),
        Some(kiwi_infra::inventory::Tier::Fleet)
    );
}

#[test]
fn customer_add_core_tier_writes_no_pools() {
    let (_dir, inventory) = apply_support::inventory_copy();
    let out = kiwi_in(
        &inventory,
        &["customer", "add", "cafe-rose", "--tier", "core"],
    );
    assert!(out.status.success(), "{}", apply_support::text(&out));
    let text = std::fs::read_to_string(inventory.join("customers/cafe-rose.toml")).unwrap();
    assert!(text.contains("tier = \"core\""), "{text}");
    assert!(
        !text.contains("[servers]") && !text.contains("[pools"),
        "{text}"
    );
    let desired = kiwi_infra::inventory::load(&inventory).unwrap();
    assert!(desired.customers.iter().any(|c| c.name == "cafe-rose"));
    assert!(
        desired.cluster("cafe-rose").is_none(),
        "a core-tier customer got nodes"
    );
}

#[test]
fn customer_add_refuses_names_that_are_not_dns_labels() {
    let (_dir, inventory) = apply_support::inventory_copy();
    for name in ["Muster_GmbH", "muster-", "core", "muster.gmbh"] {
        let out = kiwi_in(&inventory, &["customer", "add", name, "--tier", "mesh"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {}",
            apply_support::text(&out)
        );
        assert!(!inventory.join(format!("customers/{name}.toml")).exists());
    }
}

#[test]
fn customer_add_takes_the_file_back_when_the_inventory_would_not_validate() {
    let (_dir, inventory) = apply_support::inventory_copy();
    // Core pool `muster-general` makes nodes kiwi-core-muster-general-NN,
    // which customer `core-muster`'s pool `general` would also produce.
    let main = inventory.join("kiwi.toml");
    let mut text = std::fs::read_to_string(&main).unwrap();
    text.push_str("\n[core.pools.muster-general]\nclass = \"vps\"\nproduct = \"V97\"\ncount = 1\n");
    std::fs::write(&main, text).unwrap();
    assert!(kiwi_in(&inventory, &["validate"]).status.success());

    let out = kiwi_in(
        &inventory,
        &["customer", "add", "core-muster", "--tier", "mesh"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", apply_support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("duplicate node name"), "{stderr}");
    assert!(!inventory.join("customers/core-muster.toml").exists());
    assert!(kiwi_in(&inventory, &["validate"]).status.success());
}

// --- NO_COLOR ---

/// `cmd` run inside a pseudo-terminal (util-linux `script`), so colour is
/// decided as on an operator's terminal.
fn in_terminal(cmd: &Command) -> Command {
    fn quote(s: &std::ffi::OsStr) -> String {
        format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"))
    }
    let mut line = quote(cmd.get_program());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    script.stdin(Stdio::null());
    script
}

/// Whether `bytes` hold an ANSI colour sequence (SGR, `ESC [ … m`); cursor
/// movement of progress lines is not colour.
fn has_colour(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        w == b"\x1b["
            && bytes[i + 2..]
                .iter()
                .find(|b| !(b.is_ascii_digit() || **b == b';'))
                .is_some_and(|b| *b == b'm')
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn no_color_keeps_the_plan_and_apply_progress_plain_on_a_terminal() {
    let mock = spawn(MockConfig::default()).await.unwrap();
    let (_dir, inventory) = apply_support::inventory_copy();
    let plan = ["plan", "--contabo-only"];

    // Without NO_COLOR a terminal gets colour, so the checks below can fail.
    let mut coloured = apply_support::command(&mock, &inventory, &plan);
    coloured.env_remove("NO_COLOR");
    let out = apply_support::run(in_terminal(&coloured)).await;
    assert!(out.status.success(), "{}", apply_support::text(&out));
    assert!(has_colour(&out.stdout), "{}", apply_support::text(&out));

    let plain = apply_support::command(&mock, &inventory, &plan);
    let out = apply_support::run(in_terminal(&plain)).await;
    assert!(out.status.success(), "{}", apply_support::text(&out));
    assert!(stdout(&out).contains("+ "), "{}", apply_support::text(&out));
    assert!(
        !has_colour(&out.stdout),
        "NO_COLOR=1 but: {:?}",
        stdout(&out)
    );

    let mut never = apply_support::command(
        &mock,
        &inventory,
        &[&plan[..], &["--color", "never"]].concat(),
    );
    never.env_remove("NO_COLOR");
    let out = apply_support::run(in_terminal(&never)).await;
    assert!(
        !has_colour(&out.stdout),
        "--color never but: {:?}",
        stdout(&out)
    );

    let apply = apply_support::command(
        &mock,
        &inventory,
        &["apply", "--auto-approve", "--contabo-only"],
    );
    let out = apply_support::run(in_terminal(&apply)).await;
    assert!(out.status.success(), "{}", apply_support::text(&out));
    assert!(
        !has_colour(&out.stdout),
        "NO_COLOR=1 but: {:?}",
        stdout(&out)
    );
}
