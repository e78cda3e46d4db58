//! Running a command a head asked for: the program and its arguments directly (no shell),
//! in its own process group, in `/`, with the agent's environment. Its stdin gets the text
//! the head sent (or is empty); stdout and stderr are captured, each cut at
//! [`MAX_OUTPUT`] bytes (ending with [`wulf_api::command::TRUNCATED`]). At the timeout the whole process
//! group is killed.
//!
//! Once the program has exited, the agent waits at most [`GRACE`] for its output pipes to
//! close (a background process it left behind may hold them) and returns what it has.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wulf_api::command::{output_text, CommandResult, MAX_OUTPUT};

/// How long the output pipes may stay open after the program exited.
pub const GRACE: Duration = Duration::from_secs(2);

/// Captured output: the first [`MAX_OUTPUT`] bytes, and whether more came.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Read `r` to its end into `into`, keeping the first [`MAX_OUTPUT`] bytes (the rest is read
/// and dropped, so the program never blocks on a full pipe). Tells `done` at the end.
fn capture(mut r: impl Read, into: Arc<Mutex<Captured>>, done: mpsc::Sender<()>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let Ok(mut c) = into.lock() else { break };
                let room = MAX_OUTPUT.saturating_sub(c.bytes.len());
                c.bytes.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    c.truncated = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

fn take(c: &Arc<Mutex<Captured>>) -> String {
    match c.lock() {
        Ok(mut c) => {
            let c = std::mem::take(&mut *c);
            output_text(&c.bytes, c.truncated)
        }
        Err(_) => String::new(),
    }
}

fn kill_group(pgid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the process
    // group the child leads (created by process_group(0)).
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}

/// Run `argv` with `stdin`, for at most `timeout`. The result's `id` is left empty.
pub fn run(argv: &[String], stdin: Option<&str>, timeout: Duration) -> CommandResult {
    let mut out = CommandResult::default();
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        out.error = Some("no command given".into());
        return out;
    };
    let started = Instant::now();
    let deadline = started + timeout;
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .current_dir("/")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            out.error = Some(format!("{program}: command not found"));
            return out;
        }
        Err(e) => {
            out.error = Some(format!("cannot run {program}: {e}"));
            return out;
        }
    };
    let pid = child.id();
    if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
        let text = text.to_string();
        // A program that does not read its stdin makes this fail with EPIPE: fine.
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(Captured::default()));
    let stderr = Arc::new(Mutex::new(Captured::default()));
    let mut readers = 0;
    if let Some(p) = child.stdout.take() {
        let (c, d) = (stdout.clone(), done_tx.clone());
        std::thread::spawn(move || capture(p, c, d));
        readers += 1;
    }
    if let Some(p) = child.stderr.take() {
        let (c, d) = (stderr.clone(), done_tx.clone());
        std::thread::spawn(move || capture(p, c, d));
        readers += 1;
    }
    drop(done_tx);
    let (status_tx, status_rx) = mpsc::channel::<io::Result<ExitStatus>>();
    std::thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let mut timed_out = false;
    let status = match status_rx.recv_timeout(timeout) {
        Ok(s) => s,
        Err(_) => {
            timed_out = true;
            kill_group(pid);
            status_rx
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("lost the process")))
        }
    };
    // The output: until both pipes close, at most GRACE after the exit (or the kill).
    let limit = if timed_out {
        Instant::now() + GRACE
    } else {
        (Instant::now() + GRACE).min(deadline.max(Instant::now()))
    };
    let mut closed = 0;
    while closed < readers {
        let left = limit.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => closed += 1,
            Err(_) => break,
        }
    }
    if closed < readers && !timed_out && Instant::now() >= deadline {
        // A process the command left behind still writes at the timeout: it goes too.
        kill_group(pid);
    }
    out.stdout = take(&stdout);
    out.stderr = take(&stderr);
    if timed_out {
        out.error = Some(format!("timed out after {} s", timeout.as_secs()));
        return out;
    }
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => out.exit = Some(code),
            (None, Some(sig)) => out.error = Some(format!("killed by signal {sig}")),
            (None, None) => out.error = Some(format!("ended with {s}")),
        },
        Err(e) => out.error = Some(format!("cannot wait for {program}: {e}")),
    }
    out
}

/// Why `program` cannot be started: not found (in `PATH` when it has no `/`) or not
/// executable. `None` when it can.
pub fn missing(program: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return Some("no program given".into());
    }
    if program.contains('/') {
        return (!runnable(std::path::Path::new(program)))
            .then(|| format!("{program} is not an executable file"));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    if std::env::split_paths(&path).any(|d| runnable(&d.join(program))) {
        return None;
    }
    Some(format!("{program} not found in PATH"))
}

/// Start `argv` (a reboot or poweroff command) and log how it ended, without waiting for it.
pub fn start_detached(argv: &[String], what: &'static str) {
    let argv = argv.to_vec();
    std::thread::spawn(move || {
        let Some(program) = argv.first() else { return };
        match Command::new(program)
            .args(&argv[1..])
            .stdin(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => tracing::info!("{what}: {} exited 0", argv.join(" ")),
            Ok(s) => tracing::error!("{what}: {} failed ({s})", argv.join(" ")),
            Err(e) => tracing::error!("{what}: cannot run {}: {e}", argv.join(" ")),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use wulf_api::command::TRUNCATED;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn sh(script: &str) -> Vec<String> {
        argv(&["/bin/sh", "-c", script])
    }

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn output_and_exit_code() {
        let r = run(&sh("echo out; echo err >&2; exit 3"), None, T);
        assert_eq!((r.exit, r.error.as_deref()), (Some(3), None));
        assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
        // No shell: the arguments arrive as they are.
        let r = run(&argv(&["echo", "a b", "$HOME", "*"]), None, T);
        assert_eq!(r.stdout, "a b $HOME *\n");
        assert_eq!(r.exit, Some(0));
        // It runs in /.
        assert_eq!(run(&argv(&["pwd"]), None, T).stdout, "/\n");
    }

    #[test]
    fn stdin_is_sent_and_otherwise_empty() {
        let r = run(&argv(&["cat"]), Some("line 1\nline 2\n"), T);
        assert_eq!((r.exit, r.stdout.as_str()), (Some(0), "line 1\nline 2\n"));
        let r = run(&argv(&["cat"]), None, T);
        assert_eq!((r.exit, r.stdout.as_str()), (Some(0), ""));
        // A program that ignores a big stdin is not stuck on it.
        let big = "x".repeat(1 << 20);
        let r = run(&argv(&["true"]), Some(&big), T);
        assert_eq!(r.exit, Some(0));
    }

    #[test]
    fn a_missing_program_is_an_error_not_an_exit_code() {
        let r = run(&argv(&["/no/such/program", "x"]), None, T);
        assert_eq!(r.exit, None);
        assert_eq!(
            r.error.as_deref(),
            Some("/no/such/program: command not found")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").expect("write");
        let r = run(&[plain.display().to_string()], None, T);
        assert!(
            r.error
                .as_deref()
                .unwrap_or("")
                .starts_with(&format!("cannot run {}", plain.display())),
            "{r:?}"
        );
        assert!(run(&[], None, T).error.is_some());
    }

    #[test]
    fn the_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        // A child in the background and the shell both sleep; both must die.
        let script = format!(
            "sleep 30 & echo $! > {}; echo started; sleep 30",
            pidfile.display()
        );
        let t = Instant::now();
        let r = run(&sh(&script), None, Duration::from_secs(1));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(r.exit, None);
        assert_eq!(r.error.as_deref(), Some("timed out after 1 s"));
        assert_eq!(r.stdout, "started\n");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("number");
        // SAFETY: signal 0 only checks whether the process exists.
        let deadline = Instant::now() + Duration::from_secs(5);
        while unsafe { libc::kill(pid, 0) } == 0 {
            // A zombie until its parent is reaped by init; check its state.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(Instant::now() < deadline, "the background sleep survived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_background_process_does_not_hold_the_result() {
        let t = Instant::now();
        let r = run(&sh("sleep 5 & echo done"), None, T);
        assert_eq!((r.exit, r.stdout.as_str()), (Some(0), "done\n"));
        assert!(t.elapsed() < GRACE + Duration::from_secs(2));
    }

    #[test]
    fn output_is_capped() {
        let r = run(
            &sh(&format!(
                "head -c {} /dev/zero | tr '\\0' x",
                MAX_OUTPUT + 5000
            )),
            None,
            T,
        );
        assert_eq!(r.exit, Some(0));
        assert_eq!(r.stdout.len(), MAX_OUTPUT + TRUNCATED.len());
        assert!(r.stdout.ends_with(TRUNCATED));
        assert!(r.stdout.starts_with("xxx"));
        // Exactly at the cap: not cut.
        let r = run(&sh(&format!("head -c {MAX_OUTPUT} /dev/zero")), None, T);
        assert_eq!(r.stdout.len(), MAX_OUTPUT);
    }

    #[test]
    fn programs_that_cannot_run_are_named() {
        assert_eq!(missing("sh"), None);
        assert_eq!(missing("/bin/sh"), None);
        assert_eq!(
            missing("no-such-reboot").as_deref(),
            Some("no-such-reboot not found in PATH")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").expect("write");
        let plain = plain.display().to_string();
        assert_eq!(
            missing(&plain),
            Some(format!("{plain} is not an executable file"))
        );
        assert!(missing("").is_some());
    }

    #[test]
    fn a_signal_death_is_reported() {
        let r = run(&sh("kill -TERM $$"), None, T);
        assert_eq!(r.exit, None);
        assert_eq!(r.error.as_deref(), Some("killed by signal 15"));
    }
}
