//! SIGTERM and SIGINT: the handler sets a flag and writes a byte to a pipe, and the sleep
//! between reports waits on that pipe with `poll(2)`, so it wakes at once. [`poke`] wakes the
//! same sleep from another thread (the command thread, when a head orders the node to become
//! an orphan).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static POKED: AtomicBool = AtomicBool::new(false);

/// True once SIGTERM or SIGINT arrived (from any thread).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Wake the sleep between reports early (it returns `false`: no stop requested).
pub fn poke() {
    POKED.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: writing one byte from a valid buffer; the pipe is non-blocking, so a full
        // pipe (already woken) just fails.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: errno is thread-local; write(2) is async-signal-safe; the pipe is
        // non-blocking, so a full pipe (already woken) just fails.
        unsafe {
            let errno = *libc::__errno_location();
            let b = 1u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Installed signal handlers and the pipe they wake.
pub struct Stop {
    read: OwnedFd,
    _write: OwnedFd,
}

impl Stop {
    /// Install handlers for SIGTERM and SIGINT (once per process).
    pub fn install() -> io::Result<Stop> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WAKE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: sigaction is plain old data; the handler only touches atomics and
            // calls write(2).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                // Restart interrupted reads and writes: a report in flight completes (it has
                // a short timeout) and the loop then sees the flag.
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Stop {
            read,
            _write: write,
        })
    }

    /// True once SIGTERM or SIGINT arrived.
    pub fn requested(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }

    /// Sleep for `d` or until a signal or a [`poke`]; returns true when stopping was
    /// requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            if self.requested() {
                return true;
            }
            if POKED.swap(false, Ordering::SeqCst) {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            let mut pfd = libc::pollfd {
                fd: self.read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r > 0 {
                let mut buf = [0u8; 64];
                // SAFETY: buf is writable for its length; the pipe is non-blocking.
                while unsafe {
                    libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                } > 0
                {}
            }
            // r < 0 is EINTR (the signal itself): the loop checks the flag.
        }
    }
}
