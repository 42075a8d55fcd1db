//! The third filter: **content scoring**, in the manner of SpamAssassin.
//!
//! The first two filters (`greet.rs`, `greylist.rs`) judge how a client
//! behaves. This one reads what it sent. Every accepted message is checked
//! against named *rules*; each rule that matches adds its score, and a
//! message whose total reaches the threshold (`--spam-threshold`, 5.0 by
//! default) is spam. No single clue decides: a missing `Date:` is a little
//! suspicious (1.0), a subject in capitals a little more (1.5), and it takes
//! several together to reach 5.
//!
//! The verdict is written into the message itself, at the top, exactly as
//! SpamAssassin writes it, so any mail reader's filter can sort on it:
//!
//! ```text
//! X-Spam-Status: Yes, score=1001.5 required=5.0 tests=GTUBE,MISSING_DATE,MISSING_MID
//! X-Spam-Level: **************************************************
//! X-Spam-Flag: YES
//! ```
//!
//! Spam is not refused: it is delivered to the user's `.Junk` folder
//! (`spool.rs`), because rules make mistakes (a *false positive*), and a
//! message in a folder can be rescued, while a refused one is gone.
//!
//! The built-in rules are in [`builtin_rules`]; `--spam-rules FILE` adds more,
//! one a line, `NAME SCORE PART TEXT` (`spam_rules.rs` reads them).
//!
//! Reading a message: [`Scorer::scan`] reads the stored message (`\n` line
//! endings) once, a line at a time, so scoring a 10 MiB message needs no
//! more memory than scoring a short one. (SpamAssassin instead reads the
//! whole message, and its `spamc` client skips messages over 500 KB.) The
//! header section is read by `spam_headers.rs`, which also removes the
//! `X-Spam-*` fields the client wrote before ours go on top.

use crate::bayes::{self, Bayes};
use crate::spam_headers::{HeaderSection, read_line};
use crate::spam_rules::Score;
use std::collections::BTreeSet;
use std::io::{self, BufRead};

/// The standard test string of GTUBE, the Generic Test for Unsolicited Bulk
/// Email. Every content filter treats a message containing it as spam, so
/// that anyone can check a filter works without sending real spam.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// At most this many `*` in `X-Spam-Level` (as SpamAssassin caps it): GTUBE's
/// 1000 stars would break the 1000-byte line limit at the next hop.
pub const MAX_STARS: i64 = 50;

/// The naive Bayes filter (`--bayes`) reads the tokens of this much of a
/// message at most, so a huge message cannot fill memory with tokens.
const MAX_BAYES_BYTES: usize = 256 * 1024;

/// The rule the Bayes filter fires, and its score.
pub const BAYES_RULE: &str = "BAYES_SPAM";
const BAYES_SCORE: Score = Score(5_000);

/// Which part of a message a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The `Subject:` header field(s).
    Subject,
    /// The `From:` header field(s).
    From,
    /// The `To:` header field(s).
    To,
    /// Everything after the header section.
    Body,
    /// Any header field with this name (lower case).
    Header(String),
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `TEXT` occurs in `Part`, ignoring ASCII case (the text is stored in
    /// lower case).
    Contains(Part, Vec<u8>),
    /// The GTUBE string occurs in the body (exactly, as SpamAssassin matches it).
    Gtube,
    /// There is no header field of this name (lower case).
    Missing(&'static str),
    /// The subject has at least five letters and none in lower case.
    SubjectInCapitals,
    /// `From:` names one of our own domains, but the client is outside
    /// `--relay-allow`: our own users send through us from inside.
    ForgedLocalFrom,
}

/// A named rule with its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The name listed in `tests=` when the rule fires.
    pub name: String,
    /// Added to the message's score when the rule fires (may be negative).
    pub score: Score,
    /// What it looks for.
    pub test: Test,
}

/// The rules every relay starts with. The names are SpamAssassin's where it
/// has the same rule; the scores are round numbers close to its own.
pub fn builtin_rules() -> Vec<Rule> {
    let rule = |name: &str, points: i64, test| Rule {
        name: name.to_string(),
        score: Score(points),
        test,
    };
    vec![
        rule("GTUBE", 1_000_000, Test::Gtube),
        rule("MISSING_DATE", 1_000, Test::Missing("date")),
        rule("MISSING_MID", 500, Test::Missing("message-id")),
        rule("MISSING_SUBJECT", 1_000, Test::Missing("subject")),
        rule("SUBJ_ALL_CAPS", 1_500, Test::SubjectInCapitals),
        rule("FORGED_LOCAL_FROM", 3_000, Test::ForgedLocalFrom),
    ]
}

/// What the scorer knows about where a message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The client is outside `--relay-allow`.
    pub outside: bool,
    /// Our own domains, lower case.
    pub domains: &'a [String],
}

/// The result of scoring one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The sum of the scores of the rules that fired.
    pub score: Score,
    /// The threshold it was compared with.
    pub required: Score,
    /// The names of the rules that fired, in rule order.
    pub tests: Vec<String>,
    /// The naive Bayes probability, with `--bayes`.
    pub bayes: Option<f64>,
    /// How many `X-Spam-*` fields the client put in the message (to be
    /// removed: see `spam_headers::strip_spam_headers`).
    pub client_spam_fields: usize,
}

impl Verdict {
    /// At or above the threshold.
    pub fn is_spam(&self) -> bool {
        self.score >= self.required
    }

    /// The header lines to add at the top of the message, each ending in `\n`.
    pub fn headers(&self) -> String {
        let tests = if self.tests.is_empty() {
            "none".to_string()
        } else {
            self.tests.join(",")
        };
        let yes_no = if self.is_spam() { "Yes" } else { "No" };
        let stars = "*".repeat(self.score.whole_points().min(MAX_STARS) as usize);
        // An empty field keeps its space after the colon in SpamAssassin's
        // output too ("X-Spam-Level: "), so a reader's filter that matches
        // the line start sees the same bytes either way.
        let mut out = format!(
            "X-Spam-Status: {yes_no}, score={} required={} tests={tests}\nX-Spam-Level: {stars}\n",
            self.score, self.required
        );
        if self.is_spam() {
            out.push_str("X-Spam-Flag: YES\n");
        }
        if let Some(p) = self.bayes {
            out.push_str(&format!("X-Spam-Bayes: {p:.6}\n"));
        }
        out
    }

    /// A short line for the log: `spam, score=1000.0 tests=GTUBE`.
    pub fn summary(&self) -> String {
        let kind = if self.is_spam() { "spam" } else { "not spam" };
        let tests = if self.tests.is_empty() {
            "none".to_string()
        } else {
            self.tests.join(",")
        };
        format!(
            "{kind}, score={} required={} tests={tests}",
            self.score, self.required
        )
    }
}

/// The rules and the threshold: what the relay scores with.
#[derive(Debug)]
pub struct Scorer {
    rules: Vec<Rule>,
    required: Score,
    bayes: Option<Bayes>,
}

impl Scorer {
    /// The built-in rules plus `extra`, with `required` as the threshold.
    pub fn new(extra: Vec<Rule>, required: Score) -> Scorer {
        let mut rules = builtin_rules();
        rules.extend(extra);
        Scorer {
            rules,
            required,
            bayes: None,
        }
    }

    /// Adds the naive Bayes filter (chapter 11's exercise): rule `BAYES_SPAM`.
    pub fn with_bayes(mut self, bayes: Bayes) -> Scorer {
        self.bayes = Some(bayes);
        self
    }

    /// Reads a stored message (`\n` line endings) once and scores it.
    ///
    /// The header section is collected (up to a limit, by [`HeaderSection`])
    /// and unfolded; the body is searched as it streams past, keeping only the
    /// last few bytes of each piece so that a phrase split between two
    /// pieces is still found.
    pub fn scan<R: BufRead>(&self, mut message: R, origin: Origin<'_>) -> io::Result<Verdict> {
        let mut fired = vec![false; self.rules.len()];
        let mut line = Vec::new();
        let mut headers = HeaderSection::default();
        // The body search: the longest text any body rule looks for sets
        // how much of the previous piece to keep.
        let longest = self
            .rules
            .iter()
            .map(|r| match &r.test {
                Test::Contains(Part::Body, text) => text.len(),
                Test::Gtube => GTUBE.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let mut window: Vec<u8> = Vec::new();
        // The Bayes filter's distinct tokens, from the whole text (headers too).
        let mut distinct: BTreeSet<String> = BTreeSet::new();
        let mut tokenized = 0;
        loop {
            line.clear();
            if read_line(&mut message, &mut line)? == 0 {
                break;
            }
            if self.bayes.is_some() && tokenized < MAX_BAYES_BYTES {
                tokenized += line.len();
                distinct.extend(bayes::tokens(&line));
            }
            if headers.take(&line) {
                continue;
            }
            // A body line: search it together with the tail of what came
            // before. Its line break counts as a space, so a phrase that a
            // mail program folded over two lines is still found.
            window.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(&line));
            window.push(b' ');
            self.search_body(&window, &mut fired);
            let keep = longest.saturating_sub(1).min(window.len());
            window.drain(..window.len() - keep);
        }
        for (rule, fired) in self.rules.iter().zip(&mut fired) {
            if !*fired {
                *fired = header_test(&rule.test, &headers.fields, origin);
            }
        }
        let bayes = self.bayes.as_ref().map(|b| b.combine(&distinct));
        Ok(self.verdict(&fired, bayes, headers.client_spam_fields))
    }

    /// Adds up the scores of the rules that fired (and the Bayes rule).
    fn verdict(&self, fired: &[bool], bayes: Option<f64>, client_spam_fields: usize) -> Verdict {
        let mut verdict = Verdict {
            score: Score(0),
            required: self.required,
            tests: Vec::new(),
            bayes,
            client_spam_fields,
        };
        for (rule, _) in self.rules.iter().zip(fired).filter(|(_, f)| **f) {
            verdict.score.0 += rule.score.0;
            verdict.tests.push(rule.name.clone());
        }
        if bayes.is_some_and(|p| p > bayes::SPAM_ABOVE) {
            verdict.score.0 += BAYES_SCORE.0;
            verdict.tests.push(BAYES_RULE.to_string());
        }
        verdict
    }

    /// Marks the body rules that match somewhere in `window`.
    fn search_body(&self, window: &[u8], fired: &mut [bool]) {
        let mut lower: Option<Vec<u8>> = None;
        for (rule, fired) in self.rules.iter().zip(fired.iter_mut()) {
            if *fired {
                continue;
            }
            *fired = match &rule.test {
                Test::Gtube => contains(window, GTUBE.as_bytes()),
                Test::Contains(Part::Body, text) => {
                    let lower = lower.get_or_insert_with(|| window.to_ascii_lowercase());
                    contains(lower, text)
                }
                _ => false,
            };
        }
    }
}

/// Does a header-side test match? Body tests were done while reading.
fn header_test(test: &Test, fields: &[(String, Vec<u8>)], origin: Origin<'_>) -> bool {
    fn named<'f>(
        fields: &'f [(String, Vec<u8>)],
        name: &'f str,
    ) -> impl Iterator<Item = &'f [u8]> + 'f {
        fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
    let values = |name| named(fields, name);
    let any_contains = |name: &str, text: &[u8]| {
        named(fields, name).any(|v| contains(&v.to_ascii_lowercase(), text))
    };
    match test {
        Test::Contains(Part::Subject, text) => any_contains("subject", text),
        Test::Contains(Part::From, text) => any_contains("from", text),
        Test::Contains(Part::To, text) => any_contains("to", text),
        Test::Contains(Part::Header(name), text) => any_contains(name, text),
        Test::Contains(Part::Body, _) | Test::Gtube => false,
        Test::Missing(name) => values(name).next().is_none(),
        Test::SubjectInCapitals => values("subject").any(|v| {
            let letters = v.iter().filter(|b| b.is_ascii_alphabetic()).count();
            letters >= 5 && !v.iter().any(u8::is_ascii_lowercase)
        }),
        Test::ForgedLocalFrom => {
            origin.outside
                && values("from")
                    .any(|v| from_domain(v).is_some_and(|d| origin.domains.contains(&d)))
        }
    }
}

/// The domain of the address in a `From:` value: `Alice <alice@Example.TEST>`
/// → `example.test`. Good enough for a score; a real parser follows the
/// whole of RFC 5322's address grammar (comments, groups, quoted strings).
fn from_domain(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let address = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => text[open + 1..close].to_string(),
        _ => text
            .split_whitespace()
            .find(|w| w.contains('@'))?
            .to_string(),
    };
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain
        .trim()
        .trim_end_matches(['>', ',', ';'])
        .to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// Is `needle` somewhere in `haystack`?
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spam_rules::parse_rules;

    fn origin(outside: bool) -> Origin<'static> {
        static DOMAINS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Origin {
            outside,
            domains: DOMAINS.get_or_init(|| vec!["example.test".to_string()]),
        }
    }

    fn score(scorer: &Scorer, message: &str, outside: bool) -> Verdict {
        scorer.scan(message.as_bytes(), origin(outside)).unwrap()
    }

    const CLEAN: &str = "From: Alice <alice@elsewhere.test>\nTo: bob@example.test\n\
                         Subject: lunch\nDate: Tue, 1 Dec 2026 12:00:00 +0000\n\
                         Message-ID: <1@elsewhere.test>\n\nSee you at noon.\n";

    /// A clean, complete message fires nothing and gets `No`, `tests=none`, an empty level.
    #[test]
    fn clean_message_scores_zero() {
        let verdict = score(&Scorer::new(Vec::new(), Score(5000)), CLEAN, true);
        assert_eq!(verdict.score, Score(0));
        assert!(!verdict.is_spam());
        assert_eq!(
            verdict.headers(),
            "X-Spam-Status: No, score=0.0 required=5.0 tests=none\nX-Spam-Level: \n"
        );
    }

    /// GTUBE anywhere in the body is spam, with 50 stars at most and the flag.
    #[test]
    fn gtube_is_spam() {
        let message = format!("Subject: test\n\nThis is a test.\n{GTUBE}\n");
        let verdict = score(&Scorer::new(Vec::new(), Score(5000)), &message, false);
        assert!(verdict.is_spam());
        assert_eq!(verdict.tests, ["GTUBE", "MISSING_DATE", "MISSING_MID"]);
        assert_eq!(
            verdict.headers(),
            format!(
                "X-Spam-Status: Yes, score=1001.5 required=5.0 tests=GTUBE,MISSING_DATE,MISSING_MID\n\
                 X-Spam-Level: {}\nX-Spam-Flag: YES\n",
                "*".repeat(50)
            )
        );
    }

    /// Missing headers, a shouting subject and a forged local From add up;
    /// the forged From counts only from outside.
    #[test]
    fn header_rules() {
        let scorer = Scorer::new(Vec::new(), Score(5000));
        let message = "From: \"Boss\" <ceo@Example.TEST>\nSubject: URGENT WIRE TRANSFER\n\nPay.\n";
        let outside = score(&scorer, message, true);
        assert_eq!(
            outside.tests,
            [
                "MISSING_DATE",
                "MISSING_MID",
                "SUBJ_ALL_CAPS",
                "FORGED_LOCAL_FROM"
            ]
        );
        assert_eq!(outside.score, Score(6000));
        assert!(outside.is_spam());
        let inside = score(&scorer, message, false);
        assert_eq!(inside.score, Score(3000));
        assert!(!inside.is_spam());
        // No header section at all: every Missing rule fires, the body is still searched.
        let bare = score(&scorer, "just a line\n", true);
        assert_eq!(
            bare.tests,
            ["MISSING_DATE", "MISSING_MID", "MISSING_SUBJECT"]
        );
    }

    /// Rules from a file: every part, any case, folded header values, negative scores.
    #[test]
    fn file_rules_fire() {
        let rules = parse_rules(
            "# comment\n\nPILLS 4.5 body cheap PILLS\nWON 3 Subject you have won\n\
             TOOL -2 header:X-Mailer bulk tool\nFRIEND 0.5 from friend@\nTOME 0.1 to bob@\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 5);
        let scorer = Scorer::new(rules, Score(5000));
        let message = "From: friend@far.test\nTo: Bob <bob@example.test>\nDate: x\nMessage-ID: <y>\n\
                       Subject: You\n have WON\nX-Mailer: Bulk\n\tTool 2\n\nBuy Cheap\n pills? no: cheap pills!\n";
        let verdict = score(&scorer, message, true);
        assert_eq!(verdict.tests, ["PILLS", "WON", "TOOL", "FRIEND", "TOME"]);
        assert_eq!(verdict.score, Score(4500 + 3000 - 2000 + 500 + 100));
        assert_eq!(verdict.score.to_string(), "6.1");
    }

    /// A body phrase split over two lines, and over two reads, is still found
    /// (the line break counts as a space; the window keeps a tail).
    #[test]
    fn body_phrase_across_lines_and_buffers() {
        let rules = parse_rules("TWO 6 body end of one line\n").unwrap();
        let scorer = Scorer::new(rules, Score(5000));
        let mut message = String::from("Subject: s\n\n");
        message.push_str(&"x".repeat(900));
        message.push_str(" end of one\nline\n");
        let reader = io::BufReader::with_capacity(16, message.as_bytes());
        let verdict = scorer.scan(reader, origin(false)).unwrap();
        assert!(verdict.tests.contains(&"TWO".to_string()), "{verdict:?}");
    }

    /// A negative total shows no stars and is not spam; exactly the threshold is spam.
    #[test]
    fn threshold_and_level_edges() {
        let v = |score| Verdict {
            score: Score(score),
            required: Score(5000),
            tests: vec!["A".into()],
            bayes: None,
            client_spam_fields: 0,
        };
        assert!(v(5000).is_spam());
        assert!(!v(4999).is_spam());
        assert!(v(-3000).headers().contains("X-Spam-Level: \n"));
        assert!(v(7900).headers().contains("X-Spam-Level: *******\n"));
    }
}
