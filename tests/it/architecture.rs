//! The crate's layers, checked from its source (README "Architecture"):
//!
//! - no cycle among the crate's top-level modules (`crate::X` edges, grouped
//!   `use crate::{a, b::c}` expanded, `super::` resolved);
//! - `plan/` and `inventory/` use no I/O crate or I/O part of `std`
//!   ([`IO_PATHS`]; the inventory reads its files only through
//!   `crate::localfs`), and `plan/` no module of the crate that does I/O;
//! - the reading side (`observe/`, `cluster/`) reaches neither `apply` nor
//!   the node steps (`node/`): reading never depends on writing;
//! - no environment variable is read outside [`SETTINGS_FILE`].
//!
//! The source is parsed with `syn` (items under `#[cfg(test)]`, and files
//! only test builds include, are skipped), walking the module tree from
//! `src/lib.rs` as the compiler does. The checker is tested on small
//! synthetic trees too, so that each rule is seen to fail.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The one file that may read environment variables (the settings
/// registry: every knob declared once).
const SETTINGS_FILE: &str = "src/settings.rs";

/// Files that may still read the environment themselves besides the
/// settings registry: none since the registry took every read over. An
/// entry here that no longer reads the environment is reported, so the list
/// cannot grow stale; do not add to it.
const TEMPORARY_ENV_READERS: &[&str] = &[];

/// Paths that do I/O: crates whose purpose is I/O (see Cargo.toml), and
/// the parts of `std` that touch files, the network, processes, threads or
/// the environment. A path is I/O when it starts with one of these.
const IO_PATHS: &[&str] = &[
    "tokio",
    "reqwest",
    "openssh",
    "libc",
    "tempfile",
    "backon",
    "governor",
    "indicatif",
    "tracing_subscriber",
    "std::fs",
    "std::process",
    "std::thread",
    "std::env",
    "std::os",
    "std::io",
    "std::net",
];

/// Parts of the [`IO_PATHS`] that are plain data or traits, not I/O.
const IO_EXCEPTIONS: &[&str] = &[
    "std::io::Write",
    "std::io::Read",
    "std::net::Ipv4Addr",
    "std::net::Ipv6Addr",
    "std::net::IpAddr",
    "std::net::AddrParseError",
];

/// Modules that must stay pure, and the I/O-free rule that applies.
const PURE_MODULES: &[&str] = &["plan", "inventory", "firewall"];

/// Modules of the crate that do I/O: the pure `plan/` uses none of them.
const IO_MODULES: &[&str] = &[
    "apply", "cli", "cluster", "contabo", "localfs", "node", "observe", "settings", "ssh", "state",
];

/// Reading modules, and the writing modules they must not reach.
const READERS: &[(&str, &[&str])] = &[
    ("observe", &["apply", "node"]),
    ("cluster", &["apply", "node"]),
];

/// One use of a path in a file.
#[derive(Debug, Clone)]
struct Use {
    /// `src/...` relative to the crate root.
    file: String,
    /// The top-level module the file belongs to.
    module: String,
    /// The path, resolved to start at the crate (`crate::x::y`) or at an
    /// external crate (`std::fs::read`).
    path: Vec<String>,
}

impl Use {
    fn shown(&self) -> String {
        format!("{}: `{}`", self.file, self.path.join("::"))
    }
}

/// Every path every non-test source file of the crate at `root` uses.
fn crate_uses(root: &Path) -> Vec<Use> {
    let mut uses = Vec::new();
    // `extern crate self as me;` in lib.rs names the crate everywhere.
    let lib = root.join("src/lib.rs");
    let crate_wide = std::fs::read_to_string(&lib)
        .ok()
        .and_then(|text| syn::parse_file(&text).ok())
        .map(|ast| {
            ast.items
                .iter()
                .filter_map(|item| match item {
                    syn::Item::ExternCrate(e) => e
                        .rename
                        .as_ref()
                        .map(|(_, name)| (name.to_string(), vec![extern_crate_path(&e.ident)])),
                    _ => None,
                })
                .collect::<BTreeMap<String, Vec<String>>>()
        })
        .unwrap_or_default();
    walk_module(root, &lib, &[], &crate_wide, &mut uses);
    uses
}

/// Reads the file of module `module` (path from the crate root, empty for
/// `lib.rs`), collects its uses, and follows its `mod x;` declarations.
fn walk_module(
    root: &Path,
    file: &Path,
    module: &[String],
    crate_wide: &BTreeMap<String, Vec<String>>,
    uses: &mut Vec<Use>,
) {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let ast =
        syn::parse_file(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", file.display()));
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned();
    let mut collector = Collector {
        file: shown,
        module: module.to_vec(),
        uses: Vec::new(),
        children: Vec::new(),
        aliases: crate_wide
            .clone()
            .into_iter()
            .chain(aliases(&ast))
            .collect(),
    };
    collector.visit_file(&ast);
    uses.extend(collector.uses);
    // `mod x;` in `a/mod.rs` or `lib.rs` is `a/x.rs`; in `a/b.rs`, `a/b/x.rs`.
    let dir = if file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
    {
        file.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        file.with_extension("")
    };
    for child in collector.children {
        let flat = dir.join(format!("{}.rs", child.last().map_or("", String::as_str)));
        let nested = dir
            .join(child.last().map_or("", String::as_str))
            .join("mod.rs");
        let path = if flat.exists() { flat } else { nested };
        walk_module(root, &path, &child, crate_wide, uses);
    }
}

/// What `extern crate x as y` makes `y` stand for: `crate` for `self`.
fn extern_crate_path(ident: &syn::Ident) -> String {
    if ident == "self" {
        "crate".to_string()
    } else {
        ident.to_string()
    }
}

/// True for `#[cfg(test)]` and `#[cfg(all(test, …))]` only: code that is
/// never compiled into the product. `cfg(any(test, unix))` or
/// `cfg(not(test))` is compiled in normal builds, so it is checked.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                let tokens: Vec<TokenTree> = l.tokens.clone().into_iter().collect();
                match tokens.as_slice() {
                    [TokenTree::Ident(i)] => i == "test",
                    [TokenTree::Ident(all), TokenTree::Group(g)] if all == "all" => g
                        .stream()
                        .into_iter()
                        .any(|t| matches!(t, TokenTree::Ident(i) if i == "test")),
                    _ => false,
                }
            })
    })
}

/// Every name a file gives a path with `use … as name` or `extern crate …
/// as name` (`use crate as c`, `use crate::{self as c}`, `use std::env as
/// e`), with the path it stands for, as written.
fn aliases(file: &syn::File) -> BTreeMap<String, Vec<String>> {
    struct Aliases(BTreeMap<String, Vec<String>>);
    fn walk(
        tree: &syn::UseTree,
        prefix: &mut Vec<String>,
        out: &mut BTreeMap<String, Vec<String>>,
    ) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.to_string());
                }
                out.insert(r.rename.to_string(), path);
            }
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    walk(item, prefix, out);
                }
            }
            syn::UseTree::Name(_) | syn::UseTree::Glob(_) => {}
        }
    }
    impl<'ast> Visit<'ast> for Aliases {
        fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
            walk(&u.tree, &mut Vec::new(), &mut self.0);
        }
        fn visit_item_extern_crate(&mut self, e: &'ast syn::ItemExternCrate) {
            if let Some((_, rename)) = &e.rename {
                self.0
                    .insert(rename.to_string(), vec![extern_crate_path(&e.ident)]);
            }
        }
    }
    let mut found = Aliases(BTreeMap::new());
    found.visit_file(file);
    found.0
}

struct Collector {
    file: String,
    /// The module being visited (inline `mod` blocks included).
    module: Vec<String>,
    uses: Vec<Use>,
    /// Out-of-line child modules (`mod x;`) to read.
    children: Vec<Vec<String>>,
    /// Names this file gives paths (`use crate as c`): replaced by the path
    /// they stand for before a path is resolved.
    aliases: BTreeMap<String, Vec<String>>,
}

impl Collector {
    /// Records `segments` as written in the current module: `crate::`,
    /// `self::` and `super::` are resolved; a path of one segment or one
    /// that starts with a local name is not a module edge.
    fn record(&mut self, mut segments: Vec<String>) {
        // `c::apply::run()` after `use crate as c` is `crate::apply::run()`
        // (a few rounds: an alias may name another).
        for _ in 0..4 {
            let Some(path) = segments.first().and_then(|f| self.aliases.get(f)) else {
                break;
            };
            if path.first() == segments.first() {
                break;
            }
            segments = path
                .iter()
                .cloned()
                .chain(segments[1..].iter().cloned())
                .collect();
        }
        let Some(first) = segments.first() else {
            return;
        };
        let resolved: Vec<String> = match first.as_str() {
            "crate" => segments[1..].to_vec(),
            "self" => self
                .module
                .iter()
                .cloned()
                .chain(segments[1..].iter().cloned())
                .collect(),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let keep = self.module.len().saturating_sub(ups);
                self.module[..keep]
                    .iter()
                    .cloned()
                    .chain(segments[ups..].iter().cloned())
                    .collect()
            }
            _ => {
                self.push(segments, false);
                return;
            }
        };
        self.push(resolved, true);
    }

    fn push(&mut self, path: Vec<String>, in_crate: bool) {
        let path = if in_crate {
            std::iter::once("crate".to_string()).chain(path).collect()
        } else {
            path
        };
        self.uses.push(Use {
            file: self.file.clone(),
            module: self.module.first().cloned().unwrap_or_default(),
            path,
        });
    }

    /// Paths written inside a macro's tokens (`format!`, `matches!`,
    /// `tracing::debug!`): every `a::b::c` run of identifiers.
    fn record_tokens(&mut self, tokens: TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut colons = 0;
        let flush = |run: &mut Vec<String>, me: &mut Self| {
            if run.len() > 1 {
                me.record(std::mem::take(run));
            }
            run.clear();
        };
        for t in tokens {
            match t {
                TokenTree::Ident(i) => {
                    if colons != 2 {
                        flush(&mut run, self);
                    }
                    run.push(i.to_string());
                    colons = 0;
                }
                TokenTree::Punct(p) if p.as_char() == ':' => colons += 1,
                TokenTree::Group(g) => {
                    flush(&mut run, self);
                    colons = 0;
                    self.record_tokens(g.stream());
                }
                _ => {
                    flush(&mut run, self);
                    colons = 0;
                }
            }
        }
        flush(&mut run, self);
    }
}

/// `use a::{b, c::d as e, f::*}` as the paths `a::b`, `a::c::d`, `a::f`.
fn expand(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            expand(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            if n.ident != "self" {
                path.push(n.ident.to_string());
            }
            out.push(path);
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push(path);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                expand(item, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if test_only(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.attrs.iter().any(|a| a.path().is_ident("path")) {
            // A module read from elsewhere would escape the walk: refused.
            self.push(vec!["#[path]".to_string(), m.ident.to_string()], false);
        }
        self.module.push(m.ident.to_string());
        match &m.content {
            None => self.children.push(self.module.clone()),
            Some((_, items)) => {
                for item in items {
                    self.visit_item(item);
                }
            }
        }
        self.module.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        expand(&u.tree, &mut Vec::new(), &mut paths);
        for path in paths {
            self.record(path);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.record(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if m.path.is_ident("include") {
            // Source pulled in from another file escapes the walk: refused.
            self.push(vec!["include!".to_string()], false);
        }
        self.record_tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

/// The top-level module a crate path reaches (`crate::apply::x` → `apply`).
fn target(u: &Use) -> Option<&str> {
    (u.path.first().map(String::as_str) == Some("crate"))
        .then(|| u.path.get(1).map(String::as_str))
        .flatten()
}

fn starts_with(path: &[String], prefix: &str) -> bool {
    let prefix: Vec<&str> = prefix.split("::").collect();
    path.len() >= prefix.len() && path.iter().zip(&prefix).all(|(a, b)| a == b)
}

/// Every finding of every rule, one line each, naming the file and path.
fn violations(root: &Path) -> Vec<String> {
    violations_with(root, TEMPORARY_ENV_READERS)
}

/// [`violations`], with `temporary` as the temporary env-reader list.
fn violations_with(root: &Path, temporary: &[&str]) -> Vec<String> {
    let uses = crate_uses(root);
    let top: BTreeSet<String> = uses.iter().map(|u| u.module.clone()).collect();
    let mut found = Vec::new();

    // Module edges, each with the first use that makes it.
    let mut edges: BTreeMap<(String, String), &Use> = BTreeMap::new();
    for u in &uses {
        if let Some(to) = target(u) {
            if !u.module.is_empty() && to != u.module && top.contains(to) {
                edges.entry((u.module.clone(), to.to_string())).or_insert(u);
            }
        }
    }
    found.extend(cycles(&edges));

    // What each module reaches through others: a reader must not reach a
    // writer by way of a helper module either.
    let mut reach: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for u in &uses {
        if let Some(to) = target(u) {
            if !u.module.is_empty() && to != u.module {
                reach.entry(u.module.as_str()).or_default().insert(to);
            }
        }
    }
    loop {
        let mut grew = false;
        let snapshot = reach.clone();
        for targets in reach.values_mut() {
            for t in targets.clone() {
                for further in snapshot.get(t).into_iter().flatten() {
                    grew |= targets.insert(further);
                }
            }
        }
        if !grew {
            break;
        }
    }
    for (reader, writers) in READERS {
        for writer in *writers {
            let direct = uses
                .iter()
                .any(|u| u.module == *reader && target(u) == Some(*writer));
            if !direct && reach.get(reader).is_some_and(|r| r.contains(writer)) {
                found.push(format!(
                    "{reader}/ reads and must not depend on code that changes nodes: it reaches \
                     {writer}/ through other modules"
                ));
            }
        }
    }

    for u in &uses {
        let module = u.module.as_str();
        if matches!(
            u.path.first().map(String::as_str),
            Some("#[path]" | "include!")
        ) {
            found.push(format!(
                "source from outside the module tree ({}) cannot be checked: {}",
                u.path[0],
                u.shown()
            ));
        }
        if PURE_MODULES.contains(&module) {
            let io = IO_PATHS.iter().any(|p| starts_with(&u.path, p))
                && !IO_EXCEPTIONS.iter().any(|p| starts_with(&u.path, p));
            if io {
                found.push(format!("{module}/ must do no I/O: {}", u.shown()));
            }
        }
        if module == "plan" && target(u).is_some_and(|t| IO_MODULES.contains(&t)) {
            found.push(format!(
                "plan/ must use no module that does I/O: {}",
                u.shown()
            ));
        }
        for (reader, writers) in READERS {
            if module == *reader && target(u).is_some_and(|t| writers.contains(&t)) {
                found.push(format!(
                    "{reader}/ reads and must not depend on code that changes nodes: {}",
                    u.shown()
                ));
            }
        }
        if reads_env(u) && u.file != SETTINGS_FILE && !temporary.contains(&u.file.as_str()) {
            found.push(format!(
                "environment read outside {SETTINGS_FILE}: {}",
                u.shown()
            ));
        }
    }
    // The temporary list only shrinks: an entry that reads nothing any
    // more must go.
    for file in temporary {
        if !uses.iter().any(|u| u.file == *file && reads_env(u)) {
            found.push(format!(
                "{file} no longer reads the environment: remove it from TEMPORARY_ENV_READERS"
            ));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `std::env::var`, `env::var_os`, `env::vars`, … anywhere in a path, and
/// `std::env` itself (a glob import, `use std::env::*`, brings `var` in
/// under its own name).
fn reads_env(u: &Use) -> bool {
    u.path
        .windows(2)
        .any(|w| w[0] == "env" && matches!(w[1].as_str(), "var" | "var_os" | "vars" | "vars_os"))
        || u.path == ["std", "env"]
}

/// Each cycle among the modules, as `a -> b -> a` with the use behind
/// every edge.
fn cycles(edges: &BTreeMap<(String, String), &Use>) -> Vec<String> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from.as_str()).or_default().push(to.as_str());
    }
    let mut found = BTreeSet::new();
    // A path search from each module back to itself; the graph is small.
    for &start in next.keys() {
        let mut stack: Vec<Vec<&str>> = vec![vec![start]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = *path.last().unwrap_or(&start);
            for &to in next.get(last).into_iter().flatten() {
                if to == start {
                    // Report each cycle once, from its smallest module.
                    if path.iter().all(|m| *m >= start) {
                        let mut shown: Vec<String> = Vec::new();
                        for pair in path.iter().chain([&start]).collect::<Vec<_>>().windows(2) {
                            let u = edges[&(pair[0].to_string(), pair[1].to_string())];
                            shown.push(format!("{} -> {} ({})", pair[0], pair[1], u.shown()));
                        }
                        found.insert(format!("module cycle: {}", shown.join("; ")));
                    }
                } else if seen.insert(to) {
                    let mut longer = path.clone();
                    longer.push(to);
                    stack.push(longer);
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn the_crate_keeps_its_layers() {
    let found = violations(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        found.is_empty(),
        "layer rules broken:\n{}",
        found.join("\n")
    );
}

/// Writes `files` (path, text) under a new temporary crate root.
fn synthetic(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path: PathBuf = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn the_checker_reports_a_cycle_io_in_plan_a_reader_that_writes_and_an_env_read() {
    let dir = synthetic(&[
        (
            "src/lib.rs",
            "pub mod a;\npub mod b;\npub mod plan;\npub mod observe;\npub mod apply;\n\
             #[cfg(test)]\nmod testonly;\n",
        ),
        (
            "src/a.rs",
            "use crate::{b::{self, Thing}, plan};\npub fn f() {}\n",
        ),
        (
            "src/b/mod.rs",
            "mod inner;\npub fn g() { let _ = std::env::var(\"HOME\"); }\n",
        ),
        ("src/b/inner.rs", "pub fn h() { super::super::a::f() }\n"),
        (
            "src/plan/mod.rs",
            "use std::fs;\npub fn p() { let _ = fs::read(\"x\"); }\n",
        ),
        (
            "src/observe/mod.rs",
            "pub fn o() { crate::apply::run(); }\n",
        ),
        ("src/apply.rs", "pub fn run() {}\n"),
        // Test-only code may do anything.
        (
            "src/testonly.rs",
            "use crate::a; pub fn t() { std::env::var(\"X\").ok(); }\n",
        ),
    ]);
    let found = violations_with(dir.path(), &[]);
    let text = found.join("\n");
    assert!(
        found.iter().any(
            |f| f.starts_with("module cycle: a -> b (src/a.rs: `crate::b`)")
                && f.contains("b -> a (src/b/inner.rs: `crate::a::f`)")
        ),
        "{text}"
    );
    assert!(
        text.contains("plan/ must do no I/O: src/plan/mod.rs: `std::fs`"),
        "{text}"
    );
    assert!(
        text.contains(
            "observe/ reads and must not depend on code that changes nodes: \
             src/observe/mod.rs: `crate::apply::run`"
        ),
        "{text}"
    );
    assert!(
        text.contains("environment read outside src/settings.rs: src/b/mod.rs: `std::env::var`"),
        "{text}"
    );
    assert!(
        !text.contains("testonly"),
        "test-only code was checked:\n{text}"
    );
    assert_eq!(found.len(), 4, "{text}");
}

#[test]
fn the_checker_finds_paths_in_macros_allows_the_settings_file_and_flags_a_stale_allowance() {
    let dir = synthetic(&[
        (
            "src/lib.rs",
            "pub mod settings;\npub mod inventory;\npub mod x;\n",
        ),
        (
            "src/settings.rs",
            "pub fn s() -> Option<String> { std::env::var(\"K\").ok() }\n",
        ),
        (
            "src/inventory/mod.rs",
            "pub fn i() { tracing::info!(\"{}\", tokio::time::Instant::now()); }\n",
        ),
        (
            "src/x.rs",
            "use std::net::Ipv4Addr;\npub fn x(_: Ipv4Addr) {}\n",
        ),
    ]);
    let found = violations_with(dir.path(), &["src/x.rs"]);
    assert_eq!(
        found,
        vec![
            "inventory/ must do no I/O: src/inventory/mod.rs: `tokio::time::Instant::now`"
                .to_string(),
            "src/x.rs no longer reads the environment: remove it from TEMPORARY_ENV_READERS"
                .to_string(),
        ],
    );
}

#[test]
fn the_checker_sees_through_aliases_globs_cfg_any_helpers_path_and_include() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("crate alias: observe -> apply via `use crate as c`", &[
            ("src/lib.rs", "pub mod observe;\npub mod apply;\n"),
            ("src/observe.rs", "use crate as c;\npub fn o() { c::apply::run(); }\n"),
            ("src/apply.rs", "pub fn run() {}\n"),
        ]),
        ("crate alias: `use crate::{self as c}`", &[
            ("src/lib.rs", "pub mod observe;\npub mod apply;\n"),
            ("src/observe.rs", "use crate::{self as c};\npub fn o() { c::apply::run(); }\n"),
            ("src/apply.rs", "pub fn run() {}\n"),
        ]),
        ("extern crate self as me", &[
            ("src/lib.rs", "extern crate self as me;\npub mod observe;\npub mod apply;\n"),
            ("src/observe.rs", "pub fn o() { me::apply::run(); }\n"),
            ("src/apply.rs", "pub fn run() {}\n"),
        ]),
        ("module alias: `use std::env as e; e::var`", &[
            ("src/lib.rs", "pub mod x;\n"),
            ("src/x.rs", "use std::env as e;\npub fn x() { let _ = e::var(\"HOME\"); }\n"),
        ]),
        ("glob: `use std::env::*; var(..)`", &[
            ("src/lib.rs", "pub mod x;\n"),
            ("src/x.rs", "use std::env::*;\npub fn x() { let _ = var(\"HOME\"); }\n"),
        ]),
        ("std alias in plan: `use std as s; s::fs::read`", &[
            ("src/lib.rs", "pub mod plan;\n"),
            ("src/plan.rs", "use std as s;\npub fn p() { let _ = s::fs::read(\"x\"); }\n"),
        ]),
        ("cfg(any(test, unix)) is compiled in normal builds", &[
            ("src/lib.rs", "pub mod plan;\n"),
            ("src/plan.rs", "#[cfg(any(test, unix))]\npub fn p() { let _ = std::process::Command::new(\"sh\"); }\n"),
        ]),
        ("transitive: observe -> cluster_helpers -> apply", &[
            ("src/lib.rs", "pub mod observe;\npub mod helpers;\npub mod apply;\n"),
            ("src/observe.rs", "pub fn o() { crate::helpers::h(); }\n"),
            ("src/helpers.rs", "pub fn h() { crate::apply::run(); }\n"),
            ("src/apply.rs", "pub fn run() {}\n"),
        ]),
        ("plan uses crate::settings (reads the environment)", &[
            ("src/lib.rs", "pub mod plan;\npub mod settings;\n"),
            ("src/settings.rs", "pub fn s() -> Option<String> { std::env::var(\"K\").ok() }\n"),
            ("src/plan.rs", "pub fn p() { let _ = crate::settings::s(); }\n"),
        ]),
        ("#[path] module is walked at the wrong file", &[
            ("src/lib.rs", "pub mod plan;\n"),
            ("src/plan/mod.rs", "#[path = \"../evil.rs\"]\nmod inner;\n"),
            ("src/plan/inner.rs", "pub fn fine() {}\n"),
            ("src/evil.rs", "pub fn e() { let _ = std::fs::read(\"x\"); }\n"),
        ]),
        ("include! pulls in unchecked source", &[
            ("src/lib.rs", "pub mod plan;\n"),
            ("src/plan.rs", "include!(\"plan_io.in\");\n"),
            ("src/plan_io.in", "pub fn e() { let _ = std::fs::read(\"x\"); }\n"),
        ]),
    ];
    let mut missed = Vec::new();
    for (name, files) in cases {
        let dir = synthetic(files);
        let found = violations_with(dir.path(), &[]);
        if found.is_empty() {
            missed.push(*name);
        }
    }
    assert!(
        missed.is_empty(),
        "the checker missed:\n{}",
        missed.join("\n")
    );
}
