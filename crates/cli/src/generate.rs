//! `wulf generate DIR` (hidden): man pages and shell completions from the command line's
//! clap definitions, for the packages (packaging/build-debs.sh).

use std::path::Path;

use crate::fail::Fail;

/// Section 1: wulf is a user command. One page per command and subcommand
/// (`wulf-node-ls.1`), each object with only its own actions (as `--help` shows them), see
/// [`wulf_clidoc::write_docs`].
pub(crate) fn run(dir: &Path) -> Result<(), Fail> {
    wulf_clidoc::write_docs("wulf", crate::actions::command(), "1", dir)
        .map_err(|e| Fail::Request(e.into()))
}
