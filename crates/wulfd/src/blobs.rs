//! Files (kernels, initramfs, images) as content-addressed blobs beside the database:
//! `DATA/blobs/sha256/<hex>`. Uploads stream to a temporary file while being hashed, are
//! fsynced, then renamed into place; nothing is ever held whole in memory.

use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    #[error("upload was {got} bytes, but {expected} were announced")]
    Length { got: u64, expected: u64 },
    #[error("file store error: {0}")]
    Io(#[from] std::io::Error),
}

/// Cheap to clone: two paths.
#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Blobs {
    pub fn open(data_dir: &Path) -> std::io::Result<Blobs> {
        let dir = data_dir.join("blobs").join("sha256");
        let tmp = data_dir.join("blobs").join("tmp");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&tmp)?;
        // Leftovers of uploads interrupted by a crash.
        for e in std::fs::read_dir(&tmp)?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(Blobs { dir, tmp })
    }

    /// Where the blob with this sha256 lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.dir.join(sha256.to_ascii_lowercase()))
    }

    /// A new temporary file name for a file being received.
    fn part(&self) -> PathBuf {
        self.tmp
            .join(format!("{}.part", hex::encode(rand::random::<[u8; 8]>())))
    }

    /// Make a received file durable and put it in place as blob `sha`: fsync it, rename it,
    /// fsync the directory (the new name lasts a power cut only then: an error there fails
    /// the upload; the blob, which nothing refers to, goes at maintenance's next collection,
    /// as it may be another upload's of the same content). Blocking. True when no blob had
    /// this content before.
    fn keep(&self, file: &std::fs::File, part: &Path, sha: &str) -> std::io::Result<bool> {
        file.sync_all()?;
        let dest = self.dir.join(sha);
        let new = !dest.exists();
        std::fs::rename(part, dest)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all())?;
        Ok(new)
    }

    /// Store a stream; returns its sha256, size, and whether no blob had its content before.
    pub async fn ingest<S, B, E>(
        &self,
        mut body: S,
        expected: Option<u64>,
    ) -> Result<(String, u64, bool), BlobError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let tmp = self.part();
        let result = async {
            let file = tokio::fs::File::create(&tmp).await?;
            let mut w = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Interrupted(e.to_string()))?;
                let c = chunk.as_ref();
                hasher.update(c);
                size += c.len() as u64;
                w.write_all(c).await?;
            }
            if let Some(expected) = expected {
                if expected != size {
                    return Err(BlobError::Length {
                        got: size,
                        expected,
                    });
                }
            }
            w.flush().await?;
            let file = w.into_inner().into_std().await;
            let sha = hex::encode(hasher.finalize());
            let (this, part, name) = (self.clone(), tmp.clone(), sha.clone());
            let new = tokio::task::spawn_blocking(move || this.keep(&file, &part, &name))
                .await
                .map_err(|e| BlobError::Interrupted(format!("file store worker failed: {e}")))??;
            Ok((sha, size, new))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Store what `reader` yields as file `sha256`, refusing it (and keeping nothing) if its
    /// content has another hash. Blocking: for files fetched from peer heads.
    pub fn ingest_verified(
        &self,
        reader: &mut dyn std::io::Read,
        sha256: &str,
    ) -> Result<u64, BlobError> {
        use std::io::Write;
        let part = self.part();
        let result = (|| {
            let mut file = std::fs::File::create(&part)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])?;
                size += n as u64;
            }
            let got = hex::encode(hasher.finalize());
            if got != sha256.to_ascii_lowercase() {
                return Err(BlobError::Interrupted(format!(
                    "the content's sha256 is {got}, not {sha256}"
                )));
            }
            self.keep(&file, &part, &got)?;
            Ok(size)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    /// Remove blob `sha256` at once (an upload's file that nothing took; see
    /// `objects::routes::Stored::discard`).
    pub fn remove(&self, sha256: &str) -> bool {
        let removed = self
            .path(sha256)
            .is_some_and(|p| std::fs::remove_file(p).is_ok());
        if removed {
            tracing::debug!(sha256, "removed the file of a refused upload");
        }
        removed
    }

    /// Remove blobs no object refers to any more (and older than `min_age`, so an upload
    /// whose object is being written is never taken).
    pub fn collect_garbage(
        &self,
        referenced: &std::collections::HashSet<String>,
        min_age: std::time::Duration,
    ) -> usize {
        let mut removed = 0;
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if referenced.contains(&name) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age);
            if old && std::fs::remove_file(e.path()).is_ok() {
                tracing::info!(sha256 = %name, "removed unreferenced file");
                removed += 1;
            }
        }
        removed
    }
}
