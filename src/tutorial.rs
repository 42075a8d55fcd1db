//! The course, chapter by chapter.
//!
//! These are the Markdown files in `docs/`, included here so that `cargo doc`
//! renders them and `cargo test` compiles and runs every Rust snippet in them:
//! the text cannot drift away from the code. Read them in order.

#[doc = include_str!("../docs/README.md")]
// The links in docs/README.md lead to the Markdown files, which is what a
// reader on GitHub needs; in these generated docs, this list leads to the
// chapters' modules instead.
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
"]
pub mod index {}

#[doc = include_str!("../docs/01-client-server.md")]
pub mod ch01_client_server {}

#[doc = include_str!("../docs/02-echo.md")]
pub mod ch02_echo {}

#[doc = include_str!("../docs/03-framing.md")]
pub mod ch03_framing {}

#[doc = include_str!("../docs/04-chat.md")]
pub mod ch04_chat {}

#[doc = include_str!("../docs/05-file-transfer.md")]
pub mod ch05_file_transfer {}

#[doc = include_str!("../docs/06-who-may-connect.md")]
pub mod ch06_who_may_connect {}

#[doc = include_str!("../docs/07-mail-relay.md")]
pub mod ch07_mail_relay {}

#[doc = include_str!("../docs/08-measuring.md")]
pub mod ch08_measuring {}

#[doc = include_str!("../docs/09-two-computers.md")]
pub mod ch09_two_computers {}

#[doc = include_str!("../docs/10-web-server.md")]
pub mod ch10_web_server {}

#[doc = include_str!("../docs/11-filtering-spam.md")]
pub mod ch11_filtering_spam {}
