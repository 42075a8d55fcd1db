//! # 04_mail_relay: an email-style relay
//!
//! A small mail server that real mail programs can talk to: it receives mail
//! over **SMTP**, keeps it in **Maildir** folders, forwards mail for other
//! domains to a next hop, and lets users read their mail over **POP3**.
//!
//! ```text
//! cargo run --example 04_mail_relay            # prints demo passwords on stderr
//! python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", 2525).sendmail("a@example.test", ["bob@example.test"], "Subject: hi\r\n\r\nhello")'
//! curl pop3://bob:PASSWORD@127.0.0.1:1110/1
//! ```
//!
//! The files, in the order a message meets them:
//!
//! * `smtp.rs`: the SMTP conversation: commands, limits, who may relay,
//!   and the three points where the spam filters decide.
//! * `greet.rs`: the first filter, the greeting wait (before the banner).
//! * `greylist.rs`: the second filter, greylisting (at `RCPT`), and
//!   `greylist_log.rs`, its table on disk (an append-only log, compacted).
//! * `data.rs`: the message text after `DATA`: where it ends, bare CR and
//!   NUL, the body clock, streaming it to disk as it arrives.
//! * `draft.rs`: the file a message is streamed into while it arrives.
//! * `deliver.rs`: the session's second half, after the final `.`: the
//!   last checks, scoring, and storing every copy before the `250`.
//! * `score.rs`: the third filter, content scoring (after `DATA`), with
//!   `spam_rules.rs` (the `--spam-rules` file and the `Score` it is written
//!   in) and `spam_headers.rs` (reading the header section, and removing
//!   the `X-Spam-*` fields a client wrote).
//! * `bayes.rs`: chapter 11's exercise, a naive Bayes filter for `score.rs`.
//! * `address.rs`: parsing `MAIL FROM:<…>` and `RCPT TO:<…>`.
//! * `message.rs`: the `Received:` header, dates, the wire form of a
//!   message (shared with `04_mail_client.rs`).
//! * `spool.rs`: durable Maildir delivery (every copy of a message, or none),
//!   and group commit of the syncs.
//! * `queue.rs`: the durable relay queue and its retrying forwarder thread.
//! * `forward.rs`: the SMTP client that hands a message to the next hop.
//! * `dedup.rs`: dropping a retried copy by its `Message-ID` (an exercise).
//! * `bounce.rs`: the message that tells a sender their mail could not be
//!   delivered.
//! * `pop3.rs`: the POP3 conversation: login, list, read, delete.
//!
//! Chapter 7 (`docs/07-mail-relay.md`) walks through them; chapter 11
//! (`docs/11-filtering-spam.md`) through the three filters.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

mod address;
mod bayes;
mod bounce;
mod data;
mod dedup;
mod draft;
mod forward;
mod greet;
mod greylist;
mod greylist_log;
mod message;
mod pop3;
mod queue;
mod score;
mod smtp;
mod spam_headers;
mod spam_rules;
mod spool;

use netlessons::auth::{self, LoginThrottle, Users, new_secret};
use netlessons::cli::{Command, Matches};
use netlessons::server::{Server, ServerConfig, reachable};
use netlessons::sha256::constant_time_eq;
use netlessons::subnet::Allowlist;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The local mailboxes and their POP3 passwords.
///
/// A mailbox name is a user name from the users file in lower case. The
/// mailbox `postmaster` always exists (RFC 5321 §4.5.1: every mail domain
/// must accept mail for it), even with no password to read it.
pub struct Mailboxes {
    passwords: BTreeMap<String, String>,
}

impl fmt::Debug for Mailboxes {
    /// Names only: passwords never end up in a log by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.passwords.keys()).finish()
    }
}

impl Mailboxes {
    /// The mailboxes of a users file.
    pub fn from_users(users: &Users) -> Result<Mailboxes, String> {
        let mut passwords = BTreeMap::new();
        for name in users.names() {
            let Some(mailbox) = address::mailbox_name(name) else {
                return Err(format!(
                    "user name {name:?} cannot be a mailbox (it must not start with '.')"
                ));
            };
            let secret = users.secret(name).unwrap_or_default().to_string();
            if passwords.insert(mailbox.clone(), secret).is_some() {
                return Err(format!(
                    "two users share the mailbox {mailbox:?} (names are compared in lower case)"
                ));
            }
        }
        Ok(Mailboxes { passwords })
    }

    /// Does mail for `mailbox` (lower case) have a place to go?
    pub fn exists(&self, mailbox: &str) -> bool {
        mailbox == "postmaster" || self.passwords.contains_key(mailbox)
    }

    /// Is `password` right for `user`? Compared in constant time, so the
    /// time taken does not tell a guesser how many characters were right.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        match self.passwords.get(user) {
            Some(secret) => constant_time_eq(secret.as_bytes(), password.as_bytes()),
            None => false,
        }
    }
}

/// The command line, in three groups: where the mail goes (here), the
/// spam filters ([`spam_options`]), and who may connect and for how long
/// ([`connection_options`]); then the hidden knobs the tests turn.
fn command() -> Command {
    let command = Command::new(
        "04_mail_relay",
        "An email-style relay: takes mail over SMTP, stores it in Maildir folders, \
         forwards mail for other domains, and serves mailboxes over POP3.",
    )
    .opt("--smtp-addr", "HOST:PORT", "where to listen for SMTP (port 0: any free port)", Some("127.0.0.1:2525"))
    .alias("--addr", "--smtp-addr")
    .opt("--pop3-addr", "HOST:PORT", "where to listen for POP3 (port 0: any free port)", Some("127.0.0.1:1110"))
    .opt("--domain", "D[,D...]", "the mail domains delivered here", Some("example.test"))
    .opt("--spool", "DIR", "where mailboxes and the relay queue live", Some("./mail-spool"))
    .opt(
        "--users",
        "FILE",
        "name:password lines: the local mailboxes and their POP3 passwords \
         (default: demo mailboxes alice and bob with new random passwords)",
        None,
    )
    .opt(
        "--relay-allow",
        "CIDR[,CIDR...]",
        "clients that may send mail to other domains through us",
        Some("127.0.0.0/8,::1/128"),
    )
    .opt(
        "--next-hop",
        "HOST:PORT",
        "the SMTP server that takes mail for other domains (default: none, such mail is refused)",
        None,
    )
    .opt("--max-size", "BYTES", "the largest message accepted", Some("10485760"))
    .opt(
        "--max-queue-age",
        "SECS",
        "give up on relayed mail the next hop still refuses after SECS seconds, and return it to its sender",
        Some("432000"),
    )
    .opt(
        "--dedup-window",
        "SECS",
        "a message with the Message-ID and envelope of one stored in the last SECS seconds \
         is answered 250 and not stored again (0: off)",
        Some("3600"),
    );
    let command = connection_options(spam_options(command));
    test_knobs(command).after_help(
        "Try it (the relay prints the demo passwords on stderr):\n  \
         python3 -c 'import smtplib; smtplib.SMTP(\"127.0.0.1\", 2525).sendmail(\"a@example.test\", [\"bob@example.test\"], \"Subject: hi\\r\\n\\r\\nhello\")'\n  \
         curl pop3://bob:PASSWORD@127.0.0.1:1110/1\n\n\
         Mail for another domain is relayed only from --relay-allow clients, and only with --next-hop.",
    )
}

/// The options of the three spam filters (chapter 11).
fn spam_options(command: Command) -> Command {
    command
        .opt(
            "--greet-wait",
            "SECS",
            "clients outside --relay-allow wait this long for the greeting; \
             one that talks first gets 521 (0: off)",
            Some("1"),
        )
        .opt(
            "--greylist",
            "SECS",
            "a client outside --relay-allow trying a new sender and recipient \
             gets 451 and must retry after SECS seconds (0: off)",
            Some("300"),
        )
        .opt(
            "--spam-rules",
            "FILE",
            "more scoring rules, one a line: NAME SCORE PART TEXT",
            None,
        )
        .opt(
            "--bayes",
            "DIR",
            "learn a naive Bayes filter from DIR/spam/ and DIR/ham/ (one message a file)",
            None,
        )
        .opt(
            "--spam-threshold",
            "SCORE",
            "mail scoring this much or more is spam, delivered to the .Junk folder",
            Some("5.0"),
        )
}

/// Who may connect, how many at once, for how long: every server's options.
fn connection_options(command: Command) -> Command {
    command
        .opt(
            "--allow",
            "CIDR[,CIDR...]",
            "who may connect at all (default: the local networks only)",
            None,
        )
        .opt(
            "--max-conns",
            "N",
            "at most N clients at once on each listener; more are refused",
            None,
        )
        .opt(
            "--idle-timeout",
            "SECS",
            "drop an SMTP client that sends nothing for SECS seconds (0: never)",
            Some("300"),
        )
        .opt(
            "--pop3-idle-timeout",
            "SECS",
            "the same for POP3 clients (0: never)",
            Some("600"),
        )
        .flag(
            "--trace",
            "show every message that crosses the wire on stderr",
        )
        // How long a line, once started, may take to arrive: the slow-loris
        // defence every server has (the others get it from `server_options`,
        // which this two-listener command does not use). It must be declared:
        // `server_config` reads it, and an undeclared option reads as "never",
        // which would let a client trickling a byte a minute hold a thread forever.
        .hidden_opt("--line-timeout", Some("30"))
}

/// Knobs that make the tests fast; never a way to weaken the defaults.
fn test_knobs(command: Command) -> Command {
    command
        .hidden_opt("--retry-base-ms", Some("1000"))
        .hidden_opt("--retry-max-ms", Some("300000"))
        .hidden_opt("--auth-delay-ms", Some("500"))
        .hidden_opt("--max-queue-age-ms", None)
        .hidden_opt("--free-failures", Some("5"))
        // The spam filters in milliseconds, for tests; when given they win
        // over --greet-wait and --greylist. And the greylist's size cap.
        .hidden_opt("--greet-wait-ms", None)
        .hidden_opt("--greylist-ms", None)
        .hidden_opt("--greylist-max", Some("100000"))
}

fn main() -> ExitCode {
    let args = command().parse_env();
    netlessons::cli::exit_status(run(&args))
}

/// The relay in three steps: open everything that is not the network,
/// bind both listeners (and say where they are), then serve.
fn run(args: &Matches) -> io::Result<()> {
    let relay = open_relay(args)?;
    let (smtp_server, pop3_server) = bind_listeners(&relay)?;
    serve_both(relay, smtp_server, pop3_server)
}

/// What [`open_relay`] makes ready before the relay goes on the network.
struct Relay {
    /// What every SMTP session shares.
    smtp: smtp::SmtpService,
    /// What every POP3 session shares.
    pop3: pop3::Pop3Service,
    /// Where and how the SMTP listener listens.
    smtp_config: ServerConfig,
    /// The same for POP3.
    pop3_config: ServerConfig,
    /// Without `--users`: the demo users, whose passwords are shown.
    demo: Option<Users>,
}

/// Step 1: reads the flags, the users and the spam rules, and opens the
/// spool, the filters and (with `--next-hop`) the queue. A mistake in any
/// of them stops the relay here, before it listens.
fn open_relay(args: &Matches) -> io::Result<Relay> {
    let domains = domains(args);
    let relay_allow: Allowlist = args.value("--relay-allow");
    let max_size: u64 = args.value("--max-size");
    let dedup_window = Duration::from_secs(args.value("--dedup-window"));
    let (users, demo) = load_users(args)?;
    let mailboxes = Arc::new(Mailboxes::from_users(&users).map_err(io::Error::other)?);

    // Rules first, before anything is written: a bad rules file stops the
    // relay here, with the file's name and line number.
    let scorer = spam_scorer(args)?;

    // The disk side: mailboxes, and (with a next hop) the relay queue.
    let spool = Arc::new(spool::Spool::open(Path::new(
        args.get("--spool").unwrap_or("./mail-spool"),
    ))?);
    let filters = spam_filters(args, spool.root(), scorer)?;
    let queue = open_queue(args, &domains, &mailboxes, &spool)?;
    let (smtp_config, pop3_config) = listener_configs(args);

    let smtp = smtp::SmtpService {
        host: domains[0].clone(),
        domains,
        mailboxes: Arc::clone(&mailboxes),
        relay_allow,
        queue,
        spool: Arc::clone(&spool),
        max_size,
        idle_timeout: smtp_config.idle_timeout,
        line_timeout: smtp_config.line_timeout,
        recent: (!dedup_window.is_zero()).then(|| dedup::Recent::new(dedup_window)),
        dedup_window,
        filters,
    };
    let pop3 = pop3::Pop3Service {
        mailboxes,
        spool,
        locked: Mutex::default(),
        logins: LoginThrottle::with_limits(
            Duration::from_millis(args.value("--auth-delay-ms")),
            args.value("--free-failures"),
            auth::FAILURE_WINDOW,
            auth::MAX_ANSWER_WAIT,
        ),
    };
    let demo = demo.then_some(users);
    Ok(Relay {
        smtp,
        pop3,
        smtp_config,
        pop3_config,
        demo,
    })
}

/// Step 2: binds both listeners before printing anything, so that the two
/// `listening on` lines are the first lines on stdout; then tells the
/// operator where the mail goes (and, for the demo, how to try it).
fn bind_listeners(relay: &Relay) -> io::Result<(Server, Server)> {
    let smtp_server = Server::bind(relay.smtp_config.clone())?;
    let pop3_server = Server::bind(relay.pop3_config.clone())?;
    let (smtp_addr, pop3_addr) = (smtp_server.local_addr(), pop3_server.local_addr());
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {smtp_addr} (smtp)")?;
        writeln!(out, "listening on {pop3_addr} (pop3)")?;
        out.flush()?;
    }
    let domains = &relay.smtp.domains;
    netlessons::log!(
        "mail for {} is stored in {} (one Maildir folder per user)",
        domains.join(", "),
        relay.smtp.spool.root().display()
    );
    if let Some(users) = &relay.demo {
        print_demo_help(users, &domains[0], smtp_addr, pop3_addr);
    }
    Ok((smtp_server, pop3_server))
}

/// Step 3: starts the queue's forwarder, then runs each listener on a
/// thread of its own; each client then gets a thread of its own from the
/// runner. Returns when a listener stops.
fn serve_both(relay: Relay, smtp_server: Server, pop3_server: Server) -> io::Result<()> {
    if let Some(queue) = &relay.smtp.queue {
        queue.start()?;
    }
    let (smtp_service, pop3_service) = (Arc::new(relay.smtp), Arc::new(relay.pop3));
    let smtp = thread::Builder::new()
        .name("smtp".to_string())
        .spawn(move || smtp_server.serve(move |conn| smtp::serve(conn, &smtp_service)))?;
    let pop3 = thread::Builder::new()
        .name("pop3".to_string())
        .spawn(move || pop3_server.serve(move |conn| pop3::serve(conn, &pop3_service)))?;
    for listener in [smtp, pop3] {
        listener
            .join()
            .map_err(|_| io::Error::other("a listener thread panicked"))??;
    }
    Ok(())
}

/// `--domain`, in lower case; each must be a domain name.
fn domains(args: &Matches) -> Vec<String> {
    let domains: Vec<String> = args
        .get("--domain")
        .unwrap_or("example.test")
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if domains
        .iter()
        .any(|d| address::parse_address(&format!("x@{d}")).is_err())
    {
        args.fail(
            "--domain takes domain names separated by commas, such as example.test,example.org",
        );
    }
    domains
}

/// Who has a mailbox: the users file, or (true) two demo users with new
/// random passwords.
fn load_users(args: &Matches) -> io::Result<(Users, bool)> {
    if let Some(path) = args.get("--users") {
        return Ok((Users::load(Path::new(path))?, false));
    }
    let mut users = Users::new();
    for name in ["alice", "bob"] {
        users
            .insert(name, &new_secret()?)
            .map_err(io::Error::other)?;
    }
    Ok((users, true))
}

/// The relay queue, with `--next-hop`; without one, `None` (and a warning
/// if an earlier run left mail waiting in it).
fn open_queue(
    args: &Matches,
    domains: &[String],
    mailboxes: &Arc<Mailboxes>,
    spool: &Arc<spool::Spool>,
) -> io::Result<Option<Arc<queue::Queue>>> {
    let Some(hop) = args.get("--next-hop") else {
        warn_about_stranded_queue(spool);
        return Ok(None);
    };
    let backoff = queue::Backoff {
        base: Duration::from_millis(args.value("--retry-base-ms")),
        max: Duration::from_millis(args.value("--retry-max-ms")),
    };
    // The hidden millisecond knob lets a test age a message out quickly.
    let max_age = match args.get("--max-queue-age-ms") {
        Some(_) => Duration::from_millis(args.value("--max-queue-age-ms")),
        None => Duration::from_secs(args.value("--max-queue-age")),
    };
    let config = queue::Config {
        next_hop: hop.to_string(),
        host: domains[0].clone(),
        domains: domains.to_vec(),
        mailboxes: Arc::clone(mailboxes),
        backoff,
        max_age,
        trace: args.flag("--trace"),
    };
    Ok(Some(Arc::new(queue::Queue::open(
        Arc::clone(spool),
        config,
    )?)))
}

/// The two listeners' settings: `--allow`, `--max-conns`, the timeouts and
/// `--trace` for both, each with its own address, refusal and idle timeout.
fn listener_configs(args: &Matches) -> (ServerConfig, ServerConfig) {
    let mut smtp = args.server_config("smtp", Some(b"421 4.7.0 too many connections\r\n"));
    smtp.addr = args
        .get("--smtp-addr")
        .unwrap_or("127.0.0.1:2525")
        .to_string();
    let mut pop3 = smtp.clone();
    pop3.name = "pop3".to_string();
    pop3.addr = args
        .get("--pop3-addr")
        .unwrap_or("127.0.0.1:1110")
        .to_string();
    pop3.idle_timeout = args.seconds("--pop3-idle-timeout");
    pop3.busy_reply = Some(b"-ERR too many connections\r\n".to_vec());
    (smtp, pop3)
}

/// The content filter from the command line (chapter 11). A bad rules
/// file is an error, and the relay does not start: a filter that silently
/// ran without the rules its operator wrote would be worse.
fn spam_scorer(args: &Matches) -> io::Result<score::Scorer> {
    let threshold: spam_rules::Score = args.value("--spam-threshold");
    let rules = match args.get("--spam-rules") {
        Some(path) => spam_rules::load_rules(Path::new(path)).map_err(io::Error::other)?,
        None => Vec::new(),
    };
    let mut scorer = score::Scorer::new(rules, threshold);
    if let Some(dir) = args.get("--bayes") {
        scorer = scorer.with_bayes(bayes::Bayes::train_from(Path::new(dir))?);
    }
    Ok(scorer)
}

/// The three spam filters: `scorer`, and the greeting wait and greylist
/// (whose table lives in the spool) from the command line.
fn spam_filters(
    args: &Matches,
    spool: &Path,
    scorer: score::Scorer,
) -> io::Result<smtp::SpamFilters> {
    let greylist = match millis_or_seconds(args, "--greylist-ms", "--greylist") {
        Some(delay) => {
            let mut config = greylist::Config::with_delay(delay);
            config.capacity = args.value("--greylist-max");
            Some(greylist::Greylist::open(spool, config)?)
        }
        None => None,
    };
    Ok(smtp::SpamFilters {
        greet_wait: millis_or_seconds(args, "--greet-wait-ms", "--greet-wait"),
        greylist,
        scorer,
    })
}

/// A filter's delay: the hidden millisecond knob if given, else the
/// seconds flag; `None` when it is 0 (the filter is off).
fn millis_or_seconds(args: &Matches, ms_flag: &str, secs_flag: &str) -> Option<Duration> {
    let delay = match args.parse_value::<u64>(ms_flag) {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(args.value(secs_flag)),
    };
    (!delay.is_zero()).then_some(delay)
}

/// Without `--users`: show the demo passwords, and exactly what to type.
fn print_demo_help(users: &Users, domain: &str, smtp: SocketAddr, pop3: SocketAddr) {
    let pop3 = reachable(pop3);
    let smtp = reachable(smtp);
    // Built first and written in one call: stderr is unbuffered, so a
    // `writeln!` per piece would reach a reader (a test, a pipe) in pieces.
    let mut text =
        "no --users file: demo mailboxes with new random passwords (they change at every start):\n"
            .to_string();
    for name in users.names() {
        let password = users.secret(name).unwrap_or_default();
        text.push_str(&format!(
            "  {name:<6} password {password}   read: curl pop3://{name}:{password}@{pop3}/1\n"
        ));
    }
    text.push_str(&format!(
        "send bob a message:\n  python3 -c 'import smtplib; smtplib.SMTP(\"{}\", {}).sendmail(\"alice@{domain}\", [\"bob@{domain}\"], \"Subject: hi\\r\\n\\r\\nhello\")'\n",
        smtp.ip(),
        smtp.port()
    ));
    let _ = io::stderr().write_all(text.as_bytes());
}

/// Mail queued by an earlier run with `--next-hop` waits until the relay is
/// started with one again; say so rather than sit on it silently.
fn warn_about_stranded_queue(spool: &spool::Spool) {
    let active = spool.root().join(".queue").join("active");
    let waiting = std::fs::read_dir(active).map_or(0, |entries| entries.count());
    if waiting > 0 {
        netlessons::log!(
            "warning: {waiting} message(s) wait in the relay queue; start with --next-hop to send them"
        );
    }
}
