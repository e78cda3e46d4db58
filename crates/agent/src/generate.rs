//! `wulf-agent generate DIR` (hidden): man page and shell completions from the agent's clap
//! definitions, for the packages (packaging/build-debs.sh); written by
//! [`wulf_clidoc::write_docs`].

pub(crate) use wulf_clidoc::write_docs;
