//! Man pages and shell completions from a program's clap definitions: what the hidden
//! `generate DIR` subcommand of `wulf`, `wulfd` and `wulf-agent` writes for the packages
//! (packaging/build-debs.sh).

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// A directory or file that could not be written. The message carries the system's
/// reason, so the binaries print it as it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {}: {cause}", .path.display())]
    Create {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write {}: {cause}", .path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Man pages (one per command and subcommand, like `wulf-node-ls.1`, in `section`) and
/// bash, zsh and fish completions for `cmd`, the program `bin`, written to DIR/man,
/// DIR/bash, DIR/zsh and DIR/fish. Hidden subcommands (`generate` itself) are left out.
/// The completions' command carries the workspace's version, which every binary shares.
pub fn write_docs(
    bin: &'static str,
    cmd: clap::Command,
    section: &str,
    dir: &Path,
) -> Result<(), Error> {
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
    create_dir(&man)?;
    pages(&cmd, section, &man).map_err(|cause| Error::Write {
        path: man.clone(),
        cause,
    })?;
    // clap_complete would offer hidden subcommands too: complete a copy without them.
    let mut shown = clap::Command::new(bin)
        .version(env!("CARGO_PKG_VERSION"))
        .about(cmd.get_about().cloned().unwrap_or_default())
        .disable_help_subcommand(true)
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for (shell, file) in [
        (Shell::Bash, bin.to_string()),
        (Shell::Zsh, format!("_{bin}")),
        (Shell::Fish, format!("{bin}.fish")),
    ] {
        let sub = dir.join(shell.to_string());
        create_dir(&sub)?;
        let path = sub.join(file);
        let mut out = std::fs::File::create(&path).map_err(|cause| Error::Write {
            path: path.clone(),
            cause,
        })?;
        clap_complete::generate(shell, &mut shown, bin, &mut out);
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|cause| Error::Create {
        path: path.to_path_buf(),
        cause,
    })
}
