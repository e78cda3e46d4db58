//! `wulfd generate DIR` (hidden): man page and shell completions from wulfd's clap
//! definitions, for the packages (packaging/build-debs.sh).

use std::path::Path;

use anyhow::Context;

/// Man pages (one per command and subcommand, like `wulf-node-ls.1`, in `section`) and
/// bash, zsh and fish completions for `cmd`, the program `bin`, written to DIR/man,
/// DIR/bash, DIR/zsh and DIR/fish. Hidden subcommands (this one) are left out.
pub(crate) fn write_docs(
    bin: &'static str,
    cmd: clap::Command,
    section: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    fn pages(cmd: &clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages(sub, section, dir)?;
        }
        clap_mangen::Man::new(cmd.clone())
            .section(section)
            .generate_to(dir)
            .map(drop)
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    // Gives subcommands their full names (wulf-node-ls) and the global flags.
    cmd.build();
    let man = dir.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    pages(&cmd, section, &man).with_context(|| format!("cannot write {}", man.display()))?;
    // clap_complete would offer hidden subcommands too: complete a copy without them.
    let mut shown = clap::Command::new(bin)
        .version(env!("CARGO_PKG_VERSION"))
        .about(cmd.get_about().cloned().unwrap_or_default())
        .disable_help_subcommand(true)
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, bin.to_string()),
        (Shell::Zsh, format!("_{bin}")),
        (Shell::Fish, format!("{bin}.fish")),
    ] {
        let sub = dir.join(shell.to_string());
        std::fs::create_dir_all(&sub)
            .with_context(|| format!("cannot create {}", sub.display()))?;
        let path = sub.join(file);
        let mut out = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        clap_complete::generate(shell, &mut shown, bin, &mut out);
    }
    Ok(())
}
