//! ClusterWare/Scyld `/etc/beowulf/config`: the parser (every directive with its line
//! number), the mapping to wulf objects (plan.rs), and the writer (export.rs).
//! `wulf cluster import-config FILE [--dry-run]`, `wulf cluster export-config [-o FILE]`.

pub(crate) mod export;
pub(crate) mod plan;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use wulf_model::MacAddr;

/// A fault in the file: its line (0: the file as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LineError {
    pub line: usize,
    pub msg: String,
}

impl LineError {
    fn new(line: usize, msg: impl Into<String>) -> LineError {
        LineError {
            line,
            msg: msg.into(),
        }
    }
}

/// The three parts of a boot a `kernelimage`/`initrdimage`/`kernelcommandline` line sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    Kernel,
    Initrd,
    Cmdline,
}

impl Part {
    fn parse(word: &str) -> Option<Part> {
        match word {
            "kernelimage" => Some(Part::Kernel),
            "initrdimage" => Some(Part::Initrd),
            "kernelcommandline" => Some(Part::Cmdline),
            _ => None,
        }
    }
}

/// A part's value: a path or arguments, or `none` (not sent).
pub(crate) type Value = Option<String>;

#[derive(Debug, Clone)]
pub(crate) struct BootLine {
    pub line: usize,
    pub part: Part,
    /// Node indexes (inclusive); None: every node.
    pub nodes: Option<(u32, u32)>,
    pub value: Value,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Class {
    pub parts: BTreeMap<Part, (usize, Value)>,
}

#[derive(Debug, Clone)]
pub(crate) struct HostLine {
    pub line: usize,
    pub mac: MacAddr,
    pub names: Vec<String>,
    pub ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone)]
pub(crate) struct NodeLine {
    pub line: usize,
    pub index: u32,
    pub class: Option<String>,
    pub sequence: Option<String>,
    pub stage: Option<String>,
    pub macs: Vec<MacAddr>,
}

#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub line: usize,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Range {
    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }
    pub(crate) fn overlaps(&self, o: &Range) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// Everything the file says, each directive with its line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    pub nodes: Option<(usize, u32)>,
    /// The iprange and the index its first address belongs to.
    pub iprange: Option<(Range, u32)>,
    pub hostranges: Vec<Range>,
    pub hosts: Vec<HostLine>,
    pub node_lines: Vec<NodeLine>,
    pub boot: Vec<BootLine>,
    pub classes: BTreeMap<String, Class>,
    pub nodeassign: Option<(usize, String)>,
    pub domain: Option<(usize, String)>,
    pub netmask: Option<(usize, u8)>,
    pub warnings: Vec<LineError>,
}

const SEQUENCES: [&str; 3] = ["pxe", "local", "pxe+local"];

fn ip(line: usize, word: &str) -> Result<Ipv4Addr, LineError> {
    word.parse()
        .map_err(|_| LineError::new(line, format!("'{word}' is not an IPv4 address")))
}

fn index(line: usize, word: &str) -> Result<u32, LineError> {
    word.parse()
        .map_err(|_| LineError::new(line, format!("'{word}' is not a node index")))
}

/// `N` or `A-B` (A ≤ B).
fn node_range(word: &str) -> Option<(u32, u32)> {
    let (a, b) = match word.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let n = word.parse().ok()?;
            (n, n)
        }
    };
    (a <= b).then_some((a, b))
}

fn netmask_bits(line: usize, word: &str) -> Result<u8, LineError> {
    let bad = || {
        LineError::new(
            line,
            format!("'{word}' is not a netmask (255.255.255.0 or 24)"),
        )
    };
    if let Ok(n) = word.trim_start_matches('/').parse::<u8>() {
        return (8..=30).contains(&n).then_some(n).ok_or_else(bad);
    }
    let m = u32::from(word.parse::<Ipv4Addr>().map_err(|_| bad())?);
    let bits = m.leading_ones();
    if m.checked_shl(bits).unwrap_or(0) != 0 || !(8..=30).contains(&bits) {
        return Err(bad());
    }
    Ok(bits as u8)
}

/// The text after the first `n` words of `line` (spaces inside kept).
fn rest_after(line: &str, n: usize) -> &str {
    let mut s = line.trim_start();
    for _ in 0..n {
        s = s
            .find(char::is_whitespace)
            .map_or("", |i| &s[i..])
            .trim_start();
    }
    s.trim_end()
}

fn value(v: &str) -> Value {
    (v != "none").then(|| v.to_string())
}

/// Read and parse a config file.
pub(crate) fn read(path: &Path) -> Result<Config, LineError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LineError::new(0, format!("cannot read {}: {e}", path.display())))?;
    parse(&text)
}

/// Parse the text of a config file: syntax and the checks one line needs; those across
/// lines (overlaps, hosts in ranges, MACs used twice, classes) are in [`Config::check`].
pub(crate) fn parse(text: &str) -> Result<Config, LineError> {
    let mut c = Config::default();
    let mut next_index: Option<u32> = None;
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let args = &words[1..];
        let want = |ok: bool, usage: &str| {
            if ok {
                Ok(())
            } else {
                Err(LineError::new(no, format!("expected `{usage}`")))
            }
        };
        match words[0] {
            "nodes" => {
                want(args.len() == 1, "nodes N")?;
                c.nodes = Some((no, index(no, args[0])?));
            }
            "iprange" => {
                want(
                    matches!(args.len(), 2 | 3),
                    "iprange [FIRSTINDEX] FIRST LAST",
                )?;
                let (first_index, a) = if args.len() == 3 {
                    (index(no, args[0])?, &args[1..])
                } else {
                    (0, args)
                };
                let r = Range {
                    line: no,
                    first: ip(no, a[0])?,
                    last: ip(no, a[1])?,
                };
                if r.first > r.last {
                    return Err(LineError::new(no, "the first address is after the last"));
                }
                if let Some((old, _)) = &c.iprange {
                    return Err(LineError::new(
                        no,
                        format!("a second iprange (the first is on line {})", old.line),
                    ));
                }
                c.iprange = Some((r, first_index));
            }
            "hostrange" => {
                want(args.len() == 2, "hostrange FIRST LAST")?;
                let r = Range {
                    line: no,
                    first: ip(no, args[0])?,
                    last: ip(no, args[1])?,
                };
                if r.first > r.last {
                    return Err(LineError::new(no, "the first address is after the last"));
                }
                c.hostranges.push(r);
            }
            "host" => {
                want(args.len() >= 2, "host MAC NAME [NAME…] [IP]")?;
                let mac = args[0].parse().map_err(|_| {
                    LineError::new(no, format!("'{}' is not a MAC address", args[0]))
                })?;
                let mut names: Vec<String> = args[1..].iter().map(|s| s.to_string()).collect();
                let ip = match names.last().and_then(|l| l.parse::<Ipv4Addr>().ok()) {
                    Some(ip) => {
                        names.pop();
                        Some(ip)
                    }
                    None => None,
                };
                if names.is_empty() {
                    return Err(LineError::new(no, "expected `host MAC NAME [NAME…] [IP]`"));
                }
                c.hosts.push(HostLine {
                    line: no,
                    mac,
                    names,
                    ip,
                });
            }
            "node" => {
                let usage = "node [INDEX] [CLASS] [BOOT_SEQUENCE BOOT_STAGE] MAC [MAC…]";
                let mut a = args;
                let idx = match a.first().and_then(|w| w.parse::<u32>().ok()) {
                    Some(n) => {
                        a = &a[1..];
                        n
                    }
                    None => next_index.unwrap_or(c.iprange.as_ref().map_or(0, |r| r.1)),
                };
                let first_mac = a
                    .iter()
                    .position(|w| w.parse::<MacAddr>().is_ok())
                    .ok_or_else(|| {
                        LineError::new(no, format!("no MAC address: expected `{usage}`"))
                    })?;
                let (words_before, macs) = a.split_at(first_mac);
                let mut parsed = Vec::new();
                for m in macs {
                    parsed.push(
                        m.parse::<MacAddr>().map_err(|_| {
                            LineError::new(no, format!("'{m}' is not a MAC address"))
                        })?,
                    );
                }
                let (class, seq) = match words_before {
                    [] => (None, None),
                    [cl] => (Some(cl.to_string()), None),
                    [s, t] => (None, Some((*s, *t))),
                    [cl, s, t] => (Some(cl.to_string()), Some((*s, *t))),
                    _ => return Err(LineError::new(no, format!("expected `{usage}`"))),
                };
                if let Some((s, t)) = seq {
                    if !SEQUENCES.contains(&s) {
                        return Err(LineError::new(
                            no,
                            format!("boot sequence '{s}' is not pxe, local or pxe+local"),
                        ));
                    }
                    if !["pxe", "local"].contains(&t) {
                        return Err(LineError::new(
                            no,
                            format!("boot stage '{t}' is not pxe or local"),
                        ));
                    }
                }
                if let Some(old) = c.node_lines.iter().find(|n| n.index == idx) {
                    return Err(LineError::new(
                        no,
                        format!("node index {idx} is already given on line {}", old.line),
                    ));
                }
                next_index = Some(idx + 1);
                c.node_lines.push(NodeLine {
                    line: no,
                    index: idx,
                    class,
                    sequence: seq.map(|s| s.0.to_string()),
                    stage: seq.map(|s| s.1.to_string()),
                    macs: parsed,
                });
            }
            w @ ("kernelimage" | "initrdimage" | "kernelcommandline") => {
                let part = Part::parse(w).unwrap_or(Part::Kernel);
                want(!args.is_empty(), &format!("{w} [NODES] VALUE|none"))?;
                let ranged =
                    args.len() >= 2 && args[0].bytes().all(|b| b.is_ascii_digit() || b == b'-');
                let (nodes, v) = if ranged {
                    let r = node_range(args[0]).ok_or_else(|| {
                        LineError::new(
                            no,
                            format!("'{}' is not a node index or range A-B", args[0]),
                        )
                    })?;
                    (Some(r), rest_after(line, 2))
                } else {
                    (None, rest_after(line, 1))
                };
                if part != Part::Cmdline && v.split_whitespace().count() != 1 {
                    return Err(LineError::new(
                        no,
                        format!("expected `{w} [NODES] PATH|none`"),
                    ));
                }
                c.boot.push(BootLine {
                    line: no,
                    part,
                    nodes,
                    value: value(v),
                });
            }
            "class" => {
                let usage = "class NAME kernelimage|initrdimage|kernelcommandline VALUE";
                want(args.len() >= 3, usage)?;
                let part = Part::parse(args[1]).ok_or_else(|| {
                    LineError::new(no, format!("'{}' is not one of: {usage}", args[1]))
                })?;
                let v = rest_after(line, 3);
                if part != Part::Cmdline && v.split_whitespace().count() != 1 {
                    return Err(LineError::new(no, format!("expected `{usage}`")));
                }
                let class = c.classes.entry(args[0].to_string()).or_default();
                class.parts.insert(part, (no, value(v)));
            }
            "nodeassign" => {
                want(args.len() == 1, "nodeassign append|insert|locked")?;
                if !["append", "insert", "locked"].contains(&args[0]) {
                    return Err(LineError::new(
                        no,
                        format!("nodeassign '{}' is not append, insert or locked", args[0]),
                    ));
                }
                c.nodeassign = Some((no, args[0].to_string()));
            }
            "domain" => {
                want(args.len() == 1, "domain NAME")?;
                c.domain = Some((no, args[0].to_string()));
            }
            "netmask" => {
                want(args.len() == 1, "netmask MASK")?;
                c.netmask = Some((no, netmask_bits(no, args[0])?));
            }
            "pxeinterface" | "interface" => c.warnings.push(LineError::new(
                no,
                format!(
                    "'{}' is not imported: wulfd serves DHCP on the interfaces of the head's \
                     [dhcp] config",
                    words[0]
                ),
            )),
            other => c.warnings.push(LineError::new(
                no,
                format!("'{other}' is not a directive wulf imports; ignored"),
            )),
        }
    }
    Ok(c)
}

impl Config {
    /// The checks across lines: ranges that overlap, hosts outside every hostrange, a MAC
    /// used twice, a class used and never defined, nodes outside the iprange.
    pub(crate) fn check(&self) -> Result<(), LineError> {
        let mut ranges: Vec<&Range> = self.hostranges.iter().collect();
        if let Some((r, _)) = &self.iprange {
            ranges.push(r);
        }
        ranges.sort_by_key(|r| r.line);
        for (i, r) in ranges.iter().enumerate() {
            if let Some(o) = ranges[..i].iter().find(|o| o.overlaps(r)) {
                return Err(LineError::new(
                    r.line,
                    format!(
                        "{}-{} overlaps {}-{} on line {}",
                        r.first, r.last, o.first, o.last, o.line
                    ),
                ));
            }
        }
        let mut macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
        let mut seen = |mac: MacAddr, line: usize| match macs.insert(mac, line) {
            Some(old) => Err(LineError::new(
                line,
                format!("MAC {mac} is already used on line {old}"),
            )),
            None => Ok(()),
        };
        for h in &self.hosts {
            seen(h.mac, h.line)?;
            if let Some(ip) = h.ip {
                if !self.hostranges.iter().any(|r| r.contains(ip)) {
                    return Err(LineError::new(
                        h.line,
                        format!("host {} at {ip} is outside every hostrange", h.names[0]),
                    ));
                }
            }
        }
        for n in &self.node_lines {
            for m in &n.macs {
                seen(*m, n.line)?;
            }
            if let Some(cl) = &n.class {
                if !self.classes.contains_key(cl) {
                    return Err(LineError::new(
                        n.line,
                        format!("class '{cl}' is used but never defined"),
                    ));
                }
            }
        }
        let Some((r, first_index)) = &self.iprange else {
            if let Some(n) = self.node_lines.first() {
                return Err(LineError::new(n.line, "a node line needs an iprange"));
            }
            return Ok(());
        };
        let count = u32::from(r.last) - u32::from(r.first) + 1;
        if let Some((line, n)) = self.nodes {
            if n > count {
                return Err(LineError::new(
                    line,
                    format!(
                        "nodes {n} but the iprange on line {} has {count} addresses",
                        r.line
                    ),
                ));
            }
        }
        for n in &self.node_lines {
            if n.index < *first_index || n.index - first_index >= count {
                return Err(LineError::new(
                    n.line,
                    format!(
                        "node index {} is outside the iprange on line {} (indexes {}-{})",
                        n.index,
                        r.line,
                        first_index,
                        first_index + count - 1
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_line_takes_the_next_index_and_its_parts() {
        let c = parse(
            "iprange 10 10.0.0.10 10.0.0.50\nclass gpu kernelimage /k\n\
             node gpu pxe+local pxe 52:54:00:00:00:01 52:54:00:00:00:02\n\
             node 52:54:00:00:00:03\nnode 20 52:54:00:00:00:04\nnode 52:54:00:00:00:05\n",
        )
        .unwrap();
        let idx: Vec<u32> = c.node_lines.iter().map(|n| n.index).collect();
        assert_eq!(idx, [10, 11, 20, 21]);
        assert_eq!(c.node_lines[0].class.as_deref(), Some("gpu"));
        assert_eq!(c.node_lines[0].sequence.as_deref(), Some("pxe+local"));
        assert_eq!(c.node_lines[0].macs.len(), 2);
        c.check().unwrap();
    }

    #[test]
    fn ranged_lines_and_none() {
        let c = parse("kernelcommandline 3-5 console=ttyS0 quiet\ninitrdimage none\n").unwrap();
        assert_eq!(c.boot[0].nodes, Some((3, 5)));
        assert_eq!(c.boot[0].value.as_deref(), Some("console=ttyS0 quiet"));
        assert_eq!(c.boot[1].value, None);
    }

    #[test]
    fn errors_name_their_line() {
        let e = parse("\n\nhostrange 10.0.0.9\n").unwrap_err();
        assert_eq!(e.line, 3);
        let c = parse("hostrange 10.0.0.1 10.0.0.9\niprange 10.0.0.5 10.0.0.20\n").unwrap();
        assert_eq!(c.check().unwrap_err().line, 2);
        let c = parse("bogus 1\npxeinterface eth0\n").unwrap();
        assert_eq!(c.warnings.len(), 2);
        assert_eq!(netmask_bits(1, "255.255.255.0").unwrap(), 24);
        assert!(netmask_bits(1, "255.0.255.0").is_err());
    }
}
