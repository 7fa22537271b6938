//! `kiwi-infra instances`: the account's instances, read-only.

use super::args::{GlobalArgs, InstancesArgs};
use super::{settings, table, CliError};
use crate::contabo::InstanceFilter;

/// Lists every instance of the account as a table or JSON.
pub async fn run(global: &GlobalArgs, args: &InstancesArgs) -> Result<(), CliError> {
    let client = settings::contabo_client(global)?;
    let mut instances = client.list_instances(&InstanceFilter::default()).await?;
    instances.sort_by_key(|i| i.instance_id);
    if args.json {
        let json = serde_json::to_string_pretty(&instances)
            .map_err(|e| CliError::Internal(format!("cannot encode instances as JSON: {e}")))?;
        println!("{}", crate::text::json_for_terminal(&json));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            vec![
                i.instance_id.to_string(),
                i.display_name.clone(),
                i.status.to_string(),
                i.product_id.clone(),
                i.region.to_string(),
                i.ipv4()
                    .map_or_else(|| "-".to_string(), |ip| ip.to_string()),
                i.created_date.format("%Y-%m-%d %H:%M").to_string(),
                i.cancel_date
                    .map_or_else(|| "-".to_string(), |d| d.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "ID",
                "DISPLAY NAME",
                "STATUS",
                "PRODUCT",
                "REGION",
                "IPV4",
                "CREATED (UTC)",
                "CANCELLED FOR"
            ],
            &rows
        )
    );
    eprintln!("{} instance(s)", instances.len());
    Ok(())
}
