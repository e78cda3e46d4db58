//! Slurm-compatible hostlist expressions.
//!
//! A hostlist is a compact way of writing many host names:
//!
//! * items are separated by commas at the top level: `n[1-3],login1,gpu[01-02]`;
//! * an item may contain any number of bracket groups, each holding comma-separated
//!   numbers and inclusive ranges: `n[0-15,20]`, `rack[1-2]n[1-3]` (the cartesian
//!   product, first group outermost: `rack1n1, rack1n2, …, rack2n3`);
//! * text may appear before, between and after the groups: `n[1-2]-ib`;
//! * zero padding follows Slurm: the numbers of a range are written with at least as
//!   many digits as its lower bound is written with, so `gpu[000-127]` gives `gpu000 …
//!   gpu127`, `[8-10]` gives `8 9 10` and `[098-100]` gives `098 099 100`.
//!
//! [`expand`] turns an expression into names, [`compress`] turns names into the
//! shortest canonical expression, and [`is_hostlist`] is a cheap syntactic check.
//!
//! Host names handed to [`compress`] are expected to be real host names: names
//! containing `[`, `]` or `,`, or starting or ending with whitespace, cannot be
//! written in hostlist syntax and do not survive a round trip through [`expand`].

use std::collections::{HashMap, HashSet};

/// The largest number of names [`expand`] will produce (counted before duplicates
/// are removed). Larger expansions are rejected before anything is allocated.
pub const MAX_EXPAND: usize = 1_000_000;

/// The largest total length, in bytes, of the names [`expand`] will produce
/// (estimated from above, before anything is allocated). This stops an expression
/// such as a very long literal or zero padding times a large range from exhausting
/// memory while staying under [`MAX_EXPAND`] names.
pub const MAX_EXPAND_BYTES: usize = 128 * 1024 * 1024;

/// How much of the offending input an error message quotes, at most.
const EXCERPT_MAX: usize = 64;

/// Why a hostlist expression could not be expanded.
///
/// Positions (`pos`) are byte offsets into the string given to [`expand`]; `text` is
/// the offending part of the input (shortened to a few dozen bytes if long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostlistError {
    /// An item between commas is empty or only whitespace (e.g. a trailing comma).
    #[error("empty item at byte {pos} of hostlist")]
    EmptyItem {
        /// Where the empty item starts.
        pos: usize,
    },
    /// A `[` is never closed.
    #[error("unclosed '[' at byte {pos} in {text:?}")]
    UnclosedBracket {
        /// The item containing the bracket.
        text: String,
        /// Position of the `[`.
        pos: usize,
    },
    /// A `]` has no matching `[`.
    #[error("unmatched ']' at byte {pos} in {text:?}")]
    UnmatchedBracket {
        /// The item up to and including the bracket.
        text: String,
        /// Position of the `]`.
        pos: usize,
    },
    /// A `[` appears inside another bracket group.
    #[error("nested '[' at byte {pos} in {text:?}")]
    NestedBracket {
        /// The item up to and including the inner `[`.
        text: String,
        /// Position of the inner `[`.
        pos: usize,
    },
    /// A bracket group holds nothing: `[]`.
    #[error("empty brackets at byte {pos} in {text:?}")]
    EmptyBrackets {
        /// The item containing the brackets.
        text: String,
        /// Position of the `[`.
        pos: usize,
    },
    /// A range bound is missing or is not a plain decimal number.
    #[error("expected a decimal number at byte {pos}, found {text:?}")]
    InvalidNumber {
        /// The text found where a number was expected (may be empty).
        text: String,
        /// Where that text starts.
        pos: usize,
    },
    /// A range whose lower bound is greater than its upper bound, e.g. `[5-3]`.
    #[error("reversed range {text:?} at byte {pos}: lower bound is greater than upper bound")]
    ReversedRange {
        /// The range as written.
        text: String,
        /// Where the range starts.
        pos: usize,
    },
    /// A number does not fit in 64 bits.
    #[error("number {text:?} at byte {pos} is too large (at most {max})", max = u64::MAX)]
    NumberTooLarge {
        /// The number as written.
        text: String,
        /// Where the number starts.
        pos: usize,
    },
    /// The expression would produce more than [`MAX_EXPAND`] names.
    #[error(
        "hostlist expands to more than {limit} names (limit exceeded by {text:?} at byte {pos})"
    )]
    TooManyNames {
        /// The limit, [`MAX_EXPAND`].
        limit: usize,
        /// The item at which the limit was exceeded.
        text: String,
        /// Where that item starts.
        pos: usize,
    },
    /// The expression would produce more than [`MAX_EXPAND_BYTES`] bytes of names.
    #[error("hostlist expands to more than {limit} bytes of names (limit exceeded by {text:?} at byte {pos})")]
    TooManyBytes {
        /// The limit, [`MAX_EXPAND_BYTES`].
        limit: usize,
        /// The item at which the limit was exceeded.
        text: String,
        /// Where that item starts.
        pos: usize,
    },
}

/// Returns `true` if `s` contains hostlist syntax (`[`, `]` or `,`), i.e. if it may
/// stand for something other than the single name it spells. Does not validate `s`.
pub fn is_hostlist(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'[' | b']' | b','))
}

/// Expands a hostlist expression into host names.
///
/// Names come out in the order written (bracket groups in an item form a cartesian
/// product with the first group outermost); a name that was already produced is not
/// repeated (the first occurrence wins). Whitespace around each comma-separated item
/// is ignored. An empty or all-whitespace string expands to no names.
///
/// # Errors
///
/// Returns a [`HostlistError`] for empty items (`n1,,n2`, `n1,`), unbalanced or
/// nested brackets, empty brackets, bounds that are not decimal numbers, reversed
/// ranges, numbers that do not fit in a `u64`, and expressions that would produce
/// more than [`MAX_EXPAND`] names or [`MAX_EXPAND_BYTES`] bytes; the sizes are
/// checked before the names are generated.
pub fn expand(s: &str) -> Result<Vec<String>, HostlistError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let items = split_items(s)?;

    let mut total_names: usize = 0;
    let mut total_bytes: usize = 0;
    for item in &items {
        total_names = total_names.saturating_add(item.count);
        if total_names > MAX_EXPAND {
            return Err(HostlistError::TooManyNames {
                limit: MAX_EXPAND,
                text: excerpt(item.text),
                pos: item.pos,
            });
        }
        total_bytes = total_bytes.saturating_add(item.count.saturating_mul(item.max_len));
        if total_bytes > MAX_EXPAND_BYTES {
            return Err(HostlistError::TooManyBytes {
                limit: MAX_EXPAND_BYTES,
                text: excerpt(item.text),
                pos: item.pos,
            });
        }
    }

    let mut out = Vec::with_capacity(total_names);
    for item in &items {
        generate(item, &mut out);
    }
    let may_repeat = match items.as_slice() {
        [only] => !only.distinct,
        _ => true,
    };
    if may_repeat {
        dedup_in_order(&mut out);
    }
    Ok(out)
}

/// Compresses host names into the shortest canonical hostlist expression.
///
/// Duplicates are dropped. Names are grouped by the text before and after their last
/// run of digits; within a group the numbers are sorted numerically and consecutive
/// ones merged into ranges (`n[1-3,7]`); a group of a single name is written without
/// brackets (`n5`). Zero padding is preserved: `gpu007, gpu008` give `gpu[007-008]`,
/// `n1` and `n01` are distinct names and both kept (`n[1,01]`), and a padded run may
/// continue into wider unpadded numbers (`gpu099, gpu100` give `gpu[099-100]`).
/// Names without digits (or whose last digit run does not fit in a `u64`) are listed
/// as they are. Empty names are skipped.
///
/// The groups are sorted like `scontrol show hostlist` does: by the text before the
/// number, then by the text after it, so the result does not depend on the order of
/// `names` and `compress(expand(compress(x))) == compress(x)`.
pub fn compress<S: AsRef<str>>(names: &[S]) -> String {
    let mut plain: Vec<&str> = Vec::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut last: Option<(&str, &str, usize)> = None;

    for name in names {
        let name = name.as_ref();
        if name.is_empty() {
            continue;
        }
        let Some((prefix, digits, suffix)) = split_last_number(name) else {
            plain.push(name);
            continue;
        };
        let Some(value) = parse_digits(digits) else {
            plain.push(name);
            continue;
        };
        let pad = if digits.len() > 1 && digits.starts_with('0') {
            digits.len()
        } else {
            0
        };
        let gi = match last {
            Some((p, s, gi)) if p == prefix && s == suffix => gi,
            _ => {
                let gi = *index.entry((prefix, suffix)).or_insert_with(|| {
                    groups.push(Group {
                        prefix,
                        suffix,
                        nums: Vec::new(),
                    });
                    groups.len() - 1
                });
                last = Some((prefix, suffix, gi));
                gi
            }
        };
        groups[gi].nums.push((pad, value));
    }

    plain.sort_unstable();
    plain.dedup();
    let mut parts: Vec<(&str, &str, String)> = Vec::with_capacity(groups.len() + plain.len());
    for mut group in groups {
        let rendered = group.render();
        parts.push((group.prefix, group.suffix, rendered));
    }
    for name in plain {
        parts.push((name, "", name.to_owned()));
    }
    parts.sort_unstable_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));

    let mut out = String::with_capacity(parts.iter().map(|p| p.2.len() + 1).sum());
    for (i, (_, _, text)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(text);
    }
    out
}

// ---------------------------------------------------------------------------------
// expand internals

/// An inclusive range of numbers written with at least `width` digits.
#[derive(Debug, Clone, Copy)]
struct Range {
    lo: u64,
    hi: u64,
    width: usize,
}

#[derive(Debug)]
enum Piece<'a> {
    Literal(&'a str),
    Group(Vec<Range>),
}

/// One parsed top-level item.
#[derive(Debug)]
struct Item<'a> {
    pieces: Vec<Piece<'a>>,
    /// Number of names it produces (at most `MAX_EXPAND`).
    count: usize,
    /// Upper bound on the length of each name.
    max_len: usize,
    /// `true` if the item cannot produce the same name twice.
    distinct: bool,
    /// The item as written (trimmed) and where it starts in the input.
    text: &'a str,
    pos: usize,
}

/// Splits the input at top-level commas, checking bracket balance, and parses each item.
fn split_items(s: &str) -> Result<Vec<Item<'_>>, HostlistError> {
    let mut items = Vec::new();
    let mut item_start = 0;
    let mut open: Option<usize> = None;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'[' => {
                if open.is_some() {
                    return Err(HostlistError::NestedBracket {
                        text: excerpt_tail(s[item_start..=i].trim_start()),
                        pos: i,
                    });
                }
                open = Some(i);
            }
            b']' if open.is_none() => {
                return Err(HostlistError::UnmatchedBracket {
                    text: excerpt_tail(s[item_start..=i].trim_start()),
                    pos: i,
                });
            }
            b']' => open = None,
            b',' if open.is_none() => {
                items.push(parse_item(s, item_start, i)?);
                item_start = i + 1;
            }
            _ => {}
        }
    }
    if let Some(pos) = open {
        return Err(HostlistError::UnclosedBracket {
            text: excerpt(s[item_start..].trim_start()),
            pos,
        });
    }
    items.push(parse_item(s, item_start, s.len())?);
    Ok(items)
}

/// Parses the item `s[start..end]`, whose brackets are known to be balanced and flat.
fn parse_item(s: &str, start: usize, end: usize) -> Result<Item<'_>, HostlistError> {
    let raw = &s[start..end];
    let text = raw.trim();
    if text.is_empty() {
        return Err(HostlistError::EmptyItem { pos: start });
    }
    let base = start + (raw.len() - raw.trim_start().len());

    let mut pieces = Vec::new();
    let mut count: usize = 1;
    let mut max_len: usize = 0;
    // The item cannot repeat a name if no group repeats a value and each group but
    // the last is followed by text starting with a non-digit: then every name splits
    // back into its group numbers in exactly one way.
    let mut distinct = true;
    let mut needs_separator = false;
    let mut i = 0;
    while let Some(off) = text[i..].find('[') {
        let open = i + off;
        let Some(close_off) = text[open..].find(']') else {
            return Err(HostlistError::UnclosedBracket {
                text: excerpt(text),
                pos: base + open,
            });
        };
        let close = open + close_off;
        if open > i {
            let literal = &text[i..open];
            if literal.starts_with(|c: char| !c.is_ascii_digit()) {
                needs_separator = false;
            }
            pieces.push(Piece::Literal(literal));
            max_len = max_len.saturating_add(literal.len());
        }
        distinct &= !needs_separator;
        let content = &text[open + 1..close];
        if content.is_empty() {
            return Err(HostlistError::EmptyBrackets {
                text: excerpt(text),
                pos: base + open,
            });
        }
        let group = parse_group(content, base + open + 1, text, base)?;
        count = count.saturating_mul(group.count);
        if count > MAX_EXPAND {
            return Err(too_many(text, base));
        }
        max_len = max_len.saturating_add(group.max_len);
        distinct &= group.distinct;
        needs_separator = true;
        pieces.push(Piece::Group(group.ranges));
        i = close + 1;
    }
    if i < text.len() {
        pieces.push(Piece::Literal(&text[i..]));
        max_len = max_len.saturating_add(text.len() - i);
    }
    Ok(Item {
        pieces,
        count,
        max_len,
        distinct,
        text,
        pos: base,
    })
}

struct ParsedGroup {
    ranges: Vec<Range>,
    count: usize,
    max_len: usize,
    /// No value appears in two ranges.
    distinct: bool,
}

/// Parses the inside of a bracket group starting at byte `pos` of the input.
fn parse_group(
    content: &str,
    pos: usize,
    item: &str,
    item_pos: usize,
) -> Result<ParsedGroup, HostlistError> {
    let mut ranges = Vec::new();
    let mut count: u128 = 0;
    let mut max_len = 0usize;
    let mut elem_pos = pos;
    for elem in content.split(',') {
        let (lo_text, hi_text) = match elem.split_once('-') {
            Some((lo, hi)) => (lo, Some(hi)),
            None => (elem, None),
        };
        let lo = parse_bound(lo_text, elem_pos)?;
        let hi = match hi_text {
            Some(hi_text) => parse_bound(hi_text, elem_pos + lo_text.len() + 1)?,
            None => lo,
        };
        if lo > hi {
            return Err(HostlistError::ReversedRange {
                text: excerpt(elem),
                pos: elem_pos,
            });
        }
        count += u128::from(hi - lo) + 1;
        if count > MAX_EXPAND as u128 {
            return Err(too_many(item, item_pos));
        }
        let width = lo_text.len();
        max_len = max_len.max(width).max(decimal_len(hi));
        ranges.push(Range { lo, hi, width });
        elem_pos += elem.len() + 1;
    }
    let mut bounds: Vec<(u64, u64)> = ranges.iter().map(|r| (r.lo, r.hi)).collect();
    bounds.sort_unstable();
    let distinct = bounds.windows(2).all(|w| w[0].1 < w[1].0);
    Ok(ParsedGroup {
        ranges,
        // `count <= MAX_EXPAND` was checked above.
        count: usize::try_from(count).unwrap_or(usize::MAX),
        max_len,
        distinct,
    })
}

fn too_many(item: &str, pos: usize) -> HostlistError {
    HostlistError::TooManyNames {
        limit: MAX_EXPAND,
        text: excerpt(item),
        pos,
    }
}

/// Parses a range bound: one or more ASCII digits that fit in a `u64`.
fn parse_bound(text: &str, pos: usize) -> Result<u64, HostlistError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostlistError::InvalidNumber {
            text: excerpt(text),
            pos,
        });
    }
    parse_digits(text).ok_or_else(|| HostlistError::NumberTooLarge {
        text: excerpt(text),
        pos,
    })
}

/// Produces the names of one item, in order, appending them to `out`.
fn generate(item: &Item<'_>, out: &mut Vec<String>) {
    // Odometer over the groups, last group fastest: per group the index of the
    // current range and the current value in it.
    let groups: Vec<&[Range]> = item
        .pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Group(ranges) => Some(ranges.as_slice()),
            Piece::Literal(_) => None,
        })
        .collect();
    let mut state: Vec<(usize, u64)> = groups
        .iter()
        .map(|g| (0, g.first().map_or(0, |r| r.lo)))
        .collect();
    loop {
        let mut name = String::with_capacity(item.max_len);
        let mut gi = 0;
        for piece in &item.pieces {
            match piece {
                Piece::Literal(t) => name.push_str(t),
                Piece::Group(ranges) => {
                    let (ri, v) = state[gi];
                    push_padded(&mut name, v, ranges[ri].width);
                    gi += 1;
                }
            }
        }
        out.push(name);

        let mut g = groups.len();
        loop {
            if g == 0 {
                return;
            }
            g -= 1;
            let (ri, v) = &mut state[g];
            if *v < groups[g][*ri].hi {
                *v += 1;
                break;
            }
            *ri += 1;
            if let Some(r) = groups[g].get(*ri) {
                *v = r.lo;
                break;
            }
            *ri = 0;
            *v = groups[g][0].lo;
        }
    }
}

/// Removes repeated names, keeping the first occurrence of each.
fn dedup_in_order(names: &mut Vec<String>) {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(names.len());
        names.iter().map(|n| seen.insert(n.as_str())).collect()
    };
    let mut keep = keep.into_iter();
    names.retain(|_| keep.next().unwrap_or(true));
}

// ---------------------------------------------------------------------------------
// compress internals

/// Names sharing a prefix and suffix around their last run of digits.
struct Group<'a> {
    prefix: &'a str,
    suffix: &'a str,
    /// `(pad, value)`: `pad` is the written width if the number has leading zeros,
    /// 0 if it is written naturally.
    nums: Vec<(usize, u64)>,
}

/// A run of consecutive numbers; `pad` as in [`Group::nums`].
#[derive(Debug, Clone, Copy)]
struct Run {
    pad: usize,
    lo: u64,
    hi: u64,
}

impl Group<'_> {
    /// Renders the group as `prefix[ranges]suffix`, or as a plain name if it holds one.
    fn render(&mut self) -> String {
        self.nums.sort_unstable();
        self.nums.dedup();
        let mut out = String::with_capacity(self.prefix.len() + self.suffix.len() + 24);
        out.push_str(self.prefix);
        if let [(pad, value)] = self.nums.as_slice() {
            push_padded(&mut out, *value, *pad);
            out.push_str(self.suffix);
            return out;
        }

        // Sorted by (pad, value): runs per padding, natural numbers (pad 0) first.
        let mut runs: Vec<Run> = Vec::new();
        for &(pad, v) in &self.nums {
            match runs.last_mut() {
                Some(r) if r.pad == pad && r.hi.checked_add(1) == Some(v) => r.hi = v,
                _ => runs.push(Run { pad, lo: v, hi: v }),
            }
        }
        // A padded run ending just below the first number of its full width
        // (e.g. 099 for width 3) continues into a natural run starting there (100).
        let n_natural = runs.partition_point(|r| r.pad == 0);
        let (natural, padded) = runs.split_at_mut(n_natural);
        let mut absorbed = vec![false; natural.len()];
        for run in padded.iter_mut() {
            let Some(first_full) = u32::try_from(run.pad - 1)
                .ok()
                .and_then(|e| 10u64.checked_pow(e))
            else {
                continue;
            };
            if run.hi != first_full - 1 {
                continue;
            }
            if let Ok(k) = natural.binary_search_by_key(&first_full, |r| r.lo) {
                if !absorbed[k] {
                    absorbed[k] = true;
                    run.hi = natural[k].hi;
                }
            }
        }
        let mut ranges: Vec<Run> = natural
            .iter()
            .zip(&absorbed)
            .filter(|(_, &a)| !a)
            .map(|(r, _)| *r)
            .chain(padded.iter().copied())
            .collect();
        ranges.sort_unstable_by_key(|r| (r.lo, r.pad));

        out.push('[');
        for (i, r) in ranges.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_padded(&mut out, r.lo, r.pad);
            if r.hi != r.lo {
                out.push('-');
                push_padded(&mut out, r.hi, r.pad);
            }
        }
        out.push(']');
        out.push_str(self.suffix);
        out
    }
}

/// Splits `name` around its last run of ASCII digits: `(before, digits, after)`.
fn split_last_number(name: &str) -> Option<(&str, &str, &str)> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(u8::is_ascii_digit)? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |p| p + 1);
    Some((&name[..start], &name[start..end], &name[end..]))
}

// ---------------------------------------------------------------------------------
// shared helpers

/// Parses ASCII digits (assumed) into a `u64`; `None` on overflow.
fn parse_digits(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?
            .checked_add(u64::from(b.wrapping_sub(b'0')))
    })
}

/// Number of decimal digits of `v`.
fn decimal_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Appends `v` in decimal, left-padded with zeros to at least `width` digits.
fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (tmp.len() - i)..width {
        out.push('0');
    }
    // Only ASCII digits were written, so this never falls back to "".
    out.push_str(std::str::from_utf8(&tmp[i..]).unwrap_or_default());
}

/// Quotes at most `EXCERPT_MAX` bytes of the start of `s` for an error message.
fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT_MAX {
        return s.to_owned();
    }
    let mut end = EXCERPT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Quotes at most `EXCERPT_MAX` bytes of the end of `s` for an error message.
fn excerpt_tail(s: &str) -> String {
    if s.len() <= EXCERPT_MAX {
        return s.to_owned();
    }
    let mut start = s.len() - EXCERPT_MAX;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ex(s: &str) -> Vec<String> {
        match expand(s) {
            Ok(v) => v,
            Err(e) => panic!("expand({s:?}) failed: {e}"),
        }
    }

    fn err(s: &str) -> HostlistError {
        match expand(s) {
            Ok(v) => panic!("expand({s:?}) unexpectedly gave {v:?}"),
            Err(e) => e,
        }
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn set(v: &[String]) -> BTreeSet<String> {
        v.iter().cloned().collect()
    }

    // ---- expand -------------------------------------------------------------

    #[test]
    fn expand_single_name() {
        assert_eq!(ex("login1"), strs(&["login1"]));
        assert_eq!(ex("  login1 "), strs(&["login1"]));
    }

    #[test]
    fn expand_empty_input_is_empty() {
        assert!(ex("").is_empty());
        assert!(ex("   ").is_empty());
    }

    #[test]
    fn expand_ranges_and_singletons() {
        let v = ex("n[0-15,20]");
        let mut want: Vec<String> = (0..=15).map(|i| format!("n{i}")).collect();
        want.push("n20".into());
        assert_eq!(v, want);
    }

    #[test]
    fn expand_zero_padding() {
        let v = ex("gpu[000-127]");
        assert_eq!(v.len(), 128);
        assert_eq!(v[0], "gpu000");
        assert_eq!(v[7], "gpu007");
        assert_eq!(v[127], "gpu127");
        assert_eq!(ex("n[8-10]"), strs(&["n8", "n9", "n10"]));
        assert_eq!(ex("n[098-100]"), strs(&["n098", "n099", "n100"]));
        assert_eq!(ex("n[01-3]"), strs(&["n01", "n02", "n03"]));
        assert_eq!(ex("n[007]"), strs(&["n007"]));
        assert_eq!(ex("n[0-2]"), strs(&["n0", "n1", "n2"]));
    }

    #[test]
    fn expand_multiple_items() {
        assert_eq!(
            ex("n[1-3],login1,gpu[01-02]"),
            strs(&["n1", "n2", "n3", "login1", "gpu01", "gpu02"])
        );
        assert_eq!(ex(" n1 , n2 "), strs(&["n1", "n2"]));
    }

    #[test]
    fn expand_cartesian_product() {
        assert_eq!(
            ex("rack[1-2]n[1-3]"),
            strs(&["rack1n1", "rack1n2", "rack1n3", "rack2n1", "rack2n2", "rack2n3"])
        );
        assert_eq!(ex("[1-2]x[0,1]"), strs(&["1x0", "1x1", "2x0", "2x1"]));
    }

    #[test]
    fn expand_prefix_and_suffix() {
        assert_eq!(ex("n[1-2]-ib"), strs(&["n1-ib", "n2-ib"]));
        assert_eq!(ex("[1-3]"), strs(&["1", "2", "3"]));
    }

    #[test]
    fn expand_keeps_order_and_drops_duplicates() {
        assert_eq!(ex("n3,n1,n2"), strs(&["n3", "n1", "n2"]));
        assert_eq!(ex("n[3,1,2]"), strs(&["n3", "n1", "n2"]));
        assert_eq!(ex("n[1-3],n2,n[3-4]"), strs(&["n1", "n2", "n3", "n4"]));
        assert_eq!(ex("n[1-3,2]"), strs(&["n1", "n2", "n3"]));
        assert_eq!(ex("[1,11][1,11]"), strs(&["11", "111", "1111"]));
        assert_eq!(ex("[1,11]1[1,11]"), strs(&["111", "1111", "11111"]));
        assert_eq!(
            ex("a[1,11]b[1,11]"),
            strs(&["a1b1", "a1b11", "a11b1", "a11b11"])
        );
        // Different padding means different names.
        assert_eq!(ex("n[1,01]"), strs(&["n1", "n01"]));
    }

    #[test]
    fn expand_empty_items_are_errors() {
        assert_eq!(err("n1,"), HostlistError::EmptyItem { pos: 3 });
        assert_eq!(err(",n1"), HostlistError::EmptyItem { pos: 0 });
        assert_eq!(err("n1, ,n2"), HostlistError::EmptyItem { pos: 3 });
    }

    #[test]
    fn expand_bracket_errors() {
        assert_eq!(
            err("x,n[1-3"),
            HostlistError::UnclosedBracket {
                text: "n[1-3".into(),
                pos: 3
            }
        );
        assert_eq!(
            err("a, n1-3],b"),
            HostlistError::UnmatchedBracket {
                text: "n1-3]".into(),
                pos: 7
            }
        );
        assert_eq!(
            err("n[1[2]]"),
            HostlistError::NestedBracket {
                text: "n[1[".into(),
                pos: 3
            }
        );
        assert_eq!(
            err("a, n[]"),
            HostlistError::EmptyBrackets {
                text: "n[]".into(),
                pos: 4
            }
        );
    }

    #[test]
    fn expand_number_errors() {
        assert_eq!(
            err("n[a-3]"),
            HostlistError::InvalidNumber {
                text: "a".into(),
                pos: 2
            }
        );
        assert_eq!(
            err("n[1-b]"),
            HostlistError::InvalidNumber {
                text: "b".into(),
                pos: 4
            }
        );
        assert_eq!(
            err("n[1,]"),
            HostlistError::InvalidNumber {
                text: "".into(),
                pos: 4
            }
        );
        assert_eq!(
            err("n[1-]"),
            HostlistError::InvalidNumber {
                text: "".into(),
                pos: 4
            }
        );
        assert_eq!(
            err("n[+1]"),
            HostlistError::InvalidNumber {
                text: "+1".into(),
                pos: 2
            }
        );
        assert_eq!(
            err("n[1-2-3]"),
            HostlistError::InvalidNumber {
                text: "2-3".into(),
                pos: 4
            }
        );
        assert_eq!(
            err("n[ 1]"),
            HostlistError::InvalidNumber {
                text: " 1".into(),
                pos: 2
            }
        );
        assert_eq!(
            err("n[5-3]"),
            HostlistError::ReversedRange {
                text: "5-3".into(),
                pos: 2
            }
        );
        assert_eq!(
            err("n[1,99999999999999999999]"),
            HostlistError::NumberTooLarge {
                text: "99999999999999999999".into(),
                pos: 4
            }
        );
        // u64::MAX itself is fine.
        assert_eq!(
            ex("n[18446744073709551615]"),
            strs(&["n18446744073709551615"])
        );
        assert_eq!(
            ex("n[18446744073709551614-18446744073709551615]"),
            strs(&["n18446744073709551614", "n18446744073709551615"])
        );
    }

    #[test]
    fn expand_size_limits() {
        let too_many = |e: HostlistError| matches!(e, HostlistError::TooManyNames { .. });
        assert!(too_many(err("n[0-1000000]")));
        assert!(too_many(err("n[0-18446744073709551615]")));
        assert!(too_many(err(
            "n[0-18446744073709551615,0-18446744073709551615]"
        )));
        assert!(too_many(err("a[0-999]b[0-999]c[0-1]")));
        assert!(too_many(err("a[0-599999],b[0-599999]")));
        assert_eq!(
            err("x,a[0-999]b[0-999]c[0-1]"),
            HostlistError::TooManyNames {
                limit: MAX_EXPAND,
                text: "a[0-999]b[0-999]c[0-1]".into(),
                pos: 2
            }
        );
        let long = format!("{}[0-9999]", "x".repeat(20_000));
        assert!(matches!(
            err(&long),
            HostlistError::TooManyBytes { pos: 0, .. }
        ));
        let padded = format!("n[{}-9999]", "0".repeat(20_000));
        assert!(matches!(err(&padded), HostlistError::TooManyBytes { .. }));
    }

    #[test]
    fn error_messages_name_text_and_position() {
        let msg = err("n[1-3],m[5-3]").to_string();
        assert!(msg.contains("\"5-3\"") && msg.contains("byte 9"), "{msg}");
        let msg = err("n[1-x]").to_string();
        assert!(msg.contains("\"x\"") && msg.contains("byte 4"), "{msg}");
        let msg = err("n[1-3").to_string();
        assert!(msg.contains("n[1-3") && msg.contains("byte 1"), "{msg}");
        let msg = err(&format!("{}]", "y".repeat(200))).to_string();
        assert!(
            msg.contains("\"…yy") && msg.contains("yy]\"") && msg.len() < 200,
            "{msg}"
        );
        let msg = err(&format!("{}[0-1000000]", "é".repeat(200))).to_string();
        assert!(msg.contains("éé…") && msg.len() < 200, "{msg}");
        let msg = err("n[0-1000000]").to_string();
        assert!(
            msg.contains("1000000") && msg.contains("n[0-1000000]"),
            "{msg}"
        );
    }

    #[test]
    fn expand_large_range() {
        let v = ex("n[0-99999]");
        assert_eq!(v.len(), 100_000);
        assert_eq!(v[0], "n0");
        assert_eq!(v[99_999], "n99999");
    }

    #[test]
    fn expand_non_ascii() {
        assert_eq!(ex("nœud[1-2]é"), strs(&["nœud1é", "nœud2é"]));
        assert!(matches!(
            err("n[é]"),
            HostlistError::InvalidNumber { pos: 2, .. }
        ));
    }

    // ---- compress -----------------------------------------------------------

    #[test]
    fn compress_basic() {
        assert_eq!(compress(&["n1", "n2", "n3", "n7"]), "n[1-3,7]");
        assert_eq!(compress(&["n5"]), "n5");
        assert_eq!(compress(&["n5", "n5"]), "n5");
        assert_eq!(compress::<&str>(&[]), "");
        assert_eq!(compress(&["", "n1", ""]), "n1");
    }

    #[test]
    fn compress_padding() {
        assert_eq!(compress(&["gpu007", "gpu008"]), "gpu[007-008]");
        assert_eq!(compress(&["gpu099", "gpu100"]), "gpu[099-100]");
        assert_eq!(
            compress(&["gpu098", "gpu099", "gpu100", "gpu101"]),
            "gpu[098-101]"
        );
        assert_eq!(compress(&["n9", "n10"]), "n[9-10]");
        assert_eq!(compress(&["n01", "n1"]), "n[1,01]");
        assert_eq!(ex("n[1,01]"), strs(&["n1", "n01"]));
        assert_eq!(compress(&["n0", "n00", "n000"]), "n[0,00,000]");
        assert_eq!(compress(&["n08", "n09", "n10", "n11"]), "n[08-11]");
        // A padded run does not absorb numbers of a smaller width.
        assert_eq!(compress(&["n8", "n09"]), "n[8,09]");
    }

    #[test]
    fn compress_groups_sorted() {
        assert_eq!(
            compress(&["n3", "login1", "gpu02", "n1", "n2", "gpu01"]),
            "gpu[01-02],login1,n[1-3]"
        );
        assert_eq!(
            compress(&["n2-ib", "n1-ib", "n1", "n2"]),
            "n[1-2],n[1-2]-ib"
        );
        assert_eq!(compress(&["login", "head", "head"]), "head,login");
        assert_eq!(compress(&ex("rack[1-2]n[1-3]")), "rack1n[1-3],rack2n[1-3]");
    }

    #[test]
    fn compress_huge_numbers_are_kept_verbatim() {
        let big = "n123456789012345678901234567890";
        assert_eq!(compress(&[big, "n1"]), format!("n1,{big}"));
        assert_eq!(
            compress(&["n18446744073709551615", "n18446744073709551614"]),
            "n[18446744073709551614-18446744073709551615]"
        );
    }

    #[test]
    fn compress_hundred_thousand() {
        let names: Vec<String> = (0..100_000).map(|i| format!("n{i}")).collect();
        assert_eq!(compress(&names), "n[0-99999]");
        let rev: Vec<&String> = names.iter().rev().collect();
        assert_eq!(compress(&rev), "n[0-99999]");
    }

    #[test]
    fn is_hostlist_checks_syntax() {
        assert!(is_hostlist("n[1-2]"));
        assert!(is_hostlist("n1,n2"));
        assert!(is_hostlist("n1]"));
        assert!(!is_hostlist("n1"));
        assert!(!is_hostlist("n1-ib"));
        assert!(!is_hostlist(""));
    }

    // ---- properties ---------------------------------------------------------

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..40,
            90u64..110,
            990u64..1010,
            (u64::MAX - 5)..=u64::MAX,
        ]
    }

    fn host_name() -> impl Strategy<Value = String> {
        let numbered = (
            prop::sample::select(vec!["n", "gpu", "rack1n", "a-", ""]),
            number(),
            0usize..5,
            prop::sample::select(vec!["", "-ib", ".x", "-eth0"]),
        )
            .prop_map(|(p, n, w, s)| format!("{p}{n:0w$}{s}"));
        let plain =
            prop::sample::select(vec!["login", "head", "mgmt-a", "n"]).prop_map(String::from);
        prop_oneof![8 => numbered, 1 => plain]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_expand_inverts_compress(names in prop::collection::vec(host_name(), 0..60)) {
            let c = compress(&names);
            let back = expand(&c).map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
            prop_assert_eq!(set(&back), set(&names), "compressed: {}", c);
            prop_assert_eq!(back.len(), set(&back).len());
        }

        #[test]
        fn prop_compress_is_canonical(names in prop::collection::vec(host_name(), 0..60)) {
            let c = compress(&names);
            let back = expand(&c).map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
            prop_assert_eq!(compress(&back), c.clone());
            let mut rev = names.clone();
            rev.reverse();
            prop_assert_eq!(compress(&rev), c);
        }

        #[test]
        fn prop_expand_never_panics(s in "[\\[\\],0-9a-z -]{0,40}") {
            if let Ok(names) = expand(&s) {
                prop_assert_eq!(names.len(), set(&names).len());
                let back = expand(&compress(&names))
                    .map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
                prop_assert_eq!(set(&back), set(&names));
            }
        }

        #[test]
        fn prop_expand_tokens_never_panics(
            toks in prop::collection::vec(
                prop::sample::select(vec![
                    "n", "gpu", "[", "]", ",", "-", "0", "1", "9", "00", "12", " ", "é",
                    "99999999999999999999",
                ]),
                0..24,
            )
        ) {
            let s: String = toks.concat();
            if let Ok(names) = expand(&s) {
                prop_assert!(names.len() <= MAX_EXPAND);
                prop_assert_eq!(names.len(), set(&names).len());
                let back = expand(&compress(&names))
                    .map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
                prop_assert_eq!(set(&back), set(&names));
            }
        }

        #[test]
        fn prop_product_matches_naive(
            parts in prop::collection::vec(
                (
                    prop::sample::select(vec!["", "1", "a", "a1", "-", "0"]),
                    prop::collection::vec((0u64..15, 0u64..4, 1usize..4), 1..4),
                ),
                1..4,
            ),
            tail in prop::sample::select(vec!["", "1", "x"]),
        ) {
            let mut expr = String::new();
            let mut naive: Vec<String> = vec![String::new()];
            for (literal, ranges) in &parts {
                expr.push_str(literal);
                let texts: Vec<String> = ranges.iter().map(|&(lo, len, w)| {
                    format!("{lo:0w$}-{}", lo + len)
                }).collect();
                expr.push('[');
                expr.push_str(&texts.join(","));
                expr.push(']');
                let mut values = Vec::new();
                for &(lo, len, w) in ranges {
                    let w = w.max(format!("{lo}").len());
                    values.extend((lo..=lo + len).map(|v| format!("{v:0w$}")));
                }
                naive = naive.iter().flat_map(|prefix| {
                    values.iter().map(move |v| format!("{prefix}{literal}{v}"))
                }).collect();
            }
            expr.push_str(tail);
            let naive: Vec<String> = naive.into_iter().map(|n| n + tail).collect();
            let mut seen = HashSet::new();
            let want: Vec<String> = naive.into_iter().filter(|n| seen.insert(n.clone())).collect();
            let got = expand(&expr).map_err(|e| TestCaseError::fail(format!("{expr:?}: {e}")))?;
            prop_assert_eq!(got, want, "{}", expr);
        }

        #[test]
        fn prop_range_count(lo in 0u64..5000, len in 0u64..300, width in 1usize..6) {
            let hi = lo + len;
            let expr = format!("x[{lo:0width$}-{hi}]y");
            let names = expand(&expr).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(names.len() as u64, len + 1);
            prop_assert_eq!(&names[0], &format!("x{lo:0width$}y"));
            prop_assert_eq!(compress(&names), if len == 0 {
                format!("x{lo:0width$}y")
            } else {
                format!("x[{lo:0width$}-{hi:0width$}]y")
            });
        }
    }
}
