//! The small command-line parser the examples share.
//!
//! Every example takes `--long VALUE` options (or `--long=VALUE`), `--flags`
//! and plain positional words, prints usage for `--help` (exit status 0), and
//! answers a mistake with one clear line plus the usage (exit status 2, the
//! usual code for "you called me wrong"). Real programs use a crate such as
//! `clap` for this; ours is std-only, so here is a small one: the definition,
//! the parser and the usage text of a [`Command`] in this file, and the typed
//! look-ups of the [`Matches`] it returns in `cli/matches.rs`.
//!
//! ```
//! use netlessons::cli::Command;
//!
//! let cmd = Command::new("demo", "Shows the parser.")
//!     .opt("--addr", "HOST:PORT", "where to listen", Some("127.0.0.1:7001"))
//!     .flag("--trace", "show every message");
//! let m = cmd.parse(["--trace".to_string()]).unwrap();
//! assert_eq!(m.get("--addr"), Some("127.0.0.1:7001")); // the default
//! assert!(m.flag("--trace"));
//! assert!(cmd.parse(["--nope".to_string()]).is_err());
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

// Reading the parsed values: typed look-ups that exit 2 on a bad one.
mod matches;
pub use matches::{Matches, parse_size};

/// One option a command accepts.
#[derive(Debug, Clone)]
struct Opt {
    long: &'static str,
    /// The placeholder for the value (`PORT`), or `None` for a flag.
    value_name: Option<&'static str>,
    help: &'static str,
    default: Option<String>,
    hidden: bool,
}

/// A command's description: its options, positional words and help text.
#[derive(Debug, Clone)]
pub struct Command {
    name: &'static str,
    about: &'static str,
    opts: Vec<Opt>,
    aliases: Vec<(&'static str, &'static str)>,
    positionals: Vec<(&'static str, &'static str)>,
    after_help: Option<&'static str>,
}

/// Why parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// `--help` was given: print the usage and exit 0.
    Help(String),
    /// A mistake: print this line, then the usage, and exit 2.
    Usage {
        /// One line saying what is wrong.
        message: String,
        /// The command's usage line (see [`Command::usage_line`]).
        usage: String,
    },
}

impl Command {
    /// A command named `name` (as the user types it) that does `about`.
    pub fn new(name: &'static str, about: &'static str) -> Command {
        Command {
            name,
            about,
            opts: Vec::new(),
            aliases: Vec::new(),
            positionals: Vec::new(),
            after_help: None,
        }
    }

    /// An option with a value, such as `--addr HOST:PORT`, with an optional default.
    pub fn opt(
        mut self,
        long: &'static str,
        value_name: &'static str,
        help: &'static str,
        default: Option<&str>,
    ) -> Command {
        self.opts.push(Opt {
            long,
            value_name: Some(value_name),
            help,
            default: default.map(str::to_string),
            hidden: false,
        });
        self
    }

    /// An option left out of `--help`: a knob for tests (a shorter delay, say),
    /// never a way to weaken a default.
    pub fn hidden_opt(mut self, long: &'static str, default: Option<&str>) -> Command {
        self.opts.push(Opt {
            long,
            value_name: Some("VALUE"),
            help: "",
            default: default.map(str::to_string),
            hidden: true,
        });
        self
    }

    /// A flag without a value, such as `--trace`.
    pub fn flag(mut self, long: &'static str, help: &'static str) -> Command {
        self.opts.push(Opt {
            long,
            value_name: None,
            help,
            default: None,
            hidden: false,
        });
        self
    }

    /// Makes `alias` another spelling of the option `long`.
    pub fn alias(mut self, alias: &'static str, long: &'static str) -> Command {
        self.aliases.push((alias, long));
        self
    }

    /// Documents a positional word (the parser collects them in order).
    pub fn positional(mut self, name: &'static str, help: &'static str) -> Command {
        self.positionals.push((name, help));
        self
    }

    /// Text shown at the end of `--help` (examples, environment variables).
    pub fn after_help(mut self, text: &'static str) -> Command {
        self.after_help = Some(text);
        self
    }

    /// Adds the options every server example shares: `--addr`, `--allow`,
    /// `--max-conns`, `--idle-timeout` and `--trace`.
    pub fn server_options(self, default_addr: &str, default_idle_secs: Option<u64>) -> Command {
        let idle = default_idle_secs.unwrap_or(0).to_string();
        self.opt(
            "--addr",
            "HOST:PORT",
            "address to listen on (port 0: any free port)",
            Some(default_addr),
        )
        .opt(
            "--allow",
            "CIDR[,CIDR...]",
            "who may connect (default: the local networks only)",
            None,
        )
        .opt(
            "--max-conns",
            "N",
            "at most N clients at once; more are refused (default: no limit)",
            None,
        )
        .opt(
            "--idle-timeout",
            "SECS",
            "drop a client that completes no message for SECS seconds (0: never)",
            Some(&idle),
        )
        .flag(
            "--trace",
            "show every message that crosses the wire on stderr",
        )
        // How long a started line may take (slow-loris defence). Hidden:
        // tests shorten it; the 30 s default is part of the contract.
        .hidden_opt("--line-timeout", Some("30"))
    }

    /// Adds the options every client example shares: `--addr` (`server` says
    /// which server it names) and `--trace`.
    pub fn client_options(self, server: &'static str, default_addr: &str) -> Command {
        self.opt("--addr", "HOST:PORT", server, Some(default_addr))
            .flag(
                "--trace",
                "show every message that crosses the wire on stderr",
            )
    }

    /// `Usage: NAME [OPTIONS] ARGS…`, one line (with its newline): what a
    /// usage error shows, where the whole help would bury the error.
    pub fn usage_line(&self) -> String {
        let mut out = format!("Usage: {} [OPTIONS]", self.name);
        for (name, _) in &self.positionals {
            let _ = write!(out, " {name}");
        }
        out.push('\n');
        out
    }

    /// The `--help` text.
    pub fn usage(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}\n", self.about);
        out.push_str(&self.usage_line());
        if !self.positionals.is_empty() {
            out.push_str("\nArguments:\n");
            for (name, help) in &self.positionals {
                let _ = writeln!(out, "  {name:<24} {help}");
            }
        }
        out.push_str("\nOptions:\n");
        for opt in self.opts.iter().filter(|o| !o.hidden) {
            let mut left = opt.long.to_string();
            if let Some(v) = opt.value_name {
                left = format!("{left} {v}");
            }
            let aliases: Vec<_> = self
                .aliases
                .iter()
                .filter(|(_, l)| *l == opt.long)
                .map(|(a, _)| *a)
                .collect();
            let mut help = opt.help.to_string();
            if !aliases.is_empty() {
                let _ = write!(help, " (also {})", aliases.join(", "));
            }
            match &opt.default {
                Some(d) if !d.is_empty() => {
                    let _ = writeln!(out, "  {left:<24} {help} [default: {d}]");
                }
                _ => {
                    let _ = writeln!(out, "  {left:<24} {help}");
                }
            }
        }
        let _ = writeln!(out, "  {:<24} print this help and exit", "-h, --help");
        if let Some(text) = self.after_help {
            let _ = write!(out, "\n{}", text.trim_end());
            out.push('\n');
        }
        out
    }

    fn find(&self, name: &str) -> Option<&Opt> {
        let long = self
            .aliases
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, long)| *long);
        self.opts.iter().find(|o| o.long == long)
    }

    /// The error for a positional `word` this command does not take, with a
    /// guess at what was meant when it looks like a port or an address.
    fn stray_word(&self, word: &str) -> String {
        let mut message = format!("unexpected argument '{word}' (options start with --)");
        if let Some(addr) = self.find("--addr") {
            let host = addr
                .default
                .as_deref()
                .and_then(|d| d.rsplit_once(':'))
                .map_or("127.0.0.1", |(host, _)| host);
            if word.parse::<u16>().is_ok() {
                message =
                    format!("unexpected argument '{word}': did you mean --addr {host}:{word}?");
            } else if word.parse::<std::net::SocketAddr>().is_ok() {
                message = format!("unexpected argument '{word}': did you mean --addr {word}?");
            }
        }
        message
    }

    fn usage_error(&self, message: String) -> CliError {
        CliError::Usage {
            message,
            usage: self.usage_line(),
        }
    }

    /// Parses `args` (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(&self, args: I) -> Result<Matches, CliError> {
        let mut values: HashMap<&'static str, String> = HashMap::new();
        let mut flags = Vec::new();
        let mut positionals = Vec::new();
        let mut args = args.into_iter();
        let mut only_positionals = false;
        while let Some(arg) = args.next() {
            if only_positionals || !arg.starts_with('-') || arg == "-" {
                positionals.push(arg);
                continue;
            }
            if arg == "--" {
                only_positionals = true;
                continue;
            }
            if arg == "-h" || arg == "--help" {
                return Err(CliError::Help(self.usage()));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let Some(opt) = self.find(name) else {
                return Err(self.usage_error(format!("unknown option '{name}'")));
            };
            match (opt.value_name, inline) {
                (None, None) => flags.push(opt.long),
                (None, Some(_)) => {
                    return Err(self.usage_error(format!("{} takes no value", opt.long)));
                }
                (Some(_), Some(v)) => {
                    values.insert(opt.long, v);
                }
                (Some(v), None) => match args.next() {
                    Some(value) => {
                        values.insert(opt.long, value);
                    }
                    None => {
                        return Err(self.usage_error(format!("{} needs a value ({v})", opt.long)));
                    }
                },
            }
        }
        // A command that documents no positional words takes none: a stray
        // one is a mistake (`01_echo_server 7005` meant a port), and ignoring
        // it would leave the program listening somewhere else, silently.
        if self.positionals.is_empty() {
            if let Some(word) = positionals.first() {
                return Err(self.usage_error(self.stray_word(word)));
            }
        }
        for opt in &self.opts {
            if let Some(d) = &opt.default {
                values.entry(opt.long).or_insert_with(|| d.clone());
            }
        }
        Ok(Matches {
            command: self.clone(),
            values,
            flags,
            positionals,
        })
    }

    /// Parses the process's arguments; on `--help` prints usage and exits 0,
    /// on a mistake prints the error and usage to stderr and exits 2.
    pub fn parse_env(&self) -> Matches {
        match self.parse(std::env::args().skip(1)) {
            Ok(m) => m,
            Err(CliError::Help(text)) => {
                print!("{text}");
                std::process::exit(0);
            }
            Err(CliError::Usage { message, usage }) => usage_error_exit(&message, &usage),
        }
    }
}

/// Prints a usage error the way most command-line tools do (the error, the
/// usage line, where to read more) and exits 2, the usual status for a
/// command used wrongly.
fn usage_error_exit(message: &str, usage_line: &str) -> ! {
    crate::log!("error: {message}\n\n{usage_line}\nFor more information, try '--help'.");
    std::process::exit(2);
}

/// What every example's `main` returns: `run`'s own exit status, or, when
/// `run` failed, `error: …` on stderr and status 1. So one place prints the
/// error and picks the code, however deep the failure happened:
///
/// ```no_run
/// use std::io;
/// use std::process::ExitCode;
///
/// fn main() -> ExitCode {
///     netlessons::cli::exit_status(run())
/// }
///
/// fn run() -> io::Result<()> {
///     Err(io::Error::other("could not bind 127.0.0.1:7001"))
/// }
/// ```
pub fn exit_status<T: std::process::Termination>(
    result: std::io::Result<T>,
) -> std::process::ExitCode {
    match result {
        Ok(done) => done.report(),
        Err(e) => {
            crate::log!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn demo() -> Command {
        Command::new("demo", "A demo.")
            .server_options("127.0.0.1:7001", Some(300))
            .opt("--smtp-addr", "HOST:PORT", "smtp", Some("127.0.0.1:2525"))
            .alias("--smtp", "--smtp-addr")
            .hidden_opt("--knob", Some("5"))
            .positional("CMD", "what to do")
    }

    /// A command without positional words refuses a stray one, and guesses
    /// `--addr` when the word is a port or an address.
    #[test]
    fn stray_positional_word_is_a_usage_error() {
        let server = Command::new("srv", "A server.").server_options("127.0.0.1:7001", None);
        let message = |list: &[&str]| match server.parse(args(list)) {
            Err(CliError::Usage { message, .. }) => message,
            other => panic!("expected a usage error, got {other:?}"),
        };
        assert_eq!(
            message(&["7005"]),
            "unexpected argument '7005': did you mean --addr 127.0.0.1:7005?"
        );
        assert_eq!(
            message(&["--trace", "0.0.0.0:7005"]),
            "unexpected argument '0.0.0.0:7005': did you mean --addr 0.0.0.0:7005?"
        );
        assert_eq!(
            message(&["start"]),
            "unexpected argument 'start' (options start with --)"
        );
        // A command that takes positional words still gets them.
        assert_eq!(
            demo().parse(args(&["7005"])).unwrap().positionals(),
            ["7005"]
        );
    }

    /// Values, `=` values, flags, aliases, defaults and positionals all parse.
    #[test]
    fn parses_every_form() {
        let m = demo()
            .parse(args(&[
                "list",
                "--addr=0.0.0.0:1",
                "--trace",
                "--smtp",
                "x:1",
                "more",
            ]))
            .unwrap();
        assert_eq!(m.get("--addr"), Some("0.0.0.0:1"));
        assert_eq!(m.get("--smtp-addr"), Some("x:1"));
        assert_eq!(m.get("--idle-timeout"), Some("300"));
        assert_eq!(m.get("--knob"), Some("5"));
        assert!(m.flag("--trace"));
        assert_eq!(m.positionals(), ["list", "more"]);
        assert_eq!(m.seconds("--idle-timeout"), Some(Duration::from_secs(300)));
    }

    /// Sizes take K, M or G; zero, signs, other units and overflow are refused.
    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1"), Some(1));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        for bad in [
            "",
            "K",
            "0",
            "0K",
            "+5",
            "-5",
            "3X",
            "1.5M",
            "99999999999999999999G",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    /// Mistakes name the option; --help returns the usage, which hides hidden options.
    #[test]
    fn errors_and_help() {
        let Err(CliError::Usage { message, .. }) = demo().parse(args(&["--bogus"])) else {
            panic!("expected a usage error");
        };
        assert_eq!(message, "unknown option '--bogus'");
        let Err(CliError::Usage { message, .. }) = demo().parse(args(&["--addr"])) else {
            panic!("expected a usage error");
        };
        assert!(message.contains("needs a value"));
        let Err(CliError::Help(text)) = demo().parse(args(&["-h"])) else {
            panic!("expected help");
        };
        assert!(text.contains("--max-conns N"));
        assert!(text.contains("(also --smtp)"));
        assert!(!text.contains("--knob"));
    }

    /// The server options become a ServerConfig; idle 0 means no timeout.
    #[test]
    fn builds_server_config() {
        let m = demo()
            .parse(args(&[
                "--allow",
                "10.0.0.0/8",
                "--max-conns",
                "3",
                "--idle-timeout",
                "0",
            ]))
            .unwrap();
        let c = m.server_config("demo", Some(b"busy\n"));
        assert_eq!(c.max_conns, Some(3));
        assert_eq!(c.idle_timeout, None);
        assert!(c.allow.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.allow.contains("127.0.0.1".parse().unwrap()));
        assert_eq!(c.busy_reply.as_deref(), Some(&b"busy\n"[..]));
        assert_eq!(c.line_timeout, Some(Duration::from_secs(30)));
    }

    /// A command without the server options keeps the 30 s line timeout.
    #[test]
    fn line_timeout_default_survives_a_custom_command() {
        let cmd = Command::new("custom", "No server options.").opt("--addr", "A", "addr", None);
        let c = cmd.parse(args(&[])).unwrap().server_config("custom", None);
        assert_eq!(c.line_timeout, Some(Duration::from_secs(30)));
    }
}
