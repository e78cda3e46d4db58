//! Naming-pool patterns: `n{}` → n0, n1 …; `gpu{:03d}` → gpu000, gpu001 …
//!
//! A pattern holds exactly one placeholder: `{}` (the plain number) or `{:0Nd}` / `{:0N}`
//! (zero-padded to N digits). Text around it is kept as written.

use crate::error::ModelError;

/// A parsed naming pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    prefix: String,
    suffix: String,
    width: usize,
}

impl Pattern {
    /// Parse and validate a pattern; errors name the `pattern` field.
    pub fn parse(s: &str) -> Result<Pattern, ModelError> {
        let err = |m: &str| ModelError::new("pattern", format!("'{s}': {m}"));
        let open = s
            .find('{')
            .ok_or_else(|| err("needs one placeholder, '{}' or '{:03d}'"))?;
        let close = s[open..]
            .find('}')
            .map(|i| i + open)
            .ok_or_else(|| err("unclosed '{'"))?;
        let (prefix, spec, suffix) = (&s[..open], &s[open + 1..close], &s[close + 1..]);
        if suffix.contains(['{', '}']) || prefix.contains('}') {
            return Err(err("only one placeholder is allowed"));
        }
        let width = if spec.is_empty() {
            0
        } else {
            let digits = spec
                .strip_prefix(":0")
                .map(|d| d.strip_suffix('d').unwrap_or(d))
                .ok_or_else(|| err("placeholder must be '{}' or '{:0Nd}'"))?;
            let w: usize = digits
                .parse()
                .map_err(|_| err("placeholder must be '{}' or '{:0Nd}'"))?;
            if !(1..=10).contains(&w) {
                return Err(err("padding width must be 1 to 10"));
            }
            w
        };
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !prefix.chars().chain(suffix.chars()).all(ok_char) {
            return Err(err("names may only contain letters, digits, '-' and '_'"));
        }
        if prefix.is_empty() || !prefix.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(err(
                "must start with a letter, so names are not mistaken for indexes",
            ));
        }
        Ok(Pattern {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            width,
        })
    }

    /// The name for number `n`.
    pub fn format(&self, n: u64) -> String {
        format!("{}{:0w$}{}", self.prefix, n, self.suffix, w = self.width)
    }

    /// The number `name` stands for under this pattern, if it matches.
    pub fn number_of(&self, name: &str) -> Option<u64> {
        let digits = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        (self.format(n) == name).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(Pattern::parse("n{}").unwrap().format(7), "n7");
        assert_eq!(Pattern::parse("gpu{:03d}").unwrap().format(7), "gpu007");
        assert_eq!(Pattern::parse("gpu{:03}").unwrap().format(1234), "gpu1234");
        assert_eq!(Pattern::parse("r{}-ib").unwrap().format(2), "r2-ib");
    }

    #[test]
    fn numbers_back() {
        let p = Pattern::parse("gpu{:03d}").unwrap();
        assert_eq!(p.number_of("gpu007"), Some(7));
        assert_eq!(p.number_of("gpu7"), None);
        assert_eq!(p.number_of("cpu007"), None);
        assert_eq!(Pattern::parse("n{}").unwrap().number_of("n12"), Some(12));
    }

    #[test]
    fn rejects() {
        for p in [
            "n", "{}", "1{}", "n{}{}", "n{:3d}", "n{:0d}", "n{", "n}{}", "a b{}", "n{:x}",
        ] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
    }
}
