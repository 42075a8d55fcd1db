//! Reading what [`Command::parse`] found: each option's value by its long
//! name, parsed into the type the program wants. A value that does not
//! parse ends the program with exit status 2 and a line that names the
//! option, so no example has to check its own numbers.

use super::{Command, usage_error_exit};
use crate::server::ServerConfig;
use crate::subnet::Allowlist;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// The result of parsing: look values up by their long name.
#[derive(Debug, Clone)]
pub struct Matches {
    pub(super) command: Command,
    pub(super) values: HashMap<&'static str, String>,
    pub(super) flags: Vec<&'static str>,
    pub(super) positionals: Vec<String>,
}

impl Matches {
    /// The value of an option (or its default), if any.
    pub fn get(&self, long: &str) -> Option<&str> {
        self.values.get(long).map(String::as_str)
    }

    /// Was this flag given?
    pub fn flag(&self, long: &str) -> bool {
        self.flags.contains(&long)
    }

    /// The positional words, in order.
    pub fn positionals(&self) -> &[String] {
        &self.positionals
    }

    /// Parses an option's value, or exits 2 naming the option and the problem.
    pub fn parse_value<T>(&self, long: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let text = self.get(long)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(e) => self.fail(&format!("invalid value '{text}' for {long}: {e}")),
        }
    }

    /// Like [`parse_value`](Matches::parse_value), for options that have a default.
    pub fn value<T>(&self, long: &str) -> T
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.parse_value(long) {
            Some(v) => v,
            None => self.fail(&format!("{long} is required")),
        }
    }

    /// A duration given in whole seconds, where 0 means "never".
    pub fn seconds(&self, long: &str) -> Option<Duration> {
        self.parse_value::<u64>(long)
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
    }

    /// A whole number, or `default` when the option is absent; exits 2 on
    /// anything else.
    pub fn number(&self, long: &str, default: usize) -> usize {
        self.parse_value(long).unwrap_or(default)
    }

    /// Like [`number`](Matches::number), but at least 1 (a count of
    /// connections or rounds, where 0 would measure nothing).
    pub fn positive(&self, long: &str, default: usize) -> usize {
        let n = self.number(long, default);
        if n == 0 {
            self.fail(&format!("{long} must be at least 1"));
        }
        n
    }

    /// A size such as `64`, `8K`, `64M` or `1G` (see [`parse_size`]), or
    /// `default` when the option is absent; exits 2 on anything else.
    pub fn size(&self, long: &str, default: usize) -> usize {
        let Some(text) = self.get(long) else {
            return default;
        };
        match parse_size(text) {
            Some(n) => n,
            None => self.fail(&format!(
                "invalid size '{text}' for {long}: use a number such as 64, 8K, 64M or 1G"
            )),
        }
    }

    /// Prints `error: message`, the usage line and a pointer to `--help` to
    /// stderr, then exits 2.
    pub fn fail(&self, message: &str) -> ! {
        usage_error_exit(message, &self.command.usage_line())
    }

    /// Builds a [`ServerConfig`] from the options added by
    /// [`Command::server_options`]. `busy_reply` is what a client over
    /// `--max-conns` is told.
    pub fn server_config(&self, name: &str, busy_reply: Option<&[u8]>) -> ServerConfig {
        let mut config = ServerConfig::new(self.get("--addr").unwrap_or("127.0.0.1:0"));
        config.name = name.to_string();
        if let Some(allow) = self.parse_value::<Allowlist>("--allow") {
            config.allow = allow;
        }
        config.max_conns = self.parse_value("--max-conns");
        config.idle_timeout = self.seconds("--idle-timeout");
        // Only override the 30 s default when the command defines the
        // option: a command without it must not silently lose the defence.
        if self.get("--line-timeout").is_some() {
            config.line_timeout = self.seconds("--line-timeout");
        }
        config.trace = self.flag("--trace");
        config.busy_reply = busy_reply.map(<[u8]>::to_vec);
        config
    }
}

/// Parses a size in bytes: digits, then optionally `K`, `M` or `G` (either
/// case; powers of 1024, as `dd` and `ulimit` count). Zero and overflow are
/// `None`.
///
/// ```
/// use netlessons::cli::parse_size;
///
/// assert_eq!(parse_size("64"), Some(64));
/// assert_eq!(parse_size("8k"), Some(8 * 1024));
/// assert_eq!(parse_size("1G"), Some(1 << 30));
/// assert_eq!(parse_size("3X"), None);
/// assert_eq!(parse_size("0"), None);
/// ```
pub fn parse_size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, ' '),
    };
    let scale: usize = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return None,
    };
    // `parse` alone would accept a leading `+`; sizes are plain digits.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
}
