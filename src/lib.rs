//! kiwi-infra orders, bootstraps and labels KiwiStack's machines at Contabo.
//!
//! The crate follows observe → plan → execute (see README "Architecture"):
//! [`inventory`] and [`observe`] produce plain data, [`plan`] turns it into
//! steps without any I/O, and the executors carry the steps out.

pub mod apply;
pub mod cli;
pub mod cloudinit;
pub mod cluster;
pub mod contabo;
pub mod firewall;
pub mod ids;
pub mod inventory;
pub mod kubeconfig;
pub mod localfs;
pub mod node;
pub mod observe;
pub mod patience;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod secret;
pub mod settings;
pub mod ssh;
pub mod state;
pub mod text;
pub mod yaml;
