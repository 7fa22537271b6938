//! The integration tests that need no root, in one test binary (one link
//! instead of one per file): the real binary and client against the Contabo
//! mock behind the spec validator, the inventory, plans, rendered documents,
//! and the layers of `src/` (`architecture`). Each module is one former
//! `tests/NAME.rs`, its test names unchanged; run one with
//! `cargo test --test it NAME::` (for example
//! `KIWI_UPDATE_DOCS=1 cargo test --test it cli_habits::docs_cli_md`).
//!
//! The tests of one binary share a process: none may set an environment
//! variable (`std::env::set_var`) or rely on process-wide state another
//! test would see; a child process gets its environment through
//! `Command::env`. The end-to-end tests that need root (simulated nodes, a
//! real sshd) are the other binary, `tests/e2e/`.

#[path = "../apply_support/mod.rs"]
mod apply_support;

mod apply_mock;
mod apply_sigkill;
mod architecture;
mod cli_habits;
mod cli_instances;
mod cli_plan;
mod cloudinit_render;
mod contabo_client;
mod exit_codes;
mod hostile_contabo;
mod hostile_numbers;
mod independent_spec_check;
mod inventory_example;
mod inventory_fuzz;
mod inventory_render_properties;
mod inventory_validate;
mod local_files;
mod operator_output;
mod plan_firewall;
mod plan_golden;
mod plan_ownership;
mod plan_properties;
mod plan_saved;
mod sandbox_guard;
mod schema_agrees_with_validate;
mod secrets_canary;
mod server_echo;
mod ssh_known_hosts_apply;
mod terminal_escape;
mod validate_untrusted;
