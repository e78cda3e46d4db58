//! Just enough of ELF (64-bit, little-endian) to build an initramfs: a program's interpreter
//! and the libraries it needs (`PT_INTERP`, `DT_NEEDED`), and a kernel module's `.modinfo`
//! section. Every offset is checked: the files come from outside.

use anyhow::{bail, Context, Result};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

pub struct Elf<'a> {
    data: &'a [u8],
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(off..off + 8)?.try_into().ok()?))
}

/// The NUL-terminated string at `off`.
fn cstr(d: &[u8], off: usize) -> Option<&str> {
    let rest = d.get(off..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

impl<'a> Elf<'a> {
    /// Check the ELF header: 64-bit little-endian (x86-64, aarch64, riscv64 nodes).
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>> {
        if data.get(..4) != Some(b"\x7fELF".as_slice()) {
            bail!("not an ELF file");
        }
        if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            bail!("not a 64-bit little-endian ELF file");
        }
        if data.len() < 64 {
            bail!("truncated ELF header");
        }
        Ok(Elf { data })
    }

    fn segments(&self) -> Result<Vec<Segment>> {
        let d = self.data;
        let bad = || anyhow::anyhow!("bad program header table");
        let phoff = u64_at(d, 32).ok_or_else(bad)? as usize;
        let entsize = u16_at(d, 54).ok_or_else(bad)? as usize;
        let num = u16_at(d, 56).ok_or_else(bad)? as usize;
        let mut out = Vec::with_capacity(num);
        for i in 0..num {
            let at = phoff
                .checked_add(i.checked_mul(entsize).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            out.push(Segment {
                kind: u32_at(d, at).ok_or_else(bad)?,
                offset: u64_at(d, at + 8).ok_or_else(bad)?,
                vaddr: u64_at(d, at + 16).ok_or_else(bad)?,
                filesz: u64_at(d, at + 32).ok_or_else(bad)?,
            });
        }
        Ok(out)
    }

    fn bytes(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    /// The program interpreter (`/lib64/ld-linux-x86-64.so.2`), None for a static program.
    pub fn interpreter(&self) -> Result<Option<String>> {
        for s in self.segments()? {
            if s.kind == PT_INTERP {
                let b = self
                    .bytes(s.offset, s.filesz)
                    .context("bad PT_INTERP segment")?;
                let path = cstr(b, 0).context("bad PT_INTERP segment")?;
                return Ok(Some(path.to_string()));
            }
        }
        Ok(None)
    }

    /// The file offset of virtual address `vaddr`.
    fn file_offset(segs: &[Segment], vaddr: u64) -> Option<u64> {
        segs.iter()
            .filter(|s| s.kind == PT_LOAD)
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
            .map(|s| s.offset + (vaddr - s.vaddr))
    }

    /// The shared libraries the file names (`DT_NEEDED`), in order.
    pub fn needed(&self) -> Result<Vec<String>> {
        let segs = self.segments()?;
        let Some(dynamic) = segs.iter().find(|s| s.kind == PT_DYNAMIC) else {
            return Ok(Vec::new());
        };
        let dynb = self
            .bytes(dynamic.offset, dynamic.filesz)
            .context("bad PT_DYNAMIC segment")?;
        let mut needed_offsets = Vec::new();
        let mut strtab = None;
        for e in dynb.chunks_exact(16) {
            let tag = u64_at(e, 0).unwrap_or(DT_NULL);
            let val = u64_at(e, 8).unwrap_or(0);
            match tag {
                DT_NULL => break,
                DT_NEEDED => needed_offsets.push(val),
                DT_STRTAB => strtab = Some(val),
                _ => {}
            }
        }
        if needed_offsets.is_empty() {
            return Ok(Vec::new());
        }
        let strtab = strtab
            .and_then(|v| Self::file_offset(&segs, v))
            .context("no dynamic string table")?;
        needed_offsets
            .into_iter()
            .map(|o| {
                let at = usize::try_from(strtab + o).ok();
                at.and_then(|a| cstr(self.data, a))
                    .map(str::to_string)
                    .context("bad DT_NEEDED entry")
            })
            .collect()
    }

    /// The contents of the section called `name`, if there is one.
    pub fn section(&self, name: &str) -> Result<Option<&'a [u8]>> {
        let d = self.data;
        let bad = || anyhow::anyhow!("bad section header table");
        let shoff = u64_at(d, 40).ok_or_else(bad)? as usize;
        let entsize = u16_at(d, 58).ok_or_else(bad)? as usize;
        let num = u16_at(d, 60).ok_or_else(bad)? as usize;
        let strndx = u16_at(d, 62).ok_or_else(bad)? as usize;
        let header = |i: usize| -> Option<(u32, u64, u64)> {
            let at = shoff.checked_add(i.checked_mul(entsize)?)?;
            Some((u32_at(d, at)?, u64_at(d, at + 24)?, u64_at(d, at + 32)?))
        };
        let (_, str_off, str_size) = header(strndx).ok_or_else(bad)?;
        let names = self.bytes(str_off, str_size).ok_or_else(bad)?;
        for i in 0..num {
            let (name_off, off, size) = header(i).ok_or_else(bad)?;
            if cstr(names, name_off as usize) == Some(name) {
                return Ok(Some(self.bytes(off, size).ok_or_else(bad)?));
            }
        }
        Ok(None)
    }
}

/// A kernel module's `.modinfo` entries (`depends=`, `alias=`, `firmware=`…), in order.
pub fn modinfo(data: &[u8]) -> Result<Vec<(String, String)>> {
    let elf = Elf::parse(data)?;
    let Some(sec) = elf.section(".modinfo")? else {
        return Ok(Vec::new());
    };
    Ok(sec
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_elf() {
        assert!(Elf::parse(b"#!/bin/sh\n").is_err());
        assert!(Elf::parse(b"\x7fELF\x01\x01").is_err());
        // A header that points its tables past the end fails cleanly.
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        h[56] = 3;
        h[54] = 56;
        let e = Elf::parse(&h).unwrap();
        assert!(e.interpreter().is_err());
        assert!(modinfo(&h).is_err());
    }

    #[test]
    fn reads_a_real_program() {
        // Whatever runs these tests is a dynamically linked ELF program.
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(exe).unwrap();
        let e = Elf::parse(&data).unwrap();
        let interp = e.interpreter().unwrap().expect("an interpreter");
        assert!(interp.starts_with('/'), "{interp}");
        assert!(e.needed().unwrap().iter().any(|n| n.starts_with("libc.")));
    }
}
