//! `wulf log`: the heads' shared log lines (AUDIT, ERROR and WARNING by default), as one head
//! holds them for all (`GET /api/v1/log`), filtered by head, time, level and node; `-f`
//! follows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wulf_api::client::encode;
use wulf_api::log::{LogLine, LogPage, LEVELS};

use crate::args::Cli;
use crate::conn::client;
use crate::fail::Fail;

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct LogArgs {
    /// Only this head's lines (its name, as `wulf head ls` shows it)
    #[arg(long, value_name = "HEAD")]
    pub head: Option<String>,
    /// Only lines since then: 10m, 2h, 3d, 30s ago; a Unix time; or a UTC date and time
    /// (2026-12-07, "2026-12-07 14:30", 2026-12-07T14:30:05)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines at this level or a terser one: audit, error, warning, info, debug
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<String>,
    /// Only lines naming these nodes (names or hostlists: n[0-15])
    #[arg(long, value_name = "RANGE")]
    pub node: Option<String>,
    /// Show the newest N lines [default: 1000]
    #[arg(long, short = 'n', value_name = "N")]
    pub lines: Option<usize>,
    /// Keep printing new lines as they come (Ctrl-C ends)
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// A time `--since` names, as a Unix time.
pub(crate) fn parse_since(s: &str, now: f64) -> Result<f64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "--since '{s}': give an age (30s, 10m, 2h, 3d), a Unix time, or a UTC date and \
             time (2026-12-07, \"2026-12-07 14:30\", 2026-12-07T14:30:05)"
        )
    };
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        if let Ok(n) = t[..t.len() - 1].parse::<f64>() {
            let secs = match unit {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                'd' => 86_400.0,
                _ => return Err(bad()),
            };
            if n.is_finite() && n >= 0.0 {
                return Ok(now - n * secs);
            }
            return Err(bad());
        }
    }
    if let Ok(n) = t.parse::<f64>() {
        return if n.is_finite() && n >= 0.0 {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    parse_utc(t).ok_or_else(bad)
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS]]` in UTC.
fn parse_utc(t: &str) -> Option<f64> {
    let (date, time) = match t.split_once([' ', 'T']) {
        Some((d, tm)) => (d, Some(tm.trim_end_matches('Z'))),
        None => (t, None),
    };
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (mut hh, mut mm, mut ss) = (0i64, 0i64, 0i64);
    if let Some(tm) = time {
        let mut p = tm.split(':');
        hh = p.next()?.parse().ok()?;
        mm = p.next()?.parse().ok()?;
        if let Some(s) = p.next() {
            ss = s.parse().ok()?;
        }
        if p.next().is_some() || hh > 23 || mm > 59 || ss > 60 || hh < 0 || mm < 0 || ss < 0 {
            return None;
        }
    }
    Some(
        crate::clock::Civil {
            y,
            m,
            d: day,
            hh,
            mm,
            ss,
        }
        .secs() as f64,
    )
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-12-07 00:31:02.123` (UTC).
fn stamp(ts: f64) -> String {
    let ms = ((ts - ts.floor()) * 1000.0) as i64;
    format!("{}.{ms:03}", crate::clock::utc(ts.floor() as i64))
}

fn print_line(cli: &Cli, l: &LogLine) {
    if cli.json {
        println!("{}", serde_json::to_string(l).unwrap_or_default());
    } else {
        println!(
            "{} {} {} {}: {}",
            stamp(l.ts),
            l.head,
            l.level,
            l.target,
            l.message
        );
    }
}

/// Check the arguments before anything is sent.
fn query(a: &LogArgs) -> Result<String, Fail> {
    let mut q = Vec::new();
    if let Some(h) = &a.head {
        q.push(format!("head={}", encode(h)));
    }
    if let Some(s) = &a.since {
        q.push(format!(
            "since={}",
            parse_since(s, now()).map_err(Fail::Usage)?
        ));
    }
    if let Some(l) = &a.level {
        let up = l.trim().to_ascii_uppercase();
        let up = if up == "WARN" {
            "WARNING".to_string()
        } else {
            up
        };
        if !LEVELS.contains(&up.as_str()) {
            return Err(Fail::Usage(format!(
                "--level '{l}': use audit, error, warning, info or debug"
            )));
        }
        q.push(format!("level={}", encode(&up)));
    }
    if let Some(n) = &a.node {
        wulf_model::hostlist::expand(n).map_err(|e| Fail::Usage(format!("--node '{n}': {e}")))?;
        q.push(format!("node={}", encode(n)));
    }
    if a.lines == Some(0) {
        return Err(Fail::Usage("--lines: give at least 1".into()));
    }
    q.push(format!("limit={}", a.lines.unwrap_or(1000)));
    Ok(q.join("&"))
}

pub(crate) fn run(cli: &Cli, a: &LogArgs) -> Result<(), Fail> {
    let q = query(a)?;
    let c = client(cli)?;
    let page: LogPage = c.get(&format!("/log?{q}"))?;
    for l in &page.lines {
        print_line(cli, l);
    }
    if !a.follow {
        return Ok(());
    }
    let mut cursor = page.cursor;
    loop {
        match c.get::<LogPage>(&format!("/log?{q}&after={}&wait=25", encode(&cursor))) {
            Ok(p) => {
                for l in &p.lines {
                    print_line(cli, l);
                }
                cursor = p.cursor;
            }
            // A head restarting: try again shortly.
            Err(e) if e.status().is_none() => {
                eprintln!("wulf: {e}; trying again");
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ages_times_and_dates() {
        assert_eq!(parse_since("10m", 1000.0), Ok(400.0));
        assert_eq!(parse_since("2h", 10_000.0), Ok(2800.0));
        assert_eq!(parse_since("1796603462", 0.0), Ok(1_796_603_462.0));
        assert_eq!(parse_since("1970-01-02", 0.0), Ok(86_400.0));
        assert_eq!(parse_since("2026-12-07 00:31:02", 0.0), Ok(1_796_603_462.0));
        assert_eq!(parse_since("2026-12-07T00:31", 0.0), Ok(1_796_603_460.0));
        for bad in [
            "yesterday",
            "10x",
            "2026-13-01",
            "-5",
            "1e999",
            "2026-12-07 25:00",
        ] {
            assert!(parse_since(bad, 0.0).is_err(), "{bad}");
        }
    }

    #[test]
    fn stamps_are_utc() {
        assert_eq!(stamp(1_796_603_462.25), "2026-12-07 00:31:02.250");
        assert_eq!(stamp(0.0), "1970-01-01 00:00:00.000");
    }
}
