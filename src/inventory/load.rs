//! Reads the inventory directory: `kiwi.toml` and `customers/*.toml`. Each
//! table is deserialised on its own, so one bad pool does not hide the errors
//! of the next, and a broken file does not stop the others from being read.

use super::diagnostics::{Collector, FileId, SourceFile};
use super::files::{
    CustomerFile, MainFile, NamedPool, RawCore, RawCustomerHead, RawK3s, RawPool, RawPrice,
    RawProvider, RawState,
};
use serde::de::DeserializeOwned;
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The file holding provider defaults and the Core cluster.
pub const MAIN_FILE: &str = "kiwi.toml";
/// The folder holding one file per customer.
pub const CUSTOMERS_DIR: &str = "customers";

/// Everything read from the inventory directory, before validation.
#[derive(Debug)]
pub(crate) struct RawInventory {
    pub(crate) main: Option<(FileId, MainFile)>,
    pub(crate) customers: Vec<(FileId, CustomerFile)>,
}

/// Reads every file of the inventory, recording errors in `errors`.
pub(crate) fn read_inventory(dir: &Path, errors: &mut Collector) -> RawInventory {
    let mut inventory = RawInventory {
        main: None,
        customers: Vec::new(),
    };
    if !dir.is_dir() {
        errors.about_file(
            dir,
            "inventory directory not found; expected a directory holding kiwi.toml and customers/",
        );
        return inventory;
    }
    let main_path = dir.join(MAIN_FILE);
    if let Some(file) = read_file(&main_path, errors) {
        inventory.main = Some((file, read_main(file, errors)));
    }
    for path in customer_paths(dir, errors) {
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            errors.about_file(&path, "file name is not UTF-8; expected <customer>.toml");
            continue;
        };
        if let Some(file) = read_file(&path, errors) {
            inventory
                .customers
                .push((file, read_customer(file, name, errors)));
        }
    }
    inventory
}

/// The `customers/*.toml` files in name order; other files are ignored.
fn customer_paths(dir: &Path, errors: &mut Collector) -> Vec<std::path::PathBuf> {
    let customers = dir.join(CUSTOMERS_DIR);
    if !customers.exists() {
        return Vec::new();
    }
    match crate::localfs::files_with_extension(&customers, "toml") {
        Ok(paths) => paths,
        Err(e) => {
            errors.about_file(&customers, format!("cannot read directory: {e}"));
            Vec::new()
        }
    }
}

fn read_file(path: &Path, errors: &mut Collector) -> Option<FileId> {
    match crate::localfs::read_text_file(path, crate::localfs::INVENTORY_FILE_LIMIT) {
        Ok(text) => Some(errors.add_file(SourceFile::new(path.to_path_buf(), text))),
        Err(e) if e.is_not_found() => {
            errors.about_file(path, "file not found; expected the inventory's main file with [provider], [prices] and [core]");
            None
        }
        // A FIFO, a device (a symlink to /dev/zero), a directory or a huge
        // file is refused without being read.
        Err(e) => {
            errors.about_file(path, e.reason());
            None
        }
    }
}

/// Parses the document, reporting a syntax error at its position.
fn parse_document<'a>(file: FileId, text: &'a str, errors: &mut Collector) -> Option<DeTable<'a>> {
    match DeTable::parse(text) {
        Ok(doc) => {
            let doc = doc.into_inner();
            check_strings(file, text, &doc, errors);
            Some(doc)
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            errors.at(file, span, toml_message(&e));
            None
        }
    }
}

/// Refuses control characters, line and paragraph separators, bidirectional
/// controls and invisible characters (see [`super::text`]) in every key and
/// every string of a document, wherever they are: no table reads them
/// further, so no later check can forget one.
fn check_strings(file: FileId, text: &str, table: &DeTable<'_>, errors: &mut Collector) {
    for (key, value) in table {
        check_string(file, text, key.get_ref(), key.span(), "key", errors);
        check_value(file, text, value, errors);
    }
}

fn check_value(file: FileId, text: &str, value: &Spanned<DeValue<'_>>, errors: &mut Collector) {
    match value.get_ref() {
        DeValue::String(s) => check_string(file, text, s, value.span(), "value", errors),
        DeValue::Array(items) => {
            for item in items {
                check_value(file, text, item, errors);
            }
        }
        DeValue::Table(table) => check_strings(file, text, table, errors),
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

fn check_string(
    file: FileId,
    text: &str,
    s: &str,
    span: std::ops::Range<usize>,
    what: &str,
    errors: &mut Collector,
) {
    let Some((_, c, why)) = super::text::first_forbidden(s) else {
        return;
    };
    // Point at the character itself when it is written as is; an escape
    // sequence (`\u2028`) is found at the start of the string.
    let at = text
        .get(span.clone())
        .and_then(|raw| raw.find(c))
        .map_or(span.start, |offset| span.start + offset);
    errors.at(
        file,
        at..at,
        format!(
            "this {what} contains {} ({why}); expected printable text without control \
             characters, line or paragraph separators, bidirectional controls or invisible \
             characters",
            super::text::code_point(c)
        ),
    );
}

fn read_main(file: FileId, errors: &mut Collector) -> MainFile {
    let text = errors.text(file).to_string();
    let mut main = MainFile::default();
    let Some(doc) = parse_document(file, &text, errors) else {
        return main;
    };
    main.parsed = true;
    let mut seen_provider = false;
    let mut seen_prices = false;
    for (key, value) in doc {
        match key.get_ref().as_ref() {
            "provider" => {
                seen_provider = true;
                main.provider_span = Some(key.span());
                main.provider = section::<RawProvider>(file, Some("provider"), value, errors);
            }
            "prices" => {
                seen_prices = true;
                if let Some(prices) = section(file, Some("prices"), value, errors) {
                    let prices: std::collections::BTreeMap<Spanned<String>, Spanned<RawPrice>> =
                        prices;
                    main.prices = prices.into_iter().collect();
                    main.prices_read = true;
                }
            }
            "k3s" => {
                main.k3s_span = Some(key.span());
                main.k3s = section::<RawK3s>(file, Some("k3s"), value, errors);
            }
            "state" => main.state = section::<RawState>(file, Some("state"), value, errors),
            "core" => {
                main.core_span = Some(key.span());
                if let Some((head, pools)) = split_pools(file, value, errors) {
                    main.core = section::<RawCore>(file, Some("core"), head, errors);
                    main.core_pools = pools;
                }
            }
            other => errors.at(
                file,
                key.span(),
                format!(
                    "unknown key `{other}`; expected one of `provider`, `prices`, `k3s`, `state`, \
                     `core`"
                ),
            ),
        }
    }
    if !seen_provider {
        errors.at(
            file,
            0..0,
            "missing table `[provider]`; expected region, image, ssh_public_key and period",
        );
    }
    if !seen_prices {
        errors.at(file, 0..0, "missing table `[prices]`; expected the monthly price of each product in use, e.g. `V94 = \"8.49\"`");
    }
    if main.core_span.is_none() {
        errors.at(file, 0..0, "missing table `[core]`; expected the Core cluster's api_endpoint, kubernetes_version, control_plane and pools");
    }
    main
}

fn read_customer(file: FileId, name: String, errors: &mut Collector) -> CustomerFile {
    let text = errors.text(file).to_string();
    let mut customer = CustomerFile {
        name,
        head: None,
        servers: None,
        pools_span: None,
        pools: Vec::new(),
    };
    let Some(mut doc) = parse_document(file, &text, errors) else {
        return customer;
    };
    if let Some((key, value)) = doc.remove_entry("servers") {
        customer.servers = Some((
            key.span(),
            section::<RawPool>(file, Some("servers"), value, errors),
        ));
    }
    if let Some((key, value)) = doc.remove_entry("pools") {
        customer.pools_span = Some(key.span());
        customer.pools = named_pools(file, value, errors);
    }
    let whole = Spanned::new(0..text.len(), DeValue::Table(doc));
    customer.head = section::<RawCustomerHead>(file, None, whole, errors);
    customer
}

/// Splits a table holding a `pools` sub-table into the rest and the pools.
fn split_pools<'a>(
    file: FileId,
    value: Spanned<DeValue<'a>>,
    errors: &mut Collector,
) -> Option<(Spanned<DeValue<'a>>, Vec<NamedPool>)> {
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        errors.at(file, span, "expected a table");
        return None;
    };
    let pools = match table.remove("pools") {
        Some(pools) => named_pools(file, pools, errors),
        None => Vec::new(),
    };
    Some((Spanned::new(span, DeValue::Table(table)), pools))
}

/// Reads `pools.<name>` tables one by one.
fn named_pools(
    file: FileId,
    value: Spanned<DeValue<'_>>,
    errors: &mut Collector,
) -> Vec<NamedPool> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.at(
            file,
            span,
            "`pools` is not a table; expected `[pools.<name>]` tables",
        );
        return Vec::new();
    };
    table
        .into_iter()
        .map(|(name, pool)| NamedPool {
            pool: section::<RawPool>(file, Some(name.get_ref()), pool, errors),
            name: Spanned::new(name.span(), name.into_inner().into_owned()),
        })
        .collect()
}

/// Deserialises one table (or value) written under the key `name` (`None`
/// for a whole file), reporting its first error. A value of the wrong type
/// is named by its key, with what to write instead.
fn section<T: DeserializeOwned>(
    file: FileId,
    name: Option<&str>,
    value: Spanned<DeValue<'_>>,
    errors: &mut Collector,
) -> Option<T> {
    let span = value.span();
    let mut keys = Vec::new();
    value_keys(name, &value, &mut keys);
    match T::deserialize(toml::de::ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            let at = e.span().unwrap_or(span);
            let message = keys
                .iter()
                .find(|(value_span, _)| *value_span == at)
                .and_then(|(_, key)| {
                    wrong_type_message(key, errors.text(file).get(at.clone())?, &e)
                })
                .unwrap_or_else(|| toml_message(&e));
            errors.at(file, at, message);
            None
        }
    }
}

/// The span of every value in `value` with the key it is written under (an
/// array's items under the array's key).
fn value_keys(
    key: Option<&str>,
    value: &Spanned<DeValue<'_>>,
    out: &mut Vec<(Range<usize>, String)>,
) {
    if let Some(key) = key {
        out.push((value.span(), key.to_string()));
    }
    match value.get_ref() {
        DeValue::Table(table) => {
            for (k, v) in table {
                value_keys(Some(k.get_ref()), v, out);
            }
        }
        DeValue::Array(items) => {
            for item in items {
                value_keys(key, item, out);
            }
        }
        _ => {}
    }
}

/// `key is <what was written>; expected <what fits>`, for a value of the
/// wrong type (`count = "3"`, `period = "12"`, `protected = "true"`,
/// `V94 = 8.49`), with the fix spelled out from the text as written so no
/// digit is lost. `None` for other errors.
fn wrong_type_message(key: &str, written: &str, e: &toml::de::Error) -> Option<String> {
    let rest = e.message().strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    let key_shown = crate::text::escape_for_terminal(key);
    let found_kind = found.split([' ', '`', '"']).next().unwrap_or(found);
    let found_kind = match found_kind {
        "string" => "a string",
        "integer" => "a whole number",
        "floating" => "a floating-point number",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "a table",
        _ => return None,
    };
    let written_shown = crate::text::escape_for_terminal(written.trim());
    let unquoted = written
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_string();
    let expected = expected.trim_end();
    let (wanted, suggestion) = match expected {
        "i64" | "u64" | "i32" | "u32" | "u8" | "u16" => (
            "a whole number without quotes",
            (found_kind == "a string" && unquoted.parse::<i64>().is_ok())
                .then(|| format!("{key} = {unquoted}")),
        ),
        "a boolean" => (
            "true or false without quotes",
            (found_kind == "a string" && matches!(unquoted.as_str(), "true" | "false"))
                .then(|| format!("{key} = {unquoted}")),
        ),
        "a string" => (
            "a string in quotes",
            matches!(
                found_kind,
                "a whole number" | "a floating-point number" | "a boolean"
            )
            .then(|| format!("{key} = \"{written}\"", written = written.trim())),
        ),
        "a sequence" => ("an array, e.g. [\"…\"]", None),
        "a map" => ("a table", None),
        other => (other, None),
    };
    // An array or a table may span lines; a scalar is quoted as written.
    let mut message = if matches!(found_kind, "an array" | "a table") {
        format!("`{key_shown}` is {found_kind}; expected {wanted}")
    } else {
        format!("`{key_shown}` is {found_kind} ({written_shown}); expected {wanted}")
    };
    if let Some(suggestion) = suggestion {
        message.push_str(&format!(
            ": `{}`",
            crate::text::escape_for_terminal(&suggestion)
        ));
    }
    Some(message)
}

/// toml's message, in our `<what>; expected <what>` shape and vocabulary
/// (TOML has keys, not fields).
fn toml_message(e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', " ");
    let message = message
        .replacen("unknown field", "unknown key", 1)
        .replacen("missing field", "missing key", 1)
        .replacen(", expected ", "; expected ", 1);
    match message.split_once("; expected ") {
        Some(_) => message,
        None if message.starts_with("missing key") => {
            format!("{message}; expected it in this table")
        }
        None => message,
    }
}
