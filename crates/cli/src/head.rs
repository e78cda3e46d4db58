//! `wulf head ls|delete`: the cluster's head nodes.

use serde_json::Value;
use wulf_api::{client::encode, Deleted};

use crate::args::{split_list, HeadAction, HeadCmd};
use crate::conn::client;
use crate::fail::{usage, Fail};
use crate::{args::Cli, output, status};

/// `wulf head`.
pub(crate) fn run(cli: &Cli, h: &HeadCmd) -> Result<(), Fail> {
    let c = client(cli)?;
    let names = split_list(&h.ids);
    match h.action {
        HeadAction::Ls => {
            let mut heads: Vec<Value> = c.get("/head")?;
            if !names.is_empty() {
                heads.retain(|v| {
                    v.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.iter().any(|x| x == n))
                });
            }
            if cli.json {
                output::print_json(&heads);
                return Ok(());
            }
            let now = status::now();
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::NOTHING)
                .set_header(["HEAD", "STATE", "API", "VERSION", "STARTED"]);
            for v in &heads {
                let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let urls: Vec<&str> = v
                    .get("urls")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let started = v
                    .get("started")
                    .and_then(Value::as_f64)
                    .map(|t| status::ago(now - t))
                    .unwrap_or_default();
                t.add_row([s("name"), s("state"), urls.join(" "), s("version"), started]);
            }
            println!("{t}");
            Ok(())
        }
        HeadAction::Delete => {
            if names.is_empty() {
                return Err(usage("say which heads to remove: wulf head -i NAME delete"));
            }
            let d: Deleted = c.delete(&format!("/head?ids={}", encode(&names.join(","))))?;
            println!("Deleted head {}", d.deleted.join(", "));
            Ok(())
        }
    }
}
