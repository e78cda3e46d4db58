//! `wulfd generate DIR` (hidden): man page and shell completions from wulfd's clap
//! definitions, for the packages (packaging/build-debs.sh).

use std::path::Path;

/// Man pages in `section` and bash, zsh and fish completions for `cmd`, the program `bin`,
/// written under `dir` (see [`wulf_clidoc::write_docs`]).
pub(crate) fn write_docs(
    bin: &'static str,
    cmd: clap::Command,
    section: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    Ok(wulf_clidoc::write_docs(bin, cmd, section, dir)?)
}
