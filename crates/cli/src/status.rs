//! `wulf node status`: nodes per state as hostlists, per-node detail (-l, -L), JSON, and a
//! live full-screen view (--refresh).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use comfy_table::{presets, ContentArrangement, Table};
use wulf_api::client::encode;
use wulf_api::status::{NodeStatus, StatusSummary};
use wulf_api::{ApiError, Client};

use crate::output::human_size;

fn query(ids: Option<&str>, extra: &[String]) -> String {
    let mut q: Vec<String> = extra.to_vec();
    if let Some(ids) = ids {
        q.push(format!("ids={}", encode(ids)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub fn summary(
    c: &Client,
    ids: Option<&str>,
    since: Option<u64>,
) -> Result<StatusSummary, ApiError> {
    let extra: Vec<String> = since.map(|s| format!("since={s}")).into_iter().collect();
    c.get(&format!("/node/status/summary{}", query(ids, &extra)))
}

pub fn nodes(c: &Client, ids: Option<&str>, detail: u8) -> Result<Vec<NodeStatus>, ApiError> {
    c.get(&format!(
        "/node/status{}",
        query(ids, &[format!("detail={detail}")])
    ))
}

/// Unix time now, in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// "2 seconds ago", "5 minutes ago".
pub fn ago(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (n, unit) = match s {
        0..=119 => (s, "second"),
        120..=7199 => (s / 60, "minute"),
        7200..=172_799 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// "3d 4h", "2h 5m", "4m 10s".
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

fn state_label(state: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{state} ({r})"),
        None => state.to_string(),
    }
}

pub fn summary_lines(s: &StatusSummary) -> Vec<(String, usize, String)> {
    s.groups
        .iter()
        .map(|g| {
            (
                state_label(&g.state, g.down_reason.as_deref()),
                g.count,
                g.nodes.clone(),
            )
        })
        .collect()
}

pub fn print_summary(s: &StatusSummary) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if s.total == 0 {
        let _ = writeln!(out, "No nodes");
        return;
    }
    let lines = summary_lines(s);
    let w = lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let cw = lines
        .iter()
        .map(|l| l.1.to_string().len())
        .max()
        .unwrap_or(1);
    for (label, count, nodes) in lines {
        let _ = writeln!(out, "{label:<w$}  {count:>cw$}  {nodes}");
    }
}

/// The uptime a node has now (up) or had when it was last heard from (otherwise).
fn uptime_now(n: &NodeStatus) -> Option<f64> {
    let up = n.last_uptime?;
    if n.state == "up" {
        let since = n.last_modified_secs.unwrap_or(0.0);
        Some(up + since)
    } else {
        Some(up)
    }
}

fn ram(n: &NodeStatus) -> String {
    match (n.ram_free, n.ram_total) {
        (Some(f), Some(t)) if t > 0 => format!("{} / {}", human_size(f), human_size(t)),
        _ => String::new(),
    }
}

fn load(n: &NodeStatus) -> String {
    n.load
        .map(|l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]))
        .unwrap_or_default()
}

pub fn long_rows(list: &[NodeStatus]) -> Vec<[String; 8]> {
    list.iter()
        .map(|n| {
            [
                n.name.clone(),
                state_label(&n.state, n.down_reason.as_deref()),
                n.ip.clone().unwrap_or_default(),
                n.last_modified_secs.map(ago).unwrap_or_default(),
                uptime_now(n).map(duration).unwrap_or_default(),
                load(n),
                ram(n),
                if n.state == "up" && n.busy {
                    "busy".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect()
}

pub const LONG_HEADER: [&str; 8] = [
    "NODE",
    "STATE",
    "IP",
    "LAST CHANGE",
    "UPTIME",
    "LOAD",
    "RAM FREE / TOTAL",
    "BUSY",
];

pub fn print_long(list: &[NodeStatus]) {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(LONG_HEADER);
    for r in long_rows(list) {
        t.add_row(r);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = writeln!(out, "{t}");
}

pub fn print_full(list: &[NodeStatus]) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, n) in list.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{}", n.name);
        let mut kv = |k: &str, v: String| {
            if !v.is_empty() {
                let _ = writeln!(out, "  {k:<13}{v}");
            }
        };
        kv("state", state_label(&n.state, n.down_reason.as_deref()));
        kv(
            "last change",
            n.last_modified_secs.map(ago).unwrap_or_default(),
        );
        if n.state == "down" {
            kv(
                "last uptime",
                n.last_uptime.map(duration).unwrap_or_default(),
            );
        } else {
            kv("uptime", uptime_now(n).map(duration).unwrap_or_default());
        }
        kv("ip", n.ip.clone().unwrap_or_default());
        kv("hostname", n.hostname.clone().unwrap_or_default());
        kv("kernel", n.kernel.clone().unwrap_or_default());
        kv("cmdline", n.cmdline.clone().unwrap_or_default());
        kv("load", load(n));
        kv("ram", ram(n));
        kv("selinux", n.selinux.clone().unwrap_or_default());
        kv(
            "busy",
            if n.interval_secs.is_some() {
                if n.busy { "yes" } else { "no" }.to_string()
            } else {
                String::new()
            },
        );
        kv(
            "interval",
            n.interval_secs.map(|s| format!("{s}s")).unwrap_or_default(),
        );
        kv("head", n.head.clone().unwrap_or_default());
        if let Some(h) = &n.hardware {
            kv("cpu", format!("{} × {}", h.cpus, h.cpu_model));
            kv("system", words(&[&h.system_vendor, &h.product_name]));
            kv("bios", words(&[&h.bios_vendor, &h.bios_version]));
            kv(
                "nics",
                h.nics
                    .iter()
                    .map(|n| format!("{} {}", n.name, n.mac))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            kv(
                "disks",
                h.disks
                    .iter()
                    .map(|d| format!("{} {}", d.name, human_size(d.bytes)))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        if let Some(a) = &n.agent {
            kv(
                "agent",
                format!(
                    "{} ({} reports; last {} µs CPU, worst {:.1} ms)",
                    a.version,
                    a.reports,
                    a.cpu_us,
                    a.worst_wall_us as f64 / 1000.0
                ),
            );
        }
        if let Some(m) = &n.modules {
            kv("modules", format!("({}) {}", m.len(), m.join(" ")));
        }
    }
}

/// The non-empty ones, space-separated.
fn words(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--refresh` without a terminal: print the summary each time it changes, until `until`.
pub fn refresh_lines(
    c: &Client,
    ids: Option<&str>,
    until: Option<Instant>,
) -> Result<(), ApiError> {
    let mut since = None;
    let mut last: Option<Vec<(String, usize, String)>> = None;
    loop {
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        let s = summary(c, ids, since)?;
        since = Some(s.changes);
        let lines = summary_lines(&s);
        if last.as_ref() != Some(&lines) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "--- {}", time_of_day());
            drop(out);
            print_summary(&s);
            let _ = std::io::stdout().flush();
            last = Some(lines);
        }
    }
}

fn time_of_day() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// The live full-screen view: the summary on top, per-node rows below; q or Esc quits,
/// arrows and PgUp/PgDn scroll.
pub fn refresh_tui(c: &Client, ids: Option<&str>, until: Option<Instant>) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Borders, Paragraph, Row, Table as TuiTable};

    if !std::io::stdout().is_terminal() {
        return refresh_lines(c, ids, until).map_err(anyhow::Error::from);
    }
    // The head answers a summary long-poll when something changes; a helper thread waits on
    // it and hands fresh data to the drawing loop.
    let (tx, rx) = std::sync::mpsc::channel::<Result<(StatusSummary, Vec<NodeStatus>), String>>();
    let client = c.clone();
    let sel = ids.map(str::to_string);
    std::thread::spawn(move || {
        let mut since = None;
        loop {
            let got = summary(&client, sel.as_deref(), since).and_then(|s| {
                since = Some(s.changes);
                nodes(&client, sel.as_deref(), 1).map(|n| (s, n))
            });
            let failed = got.is_err();
            if tx.send(got.map_err(|e| e.to_string())).is_err() {
                return;
            }
            if failed {
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    });
    let mut terminal = ratatui::init();
    let mut data: Option<(StatusSummary, Vec<NodeStatus>)> = None;
    let mut error: Option<String> = None;
    let mut offset: usize = 0;
    let result = loop {
        if until.is_some_and(|u| Instant::now() >= u) {
            break Ok(());
        }
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Ok(d) => {
                    data = Some(d);
                    error = None;
                }
                Err(e) => error = Some(e),
            }
        }
        let draw = terminal.draw(|f| {
            let (summary_text, rows) = match &data {
                Some((s, n)) => (
                    summary_lines(s)
                        .into_iter()
                        .map(|(l, c, n)| format!("{l:<36} {c:>7}  {n}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    long_rows(n),
                ),
                None => ("waiting for the head…".to_string(), Vec::new()),
            };
            let top_h = summary_text.lines().count() as u16 + 2;
            let areas =
                Layout::vertical([Constraint::Length(top_h), Constraint::Min(3)]).split(f.area());
            let title = match &error {
                Some(e) => format!(" wulf node status — {} — {e} ", c.base()),
                None => format!(
                    " wulf node status — {} — {} — q quits ",
                    c.base(),
                    time_of_day()
                ),
            };
            f.render_widget(
                Paragraph::new(summary_text)
                    .block(Block::default().borders(Borders::ALL).title(title)),
                areas[0],
            );
            let visible = areas[1].height.saturating_sub(3) as usize;
            offset = offset.min(rows.len().saturating_sub(visible));
            let widths = [
                Constraint::Length(14),
                Constraint::Length(36),
                Constraint::Length(15),
                Constraint::Length(18),
                Constraint::Length(10),
                Constraint::Length(16),
                Constraint::Length(22),
                Constraint::Length(5),
            ];
            let table = TuiTable::new(
                rows.into_iter()
                    .skip(offset)
                    .take(visible.max(1))
                    .map(|r| Row::new(r.to_vec())),
                widths,
            )
            .header(
                Row::new(LONG_HEADER.to_vec()).style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::default().borders(Borders::ALL));
            f.render_widget(table, areas[1]);
        });
        if let Err(e) = draw {
            break Err(anyhow::anyhow!("cannot draw: {e}"));
        }
        match event::poll(Duration::from_millis(250)) {
            Ok(true) => {
                if let Ok(Event::Key(k)) = event::read() {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            break Ok(())
                        }
                        KeyCode::Down | KeyCode::Char('j') => offset += 1,
                        KeyCode::Up | KeyCode::Char('k') => offset = offset.saturating_sub(1),
                        KeyCode::PageDown | KeyCode::Char(' ') => offset += 20,
                        KeyCode::PageUp => offset = offset.saturating_sub(20),
                        KeyCode::Home => offset = 0,
                        _ => {}
                    }
                }
            }
            Ok(false) => {}
            Err(e) => break Err(anyhow::anyhow!("cannot read the keyboard: {e}")),
        }
    };
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(ago(2.2), "2 seconds ago");
        assert_eq!(ago(1.0), "1 second ago");
        assert_eq!(ago(600.0), "10 minutes ago");
        assert_eq!(ago(7200.0), "2 hours ago");
        assert_eq!(ago(3.0 * 86400.0), "3 days ago");
        assert_eq!(duration(59.0), "59s");
        assert_eq!(duration(61.0), "1m 1s");
        assert_eq!(duration(3.0 * 3600.0 + 120.0), "3h 2m");
        assert_eq!(duration(2.0 * 86400.0 + 3600.0), "2d 1h");
    }
}
