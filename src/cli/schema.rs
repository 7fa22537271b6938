//! `kiwi-infra schema [main|customer]`: prints the JSON Schema of an
//! inventory file for editors; the schema itself lives with the inventory
//! model ([`crate::inventory::schema`]) so it is derived from the reader.

use super::args::{SchemaArgs, SchemaFile};
use super::CliError;
use crate::inventory::schema::{json_text, InventoryFile};

/// Prints the schema as pretty JSON, non-ASCII characters escaped.
pub(super) fn run(args: &SchemaArgs) -> Result<(), CliError> {
    let file = match args.file {
        SchemaFile::Main => InventoryFile::Main,
        SchemaFile::Customer => InventoryFile::Customer,
    };
    let text = json_text(file)
        .map_err(|e| CliError::Internal(format!("cannot encode the schema as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
