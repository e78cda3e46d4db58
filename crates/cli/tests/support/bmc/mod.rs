//! Test support: real BMC simulators and a real IPMI client to check them with.
//!
//! - [`IpmiSim`]: OpenIPMI's `ipmi_sim` (Debian `openipmi`), one LAN channel (IPMI 2.0) on an
//!   address and UDP port, one admin user, and a "machine" it powers: its `startcmd` is a
//!   script (a QEMU VM, or a `sleep` standing in for one) that it starts on `power on` and
//!   stops on `power off`; the VM codec's serial port lets a QEMU VM's `ipmi-bmc-extern`
//!   connect back, so `power off` and `reset` reach the VM itself.
//! - [`ipmitool`]: the real `ipmitool` (Debian `ipmitool`), to check what wulf says against
//!   what the BMC answers someone else.
//! - [`sushy::Sushy`]: sushy-tools' Redfish emulator with its fake driver, over HTTPS.
#![allow(dead_code)]

pub mod sushy;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::head::Head;

/// A command, inside network namespace `ns` when given.
pub fn in_ns(ns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The BMC simulator's MC: a BMC at 0x20 with chassis support.
const EMU: &str = "mc_setbmc 0x20\n\
                   mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
                   mc_enable 0x20\n";

/// One running `ipmi_sim`, killed (with the machine it started) on drop.
pub struct IpmiSim {
    pub ns: Option<String>,
    pub addr: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    /// The VM codec's TCP port (QEMU's `ipmi-bmc-extern` connects to it).
    pub serial_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// How to start one [`IpmiSim`].
pub struct SimConfig<'a> {
    pub ns: Option<&'a str>,
    /// Where its files go (created).
    pub dir: PathBuf,
    pub addr: &'a str,
    pub port: u16,
    pub serial_port: u16,
    pub user: &'a str,
    pub pass: &'a str,
    /// The machine: a shell script body run on power on (its process is the machine; it
    /// should `exec` the real thing).
    pub machine: &'a str,
    /// Power the machine on when the simulator starts.
    pub start_on: bool,
}

impl IpmiSim {
    pub fn start(c: SimConfig<'_>) -> IpmiSim {
        assert!(
            Command::new("ipmi_sim").arg("--help").output().is_ok()
                || Path::new("/usr/bin/ipmi_sim").exists(),
            "ipmi_sim must be installed (Debian openipmi; ./test.sh installs it)"
        );
        std::fs::create_dir_all(c.dir.join("state")).unwrap();
        let script = c.dir.join("machine.sh");
        write_script(
            &script,
            &format!(
                "#!/bin/sh\necho $$ >> {}\n{}\n",
                c.dir.join("machine.pids").display(),
                c.machine
            ),
        );
        let conf = format!(
            "name \"bmc\"\n\
             set_working_mc 0x20\n\
             \x20 startlan 1\n\
             \x20   addr {addr} {port}\n\
             \x20   priv_limit admin\n\
             \x20   allowed_auths_callback none md2 md5 straight\n\
             \x20   allowed_auths_user none md2 md5 straight\n\
             \x20   allowed_auths_operator none md2 md5 straight\n\
             \x20   allowed_auths_admin none md2 md5 straight\n\
             \x20   guid a123456789abcdefa123456789abcdef\n\
             \x20 endlan\n\
             \x20 serial 15 127.0.0.1 {serial} codec VM ipmb 0x20\n\
             \x20 startcmd \"{script}\"\n\
             \x20 startnow {now}\n\
             \x20 poweroff_wait 5\n\
             \x20 kill_wait 3\n\
             \x20 user 2 true \"{user}\" \"{pass}\" admin 10 none md2 md5 straight\n",
            addr = c.addr,
            port = c.port,
            serial = c.serial_port,
            script = script.display(),
            now = c.start_on,
            user = c.user,
            pass = c.pass,
        );
        std::fs::write(c.dir.join("lan.conf"), conf).unwrap();
        std::fs::write(c.dir.join("bmc.emu"), EMU).unwrap();
        let log = std::fs::File::create(c.dir.join("ipmi_sim.log")).unwrap();
        let child = in_ns(c.ns, "ipmi_sim")
            .arg("-c")
            .arg(c.dir.join("lan.conf"))
            .arg("-f")
            .arg(c.dir.join("bmc.emu"))
            .arg("-s")
            .arg(c.dir.join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run ipmi_sim (./test.sh installs openipmi)");
        let sim = IpmiSim {
            ns: c.ns.map(str::to_string),
            addr: c.addr.to_string(),
            port: c.port,
            user: c.user.to_string(),
            pass: c.pass.to_string(),
            serial_port: c.serial_port,
            dir: c.dir,
            child: Some(child),
        };
        // Up when it answers a real client.
        let t = Instant::now();
        loop {
            if sim.power_status().is_some() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "ipmi_sim on {}:{} does not answer: {}",
                sim.addr,
                sim.port,
                std::fs::read_to_string(sim.dir.join("ipmi_sim.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sim
    }

    /// The power URI of this BMC.
    pub fn uri(&self) -> String {
        format!(
            "ipmi://{}:{}@{}:{}",
            self.user, self.pass, self.addr, self.port
        )
    }

    /// `ipmitool … chassis <args>` against this BMC.
    pub fn ipmitool(&self, args: &[&str]) -> Output {
        ipmitool(
            self.ns.as_deref(),
            &self.addr,
            self.port,
            &self.user,
            &self.pass,
            args,
        )
    }

    /// The power state a real client reads: `Some(true)` on, `Some(false)` off.
    pub fn power_status(&self) -> Option<bool> {
        let o = self.ipmitool(&["chassis", "power", "status"]);
        let s = String::from_utf8_lossy(&o.stdout);
        if s.contains("Chassis Power is on") {
            Some(true)
        } else if s.contains("Chassis Power is off") {
            Some(false)
        } else {
            None
        }
    }

    /// Wait (up to `limit`) until a real client reads `on`.
    pub fn wait_power(&self, on: bool, limit: Duration) {
        let t = Instant::now();
        while self.power_status() != Some(on) {
            assert!(
                t.elapsed() < limit,
                "the BMC on port {} is not {} after {limit:?}",
                self.port,
                if on { "on" } else { "off" }
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many times the machine was started.
    pub fn starts(&self) -> usize {
        std::fs::read_to_string(self.dir.join("machine.pids"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// The machine's process, if it runs.
    pub fn machine_pid(&self) -> Option<i32> {
        let pids = std::fs::read_to_string(self.dir.join("machine.pids")).unwrap_or_default();
        let last: i32 = pids.lines().last()?.trim().parse().ok()?;
        alive(last).then_some(last)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pids = std::fs::read_to_string(self.dir.join("machine.pids")).unwrap_or_default();
        for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if alive(pid) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Run the real `ipmitool` (IPMI 2.0, cipher suite 3, password from the environment).
pub fn ipmitool(
    ns: Option<&str>,
    addr: &str,
    port: u16,
    user: &str,
    pass: &str,
    args: &[&str],
) -> Output {
    in_ns(ns, "ipmitool")
        .args(["-I", "lanplus", "-H", addr, "-p", &port.to_string()])
        .args(["-U", user, "-E", "-N", "1", "-R", "1", "-C", "3"])
        .args(args)
        .env("IPMI_PASSWORD", pass)
        .stdin(Stdio::null())
        .output()
        .expect("ipmitool must be installed (./test.sh installs it)")
}

pub fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A machine that is only a process: on while `sleep` runs.
pub const SLEEPER: &str = "exec sleep 100000";

/// `POST /api/v1/node/power?ids=IDS` with curl (a client we did not write): (status, body).
pub fn power_api(h: &Head, ids: &str, body: &Value) -> (u16, Value) {
    let (code, out) = h.curl(&[
        "-g",
        "-X",
        "POST",
        "-H",
        &h.auth(),
        "-H",
        "Content-Type: application/json",
        "-d",
        &body.to_string(),
        &format!("{}/api/v1/node/power?ids={ids}", h.url()),
    ]);
    let v = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    (code, v)
}

/// True when this `wulf` has the power verbs.
fn cli_has_power(h: &Head) -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| h.wulf(&["node", "power", "--help"]).status.success())
}

/// A power request as an administrator makes it: `wulf node -i IDS power ACTION` (or
/// `reboot`/`shutdown [--hard|--soft]`) with `--json`, as (200, the reply) when the head
/// answered per node and (400, {"error": stderr}) when the request was refused; through the
/// API with curl where the CLI has no power verbs.
pub fn power(h: &Head, ids: &str, body: Value) -> (u16, Value) {
    if !cli_has_power(h) {
        return power_api(h, ids, &body);
    }
    let action = body["action"].as_str().unwrap().to_string();
    let mut args: Vec<String> = vec!["node".into(), "-i".into(), ids.into(), "--json".into()];
    match action.as_str() {
        "reboot" | "shutdown" => {
            args.push(action.clone());
            match body["mode"].as_str() {
                Some("hard") => args.push("--hard".into()),
                Some("soft") => args.push("--soft".into()),
                _ => {}
            }
        }
        a => {
            args.push("power".into());
            args.push(a.into());
        }
    }
    if let Some(t) = body["timeout_secs"].as_u64() {
        args.extend(["--timeout".to_string(), t.to_string()]);
    }
    if let Some(f) = body["fanout"].as_u64() {
        args.extend(["--fanout".to_string(), f.to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = h.wulf(&refs);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    match serde_json::from_str::<Value>(&stdout) {
        Ok(v) if v.get("results").is_some() => {
            let failed = v["results"]
                .as_array()
                .is_some_and(|r| r.iter().any(|n| n["ok"] == false));
            assert_eq!(
                o.status.code(),
                Some(if failed { 1 } else { 0 }),
                "wulf {refs:?}: exit code does not match the results: {v}\n{stderr}"
            );
            (200, v)
        }
        _ => {
            assert_eq!(o.status.code(), Some(1), "wulf {refs:?}: {stdout}{stderr}");
            (400, json!({ "error": stderr }))
        }
    }
}
