//! Hostlists (`--ids n[0-15,20]`, API `ids=`): `expand` of any text, and `compress` of the
//! names it gives back to an expression that expands to the same names; also `compress` of
//! arbitrary names (one per line).

use std::collections::HashSet;

use wulf_model::hostlist::{compress, expand, MAX_EXPAND};

/// Round trips of larger expansions cost more than they find.
const ROUND_TRIP_MAX: usize = 1_000;

/// Expansions between this and [`MAX_EXPAND`] names are skipped: generating hundreds of
/// thousands of names per input would slow the fuzzer a hundredfold and finds nothing the
/// smaller ones do not. Larger ones still run (`expand` refuses them before generating).
const SKIP_ABOVE: u64 = 5_000;

/// An upper bound of the names `s` can expand to, from its bracket groups alone (no
/// validation: a malformed group counts as one name).
fn estimate(s: &str) -> u64 {
    let mut total = 0u64;
    let mut item = 1u64;
    let mut group: Option<(u64, String)> = None;
    let range = |part: &str| -> u64 {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
            (Ok(a), Ok(b)) if b >= a => (b - a).saturating_add(1),
            _ => 1,
        }
    };
    for c in s.chars() {
        match (&mut group, c) {
            (None, '[') => group = Some((0, String::new())),
            (None, ',') => {
                total = total.saturating_add(item);
                item = 1;
            }
            (Some((n, part)), ',') => {
                *n = n.saturating_add(range(part));
                part.clear();
            }
            (Some((n, part)), ']') => {
                let n = n.saturating_add(range(part));
                item = item.saturating_mul(n.max(1));
                group = None;
            }
            (Some((_, part)), c) => part.push(c),
            (None, _) => {}
        }
    }
    total.saturating_add(item)
}

/// What `compress` promises to keep: names that hostlist syntax can write.
fn writable(name: &str) -> bool {
    !name.is_empty() && name.trim() == name && !name.contains(['[', ']', ','])
}

/// `names` (all writable) → `compress` → `expand` gives the same set, and `compress` of that
/// the same expression.
fn round_trip(names: &[&str]) {
    let want: HashSet<&str> = names.iter().copied().collect();
    let c = compress(names);
    let back =
        expand(&c).unwrap_or_else(|e| panic!("compress gave {c:?}, which expand refuses: {e}"));
    let got: HashSet<&str> = back.iter().map(String::as_str).collect();
    assert_eq!(got.len(), back.len(), "{c:?} expands to repeated names");
    assert_eq!(got, want, "{names:?} compressed to {c:?}");
    assert_eq!(compress(&back), c, "compress is not canonical");
}

pub fn hostlist(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let n = estimate(s);
    let skip = n > SKIP_ABOVE && n <= MAX_EXPAND as u64;
    if let Some(Ok(names)) = (!skip).then(|| expand(s)) {
        assert!(names.len() <= MAX_EXPAND);
        if names.len() <= ROUND_TRIP_MAX {
            let unique: HashSet<&str> = names.iter().map(String::as_str).collect();
            assert_eq!(unique.len(), names.len(), "expand repeated a name");
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            assert!(
                refs.iter().all(|n| writable(n)),
                "expand gave an unwritable name"
            );
            round_trip(&refs);
        }
    }
    let lines: Vec<&str> = s
        .split('\n')
        .filter(|n| writable(n))
        .take(ROUND_TRIP_MAX)
        .collect();
    round_trip(&lines);
}
