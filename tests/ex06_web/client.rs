//! The small curl (`06_web_client`): against the reference server, and
//! against stand-in servers in this file that send what the reference never
//! does (chunked bodies, bodies ended by a close, endless redirects,
//! garbage). Point it at your own client:
//! `NETLESSONS_06_WEB_CLIENT="python3 my_curl.py" cargo test --test ex06_web client_`.

use super::{CLIENT, hello, start};
use crate::common::{self, temp_dir};
use assert_cmd::Command as AssertCommand;
use predicates::prelude::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

/// Runs the client with `args`; a hung client fails the test after a minute.
fn client(args: &[&str]) -> assert_cmd::assert::Assert {
    AssertCommand::from_std(common::command(CLIENT))
        .args(args)
        .timeout(Duration::from_secs(60))
        .assert()
}

/// A stand-in server: answers each of the next `replies.len()` connections
/// with one canned reply (after reading the request head), then stops.
fn stand_in(replies: Vec<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for reply in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = (&stream).write_all(&reply);
        }
    });
    addr
}

/// The body goes to stdout exactly, the status line and headers to stderr.
#[test]
fn client_prints_the_body_on_stdout() {
    let (server, _root) = start("client_get", &[]);
    client(&[&format!("http://{}/hello.txt", server.addr())])
        .success()
        .stdout(predicate::eq(hello()))
        .stderr(
            predicate::str::contains("200 OK")
                .and(predicate::str::contains("Content-Length: 1000")),
        );
}

/// `-I` sends HEAD: headers on stderr, nothing on stdout.
#[test]
fn client_head_request() {
    let (server, _root) = start("client_head", &[]);
    client(&["-I", &format!("http://{}/hello.txt", server.addr())])
        .success()
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("Content-Length: 1000"));
    server.expect_stderr("\"HEAD /hello.txt HTTP/1.1\" 200", Duration::from_secs(10));
}

/// `-r 0-9` asks for a range and prints just those bytes; `-o` writes a file.
#[test]
fn client_range_and_output_file() {
    let (server, _root) = start("client_range", &[]);
    client(&["-r", "990-", &format!("http://{}/hello.txt", server.addr())])
        .success()
        .stdout(predicate::eq(hello()[990..].to_vec()))
        .stderr(predicate::str::contains("206"));
    let out = temp_dir("client-output").join("copy.txt");
    client(&[
        "-o",
        out.to_str().unwrap(),
        &format!("http://{}/hello.txt", server.addr()),
    ])
    .success()
    .stdout(predicate::str::is_empty());
    assert_eq!(std::fs::read(&out).unwrap(), hello());
}

/// A redirect on the same host is followed (the folder's missing slash).
#[test]
fn client_follows_redirects() {
    let (server, _root) = start("client_redirect", &[]);
    client(&[&format!("http://{}/docs", server.addr())])
        .success()
        .stdout(predicate::str::contains("five.txt"))
        .stderr(predicate::str::contains("301"));
}

/// A chunked body is decoded (extensions and trailers ignored); a body with
/// neither a length nor chunks runs until the server closes.
#[test]
fn client_reads_chunked_and_close_delimited_bodies() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n7;note=x\r\n, world\r\n1\r\n\n\r\n0\r\nX-Trailer: 1\r\n\r\n"
        .to_vec();
    let addr = stand_in(vec![chunked]);
    client(&[&format!("http://{addr}/")])
        .success()
        .stdout(predicate::eq(&b"hello, world\n"[..]));
    let until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it\n".to_vec();
    let addr = stand_in(vec![until_close]);
    client(&[&format!("http://{addr}/")])
        .success()
        .stdout(predicate::eq(&b"all of it\n"[..]));
}

/// Non-2xx answers, refused connections, malformed answers, endless
/// redirects and redirects to another host: exit status 1 and a clear line.
#[test]
fn client_failures_exit_1_with_a_message() {
    let (server, _root) = start("client_fail", &[]);
    client(&[&format!("http://{}/missing", server.addr())])
        .code(1)
        .stderr(predicate::str::contains("404"));
    // A port nobody listens on: bind one, then free it.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    client(&[&format!("http://{free}/")])
        .code(1)
        .stderr(predicate::str::contains("refused"));
    let addr = stand_in(vec![b"SMTP ready\r\n".to_vec()]);
    client(&[&format!("http://{addr}/")])
        .code(1)
        .stderr(predicate::str::contains("malformed"));
    let hops: Vec<Vec<u8>> = (0..7)
        .map(|i| {
            format!("HTTP/1.1 302 Found\r\nLocation: /hop{i}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes()
        })
        .collect();
    let addr = stand_in(hops);
    client(&[&format!("http://{addr}/")])
        .code(1)
        .stderr(predicate::str::contains("redirects"));
    let away =
        b"HTTP/1.1 301 Moved\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n"
            .to_vec();
    let addr = stand_in(vec![away]);
    client(&[&format!("http://{addr}/")])
        .code(1)
        .stderr(predicate::str::contains("another host"));
    client(&["https://127.0.0.1/"])
        .code(1)
        .stderr(predicate::str::contains("TLS"));
}

/// A server that accepts and never answers: the client gives up after its
/// timeout (shortened here with the reference's hidden knob) and says so.
#[test]
fn client_times_out() {
    if !common::reference_only(CLIENT, "client_times_out") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    client(&["--timeout-secs", "1", &format!("http://{addr}/")])
        .code(1)
        .stderr(predicate::str::contains("no answer"));
    drop(listener);
}

/// `--trace` shows the request lines sent and the response lines received.
#[test]
fn client_trace() {
    if !common::reference_only(CLIENT, "client_trace") {
        return;
    }
    let (server, _root) = start("client_trace", &[]);
    client(&["--trace", &format!("http://{}/hello.txt", server.addr())])
        .success()
        .stderr(
            predicate::str::contains("-> GET /hello.txt HTTP/1.1")
                .and(predicate::str::contains("<- HTTP/1.1 200 OK")),
        );
}
