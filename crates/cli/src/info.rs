//! `wulf info`: the head's version, store backend and revision.

use crate::args::Cli;
use crate::conn::client;
use crate::fail::Fail;
use crate::output;

pub(crate) fn run(cli: &Cli) -> Result<(), Fail> {
    let info: wulf_api::Info = client(cli)?.get("/info")?;
    if cli.json {
        output::print_json(&info);
    } else {
        println!(
            "head:     {}\nversion:  {}\nstore:    {}\nrevision: {}",
            info.head, info.version, info.store, info.revision
        );
    }
    Ok(())
}
