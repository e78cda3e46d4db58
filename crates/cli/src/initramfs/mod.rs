//! `wulf initramfs build`: the initramfs a node boots into (ClusterWare's mkramfs). It holds
//! a static busybox, the kernel's NIC drivers with what they depend on, wulf-agent with its
//! shared libraries, and `/init` (init.sh), which fetches the node's image, checks it,
//! unpacks it into RAM, puts the agent in it and switches root. Packed as gzip'd newc cpio.

mod bootloader;
mod cpio;
mod elf;
mod storage;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use wulf_model::Kind;

use crate::args::Cli;
use crate::fail::Fail;

/// The init the kernel runs (busybox sh).
const INIT: &str = include_str!("init.sh");
/// udhcpc's script: configures the interface, the default route and resolv.conf.
const UDHCPC: &str = include_str!("udhcpc.sh");
/// The init's local disk functions (the disk cache), sourced by /init.
const DISK: &str = include_str!("disk.sh");

/// Drivers an initramfs gets by default (those the kernel has as modules): NICs, and the
/// filesystems the init mounts. virtio_pci is the bus virtio NICs sit on; af_packet is what
/// DHCP clients open (built in on most kernels). No storage drivers: a RAM-booted node needs
/// none, and a node with `_disk_cache` gets its controller's with `--drivers` (its init names
/// the missing one).
pub const DEFAULT_DRIVERS: &[&str] = &[
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "ixgbe",
    "i40e",
    "ice",
    "tg3",
    "bnx2",
    "bnx2x",
    "bnxt_en",
    "qede",
    "be2net",
    "r8169",
    "mlx4_en",
    "mlx5_core",
    "vmxnet3",
    "ena",
    "virtio_pci",
    "virtio_net",
    "af_packet",
    // Filesystems the init mounts: the roram root (overlay) and the disk cache (ext4, which
    // mounts its ext2).
    "overlay",
    "ext4",
];

#[derive(Subcommand, Debug)]
pub enum InitramfsCmd {
    /// Build a node initramfs: busybox, NIC drivers, wulf-agent and an init that downloads,
    /// checks and unpacks the node's image into RAM and switches root to it.
    ///
    /// The kernel that boots it must be the one whose modules it holds (--kernel-version).
    /// See docs/admin/initramfs.md for what the init does and how failures show.
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Kernel release whose modules to include (as `uname -r` prints it, e.g. 6.1.0-27-amd64)
    #[arg(long, value_name = "VER")]
    pub kernel_version: String,
    /// Directory holding lib/modules/VER (and lib/firmware): / for the installed kernel, or
    /// where a kernel package was unpacked (dpkg -x linux-image-….deb DIR)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// More kernel modules to include and load at boot, comma-separated (their dependencies
    /// come along): a NIC the defaults miss, or the storage driver of a node with a disk
    /// cache (virtio_blk, ahci, nvme, sd_mod, …)
    #[arg(long, value_name = "M1,M2", value_delimiter = ',')]
    pub drivers: Vec<String>,
    /// Leave out the default drivers (e1000, e1000e, igb, ixgbe, i40e, ice, tg3, bnx2,
    /// bnxt_en, mlx4_en, mlx5_core, r8169, virtio_net, …, overlay, ext4): only --drivers
    #[arg(long)]
    pub no_default_drivers: bool,
    /// A statically linked busybox (Debian: apt-get install busybox-static)
    #[arg(long, value_name = "PATH", default_value = "/bin/busybox")]
    pub busybox: PathBuf,
    /// The wulf-agent program [default: wulf-agent beside this wulf, then on $PATH]
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Where to write the initramfs
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Also upload it as this boot config's initramfs
    #[arg(long, value_name = "NAME")]
    pub boot: Option<String>,
}

pub(crate) fn run(cli: &Cli, cmd: &InitramfsCmd) -> Result<(), Fail> {
    match cmd {
        InitramfsCmd::Build(a) => build_cmd(cli, a),
    }
}

fn build_cmd(cli: &Cli, a: &BuildArgs) -> Result<(), Fail> {
    // Check the boot config before the work, so a typo costs nothing.
    let client = match &a.boot {
        Some(name) => {
            let c = crate::conn::client(cli)?;
            let found: Vec<serde_json::Value> = c.get(&format!(
                "/boot?ids={}&fields=name",
                wulf_api::client::encode(name)
            ))?;
            if found.len() != 1 {
                return Err(Fail::Request(anyhow!(
                    "boot config '{name}' does not exist (wulf boot create name={name} kernel=@VMLINUZ)"
                )));
            }
            Some(c)
        }
        None => None,
    };
    let summary = build(a)?;
    if cli.json {
        crate::output::print_json(&summary);
    } else {
        println!("{}", summary.text());
    }
    if let (Some(c), Some(name)) = (client, &a.boot) {
        crate::files::upload(&c, Kind::Boot, name, "initramfs", &a.output)?;
        if !cli.json {
            println!("Uploaded it as boot config {name}'s initramfs");
        }
    }
    Ok(())
}

/// What went into an initramfs.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub output: PathBuf,
    pub kernel_version: String,
    pub bytes: u64,
    pub unpacked_bytes: u64,
    /// Modules asked for and found (loaded at boot).
    pub drivers: Vec<String>,
    /// Every module included, dependencies too.
    pub modules: usize,
    /// Default drivers this kernel has built in (nothing to load).
    pub builtin: Vec<String>,
    /// Default drivers this kernel does not have.
    pub absent: Vec<String>,
    pub firmware: usize,
    pub firmware_missing: Vec<String>,
    pub agent: PathBuf,
    pub agent_libs: Vec<String>,
    pub busybox: PathBuf,
    /// extlinux, for disked nodes to install (None when this machine has none).
    pub bootloader: Option<PathBuf>,
}

impl Summary {
    pub(crate) fn text(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut s = format!(
            "Wrote {} ({:.1} MiB, {:.1} MiB unpacked) for kernel {}\n  modules:  {} ({} drivers loaded at boot: {})\n",
            self.output.display(),
            mib(self.bytes),
            mib(self.unpacked_bytes),
            self.kernel_version,
            self.modules,
            self.drivers.len(),
            self.drivers.join(" ")
        );
        if !self.builtin.is_empty() {
            s += &format!("  built in: {}\n", self.builtin.join(" "));
        }
        if !self.absent.is_empty() {
            s += &format!("  not in this kernel: {}\n", self.absent.join(" "));
        }
        if self.firmware > 0 || !self.firmware_missing.is_empty() {
            s += &format!("  firmware: {} file(s)", self.firmware);
            if !self.firmware_missing.is_empty() {
                s += &format!(
                    "; {} the drivers may ask for are not under lib/firmware (install the firmware packages if a NIC needs them)",
                    self.firmware_missing.len()
                );
            }
            s += "\n";
        }
        s += &format!(
            "  agent:    {} + {} libraries\n  busybox:  {}",
            self.agent.display(),
            self.agent_libs.len(),
            self.busybox.display()
        );
        match &self.bootloader {
            Some(p) => s += &format!("\n  loader:   {} (for disked nodes)", p.display()),
            None => s += "\n  loader:   none: disked nodes cannot install from this initramfs (apt-get install extlinux, then build again)",
        }
        s
    }
}

/// The kernel's modules: where each is, what each depends on.
struct Modules {
    dir: PathBuf,
    /// module name (underscores) → path relative to `dir`
    paths: BTreeMap<String, String>,
    /// From modules.dep, when the tree has one: relative path → its dependencies' paths.
    dep: Option<HashMap<String, Vec<String>>>,
    builtin: BTreeSet<String>,
}

fn module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl Modules {
    fn open(root: &Path, ver: &str) -> Result<Modules> {
        if ver.is_empty() || ver.contains('/') {
            bail!("'{ver}' is not a kernel version (give what `uname -r` prints)");
        }
        let candidates = [
            root.join("lib/modules").join(ver),
            root.join("usr/lib/modules").join(ver),
        ];
        let Some(dir) = candidates.iter().find(|d| d.is_dir()).cloned() else {
            bail!(
                "no kernel modules for {ver}: {} does not exist (install that kernel, or give --root DIR where lib/modules/{ver} lives, e.g. an unpacked kernel package)",
                candidates[0].display()
            );
        };
        let mut paths = BTreeMap::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let entries =
                std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?;
            for e in entries {
                let e = e.with_context(|| format!("cannot read {}", d.display()))?;
                let ft = e
                    .file_type()
                    .with_context(|| format!("cannot read {}", e.path().display()))?;
                let p = e.path();
                if ft.is_dir() {
                    stack.push(p);
                } else if let Some(rel) =
                    p.strip_prefix(&dir)
                        .ok()
                        .and_then(|r| r.to_str())
                        .filter(|r| {
                            [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                                .iter()
                                .any(|x| r.ends_with(x))
                        })
                {
                    paths.entry(module_name(rel)).or_insert(rel.to_string());
                }
            }
        }
        if paths.is_empty() {
            bail!("{} holds no kernel modules", dir.display());
        }
        let dep = match std::fs::read_to_string(dir.join("modules.dep")) {
            Ok(text) => Some(
                text.lines()
                    .filter_map(|l| l.split_once(':'))
                    .map(|(m, deps)| {
                        (
                            m.trim().to_string(),
                            deps.split_whitespace().map(str::to_string).collect(),
                        )
                    })
                    .collect(),
            ),
            Err(_) => None,
        };
        let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
            .map(|t| t.lines().map(module_name).collect())
            .unwrap_or_default();
        Ok(Modules {
            dir,
            paths,
            dep,
            builtin,
        })
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(rel);
        let raw =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        decompress(&path, raw)
    }

    /// The modules `rel` needs, in modules.dep order (the last one loads first): its hard
    /// dependencies, and the modules its `softdep=pre:` lines name (libcrc32c needs a crc32c
    /// implementation, which only a soft dependency brings), with theirs.
    fn deps_of(&self, rel: &str, info: &mut InfoCache) -> Result<Vec<String>> {
        self.deps_depth(rel, info, 0)
    }

    fn deps_depth(&self, rel: &str, info: &mut InfoCache, depth: u32) -> Result<Vec<String>> {
        let mut list = self.hard_deps(rel, info)?;
        if depth > 8 {
            return Ok(list);
        }
        let mut i = 0;
        let mut owners: Vec<String> = std::iter::once(rel.to_string())
            .chain(list.clone())
            .collect();
        while i < owners.len() {
            let soft: Vec<String> = info
                .get(self, &owners[i])?
                .iter()
                .filter(|(k, _)| k == "softdep")
                .flat_map(|(_, v)| soft_pre(v))
                .collect();
            for name in soft {
                for srel in self.resolve_name(&name, info)? {
                    if srel == rel || list.contains(&srel) {
                        continue;
                    }
                    list.push(srel.clone());
                    owners.push(srel.clone());
                    for d in self.deps_depth(&srel, info, depth + 1)? {
                        if d != rel && !list.contains(&d) {
                            list.push(d.clone());
                            owners.push(d);
                        }
                    }
                }
            }
            i += 1;
        }
        Ok(list)
    }

    /// Modules that provide `name`: the module of that name, else those with that alias (just
    /// the generic one when there is one: crc32c_generic loads on any CPU, crc32c-intel not).
    fn resolve_name(&self, name: &str, info: &mut InfoCache) -> Result<Vec<String>> {
        let all = self.providers(name, info)?;
        match all.iter().find(|r| module_name(r).ends_with("_generic")) {
            Some(g) => Ok(vec![g.clone()]),
            None => Ok(all),
        }
    }

    fn providers(&self, name: &str, info: &mut InfoCache) -> Result<Vec<String>> {
        let name = name.replace('-', "_");
        if let Some(rel) = self.paths.get(&name) {
            return Ok(vec![rel.clone()]);
        }
        if let Ok(text) = std::fs::read_to_string(self.dir.join("modules.alias")) {
            let mods: BTreeSet<String> = text
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some("alias") && w.next() == Some(name.as_str()))
                        .then(|| w.next())
                        .flatten()
                })
                .filter_map(|m| self.paths.get(&m.replace('-', "_")).cloned())
                .collect();
            return Ok(mods.into_iter().collect());
        }
        // No modules.alias either: look through every module's own aliases.
        let mut found = Vec::new();
        for rel in self.paths.values() {
            let has = info
                .get(self, rel)?
                .iter()
                .any(|(k, v)| k == "alias" && v.replace('-', "_") == name);
            if has {
                found.push(rel.clone());
            }
        }
        Ok(found)
    }

    /// Hard dependencies from modules.dep, or from the modules' own `depends=`.
    fn hard_deps(&self, rel: &str, info: &mut InfoCache) -> Result<Vec<String>> {
        if let Some(dep) = &self.dep {
            return Ok(dep.get(rel).cloned().unwrap_or_default());
        }
        // No modules.dep (a kernel package unpacked without running depmod): follow each
        // module's own `depends=` list, as depmod would have.
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.visit(rel, info, &mut seen, &mut order)?;
        order.pop(); // the module itself, loaded last
        order.reverse();
        Ok(order)
    }

    /// Post-order walk: dependencies before the module that needs them.
    fn visit(
        &self,
        rel: &str,
        info: &mut InfoCache,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if !seen.insert(rel.to_string()) {
            return Ok(());
        }
        let depends: Vec<String> = info
            .get(self, rel)?
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(','))
            .filter(|s| !s.is_empty())
            .map(|s| s.replace('-', "_"))
            .collect();
        for d in depends {
            let Some(drel) = self.paths.get(&d).cloned() else {
                bail!(
                    "module {rel} depends on {d}, which is not in {}",
                    self.dir.display()
                );
            };
            self.visit(&drel, info, seen, order)?;
        }
        order.push(rel.to_string());
        Ok(())
    }
}

/// The module names in a `softdep=` value's `pre:` part (`pre: crc32c post: x`).
fn soft_pre(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pre = false;
    for w in v.split_whitespace() {
        match w {
            "pre:" => pre = true,
            "post:" => pre = false,
            _ if pre => out.push(w.to_string()),
            _ => {}
        }
    }
    out
}

/// `.modinfo` of modules already read.
#[derive(Default)]
struct InfoCache(HashMap<String, Vec<(String, String)>>);

impl InfoCache {
    fn get(&mut self, m: &Modules, rel: &str) -> Result<&Vec<(String, String)>> {
        if !self.0.contains_key(rel) {
            let data = m.read(rel)?;
            let info = elf::modinfo(&data).with_context(|| format!("module {rel}"))?;
            self.0.insert(rel.to_string(), info);
        }
        self.0
            .get(rel)
            .ok_or_else(|| anyhow!("module {rel} vanished"))
    }
}

/// A module file's contents, uncompressed: busybox's modprobe loads plain .ko files only.
fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("cannot decompress {name}"))?;
        return Ok(out);
    } else {
        return Ok(raw);
    };
    let out = std::process::Command::new(tool)
        .args(["-dc"])
        .arg(path)
        .output()
        .map_err(|e| {
            anyhow!("{name} is compressed and `{tool}` cannot run ({e}): install it (Debian: xz-utils, zstd)")
        })?;
    if !out.status.success() {
        bail!(
            "{tool} cannot decompress {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The archive path of a module (compressed ones are stored decompressed, as .ko).
fn plain_rel(rel: &str) -> String {
    match rel.find(".ko") {
        Some(i) => format!("{}.ko", &rel[..i]),
        None => rel.to_string(),
    }
}

/// The agent program: --agent, else beside this wulf, else on $PATH.
pub(crate) fn find_agent(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("--agent {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("wulf-agent"));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("wulf-agent"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("cannot find wulf-agent beside wulf or on $PATH: build it (cargo build --release -p wulf-agent) or give --agent PATH")
        })
}

/// Directories the dynamic loader searches by default, most specific first.
fn lib_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for base in ["/lib", "/usr/lib"] {
        if let Ok(rd) = std::fs::read_dir(base) {
            let mut multiarch: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.contains("-linux-"))
                })
                .collect();
            multiarch.sort();
            dirs.extend(multiarch);
        }
    }
    for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// A program's interpreter and every shared library it needs (transitively), as absolute
/// paths on this machine.
fn program_libs(agent: &Path, data: &[u8]) -> Result<(Option<String>, Vec<String>)> {
    let e =
        elf::Elf::parse(data).with_context(|| format!("{} is not a program", agent.display()))?;
    let interp = e.interpreter()?;
    let interp_name = interp
        .as_deref()
        .and_then(|i| i.rsplit('/').next())
        .map(str::to_string);
    let dirs = lib_dirs();
    let mut found: Vec<String> = Vec::new();
    let mut todo: Vec<String> = e.needed()?;
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) || Some(&name) == interp_name.as_ref() {
            continue;
        }
        let path = dirs
            .iter()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "{} needs {name}, which is not in {}",
                    agent.display(),
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let lib =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let le = elf::Elf::parse(&lib).with_context(|| path.display().to_string())?;
        todo.extend(le.needed()?);
        found.push(path.to_string_lossy().to_string());
    }
    found.sort();
    Ok((interp, found))
}

/// Busybox's applets as archive paths (bin/sh, sbin/ip, usr/bin/wget…).
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("cannot run {}", busybox.display()))?;
    if !out.status.success() {
        bail!("{} --list-full failed: is it busybox?", busybox.display());
    }
    let list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.contains(".."))
        .collect();
    for need in [
        "bin/sh",
        "sbin/modprobe",
        "sbin/switch_root",
        "usr/bin/wget",
    ] {
        let short = need.rsplit('/').next().unwrap_or(need);
        if !list.iter().any(|a| a.rsplit('/').next() == Some(short)) {
            bail!("{} has no {short} applet", busybox.display());
        }
    }
    Ok(list)
}

pub fn build(a: &BuildArgs) -> Result<Summary> {
    // Everything is checked before the output file is touched.
    let mods = Modules::open(&a.root, &a.kernel_version)?;
    let bb = std::fs::read(&a.busybox).with_context(|| {
        format!(
            "cannot read busybox at {} (Debian: apt-get install busybox-static, or give --busybox PATH)",
            a.busybox.display()
        )
    })?;
    let bbelf = elf::Elf::parse(&bb)
        .with_context(|| format!("{} is not a busybox program", a.busybox.display()))?;
    if bbelf.interpreter()?.is_some() {
        bail!(
            "{} is dynamically linked; the initramfs needs a static busybox (Debian: apt-get install busybox-static, or give --busybox PATH)",
            a.busybox.display()
        );
    }
    let applets = applets(&a.busybox)?;
    let agent_path = find_agent(a.agent.as_deref())?;
    let agent = std::fs::read(&agent_path)
        .with_context(|| format!("cannot read {}", agent_path.display()))?;
    let (interp, libs) = program_libs(&agent_path, &agent)?;
    let loader = match bootloader::find() {
        Some(f) => {
            let prog = std::fs::read(&f.program)
                .with_context(|| format!("cannot read {}", f.program.display()))?;
            let (li, ll) = program_libs(&f.program, &prog)?;
            let mbr = bootloader::read_mbr(&f.mbr)?;
            Some((
                f.program,
                prog,
                mbr,
                li.into_iter().chain(ll).collect::<Vec<_>>(),
            ))
        }
        None => None,
    };

    // Which modules: the drivers asked for and, through modules.dep, what they need.
    let mut wanted: Vec<(String, bool)> = Vec::new(); // (name, asked for explicitly)
    if !a.no_default_drivers {
        wanted.extend(DEFAULT_DRIVERS.iter().map(|d| (d.to_string(), false)));
    }
    for d in &a.drivers {
        let d = d.trim().trim_end_matches(".ko").replace('-', "_");
        if !d.is_empty() && !wanted.iter().any(|(w, _)| *w == d) {
            wanted.push((d, true));
        } else if let Some(w) = wanted.iter_mut().find(|(w, _)| *w == d) {
            w.1 = true;
        }
    }
    if wanted.is_empty() {
        bail!("no drivers: give --drivers, or leave out --no-default-drivers");
    }
    let mut info = InfoCache::default();
    let mut drivers = Vec::new();
    let mut builtin = Vec::new();
    let mut absent = Vec::new();
    let mut include: BTreeMap<String, Vec<String>> = BTreeMap::new(); // rel → deps (rels)
    for (name, explicit) in &wanted {
        let Some(rel) = mods.paths.get(name).cloned() else {
            if mods.builtin.contains(name) {
                builtin.push(name.clone());
                continue;
            }
            if *explicit {
                bail!(
                    "--drivers {name}: kernel {} has no module {name} (in {})",
                    a.kernel_version,
                    mods.dir.display()
                );
            }
            absent.push(name.clone());
            continue;
        };
        drivers.push(name.clone());
        let deps = mods.deps_of(&rel, &mut info)?;
        for d in &deps {
            if !include.contains_key(d) {
                let dd = mods.deps_of(d, &mut info)?;
                include.insert(d.clone(), dd);
            }
        }
        include.insert(rel, deps);
    }

    // Write to a temporary file beside the output, renamed into place at the end.
    let out_dir = match a.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(&out_dir)
        .with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(tmp.as_file()),
        flate2::Compression::default(),
    );
    let mut w = cpio::Writer::new(gz);
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "etc/wulf",
        "proc",
        "sys",
        "dev",
        "run",
        "newroot",
        "lib",
        "lib/modules",
    ] {
        w.dir(d, 0o755)?;
    }
    w.dir("tmp", 0o1777)?;
    w.char_dev("dev/console", 0o600, 5, 1)?;
    w.char_dev("dev/null", 0o666, 1, 3)?;
    w.file("init", 0o755, INIT.as_bytes())?;
    w.file("etc/wulf/udhcpc.script", 0o755, UDHCPC.as_bytes())?;
    w.file("etc/wulf/disk.sh", 0o644, DISK.as_bytes())?;
    let storage_alias = storage::aliases(&mods, &mut info)?;
    w.file("etc/wulf/storage.alias", 0o644, storage_alias.as_bytes())?;
    w.file("bin/busybox", 0o755, &bb)?;
    for app in &applets {
        if app == "bin/busybox" || app == "init" || app == "linuxrc" {
            continue;
        }
        let depth = app.matches('/').count();
        let target = if depth == 1 && app.starts_with("bin/") {
            "busybox".to_string()
        } else {
            format!("{}bin/busybox", "../".repeat(depth))
        };
        w.symlink(app, &target)?;
    }

    // Modules, stored uncompressed at their usual paths, and a modules.dep for busybox's
    // modprobe that lists just them.
    let kdir = format!("lib/modules/{}", a.kernel_version);
    let mut dep_lines = String::new();
    let mut alias_lines = String::new();
    let mut firmware = BTreeSet::new();
    for (rel, deps) in &include {
        let data = mods.read(rel)?;
        w.file(&format!("{kdir}/{}", plain_rel(rel)), 0o644, &data)?;
        let deps: Vec<String> = deps.iter().map(|d| plain_rel(d)).collect();
        dep_lines += &format!("{}: {}\n", plain_rel(rel), deps.join(" "));
        let name = module_name(rel);
        for (k, v) in info.get(&mods, rel)? {
            match k.as_str() {
                "alias" => alias_lines += &format!("alias {v} {name}\n"),
                "firmware" => {
                    firmware.insert(v.clone());
                }
                _ => {}
            }
        }
    }
    w.file(&format!("{kdir}/modules.dep"), 0o644, dep_lines.as_bytes())?;
    w.file(
        &format!("{kdir}/modules.alias"),
        0o644,
        alias_lines.as_bytes(),
    )?;
    if let Ok(b) = std::fs::read(mods.dir.join("modules.builtin")) {
        w.file(&format!("{kdir}/modules.builtin"), 0o644, &b)?;
    }
    let fw_root = a.root.join("lib/firmware");
    let mut fw_count = 0;
    let mut fw_missing = Vec::new();
    for f in &firmware {
        if f.contains("..") || f.starts_with('/') {
            continue;
        }
        let found = ["", ".xz", ".zst"]
            .iter()
            .map(|x| (format!("{f}{x}"), fw_root.join(format!("{f}{x}"))))
            .find(|(_, p)| p.is_file());
        match found {
            Some((name, p)) => {
                let data =
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                w.file(&format!("lib/firmware/{name}"), 0o644, &data)?;
                fw_count += 1;
            }
            None => fw_missing.push(f.clone()),
        }
    }

    // The agent and its libraries at the paths it was linked against.
    w.file("usr/sbin/wulf-agent", 0o755, &agent)?;
    let mut lib_list = String::new();
    for l in interp.iter().chain(libs.iter()) {
        let data = std::fs::read(l).with_context(|| format!("cannot read {l}"))?;
        let rel = l.trim_start_matches('/');
        w.file(rel, 0o755, &data)?;
        lib_list += l;
        lib_list += "\n";
    }
    w.file("etc/wulf/agent-libs", 0o644, lib_list.as_bytes())?;
    // extlinux and the libraries it needs that the agent's did not bring.
    if let Some((_, prog, mbr, need)) = &loader {
        w.file(bootloader::PROGRAM, 0o755, prog)?;
        w.file(bootloader::MBR, 0o644, mbr)?;
        for l in need {
            if interp.as_deref() == Some(l.as_str()) || libs.contains(l) {
                continue;
            }
            let data = std::fs::read(l).with_context(|| format!("cannot read {l}"))?;
            w.file(l.trim_start_matches('/'), 0o755, &data)?;
        }
    }
    w.file(
        "etc/wulf/agent-interp",
        0o644,
        interp.clone().unwrap_or_default().as_bytes(),
    )?;
    w.file(
        "etc/wulf/drivers",
        0o644,
        (drivers.join("\n") + "\n").as_bytes(),
    )?;
    w.file(
        "etc/wulf/kernel-version",
        0o644,
        format!("{}\n", a.kernel_version).as_bytes(),
    )?;
    w.file(
        "etc/wulf/initramfs.info",
        0o644,
        format!(
            "initramfs by wulf {} for kernel {}, {} modules",
            env!("CARGO_PKG_VERSION"),
            a.kernel_version,
            include.len()
        )
        .as_bytes(),
    )?;
    let unpacked = w.content_bytes;
    let gz = w.finish()?;
    let mut buf = gz.finish()?;
    buf.flush()?;
    drop(buf);
    tmp.as_file().sync_all().ok();
    let bytes = tmp.as_file().metadata()?.len();
    // A temporary file is created 0600; an initramfs is no secret (TFTP serves them).
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    tmp.persist(&a.output)
        .map_err(|e| anyhow!("cannot write {}: {}", a.output.display(), e.error))?;
    let mut libs_out: Vec<String> = interp.into_iter().collect();
    libs_out.extend(libs);
    Ok(Summary {
        output: a.output.clone(),
        kernel_version: a.kernel_version.clone(),
        bytes,
        unpacked_bytes: unpacked,
        drivers,
        modules: include.len(),
        builtin,
        absent,
        firmware: fw_count,
        firmware_missing: fw_missing,
        agent: agent_path,
        agent_libs: libs_out,
        busybox: a.busybox.clone(),
        bootloader: loader.map(|l| l.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_and_paths() {
        assert_eq!(module_name("kernel/drivers/net/e1000e.ko.xz"), "e1000e");
        assert_eq!(module_name("kernel/x/mlx5-core.ko"), "mlx5_core");
        assert_eq!(plain_rel("kernel/a/b.ko.zst"), "kernel/a/b.ko");
        assert_eq!(plain_rel("kernel/a/b.ko"), "kernel/a/b.ko");
        assert_eq!(soft_pre("pre: crc32c"), ["crc32c"]);
        assert_eq!(soft_pre("pre: a b post: c"), ["a", "b"]);
        assert!(soft_pre("post: c").is_empty());
    }

    #[test]
    fn the_init_scripts_parse() {
        for (name, text) in [("init", INIT), ("udhcpc", UDHCPC), ("disk", DISK)] {
            let o = std::process::Command::new("sh")
                .args(["-n", "-c", text])
                .output()
                .expect("sh runs");
            assert!(
                o.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
