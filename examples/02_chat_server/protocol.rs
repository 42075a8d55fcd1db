//! The protocol as pure functions, with no sockets: easy to test, easy to
//! extend (chapter 4's exercises add commands here and in `answer`).

/// Names are 1 to 16 letters, digits, `_` or `-`.
pub const MAX_NAME: usize = 16;

/// One line from a client, understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// An empty (or all-blank) line: ignored.
    Nothing,
    /// A chat line for everyone else.
    Say(&'a str),
    /// `/me waves`: an action, shown to others as `* NAME waves`.
    Me(&'a str),
    /// `/nick NAME`.
    Nick(&'a str),
    /// `/who`.
    Who,
    /// `/msg NAME text`.
    Msg {
        /// Who it is for.
        to: &'a str,
        /// What it says.
        text: &'a str,
    },
    /// `/topic TEXT` sets the topic; `/topic` alone asks for it.
    Topic(Option<&'a str>),
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// A known command used wrongly: how to use it.
    Usage(&'static str),
    /// A `/command` we do not know (the word, slash included).
    Unknown(&'a str),
}

/// Reads a line as a request. Pure: easy to test, easy to extend.
pub fn parse_request(line: &str) -> Request<'_> {
    if line.trim().is_empty() {
        return Request::Nothing;
    }
    if !line.starts_with('/') {
        return Request::Say(line);
    }
    let (command, args) = match line.split_once(char::is_whitespace) {
        Some((command, args)) => (command, args.trim()),
        None => (line, ""),
    };
    match (command, args) {
        ("/nick", "") => Request::Usage("/nick NAME"),
        ("/nick", name) => Request::Nick(name),
        ("/who", _) => Request::Who,
        ("/msg", args) => match args.split_once(char::is_whitespace) {
            Some((to, text)) => Request::Msg {
                to,
                text: text.trim_start(),
            },
            None => Request::Usage("/msg NAME text"),
        },
        ("/me", "") => Request::Usage("/me text"),
        ("/me", text) => Request::Me(text),
        ("/topic", "") => Request::Topic(None),
        ("/topic", text) => Request::Topic(Some(text)),
        ("/help", _) => Request::Help,
        ("/quit", _) => Request::Quit,
        (command, _) => Request::Unknown(command),
    }
}

/// Is `name` acceptable: 1 to 16 of `A-Z a-z 0-9 _ -`?
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Replaces control characters (all but tab) with `�`.
///
/// Terminals obey "escape sequences": bytes starting with ESC (0x1b) that
/// move the cursor, change colours or clear the screen. Passed on unchanged,
/// one client could scribble over everyone else's terminal. (A real server
/// would also think about right-to-left overrides and look-alike letters.)
pub fn neutralise(line: String) -> String {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if line.chars().any(unsafe_char) {
        line.chars()
            .map(|c| if unsafe_char(c) { '\u{fffd}' } else { c })
            .collect()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain text is said; blank lines are nothing; commands split at the first space.
    #[test]
    fn parses_requests() {
        assert_eq!(parse_request("hello /nick"), Request::Say("hello /nick"));
        assert_eq!(parse_request(""), Request::Nothing);
        assert_eq!(parse_request("  \t"), Request::Nothing);
        assert_eq!(parse_request("/nick bob"), Request::Nick("bob"));
        assert_eq!(parse_request("/nick"), Request::Usage("/nick NAME"));
        assert_eq!(parse_request("/nick  bob  "), Request::Nick("bob"));
        assert_eq!(parse_request("/who"), Request::Who);
        assert_eq!(
            parse_request("/msg bob  hi  there"),
            Request::Msg {
                to: "bob",
                text: "hi  there"
            }
        );
        assert_eq!(parse_request("/msg bob"), Request::Usage("/msg NAME text"));
        assert_eq!(parse_request("/me waves"), Request::Me("waves"));
        assert_eq!(parse_request("/me"), Request::Usage("/me text"));
        assert_eq!(parse_request("/topic"), Request::Topic(None));
        assert_eq!(parse_request("/topic Rust"), Request::Topic(Some("Rust")));
        assert_eq!(parse_request("/quit now"), Request::Quit);
        assert_eq!(parse_request("/dance a jig"), Request::Unknown("/dance"));
        assert_eq!(parse_request("/"), Request::Unknown("/"));
    }

    /// Names: 1 to 16 of letters, digits, `_` and `-`, nothing else.
    #[test]
    fn validates_names() {
        for good in ["a", "Bob", "x_y-z", "0123456789abcdef"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "two words", "0123456789abcdefg", "é", "a.b", "a\u{1b}"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    /// Escape sequences are defused; ordinary text, tabs and accents pass.
    #[test]
    fn neutralises_control_characters() {
        assert_eq!(neutralise("héllo\tthere".into()), "héllo\tthere");
        assert_eq!(
            neutralise("\u{1b}[2Jboo\u{7}".into()),
            "\u{fffd}[2Jboo\u{fffd}"
        );
        assert_eq!(neutralise("a\u{9b}b".into()), "a\u{fffd}b");
    }
}
