//! `wulf`: the cluster administrator's command line, in ClusterWare's style:
//! `wulf <object> [-i IDS]... [--all] <action> [key=value | key=@file]...`
//!
//! This file parses and dispatches; each object or verb family has its own module.

mod actions;
mod admin;
mod args;
mod attrs;
mod backup;
mod beowulf;
mod boot;
mod chain;
mod clock;
mod cluster;
mod conn;
mod db;
mod exec;
mod fail;
mod fields;
mod files;
mod generate;
mod head;
mod hostlist;
mod image;
mod info;
mod initramfs;
mod log;
mod login;
mod node;
mod objects;
mod output;
mod power;
mod sim;
mod simulate;
mod standalone;
mod status;
mod sysinfo;
mod trust;
mod waitfor;

use std::process::ExitCode;

use wulf_api::action::PowerAction;
use wulf_model::Kind;

use crate::args::{Action, Cli, ObjectCmd, Top};
use crate::fail::Fail;

fn main() -> ExitCode {
    match parse_and_run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("wulf: {m}");
            ExitCode::from(2)
        }
        Err(Fail::Request(e)) => {
            eprintln!("wulf: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// One command, or a chain (`… then …`): every part checked first, then run in order until
/// one fails.
fn parse_and_run() -> Result<(), Fail> {
    let clis = chain::parse(std::env::args_os().collect())?;
    if clis.iter().any(|c| c.insecure) {
        eprintln!("{}", conn::INSECURE_WARNING);
    }
    for cli in &clis {
        check(cli)?;
    }
    for cli in clis {
        run(cli)?;
    }
    Ok(())
}

/// What can be refused before anything is sent (for a chain, before its first part runs).
fn check(cli: &Cli) -> Result<(), Fail> {
    let (kind, cmd) = match &cli.command {
        Top::Node(c) => (Kind::Node, c),
        Top::Attrib(c) => (Kind::Attrib, c),
        Top::Boot(c) => (Kind::Boot, c),
        Top::Image(c) => (Kind::Image, c),
        Top::Pool(c) => (Kind::Pool, c),
        Top::Net(c) => (Kind::Net, c),
        Top::Host(c) => (Kind::Host, c),
        Top::Repo(c) => (Kind::Repo, c),
        Top::Cluster(c) => (Kind::Cluster, c),
        Top::Admin(c) => (Kind::Admin, c),
        _ => return Ok(()),
    };
    admin::check(kind, cmd)?;
    let verb = match &cmd.action {
        Action::Exec(a) if kind == Kind::Image => return image::exec::check(cmd, a).map(drop),
        Action::Exec(a) => return exec::check(kind, cmd, a).map(drop),
        Action::Build(a) => return image::build::check(a),
        Action::Waitfor(a) => return waitfor::check(kind, a),
        Action::Power(_) => "power",
        Action::Reboot(_) => "reboot",
        Action::Shutdown(_) => "shutdown",
        Action::Orphan => "orphan",
        _ => return Ok(()),
    };
    power::nodes_only(kind, verb)?;
    cmd.target_query(kind, verb).map(drop)
}

fn run(cli: Cli) -> Result<(), Fail> {
    match &cli.command {
        Top::Hostlist { action } => hostlist::run(action),
        Top::Sim(a) => simulate::run(&cli, a),
        Top::Initramfs { action } => initramfs::run(&cli, action),
        Top::Head(h) => head::run(&cli, h),
        Top::Log(a) => log::run(&cli, a),
        Top::Info => info::run(&cli),
        Top::Sysinfo(a) => sysinfo::run(&cli, a),
        Top::Trust(a) => trust::run(&cli, a),
        Top::Node(c) => object(&cli, Kind::Node, c),
        Top::Attrib(c) => object(&cli, Kind::Attrib, c),
        Top::Boot(c) => object(&cli, Kind::Boot, c),
        Top::Image(c) => object(&cli, Kind::Image, c),
        Top::Pool(c) => object(&cli, Kind::Pool, c),
        Top::Net(c) => object(&cli, Kind::Net, c),
        Top::Host(c) => object(&cli, Kind::Host, c),
        Top::Repo(c) => object(&cli, Kind::Repo, c),
        Top::Cluster(c) => object(&cli, Kind::Cluster, c),
        Top::Admin(c) => object(&cli, Kind::Admin, c),
        Top::Login(a) => login::login(&cli, a),
        Top::Logout => login::logout(&cli),
        Top::Whoami => login::whoami(&cli),
        Top::Generate { dir } => generate::run(dir),
    }
}

fn object(cli: &Cli, kind: Kind, cmd: &ObjectCmd) -> Result<(), Fail> {
    if kind == Kind::Admin {
        return admin::run(cli, cmd);
    }
    match &cmd.action {
        Action::Ls { names } => objects::ls(cli, kind, cmd, names),
        Action::Create {
            pairs,
            enroll_token: true,
            enroll_token_ttl,
            ..
        } => standalone::create(cli, kind, pairs, *enroll_token_ttl),
        Action::Create {
            pairs,
            from_image: Some(image),
            kernel_version,
            drivers,
            ..
        } => boot::from_image::create(cli, kind, pairs, image, kernel_version.as_deref(), drivers),
        Action::Create {
            from_dir: None,
            from_tar: None,
            pairs,
            count,
            macs,
            ..
        } => objects::create(cli, kind, pairs, *count, macs.as_deref()),
        Action::Create {
            pairs,
            from_dir,
            from_tar,
            ..
        } => image::create(cli, kind, pairs, from_dir.as_deref(), from_tar.as_deref()),
        Action::Update { pairs, .. } => objects::update(cli, kind, cmd, pairs),
        Action::Delete => objects::delete(cli, kind, cmd),
        Action::Set { pairs } => attrs::set(cli, kind, cmd, pairs),
        Action::Clear { names } => attrs::clear(cli, kind, cmd, names),
        Action::Join { groups } => attrs::join(cli, kind, cmd, groups),
        Action::Leave { groups } => attrs::leave(cli, kind, cmd, groups),
        Action::Upload { field, file } => files::upload_cmd(cli, kind, cmd, field, file),
        Action::Download { field, output } => files::download_cmd(cli, kind, cmd, field, output),
        Action::Hosts { format } => cluster::hosts(cli, kind, format),
        Action::Db {
            compact,
            defrag,
            disarm,
            recover,
        } => cluster::db(cli, kind, [*compact, *defrag, *disarm, *recover]),
        Action::Backup {
            output,
            files,
            force,
        } => backup::run(cli, kind, output, *files, *force),
        Action::ImportConfig { file, dry_run } => beowulf::plan::import(cli, file, *dry_run),
        Action::ExportConfig { output } => beowulf::export::export(cli, output.as_deref()),
        Action::Unknown => node::unknown(cli),
        Action::Replace { pairs } => node::replace(cli, cmd, pairs),
        Action::Status {
            refresh,
            refresh_for,
        } => node::status(cli, cmd, *refresh, *refresh_for),
        Action::Power(a) => power::run(cli, kind, cmd, &power::power_request(a)),
        Action::Reboot(a) => {
            power::run(cli, kind, cmd, &power::soft_request(PowerAction::Reboot, a))
        }
        Action::Shutdown(a) => power::run(
            cli,
            kind,
            cmd,
            &power::soft_request(PowerAction::Shutdown, a),
        ),
        Action::Orphan => power::orphan(cli, kind, cmd),
        // Refused for every kind but admin (handled above).
        Action::Revoke => admin::check(kind, cmd),
        Action::Exec(a) if kind == Kind::Image => image::exec::run(cli, cmd, a),
        Action::Exec(a) => exec::run(cli, kind, cmd, a),
        Action::Build(a) => image::build::run(cli, a),
        Action::Shell { name } => image::exec::shell(cli, name),
        Action::Waitfor(a) => waitfor::run(cli, kind, cmd, a),
        Action::EnrollToken { ttl } => standalone::reissue(cli, cmd, *ttl),
    }
}
