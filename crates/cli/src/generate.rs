//! `wulf generate DIR` (hidden): man pages and shell completions from the command line's
//! clap definitions, for the packages (packaging/build-debs.sh).

use std::path::Path;

use clap::CommandFactory;

use crate::fail::Fail;

/// Section 1: wulf is a user command. One page per command and subcommand
/// (`wulf-node-ls.1`), see [`wulf_clidoc::write_docs`].
pub(crate) fn run(dir: &Path) -> Result<(), Fail> {
    wulf_clidoc::write_docs("wulf", crate::args::Cli::command(), "1", dir)
        .map_err(|e| Fail::Request(e.into()))
}
