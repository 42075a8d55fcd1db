//! The `--spam-rules` file, and the [`Score`] its rules are written in.
//!
//! `score.rs` decides; this file reads what an operator adds to its
//! built-in rules, one a line, `NAME SCORE PART TEXT`:
//!
//! ```text
//! # NAME          SCORE  PART            TEXT (a substring, any case)
//! CHEAP_PILLS     4.5    body            cheap pills
//! LOTTERY_SUBJ    3      subject         you have won
//! FROM_FRIEND     -2.0   header:X-Mailer our own newsletter tool
//! ```
//!
//! A bad line is an error with its number, and the relay does not start
//! (`main.rs`, `spam_scorer`): a filter that silently ran without the rules
//! its operator wrote would be worse than one that refuses to run.
//!
//! Scores are exact decimals ([`Score`], thousandths of a point), so that
//! rules written `0.1` and `0.2` add up to `0.3`, and `7.3` prints `7.3`.

use crate::score::{Part, Rule, Test, builtin_rules};
use crate::spam_headers::is_field_name;
use std::fmt;
use std::fs;
use std::path::Path;

/// Reads a `--spam-rules` file. The error is the one line the relay prints
/// before it stops: `FILE:N: reason`.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, String> {
    let text = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(text)
        .map_err(|_| format!("{}: the file is not UTF-8 text", path.display()))?;
    parse_rules(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
}

/// Parses rules, one a line: `NAME SCORE PART TEXT`. `#` starts a comment
/// line; blank lines are skipped. On error: the line number (from 1) and why.
///
/// * NAME: letters, digits and `_`, starting with a letter (so it reads well
///   in `tests=`), at most 40 characters, not used twice;
/// * SCORE: a signed decimal ([`Score::parse`]);
/// * PART: `subject`, `from`, `to`, `body` or `header:NAME`, in any case;
/// * TEXT: the rest of the line, spaces included (trimmed at both ends),
///   matched as a substring ignoring ASCII case.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, (usize, String)> {
    let mut rules: Vec<Rule> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rule = parse_rule(line).map_err(|why| (number, why))?;
        let taken = builtin_rules()
            .iter()
            .chain(&rules)
            .any(|r| r.name == rule.name);
        if taken {
            return Err((
                number,
                format!("the rule name {} is already used", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// One non-comment line of a rules file.
fn parse_rule(line: &str) -> Result<Rule, String> {
    let mut words = line.splitn(4, char::is_whitespace);
    let (Some(name), Some(score), Some(part), Some(text)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(
            "expected NAME SCORE PART TEXT, for example: CHEAP 2.5 body cheap pills".into(),
        );
    };
    let name_ok = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(format!(
            "{name:?} is not a rule name (letters, digits and _, starting with a letter, at most 40)"
        ));
    }
    let score = Score::parse(score)?;
    let part = parse_part(part)?;
    let text = text.trim();
    if text.is_empty() {
        return Err("the TEXT to look for is empty".into());
    }
    Ok(Rule {
        name: name.to_string(),
        score,
        test: Test::Contains(part, text.to_ascii_lowercase().into_bytes()),
    })
}

/// A rule's PART, in any case: `subject`, `from`, `to`, `body` or
/// `header:NAME`.
fn parse_part(part: &str) -> Result<Part, String> {
    let lower = part.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "subject" => Part::Subject,
        "from" => Part::From,
        "to" => Part::To,
        "body" => Part::Body,
        _ => match lower.strip_prefix("header:") {
            Some(field) if is_field_name(field.as_bytes()) => Part::Header(field.to_string()),
            _ => {
                return Err(format!(
                    "{part:?} is not a part (use subject, from, to, body or header:NAME)"
                ));
            }
        },
    })
}

/// A score in thousandths of a point. Scores are added up, so fixed point
/// keeps `0.1 + 0.2` equal to `0.3`, and a score written `7.3` prints `7.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Score(pub i64);

impl Score {
    /// Parses a signed decimal with at most three digits after the point:
    /// `5`, `-1.5`, `+0.25`. No exponents, no `nan`, no `inf`.
    pub fn parse(text: &str) -> Result<Score, String> {
        let bad = || format!("{text:?} is not a score (write a decimal such as 2.5 or -1)");
        let (negative, digits) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(bad());
        }
        if fraction.len() > 3 {
            return Err(format!(
                "{text:?} has more than three digits after the point"
            ));
        }
        if digits.ends_with('.') {
            return Err(bad());
        }
        let whole: i64 = whole
            .parse()
            .ok()
            .filter(|w| *w <= 1_000_000)
            .ok_or_else(|| format!("{text:?} is too large (at most 1000000)"))?;
        let mut thousandths = 0;
        for (i, digit) in fraction.bytes().enumerate() {
            thousandths += i64::from(digit - b'0') * [100, 10, 1][i];
        }
        let value = whole * 1000 + thousandths;
        Ok(Score(if negative { -value } else { value }))
    }

    /// Whole points, as `X-Spam-Level` counts them: 7.9 is 7, anything below
    /// one point is 0.
    pub fn whole_points(self) -> i64 {
        self.0.max(0) / 1000
    }
}

impl std::str::FromStr for Score {
    type Err = String;

    /// As [`Score::parse`], so that `--spam-threshold 5.0` parses like any flag.
    fn from_str(text: &str) -> Result<Score, String> {
        Score::parse(text)
    }
}

impl fmt::Display for Score {
    /// One decimal, rounded half away from zero: `7.25` → `7.3`, `-0.04` →
    /// `0.0` (never `-0.0`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0.abs() + 50) / 100;
        let sign = if self.0 < 0 && tenths > 0 { "-" } else { "" };
        write!(f, "{sign}{}.{}", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores parse exactly, print with one decimal, and refuse what is not a plain decimal.
    #[test]
    fn scores_are_exact_decimals() {
        assert_eq!(Score::parse("7.3"), Ok(Score(7300)));
        assert_eq!(Score::parse("-1.25"), Ok(Score(-1250)));
        assert_eq!(Score::parse("+2"), Ok(Score(2000)));
        assert_eq!(Score(7250).to_string(), "7.3");
        assert_eq!(Score(-40).to_string(), "0.0");
        assert_eq!(Score(-1250).to_string(), "-1.3");
        assert_eq!(Score(1_000_000).to_string(), "1000.0");
        for bad in [
            "", "-", "1.", ".5", "1e3", "nan", "inf", "1.2345", "1,5", "2000000",
        ] {
            assert!(Score::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// Every kind of bad rules line is refused with its line number and a reason.
    #[test]
    fn bad_rule_lines() {
        for (text, needle) in [
            ("A 1 body", "NAME SCORE PART TEXT"),
            ("1A 1 body x", "not a rule name"),
            ("A one body x", "not a score"),
            ("A 1 head x", "not a part"),
            ("A 1 header: x", "not a part"),
            ("A 1 body x\nA 2 body y", "already used"),
            ("GTUBE 1 body x", "already used"),
        ] {
            let (line, why) = parse_rules(&format!("# rules\n{text}\n")).unwrap_err();
            assert!(line >= 2, "{text:?}: line {line}");
            assert!(why.contains(needle), "{text:?}: {why}");
        }
        let dir = std::env::temp_dir().join(format!("score-rules-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rules");
        fs::write(&path, "OK 1 body fine\n\nBROKEN 1 nowhere x\n").unwrap();
        let err = load_rules(&path).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}:3: \"nowhere\" is not a part (use subject, from, to, body or header:NAME)",
                path.display()
            )
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
