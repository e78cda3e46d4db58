//! Which pieces a node holds ([`Have`]) and where their bytes are ([`Store`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The pieces a node holds, for its fetcher (which adds them) and its server (which waits
/// for them).
pub struct Have {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    got: Vec<bool>,
    /// The fetcher stopped without every piece: no more will come.
    gone: bool,
}

/// What waiting for a piece came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    Ready,
    /// The node will not get it.
    Gone,
    TimedOut,
}

impl Have {
    pub fn new(pieces: usize) -> Have {
        Have {
            state: Mutex::new(State {
                got: vec![false; pieces],
                gone: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self) -> usize {
        self.lock().got.len()
    }

    pub fn add(&self, i: usize) {
        if let Some(g) = self.lock().got.get_mut(i) {
            *g = true;
        }
        self.changed.notify_all();
    }

    pub fn has(&self, i: usize) -> bool {
        self.lock().got.get(i).copied().unwrap_or(false)
    }

    /// Every piece is here.
    pub fn complete(&self) -> bool {
        self.lock().got.iter().all(|g| *g)
    }

    /// No more pieces will come.
    pub fn give_up(&self) {
        self.lock().gone = true;
        self.changed.notify_all();
    }

    /// Wait until piece `i` is here, at most `timeout`.
    pub fn wait(&self, i: usize, timeout: Duration) -> Wait {
        let until = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            match st.got.get(i) {
                None => return Wait::Gone,
                Some(true) => return Wait::Ready,
                Some(false) if st.gone => return Wait::Gone,
                Some(false) => {}
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wait::TimedOut;
            }
            st = match self.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Where a node keeps the pieces it has checked.
pub trait Store: Send + Sync {
    /// Whether the store needs piece `i`'s bytes handed to [`Store::put`] (a store shared by
    /// simulated nodes that already has them does not).
    fn wants(&self, i: usize) -> bool;
    /// Keep checked piece `i`, which starts at `offset` of the image.
    fn put(&self, i: usize, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Piece `i` (`len` bytes at `offset`), to serve it.
    fn get(&self, i: usize, offset: u64, len: u64) -> std::io::Result<Arc<Vec<u8>>>;
}

/// The pieces in the image file being written.
pub struct FileStore(pub File);

impl Store for FileStore {
    fn wants(&self, _: usize) -> bool {
        true
    }

    fn put(&self, _: usize, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn get(&self, _: usize, offset: u64, len: u64) -> std::io::Result<Arc<Vec<u8>>> {
        let mut buf = vec![0; len as usize];
        self.0.read_exact_at(&mut buf, offset)?;
        Ok(Arc::new(buf))
    }
}

/// One copy of each piece for many simulated nodes that fetch the same image: the first
/// node to check a piece keeps it; each node's [`Have`] says which of them it may serve.
pub struct SharedStore {
    pieces: Vec<std::sync::OnceLock<Arc<Vec<u8>>>>,
}

impl SharedStore {
    pub fn new(pieces: usize) -> SharedStore {
        SharedStore {
            pieces: (0..pieces).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }
}

impl Store for SharedStore {
    fn wants(&self, i: usize) -> bool {
        self.pieces.get(i).is_some_and(|p| p.get().is_none())
    }

    fn put(&self, i: usize, _: u64, data: &[u8]) -> std::io::Result<()> {
        if let Some(p) = self.pieces.get(i) {
            let _ = p.set(Arc::new(data.to_vec()));
        }
        Ok(())
    }

    fn get(&self, i: usize, _: u64, _: u64) -> std::io::Result<Arc<Vec<u8>>> {
        self.pieces
            .get(i)
            .and_then(|p| p.get())
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("piece {i} is not held")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_pieces() {
        let h = Arc::new(Have::new(2));
        assert_eq!(h.wait(0, Duration::from_millis(10)), Wait::TimedOut);
        let h2 = h.clone();
        let t = std::thread::spawn(move || h2.wait(1, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        h.add(1);
        assert_eq!(t.join().unwrap(), Wait::Ready);
        assert!(!h.complete());
        h.give_up();
        assert_eq!(h.wait(0, Duration::from_secs(10)), Wait::Gone);
        assert_eq!(h.wait(1, Duration::from_secs(10)), Wait::Ready);
        assert_eq!(h.wait(7, Duration::from_secs(10)), Wait::Gone);
    }

    #[test]
    fn a_file_store_keeps_pieces_at_their_offsets() {
        let f = tempfile_in_tmp();
        let s = FileStore(f);
        s.put(1, 4, b"efgh").unwrap();
        s.put(0, 0, b"abcd").unwrap();
        assert_eq!(s.get(1, 4, 4).unwrap().as_slice(), b"efgh");
        assert_eq!(s.get(0, 0, 2).unwrap().as_slice(), b"ab");
        let shared = SharedStore::new(2);
        assert!(shared.wants(0));
        shared.put(0, 0, b"x").unwrap();
        assert!(!shared.wants(0));
        assert!(shared.get(1, 0, 1).is_err());
    }

    fn tempfile_in_tmp() -> File {
        let p = std::env::temp_dir().join(format!("wulf-swarm-store-{}", std::process::id()));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }
}
