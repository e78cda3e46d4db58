//! `wulf hostlist expand|compress`.

use std::io::{BufRead, Write};

use wulf_model::hostlist;

use crate::args::HostlistCmd;
use crate::fail::{usage, Fail};

pub(crate) fn run(action: &HostlistCmd) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match action {
        HostlistCmd::Expand { hostlist: h } => {
            for expr in h {
                let names = hostlist::expand(expr).map_err(|e| usage(e.to_string()))?;
                for n in names {
                    let _ = writeln!(out, "{n}");
                }
            }
        }
        HostlistCmd::Compress { names } => {
            let names: Vec<String> = if names.is_empty() {
                std::io::stdin()
                    .lock()
                    .lines()
                    .map_while(Result::ok)
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            } else {
                names.clone()
            };
            let _ = writeln!(out, "{}", hostlist::compress(&names));
        }
    }
    Ok(())
}
