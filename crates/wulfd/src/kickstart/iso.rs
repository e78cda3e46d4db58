//! A small ISO 9660 reader: finds a file by path and tells where its bytes are. Names are
//! Rock Ridge (`NM`) names when the image has them, else Joliet names (UTF-16), else the
//! plain ISO names (`;1` and a trailing dot dropped, compared without case).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

const SECTOR: u64 = 2048;
/// Directories larger than this are refused (a DVD's largest is a few hundred KiB).
const MAX_DIR: u32 = 16 * 1024 * 1024;
/// Volume descriptors looked at before giving up on a terminator.
const MAX_DESCRIPTORS: u64 = 64;
/// Path components followed at most.
const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an ISO 9660 image: {0}")]
    Format(String),
}

/// Where a file's bytes are in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub size: u64,
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    File(Extent),
    Dir,
    Missing,
}

#[derive(Debug, Clone, Copy)]
struct Dir {
    lba: u32,
    len: u32,
}

struct Record {
    name: String,
    dir: bool,
    lba: u32,
    len: u32,
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn root_of(desc: &[u8]) -> Dir {
    Dir {
        lba: u32_le(desc, 156 + 2),
        len: u32_le(desc, 156 + 10),
    }
}

/// The Rock Ridge name in a record's system use area, if any.
fn rr_name(su: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    let mut i = 0;
    while i + 4 <= su.len() {
        let len = su[i + 2] as usize;
        if len < 4 || i + len > su.len() {
            break;
        }
        if &su[i..i + 2] == b"NM" && len >= 5 {
            let flags = su[i + 4];
            // CURRENT (2) and PARENT (4) name "." and "..".
            if flags & 0x06 == 0 {
                name.extend_from_slice(&su[i + 5..i + len]);
                found = true;
            }
        }
        i += len;
    }
    found.then(|| String::from_utf8_lossy(&name).into_owned())
}

fn plain_name(raw: &[u8], joliet: bool) -> String {
    let s = if joliet {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    let s = s.split(';').next().unwrap_or("").to_string();
    s.strip_suffix('.').map(str::to_string).unwrap_or(s)
}

pub struct Iso {
    f: File,
    primary: Dir,
    joliet: Option<Dir>,
    rock_ridge: bool,
}

impl Iso {
    pub fn open(f: File) -> Result<Iso, IsoError> {
        let mut iso = Iso {
            f,
            primary: Dir { lba: 0, len: 0 },
            joliet: None,
            rock_ridge: false,
        };
        let mut primary = None;
        for n in 16..16 + MAX_DESCRIPTORS {
            let d = iso.sector(n)?;
            if &d[1..6] != b"CD001" {
                return Err(IsoError::Format(format!(
                    "no volume descriptor at sector {n}"
                )));
            }
            match d[0] {
                1 => primary = Some(root_of(&d)),
                2 if d[88] == b'%' && d[89] == b'/' && matches!(d[90], b'@' | b'C' | b'E') => {
                    iso.joliet = Some(root_of(&d))
                }
                255 => break,
                _ => {}
            }
        }
        iso.primary =
            primary.ok_or_else(|| IsoError::Format("no primary volume descriptor".into()))?;
        // Rock Ridge: the root's "." record carries SUSP entries (SP, and RR's ER/NM...).
        let root = iso.records(iso.primary, false, true)?;
        iso.rock_ridge = root.iter().any(|r| r.name == "\u{0}SP");
        Ok(iso)
    }

    fn sector(&mut self, n: u64) -> Result<Vec<u8>, IsoError> {
        let mut buf = vec![0u8; SECTOR as usize];
        self.f.seek(SeekFrom::Start(n * SECTOR))?;
        self.f.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// The records of a directory. With `probe`, only the first ("."), named "\0SP" when
    /// its system use area starts with SUSP's SP entry.
    fn records(&mut self, d: Dir, joliet: bool, probe: bool) -> Result<Vec<Record>, IsoError> {
        if d.len > MAX_DIR {
            return Err(IsoError::Format(format!("a directory of {} bytes", d.len)));
        }
        let mut data = vec![0u8; d.len as usize];
        self.f.seek(SeekFrom::Start(u64::from(d.lba) * SECTOR))?;
        self.f.read_exact(&mut data)?;
        let mut out = Vec::new();
        let mut i = 0usize;
        while i < data.len() {
            let len = data[i] as usize;
            if len == 0 {
                // Records do not cross sectors: go on at the next one.
                i = (i / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            if len < 34 || i + len > data.len() {
                return Err(IsoError::Format("a malformed directory record".into()));
            }
            let r = &data[i..i + len];
            let name_len = r[32] as usize;
            if 33 + name_len > len {
                return Err(IsoError::Format("a malformed directory record".into()));
            }
            let raw = &r[33..33 + name_len];
            let su_start = 33 + name_len + usize::from(name_len.is_multiple_of(2));
            let su = r.get(su_start..).unwrap_or(&[]);
            if probe {
                let sp = su.len() >= 4 && &su[..2] == b"SP";
                out.push(Record {
                    name: if sp { "\u{0}SP".into() } else { String::new() },
                    dir: true,
                    lba: 0,
                    len: 0,
                });
                return Ok(out);
            }
            // "." and ".." are the names 0 and 1.
            if !(name_len == 1 && raw[0] <= 1) {
                let name = if joliet {
                    plain_name(raw, true)
                } else if self.rock_ridge {
                    rr_name(su).unwrap_or_else(|| plain_name(raw, false))
                } else {
                    plain_name(raw, false)
                };
                out.push(Record {
                    name,
                    dir: r[25] & 0x02 != 0,
                    lba: u32_le(r, 2),
                    len: u32_le(r, 10),
                });
            }
            i += len;
        }
        Ok(out)
    }

    fn find_in(&mut self, root: Dir, joliet: bool, path: &str) -> Result<Found, IsoError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_DEPTH {
            return Ok(Found::Missing);
        }
        let exact = joliet || self.rock_ridge;
        let mut dir = root;
        for (n, part) in parts.iter().enumerate() {
            let recs = self.records(dir, joliet, false)?;
            let hit = recs.into_iter().find(|r| {
                if exact {
                    r.name == *part
                } else {
                    r.name.eq_ignore_ascii_case(part)
                }
            });
            let Some(r) = hit else {
                return Ok(Found::Missing);
            };
            let last = n + 1 == parts.len();
            match (r.dir, last) {
                (true, true) => return Ok(Found::Dir),
                (true, false) => {
                    dir = Dir {
                        lba: r.lba,
                        len: r.len,
                    }
                }
                (false, true) => {
                    return Ok(Found::File(Extent {
                        offset: u64::from(r.lba) * SECTOR,
                        size: u64::from(r.len),
                    }))
                }
                (false, false) => return Ok(Found::Missing),
            }
        }
        Ok(Found::Dir)
    }

    /// Look `path` up: Rock Ridge or plain names first, then Joliet names.
    pub fn find(&mut self, path: &str) -> Result<Found, IsoError> {
        let found = self.find_in(self.primary, false, path)?;
        match (found, self.joliet) {
            (Found::Missing, Some(j)) => self.find_in(j, true, path),
            (f, _) => Ok(f),
        }
    }

    /// The image file, to read an extent from.
    pub fn into_file(self) -> File {
        self.f
    }
}
