//! The course points at code by name: files (`src/framing.rs`,
//! `examples/04_mail_relay/smtp.rs`), functions and types
//! (`read_line_limited`, `Room::broadcast`), and the commands that run them
//! (`cargo test --test ex02_chat a_frozen_client`). Code moves and the prose
//! stays behind, so this test reads `README.md` and every `docs/*.md` and
//! checks each such name against the tree. No rendering and no compiling:
//! it scans the text and the Rust sources, so it runs in a moment.
//!
//! What counts as a name, so that the prose stays free to say `echo` or
//! `curl` without a check:
//! - a file: a code span that starts with `src/`, `examples/`, `tests/` or
//!   `docs/` must exist; a bare `name.rs` must exist somewhere in the tree;
//!   an example's name (`02_chat_server`) must be an example;
//! - a path with `::` (`Room::join`, `auth::serve_handshake`,
//!   `netlessons::log!`) must name an item of that type or module: a method
//!   in its `impl` or `trait`, a variant of its `enum`, a field of its
//!   `struct`, or an item of that file;
//! - a call `name()` or `name(args)`, a `CamelCase` type, a `snake_case` name
//!   with an underscore and a `SCREAMING_CASE` constant must be defined
//!   (`fn`, `struct`, `enum`, `trait`, `type`, `const`, `static`, `mod`,
//!   `macro_rules!`) in `src/`, `examples/` or `tests/`; a constant may also
//!   be a rule name the code writes as a string (`"MISSING_DATE"`), an
//!   override variable `NETLESSONS_<EXAMPLE>` must match an example, and a
//!   test filter `exercise_1` must begin the name of a test;
//! - a plain word (`serve`, `join`) is left alone in the chapters, unless
//!   the prose puts it in a file (`` `serve` in `smtp.rs` ``): then that
//!   file must define it, as every name in a row of README's idea map must be
//!   defined in the file the row names;
//! - `cargo run --example NAME` and `cargo test --test NAME FILTER`, in
//!   prose or in a listing, must name a target that exists, and each filter
//!   must select at least one test of it.
//!
//! Names from outside the crate (std, the socket API, other programs and
//! languages) are listed in `EXTERNAL` below, by group.

use super::index::{Index, is_ident, module_of};
use super::{crate_dir, markdown_files, read, shown};

/// Every file or folder that `README.md` and `docs/*.md` name in a code span
/// exists.
#[test]
fn every_file_the_course_names_exists() {
    assert_course_matches(missing_files);
}

/// Every function, type, method and constant that `README.md` and
/// `docs/*.md` name is defined in `src/`, `examples/` or `tests/` (or is
/// listed as std's or another program's).
#[test]
fn every_function_and_type_the_course_names_is_defined() {
    assert_course_matches(missing_names);
}

/// Every name the course says is in a file (`` `serve` in `smtp.rs` ``) is
/// defined in that file, so a function that moves takes its mentions along.
#[test]
fn every_name_said_to_be_in_a_file_is_defined_there() {
    assert_course_matches(misplaced_names);
}

/// Each row of README's "Where to find each idea" names files that exist,
/// and every name in it is defined in the file the row says it is in.
#[test]
fn every_row_of_the_idea_map_names_code_in_its_file() {
    let readme = read(&crate_dir().join("README.md"));
    assert!(!idea_map(&readme).is_empty(), "README.md has no idea map");
    assert_course_matches(|doc, text, index| {
        let exists = |path: &str| crate_dir().join(path).exists();
        match doc {
            "README.md" => idea_map_problems(text, index, &exists),
            _ => Vec::new(),
        }
    });
}

/// Every `cargo run --example NAME` and `cargo test --test NAME FILTER` in
/// the course names a target that exists, and every filter selects a test.
#[test]
fn every_command_the_course_runs_names_a_target_that_exists() {
    assert_course_matches(wrong_targets);
}

/// The checker can fail: a name that is nowhere, a method under the wrong
/// type and a misspelt call are each reported with the doc's file and line,
/// while std's names, fields, variants and module paths pass.
#[test]
fn the_checker_reports_each_wrong_name_with_its_file_and_line() {
    let index = toy_index();
    let doc = "Read `Room::join`, `deliver()` and `Outgoing::Close`.\n\
               \n\
               Then `Room::leave`, `delivr()` and `chat::deliver` and\n\
               `TcpStream::connect`, `Room::clients`, `Room`, `QUEUE_LINES`,\n\
               `Outbox` and `echo`.\n";
    assert_eq!(
        missing_names("docs/x.md", doc, &index),
        [
            "docs/x.md:3: `Room::leave` is defined nowhere in src/, examples/ or tests/",
            "docs/x.md:3: `delivr()` is defined nowhere in src/, examples/ or tests/",
            "docs/x.md:5: `Outbox` is defined nowhere in src/, examples/ or tests/",
        ]
    );
}

/// In prose, `` `name` in `file` `` is checked against that file, over a
/// line break too, and a bare `room.rs` against any file of that name.
#[test]
fn the_checker_wants_a_name_said_to_be_in_a_file_there() {
    let index = toy_index();
    let doc = "Read `deliver` in `room.rs`, `join` in `room.rs` and\n\
               `Room::join` in\n`examples/chat/main.rs`, then `echo` in `src/`.\n";
    assert_eq!(
        misplaced_names("docs/x.md", doc, &index),
        [
            "docs/x.md:1: `deliver` is not defined in room.rs",
            "docs/x.md:2: `Room::join` is not defined in examples/chat/main.rs",
            "docs/x.md:3: `echo` is not defined in src/",
        ]
    );
}

/// In the idea map, a name must be in the file its row names: one that is
/// defined only in another file is reported, and a bare `name.rs` is read
/// in the folder of the row's last path.
#[test]
fn the_idea_map_checker_wants_each_name_in_its_rows_file() {
    let index = toy_index();
    let readme = "## Where to find each idea\n\n| idea | where |\n|---|---|\n\
                  | chat | `Room` and `join` in `examples/chat/room.rs`; `deliver` in `main.rs` |\n\
                  | typo | `deliver` in `examples/chat/room.rs`; `Room` in `nowhere.rs` |\n\n## Next\n";
    let exists = |path: &str| index.file_exists(path);
    assert_eq!(
        idea_map_problems(readme, &index, &exists),
        [
            "README.md:6: `deliver` is not defined in examples/chat/room.rs",
            "README.md:6: `nowhere.rs` (examples/chat/nowhere.rs) does not exist",
        ]
    );
}

/// A command's target must exist and its filter must select a test, with
/// learners' own programs (`my_chat`) and flags left alone; an example named
/// in a table must exist too.
#[test]
fn the_command_checker_wants_real_targets_and_filters() {
    let mut index = toy_index();
    index.add(
        "tests/ex02_chat.rs",
        "#[test]\nfn a_frozen_client_is_dropped() {}\n",
    );
    let doc = "Run `cargo test --test ex02_chat a_frozen_client`, then\n\
               ```sh\ncargo run --example chat -- --trace\n\
               cargo test --test ex02_chat -- --nocapture a_thawed\n\
               cargo build --example my_chat && cargo run --example 02_chat\n```\n";
    assert_eq!(
        wrong_targets("docs/x.md", doc, &index),
        [
            "docs/x.md:4: `cargo test --test ex02_chat`: no test's name contains `a_thawed`",
            "docs/x.md:5: `--example 02_chat`: there is no examples/02_chat.rs nor examples/02_chat/main.rs",
        ]
    );
    index.add("examples/02_chat_server/main.rs", "fn main() {}\n");
    let table = "| 04 | `02_chat_server`, `02_chat_client --trace` |\n";
    assert_eq!(
        missing_files("docs/x.md", table, &index),
        [
            "docs/x.md:1: `--example 02_chat_client`: there is no examples/02_chat_client.rs nor examples/02_chat_client/main.rs"
        ]
    );
}

// ---------------------------------------------------------------- helpers

/// Runs one check over every doc of the course against the tree, and fails
/// with every problem it finds, each as `doc:line: what is wrong`.
fn assert_course_matches(check: impl Fn(&str, &str, &Index) -> Vec<String>) {
    let index = Index::of_tree();
    let mut problems = Vec::new();
    for (doc, text) in course() {
        problems.extend(check(&doc, &text, &index));
    }
    assert!(problems.is_empty(), "{}", report(&problems));
}

/// Names the course may mention that are not the crate's, so nothing here
/// can check them. A name passes if its whole path or its first segment is
/// listed (`TcpStream` lets `TcpStream::peek` pass). Add a name here only
/// when it is truly someone else's; a name of ours that moved is fixed in
/// the doc.
#[rustfmt::skip]
const EXTERNAL: &[&str] = &[
    // std's modules and types, whose functions and methods the chapters name
    "std", "io", "fs", "thread", "mpsc", "process", "File", "TcpStream", "TcpListener",
    "UdpSocket", "Ipv4Addr", "Ipv6Addr", "SocketAddr", "Shutdown", "Instant", "Duration",
    "Arc", "Mutex", "Condvar", "BufRead", "BufReader", "BufWriter", "Cursor", "Read", "Write",
    "Drop", "Vec", "String", "SyncSender", "ErrorKind", "Ok", "Err", "Some", "None",
    // std's methods and macros, called on a value or bare
    "read_exact", "read_to_end", "write_all", "sync_all", "try_send", "recv_from", "send_to",
    "to_be_bytes", "to_ipv4", "to_ipv4_mapped", "to_canonical", "set_nonblocking",
    "shutdown", "println", "eprintln", "format",
    // io::ErrorKind's variants, which the error sections name
    "ConnectionRefused", "HostUnreachable", "NetworkUnreachable", "InvalidData",
    "InvalidInput", "TimedOut", "UnexpectedEof", "WouldBlock",
    // the socket API, system calls and kernel names, as C and Linux spell them
    "bind", "listen", "accept", "connect", "socket", "recvfrom", "sendto", "openat2",
    "copy_file_range", "set_robust_list", "rt_sigprocmask", "sched_getaffinity", "io_uring",
    "O_NOFOLLOW", "RESOLVE_BENEATH", "TCP_NODELAY", "SO_RCVBUF", "TIME_WAIT", "pid_max",
    "VmRSS", "VmHWM",
    // HTTP's header names
    "Date", "ETag", "Location", "Range",
    // other programs' settings, other languages' libraries, Cargo's names
    "client_body_timeout", "client_header_timeout", "mod_reqtimeout", "request_queue_size",
    "ip_network", "ipv4_mapped", "follow_symlinks", "smtplib", "poplib", "socketserver",
    "sendall", "recv", "CARGO_TARGET_DIR", "assert_cmd",
    // functions of the chapters' own Python listings, and mini-redis's frame
    "recv_exact", "Frame",
    // the load tester's report fields: output, not code
    "p50_ms", "p90_ms", "p99_ms", "mb_per_s", "hash_only_mb_per_s", "server_rss_mib",
    "server_hwm_mib", "server_cpu_us_per_req", "hold_rss_mib", "hold_threads",
    // a chat nickname
    "Ann",
];

/// What a code span points at.
#[derive(Debug, PartialEq)]
enum Mention {
    /// A file or folder of the repository, as written.
    File(String),
    /// A name that must be defined (`Room::join`, `deliver`, `QUEUE_LINES`).
    Name(String),
    /// A plain word, checked only in the idea map.
    Word(String),
    /// An example by its name (`02_chat_server`, also with its arguments).
    Example(String),
}

/// The files and examples one doc names that are not there. A bare
/// `name.rs` may be anywhere in the tree (the prose says which folder).
fn missing_files(doc: &str, text: &str, index: &Index) -> Vec<String> {
    let mut missing = Vec::new();
    for (line, span) in code_spans(text) {
        let path = match mention(&span) {
            Some(Mention::File(path)) => path,
            Some(Mention::Example(name)) => {
                missing.extend(example_problem(&name, index).map(|p| format!("{doc}:{line}: {p}")));
                continue;
            }
            _ => continue,
        };
        let found = if path.contains('/') {
            crate_dir().join(&path).exists()
        } else {
            index.has_file_named(&path)
        };
        if !found {
            missing.push(format!("{doc}:{line}: `{span}` is not a file of the tree"));
        }
    }
    missing
}

/// The missing names in one doc, each as `doc:line: message`.
fn missing_names(doc: &str, text: &str, index: &Index) -> Vec<String> {
    let mut missing = Vec::new();
    for (line, span) in code_spans(text) {
        let Some(Mention::Name(name)) = mention(&span) else {
            continue;
        };
        if !external(&name) && !known(&name, index) {
            missing.push(format!(
                "{doc}:{line}: `{span}` is defined nowhere in src/, examples/ or tests/"
            ));
        }
    }
    missing
}

/// The names one doc says are in a file (`` `serve` in `smtp.rs` ``) that
/// the file does not define. A bare `name.rs` may be any file of that name.
fn misplaced_names(doc: &str, text: &str, index: &Index) -> Vec<String> {
    let mut wrong = Vec::new();
    let spans = code_spans_and_gaps(text);
    for pair in spans.windows(2) {
        let [(line, name, _), (_, file, gap)] = pair else {
            continue;
        };
        let (Some(Mention::Name(name) | Mention::Word(name)), Some(Mention::File(file))) =
            (mention(name), mention(file))
        else {
            continue;
        };
        if gap.trim() != "in" || external(&name) {
            continue;
        }
        let files: Vec<&String> = if file.contains('/') {
            vec![&file]
        } else {
            index.files_named(&file)
        };
        if !files.iter().any(|file| index.defined_in(file, &name)) {
            wrong.push(format!("{doc}:{line}: `{name}` is not defined in {file}"));
        }
    }
    wrong
}

/// A name is known if defined; a constant also if the code quotes it; a
/// test filter such as `exercise_1` if some test's name starts with it.
fn known(name: &str, index: &Index) -> bool {
    if index.defines(name) {
        return true;
    }
    if is_screaming(name) && index.strings.contains(name) {
        return true;
    }
    // `NETLESSONS_02_CHAT_SERVER` overrides `02_chat_server`: the tests make
    // the variable's name from the example's (tests/override.rs checks them).
    if let Some(example) = name.strip_prefix("NETLESSONS_") {
        let example = example.to_lowercase();
        if example_problem(&example, index).is_none() && example.starts_with(char::is_numeric) {
            return true;
        }
    }
    name.starts_with("exercise_") && index.names.iter().any(|n| n.starts_with(name))
}

/// The problems of README's idea map. In each row, names come before the
/// file that holds them (`` `Room` and `join` in `examples/02_chat.rs` ``);
/// a bare `name.rs` is in the folder of the row's last path, and names after
/// the last path (`every `Connection` traces…`) need only be defined.
fn idea_map_problems(readme: &str, index: &Index, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut wrong = Vec::new();
    for (line, cell) in idea_map(readme) {
        let mut folder = String::new();
        let mut pending: Vec<String> = Vec::new();
        for (_, span) in code_spans(&cell) {
            let name = match mention(&span) {
                Some(Mention::File(path)) => {
                    let path = if path.contains('/') {
                        path
                    } else {
                        format!("{folder}{path}")
                    };
                    if !exists(&path) {
                        wrong.push(format!(
                            "README.md:{line}: `{span}` ({path}) does not exist"
                        ));
                        pending.clear();
                    }
                    for name in pending.drain(..) {
                        if !index.defined_in(&path, &name) {
                            wrong.push(format!(
                                "README.md:{line}: `{name}` is not defined in {path}"
                            ));
                        }
                    }
                    let cut = path.trim_end_matches('/').rfind('/').map_or(0, |i| i + 1);
                    folder = path[..cut].to_string();
                    continue;
                }
                Some(Mention::Name(name) | Mention::Word(name)) => name,
                Some(Mention::Example(_)) | None => continue,
            };
            if !external(&name) {
                pending.push(name);
            }
        }
        for name in pending.into_iter().filter(|name| !known(name, index)) {
            wrong.push(format!("README.md:{line}: `{name}` is defined nowhere"));
        }
    }
    wrong
}

/// The "where" cell of each row of README's idea map, with its line.
fn idea_map(readme: &str) -> Vec<(usize, String)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for (i, line) in readme.lines().enumerate() {
        if line.starts_with("## ") {
            inside = line == "## Where to find each idea";
        } else if inside && line.starts_with("| ") && !line.starts_with("| idea |") {
            let cells: Vec<&str> = line.split(" | ").collect();
            if let Some(cell) = cells.get(1) {
                rows.push((i + 1, cell.trim_end_matches(" |").to_string()));
            }
        }
    }
    rows
}

/// The wrong targets and filters of the `cargo` commands in one doc.
fn wrong_targets(doc: &str, text: &str, index: &Index) -> Vec<String> {
    let mut wrong = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for command in line.split("cargo ").skip(1) {
            let command = command.split(['`', '|', ')', '&']).next().unwrap_or("");
            let words: Vec<&str> = command.split_whitespace().collect();
            for (flag, target, rest) in targets(&words) {
                let problem = if flag == "--example" {
                    example_problem(target, index)
                } else {
                    test_problem(target, rest, index)
                };
                if let Some(problem) = problem {
                    wrong.push(format!("{doc}:{}: {problem}", i + 1));
                }
            }
        }
    }
    wrong
}

/// Each `--example NAME` and `--test NAME` in a command, with what follows.
fn targets<'a>(words: &'a [&'a str]) -> Vec<(&'a str, &'a str, &'a [&'a str])> {
    let mut found = Vec::new();
    for (i, pair) in words.windows(2).enumerate() {
        if matches!(pair[0], "--example" | "--test") && !pair[1].starts_with('-') {
            let rest = if pair[0] == "--test" && words[0] == "test" {
                &words[i + 2..]
            } else {
                &[][..]
            };
            found.push((pair[0], pair[1], rest));
        }
    }
    found
}

/// A learner's own example (`my_chat`) is theirs to make.
fn example_problem(name: &str, index: &Index) -> Option<String> {
    let file = format!("examples/{name}.rs");
    let main = format!("examples/{name}/main.rs");
    if name.starts_with("my_") || index.file_exists(&file) || index.file_exists(&main) {
        return None;
    }
    Some(format!("`--example {name}`: there is no {file} nor {main}"))
}

/// Each filter after the target (before or after `--`) must be part of the
/// name of one of the target's tests, as `cargo test` matches them:
/// `module::test_name` for a test in a module of a folder target.
fn test_problem(name: &str, filters: &[&str], index: &Index) -> Option<String> {
    let file = format!("tests/{name}.rs");
    let folder = format!("tests/{name}/");
    let tests: Vec<String> = index
        .by_file
        .iter()
        .filter(|(path, _)| **path == file || path.starts_with(&folder))
        .flat_map(|(path, names)| {
            let module = module_of(path);
            names.iter().map(move |n| format!("{module}::{n}"))
        })
        .collect();
    if tests.is_empty() {
        return Some(format!(
            "`--test {name}`: there is no {file} nor {folder}main.rs"
        ));
    }
    let filters = filters
        .iter()
        .filter(|w| !w.starts_with('-') && !w.contains('='));
    for filter in filters {
        if !tests.iter().any(|t| t.contains(filter)) {
            return Some(format!(
                "`cargo test --test {name}`: no test's name contains `{filter}`"
            ));
        }
    }
    None
}

/// What a code span points at, if anything.
fn mention(span: &str) -> Option<Mention> {
    let first = span.split_whitespace().next()?;
    let rooted = ["src/", "examples/", "tests/", "docs/"]
        .iter()
        .any(|root| first.starts_with(root));
    let bare_rs = first == span && first.ends_with(".rs") && is_ident(&first[..first.len() - 3]);
    if rooted || bare_rs {
        return Some(Mention::File(first.to_string()));
    }
    let bytes = first.as_bytes();
    let numbered = bytes.len() > 3 && bytes[..2].iter().all(u8::is_ascii_digit);
    if numbered && bytes[2] == b'_' && is_ident(&first[3..]) {
        return Some(Mention::Example(first.to_string()));
    }
    let (path, call) = match span.split_once('(') {
        Some((path, _)) if span.ends_with(')') => (path, true),
        Some(_) => return None,
        None => (span, false),
    };
    let path = path.strip_suffix('!').unwrap_or(path);
    if !path.split("::").all(is_ident) || path.starts_with('_') || path.ends_with('_') {
        return None;
    }
    let upper = path.starts_with(|c: char| c.is_ascii_uppercase());
    let camel = upper && path.contains(|c: char| c.is_ascii_lowercase()) && !path.contains('_');
    let snake = !upper && path.contains('_') && !path.contains(|c: char| c.is_ascii_uppercase());
    if path.contains("::") || call || camel || snake || is_screaming(path) {
        Some(Mention::Name(path.to_string()))
    } else {
        Some(Mention::Word(path.to_string()))
    }
}

fn external(name: &str) -> bool {
    let first = name.split("::").next().unwrap_or(name);
    EXTERNAL.contains(&name) || EXTERNAL.contains(&first)
}

fn is_screaming(word: &str) -> bool {
    word.contains('_') && !word.contains(|c: char| c.is_ascii_lowercase())
}

/// The inline code spans of a Markdown text, each with the line it starts
/// on, outside fenced blocks. A span may run over a line break (Markdown
/// reads it as a space), but not over a blank line.
fn code_spans(text: &str) -> Vec<(usize, String)> {
    code_spans_and_gaps(text)
        .into_iter()
        .map(|(line, span, _)| (line, span))
        .collect()
}

/// The code spans, each with the prose between it and the span before it
/// in the same paragraph (` in ` in `` `serve` in `smtp.rs` ``).
fn code_spans_and_gaps(text: &str) -> Vec<(usize, String, String)> {
    let mut spans = Vec::new();
    let mut open: Option<(usize, String)> = None;
    let mut gap = String::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") || fenced || line.trim().is_empty() {
            fenced ^= line.trim_start().starts_with("```");
            (open, gap) = (None, String::new());
            continue;
        }
        match open.as_mut() {
            Some((_, span)) => span.push(' '),
            None => gap.push(' '),
        }
        for c in line.chars() {
            match (open.as_mut(), c) {
                (None, '`') => open = Some((i + 1, String::new())),
                (Some(_), '`') => {
                    let (line, span) = open.take().unwrap();
                    spans.push((line, span.trim().to_string(), std::mem::take(&mut gap)));
                }
                (Some((_, span)), c) => span.push(c),
                (None, c) => gap.push(c),
            }
        }
    }
    spans
}

/// A small tree for the checker's own tests.
fn toy_index() -> Index {
    let mut index = Index::default();
    index.add(
        "examples/chat/room.rs",
        "pub struct Room {\n    clients: u32,\n}\n\nimpl Room {\n    pub fn join(&self) {}\n}\n",
    );
    index.add(
        "examples/chat/main.rs",
        "const QUEUE_LINES: usize = 4;\n\nenum Outgoing {\n    Close,\n}\n\nfn deliver() {}\n",
    );
    index
}

fn report(problems: &[String]) -> String {
    format!(
        "{} name(s) in the course do not match the code (fix the doc, or the \
         code that moved; std's and other programs' names go in EXTERNAL in \
         tests/doc_names.rs):\n{}",
        problems.len(),
        problems.join("\n")
    )
}

/// `README.md` and every `docs/*.md`, by the name they are shown as.
fn course() -> Vec<(String, String)> {
    markdown_files()
        .iter()
        .map(|f| (shown(f), read(f)))
        .collect()
}
