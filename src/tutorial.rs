//! The course, chapter by chapter.
//!
//! These are the Markdown files in `docs/`, included here so that `cargo doc`
//! renders them and `cargo test` compiles and runs every Rust snippet in them:
//! the text cannot drift away from the code. Read them in order.

// Links between chapters. A chapter links to another as `[chapter 2][02-echo]`
// and defines `[02-echo]: 02-echo.md` at its end, which is what a reader of the
// file on a repository page needs. In Markdown the first definition of a label
// wins, so each chapter here is preceded by these definitions, and the same
// link leads to the chapter's module in the generated docs. `tests/doc_links/`
// checks that every link works both ways.
macro_rules! chapter_links {
    () => {
        r"
[01-client-server]: crate::tutorial::ch01_client_server
[02-echo]: crate::tutorial::ch02_echo
[03-framing]: crate::tutorial::ch03_framing
[04-chat]: crate::tutorial::ch04_chat
[05-file-transfer]: crate::tutorial::ch05_file_transfer
[06-who-may-connect]: crate::tutorial::ch06_who_may_connect
[07-mail-relay]: crate::tutorial::ch07_mail_relay
[08-measuring]: crate::tutorial::ch08_measuring
[08-measuring-web]: crate::tutorial::ch08_measuring#the-web-server
[09-two-computers]: crate::tutorial::ch09_two_computers
[10-web-server]: crate::tutorial::ch10_web_server
[11-filtering-spam]: crate::tutorial::ch11_filtering_spam
[12-datagrams]: crate::tutorial::ch12_datagrams
"
    };
}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/README.md")]
// The chapters' modules once more, as a plain list for readers of these docs.
#[doc = r"
## The chapters in these docs

1. [The client/server model](crate::tutorial::ch01_client_server)
2. [Echo: your first server and client](crate::tutorial::ch02_echo)
3. [Framing](crate::tutorial::ch03_framing)
4. [Many clients: a chat server](crate::tutorial::ch04_chat)
5. [File transfer](crate::tutorial::ch05_file_transfer)
6. [Who may connect](crate::tutorial::ch06_who_may_connect)
7. [An email-style relay](crate::tutorial::ch07_mail_relay)
8. [Measuring and limits](crate::tutorial::ch08_measuring)
9. [Connecting two computers](crate::tutorial::ch09_two_computers)
10. [A web server](crate::tutorial::ch10_web_server)
11. [Filtering spam](crate::tutorial::ch11_filtering_spam)
12. [Datagrams: a speed camera over UDP](crate::tutorial::ch12_datagrams)
"]
pub mod index {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/01-client-server.md")]
pub mod ch01_client_server {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/02-echo.md")]
pub mod ch02_echo {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/03-framing.md")]
pub mod ch03_framing {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/04-chat.md")]
pub mod ch04_chat {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/05-file-transfer.md")]
pub mod ch05_file_transfer {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/06-who-may-connect.md")]
pub mod ch06_who_may_connect {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/07-mail-relay.md")]
pub mod ch07_mail_relay {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/08-measuring.md")]
pub mod ch08_measuring {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/09-two-computers.md")]
pub mod ch09_two_computers {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/10-web-server.md")]
pub mod ch10_web_server {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/11-filtering-spam.md")]
pub mod ch11_filtering_spam {}

#[doc = chapter_links!()]
#[doc = include_str!("../docs/12-datagrams.md")]
pub mod ch12_datagrams {}
