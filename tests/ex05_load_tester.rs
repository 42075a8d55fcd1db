//! Example 05, the load tester: short runs against the course's servers that
//! check its report line and that a clean run counts zero errors. No timing
//! is asserted: speed depends on the machine, and chapter 8 measures it.
//!
//! Check your own load tester (chapter 8's exercises) with:
//! `NETLESSONS_05_LOAD_TESTER="path/to/your/05_load_tester" cargo test --test ex05_load_tester exercise`

mod common;

use common::{Server, command, temp_dir};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

const TESTER: &str = "05_load_tester";

/// Echo mode: every round trip is counted, and rates and percentiles are reported as numbers.
#[test]
fn echo_mode_reports_requests_rates_and_percentiles() {
    let fields = clean_run_against(
        "01_echo_server",
        "echo",
        &["--conns", "4", "--rounds", "25", "--warmup", "2"],
        "echo",
    );
    assert_eq!(
        number(&fields, "requests"),
        100.0,
        "4 connections x 25 round trips"
    );
    assert_eq!(number(&fields, "conns"), 4.0);
    for key in [
        "secs",
        "req_per_s",
        "mb_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
    ] {
        assert!(number(&fields, key) >= 0.0);
    }
    assert!(number(&fields, "p50_ms") <= number(&fields, "p99_ms"));
    assert!(number(&fields, "p99_ms") <= number(&fields, "max_ms"));
}

/// `--histogram`: after the report line come ten bars whose counts add up to
/// the requests, with bounds that rise to the slowest round trip.
#[test]
fn histogram_shows_every_request_in_ten_rising_buckets() {
    if !common::reference_only(
        TESTER,
        "histogram_shows_every_request_in_ten_rising_buckets",
    ) {
        return;
    }
    let server = Server::start("01_echo_server", &[]);
    let addr = server.addr().to_string();
    let mut args: Vec<&str> = "echo --conns 3 --rounds 40 --histogram"
        .split(' ')
        .collect();
    args.extend(["--addr", &addr]);
    let output = run(&args, &[]);
    assert_clean(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("echo "), "report line first: {stdout}");
    let max_ms: f64 = first
        .split(' ')
        .find_map(|w| w.strip_prefix("max_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no max_ms in {first:?}"));
    assert_eq!(lines.next(), Some("latency histogram (ms):"), "{stdout}");
    let bars: Vec<(f64, u64, usize)> = lines
        .map(|line| {
            // "      0.083 [230]     |■■■■"
            let (head, bar) = line
                .split_once('|')
                .unwrap_or_else(|| panic!("no bar in {line:?}"));
            let mut words = head.split_whitespace();
            let bound: f64 = words.next().and_then(|w| w.parse().ok()).unwrap();
            let count = words
                .next()
                .and_then(|w| w.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
                .unwrap_or_else(|| panic!("no [count] in {line:?}"));
            assert!(bar.chars().all(|c| c == '■'), "{line:?}");
            (bound, count, bar.chars().count())
        })
        .collect();
    assert_eq!(bars.len(), 10, "ten buckets: {stdout}");
    assert_eq!(
        bars.iter().map(|b| b.1).sum::<u64>(),
        120,
        "3 x 40 requests"
    );
    assert!(bars.windows(2).all(|w| w[0].0 <= w[1].0), "rising bounds");
    assert!(
        (bars[9].0 - max_ms).abs() < 0.002,
        "last bound is the slowest"
    );
    let fullest = bars.iter().max_by_key(|b| b.1).unwrap();
    assert_eq!(fullest.2, 40, "the fullest bucket has the longest bar");
}

/// `--per-thread K`: one thread drives K connections in lock-step. Every
/// connection is still opened and does every one of its round trips.
#[test]
fn echo_per_thread_drives_several_connections_from_one_thread() {
    if !common::reference_only(
        TESTER,
        "echo_per_thread_drives_several_connections_from_one_thread",
    ) {
        return;
    }
    // An echo server that counts the connections it accepts and the bytes
    // it echoes, so the test sees what the load tester really did.
    let echoed = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&echoed);
    let (addr, accepted) = start_echo_with(move |_, bytes: &[u8]| {
        // Counted before the reply goes out, so the count is complete by
        // the time the client has read it.
        count.fetch_add(bytes.len(), Ordering::SeqCst);
        bytes.to_vec()
    });
    // 10 connections, 4 per thread: threads of 4, 4 and 2.
    let fields = clean_report(
        &[
            "echo",
            "--addr",
            &addr,
            "--conns",
            "10",
            "--per-thread",
            "4",
            "--rounds",
            "20",
            "--warmup",
            "3",
            "--size",
            "16",
        ],
        "echo",
    );
    assert_eq!(number(&fields, "per_thread"), 4.0);
    assert_eq!(
        number(&fields, "requests"),
        200.0,
        "10 connections x 20 round trips"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 10, "10 connections opened");
    // Every reply was read before the tester exited, so the server had
    // echoed every byte by then: (3 warm-up + 20) round trips of 16 bytes.
    assert_eq!(echoed.load(Ordering::SeqCst), 10 * 23 * 16);
}

/// `--per-thread K` really is lock-step: while one connection's reply is
/// held back, the other connections of its thread send nothing new. (With
/// a thread each, they would carry on with round trip after round trip.)
#[test]
fn echo_per_thread_waits_for_the_whole_batch() {
    if !common::reference_only(TESTER, "echo_per_thread_waits_for_the_whole_batch") {
        return;
    }
    const SIZE: usize = 16;
    // Bytes received per connection; the most that connections 1-3 sent
    // while connection 0's tenth reply was held back.
    let received: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let during_hold = Arc::new(AtomicUsize::new(usize::MAX));
    let (counts, most) = (Arc::clone(&received), Arc::clone(&during_hold));
    let (addr, _) = start_echo_with(move |connection, bytes: &[u8]| {
        let total = counts[connection].fetch_add(bytes.len(), Ordering::SeqCst) + bytes.len();
        if connection == 0 && total == 10 * SIZE {
            let others = || -> Vec<usize> {
                counts[1..]
                    .iter()
                    .map(|c| c.load(Ordering::SeqCst))
                    .collect()
            };
            let before = others();
            thread::sleep(Duration::from_millis(300));
            let grew = others().iter().zip(&before).map(|(a, b)| a - b).max();
            most.store(grew.unwrap_or(0), Ordering::SeqCst);
        }
        bytes.to_vec()
    });
    let output = run(
        &[
            "echo",
            "--addr",
            &addr,
            "--conns",
            "4",
            "--per-thread",
            "4",
            "--rounds",
            "20",
            "--warmup",
            "3",
            "--size",
            &SIZE.to_string(),
        ],
        &[],
    );
    assert_clean(&output);
    let grew = during_hold.load(Ordering::SeqCst);
    assert_ne!(grew, usize::MAX, "connection 0 never sent its 10th request");
    // Each of the others may have sent this round's request while we
    // waited (it was already on its way), and nothing more.
    assert!(
        grew <= SIZE,
        "during a 300 ms hold on one connection the others sent {grew} bytes: not lock-step"
    );
}

/// `--server-pid` in echo mode reports the server's CPU time per request.
/// The server here is this test process, whose echo threads burn 2 ms of
/// CPU per request, so the figure must come out near 2,000 µs (the lower
/// bound leaves room for the 10 ms granularity of /proc's counters; other
/// tests running in this process can only add to it).
#[test]
fn echo_reports_the_servers_cpu_time_per_request() {
    if !common::reference_only(TESTER, "echo_reports_the_servers_cpu_time_per_request") {
        return;
    }
    let (addr, _) = start_echo_with(|_, bytes: &[u8]| {
        // Spin until this thread has had 2 ms of CPU (not of the clock on
        // the wall: on a busy machine a spinning thread is not always
        // running).
        let start = thread_cpu();
        while thread_cpu().saturating_sub(start) < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        bytes.to_vec()
    });
    let pid = std::process::id().to_string();
    let output = run(
        &[
            "echo",
            "--addr",
            &addr,
            "--conns",
            "1",
            "--rounds",
            "50",
            "--warmup",
            "0",
            "--server-pid",
            &pid,
        ],
        &[],
    );
    assert_clean(&output);
    let fields = report(&output, "echo");
    let cpu = number(&fields, "server_cpu_us_per_req");
    assert!(
        cpu >= 500.0,
        "the server burned 2,000 us per request, the report says {cpu}"
    );
    assert!(number(&fields, "server_rss_mib") > 0.0);
}

/// Stream mode pushes a megabyte through one connection and gets every byte back.
#[test]
fn stream_mode_moves_every_byte() {
    let fields = clean_run_against("01_echo_server", "stream", &["--size", "1M"], "stream");
    assert_eq!(number(&fields, "bytes"), 1_048_576.0);
    assert!(number(&fields, "mb_per_s") > 0.0);
}

/// c10k mode, scaled down: every connection is held, answers twice, and the server's memory is read.
#[test]
fn c10k_mode_holds_every_connection_and_reads_server_memory() {
    let server = Server::start("01_echo_server", &[]);
    let addr = server.addr().to_string();
    let pid = server.pid().to_string();
    let fields = clean_report(
        &[
            "c10k",
            "--addr",
            &addr,
            "--conns",
            "40",
            "--threads",
            "3",
            "--hold",
            "0",
            "--server-pid",
            &pid,
        ],
        "c10k",
    );
    assert_eq!(number(&fields, "held"), 40.0);
    assert_eq!(
        number(&fields, "requests"),
        80.0,
        "one round trip to open, one after the hold"
    );
    for key in ["open_secs", "answer_secs", "storm_secs", "p99_ms"] {
        assert!(number(&fields, key) >= 0.0);
    }
    if cfg!(target_os = "linux") {
        assert!(number(&fields, "server_rss_mib") > 0.0, "VmRSS from /proc");
        assert!(
            number(&fields, "hold_threads") >= 40.0,
            "a thread per held connection"
        );
    }
}

/// Chat mode: every message reaches every receiver, and fan-out latencies are reported.
#[test]
fn chat_mode_delivers_every_message_to_every_receiver() {
    let fields = clean_run_against(
        "02_chat_server",
        "chat",
        &["--conns", "3", "--rounds", "10"],
        "chat",
    );
    assert_eq!(
        number(&fields, "deliveries"),
        30.0,
        "10 messages x 3 receivers"
    );
    assert!(number(&fields, "deliveries_per_s") > 0.0);
    assert!(number(&fields, "p50_ms") <= number(&fields, "max_ms"));
}

/// Chat mode with `--joins`: a storm of 200 joins; every join is announced
/// to the watcher, a fresh client afterwards gets its welcome and its line
/// through, and the storm's figures are reported.
#[test]
fn chat_mode_measures_a_join_storm() {
    let fields = clean_run_against("02_chat_server", "chat", &["--joins", "200"], "chat-joins");
    assert_eq!(number(&fields, "joined"), 200.0);
    for key in [
        "storm_secs",
        "announced_secs",
        "fresh_welcome_ms",
        "fresh_message_ms",
    ] {
        assert!(number(&fields, key) > 0.0, "{key} in {fields:?}");
    }
    assert!(number(&fields, "storm_secs") <= number(&fields, "announced_secs"));
}

/// File mode: a PUT then a verified GET of the same bytes through the handshake, zero errors.
#[test]
fn file_mode_puts_and_gets_through_the_handshake() {
    let server = start_file_server("ex05-file", "load-test-secret", &[]);
    let addr = server.addr().to_string();
    let secret = [("NETLESSONS_SECRET", "load-test-secret")];
    let put = run(
        &[
            "file", "--addr", &addr, "--user", "bench", "--put", "blob.bin", "--size", "300K",
            "--rounds", "2",
        ],
        &secret,
    );
    assert_clean(&put);
    let fields = report(&put, "file");
    assert_eq!(fields["op"], "put");
    assert_eq!(number(&fields, "transfers"), 2.0);
    assert_eq!(number(&fields, "bytes"), 2.0 * 300.0 * 1024.0);
    let get = run(
        &[
            "file", "--addr", &addr, "--user", "bench", "--get", "blob.bin",
        ],
        &secret,
    );
    assert_clean(&get);
    let fields = report(&get, "file");
    assert_eq!(fields["op"], "get");
    assert_eq!(fields["verified"], "true");
    assert_eq!(number(&fields, "errors"), 0.0);
    assert_eq!(
        number(&fields, "bytes"),
        3.0 * 300.0 * 1024.0,
        "three GETs by default"
    );
}

/// A wrong secret is counted as an error and the exit status says so.
#[test]
fn file_mode_counts_a_refused_login_as_an_error() {
    let server = start_file_server("ex05-denied", "right", &["--deny-delay-ms", "1"]);
    let addr = server.addr().to_string();
    let output = run(
        &["file", "--addr", &addr, "--user", "bench", "--get", "x"],
        &[("NETLESSONS_SECRET", "wrong")],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(number(&report(&output, "file"), "errors"), 1.0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("first error: access denied"));
}

/// Nothing listening: every connection is an error, reported on the line and in the exit status.
#[test]
fn counts_refused_connections_as_errors() {
    // Bind a port, then free it: nothing listens there any more.
    let addr = format!("127.0.0.1:{}", common::free_port());
    let (fields, stderr) = failed_report(
        &["echo", "--addr", &addr, "--conns", "3", "--rounds", "5"],
        "echo",
    );
    assert_eq!(number(&fields, "errors"), 3.0);
    assert_eq!(number(&fields, "requests"), 0.0);
    assert!(
        stderr.contains("first error: could not connect"),
        "stderr: {stderr}"
    );
    if common::reference_only(TESTER, "counts_refused_connections_as_errors --per-thread") {
        // Two connections per thread: still one error per connection.
        let output = run(
            &[
                "echo",
                "--addr",
                &addr,
                "--conns",
                "3",
                "--per-thread",
                "2",
                "--rounds",
                "5",
            ],
            &[],
        );
        assert_eq!(number(&report(&output, "echo"), "errors"), 3.0);
    }
}

/// Out of file descriptors: the tester says so, names `ulimit -n`, and exits 1.
#[test]
fn running_out_of_file_descriptors_is_explained() {
    if !common::reference_only(TESTER, "running_out_of_file_descriptors_is_explained")
        || !common::have("sh", "running_out_of_file_descriptors_is_explained")
    {
        return;
    }
    let server = Server::start("01_echo_server", &[]);
    let addr = server.addr().to_string();
    // A limit of 40 open files, set by the shell just for the tester.
    let tester = common::example_path(TESTER);
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 40 && exec \"$0\" \"$@\"")
        .arg(&tester)
        .args([
            "c10k",
            "--addr",
            &addr,
            "--conns",
            "100",
            "--threads",
            "2",
            "--hold",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let fields = report(&output, "c10k");
    assert!(number(&fields, "errors") >= 1.0);
    assert!(number(&fields, "held") < 100.0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ran out of file descriptors"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("ulimit -n"), "stderr: {stderr}");
}

/// `--help` explains the modes and exits 0; a mistake gets one line plus usage and exit 2.
#[test]
fn help_and_usage_errors() {
    let help = run(&["--help"], &[]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "Usage: 05_load_tester",
        "echo",
        "c10k",
        "http",
        "--path",
        "ulimit -n",
        "NETLESSONS_SECRET",
    ] {
        assert!(text.contains(word), "--help should mention {word}: {text}");
    }
    for bad in [
        &["nonsense"][..],
        &[][..],
        &["echo", "--conns", "0"][..],
        &["echo", "--size", "3X"][..],
    ] {
        let output = run(bad, &[]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{bad:?} should be a usage error"
        );
        assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: "));
    }
}

/// Exercise 1: every report with latencies also gives the 90th percentile, between p50 and p99.
#[test]
fn exercise_1_reports_p90() {
    let server = Server::start("01_echo_server", &[]);
    let addr = server.addr().to_string();
    let output = run(
        &["echo", "--addr", &addr, "--conns", "2", "--rounds", "50"],
        &[],
    );
    assert_clean(&output);
    let fields = report(&output, "echo");
    let p90 = number(&fields, "p90_ms");
    assert!(number(&fields, "p50_ms") <= p90, "p50 <= p90");
    assert!(p90 <= number(&fields, "p99_ms"), "p90 <= p99");
}

/// Exercise 2: a reply that differs from what was sent is an error, counted and reported, not a crash.
#[test]
fn exercise_2_wrong_replies_are_errors() {
    let addr = start_shouting_echo();
    let (fields, stderr) = failed_report(
        &[
            "echo", "--addr", &addr, "--conns", "3", "--rounds", "5", "--warmup", "0",
        ],
        "echo",
    );
    assert_eq!(
        number(&fields, "errors"),
        3.0,
        "one error per connection, which then stops"
    );
    assert_eq!(
        number(&fields, "requests"),
        0.0,
        "no wrong reply counts as a request"
    );
    assert!(
        stderr.contains("first error: ") && stderr.contains("differs"),
        "stderr: {stderr}"
    );
}

/// Exercise 3: `--duration SECS` runs each connection for that long instead of a number of rounds.
#[test]
fn exercise_3_duration_instead_of_rounds() {
    let fields = clean_run_against(
        "01_echo_server",
        "echo",
        &["--conns", "2", "--duration", "1"],
        "echo",
    );
    assert!(
        number(&fields, "requests") > 0.0,
        "some round trips happened"
    );
    let secs = number(&fields, "secs");
    assert!(
        secs >= 1.0,
        "the run lasted at least the duration asked for, not {secs} s"
    );
    assert!(secs < 30.0, "and it stopped: {secs} s");
}

/// HTTP mode: keep-alive GETs over N connections, each response read whole and
/// checked; one connection per client (plus the probe), every request counted.
#[test]
fn http_mode_checks_every_response_over_kept_alive_connections() {
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    let (addr, accepted) = start_http_with(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
        (ok_response(1000, ""), false)
    });
    let fields = clean_report(
        &[
            "http", "--addr", &addr, "--path", "/f.bin", "--conns", "3", "--rounds", "20",
            "--warmup", "2",
        ],
        "http",
    );
    assert_eq!(number(&fields, "requests"), 60.0, "3 connections x 20 GETs");
    assert_eq!(
        number(&fields, "size"),
        1000.0,
        "the probe learned the length"
    );
    assert_eq!(number(&fields, "reconnects"), 0.0);
    assert_eq!(fields["path"], "/f.bin");
    for key in ["secs", "req_per_s", "p50_ms", "p90_ms", "max_ms"] {
        assert!(number(&fields, key) >= 0.0);
    }
    assert!(number(&fields, "mb_per_s") > 0.0);
    assert!(number(&fields, "p50_ms") <= number(&fields, "p99_ms"));
    assert!(number(&fields, "p99_ms") <= number(&fields, "max_ms"));
    // Kept alive: the probe's connection and one per client connection.
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    // The probe, then 2 warm-up and 20 measured GETs on each connection.
    assert_eq!(served.load(Ordering::SeqCst), 1 + 3 * 22);
}

/// HTTP mode: a response with the wrong status or the wrong body length is an
/// error, counted, and its connection carries on; `--size` that the file does
/// not have stops the run before it starts.
#[test]
fn http_mode_counts_a_wrong_status_or_length_as_an_error() {
    // Connection 0 is the probe. On the others, the 5th response is a 404
    // and the 7th is 999 bytes long instead of 1000.
    let (addr, _) = start_http_with(|_, request| {
        let response = match request {
            4 => b"HTTP/1.1 404 Not Found\r\nContent-Length: 1000\r\n\r\n"
                .iter()
                .copied()
                .chain([b'x'; 1000])
                .collect(),
            6 => ok_response(999, ""),
            _ => ok_response(1000, ""),
        };
        (response, false)
    });
    let args = [
        "http", "--addr", &addr, "--conns", "2", "--rounds", "10", "--warmup", "0",
    ];
    let (fields, stderr) = failed_report(&args, "http");
    assert_eq!(number(&fields, "errors"), 4.0, "two wrong answers on each");
    assert_eq!(number(&fields, "requests"), 16.0, "the other eight on each");
    assert!(
        stderr.contains("first error: a response had status 404, not 200")
            || stderr.contains("first error: a response had a body of 999 bytes, not 1000"),
        "stderr: {stderr}"
    );

    // A length given with --size is checked by the probe, which stops the run.
    let mut sized = args.to_vec();
    sized.extend(["--size", "999"]);
    let (fields, stderr) = failed_report(&sized, "http");
    assert_eq!(number(&fields, "errors"), 1.0);
    assert_eq!(number(&fields, "requests"), 0.0);
    assert!(
        stderr.contains("a body of 1000 bytes, but --size says 999"),
        "stderr: {stderr}"
    );
}

/// HTTP mode: a response cut short (the server closes mid-body) is an error
/// that ends its connection; the run still reports and exits 1.
#[test]
fn http_mode_counts_a_response_cut_short() {
    let (addr, _) = start_http_with(|_, request| {
        if request == 3 {
            // Promises 1000 bytes, sends 10, closes.
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789".to_vec(),
                true,
            )
        } else {
            (ok_response(1000, ""), false)
        }
    });
    let (fields, stderr) = failed_report(
        &[
            "http", "--addr", &addr, "--conns", "2", "--rounds", "10", "--warmup", "0",
        ],
        "http",
    );
    assert_eq!(number(&fields, "errors"), 2.0, "one per connection");
    assert_eq!(
        number(&fields, "requests"),
        6.0,
        "three good GETs on each first"
    );
    assert!(
        stderr.contains("closed the connection after 10 of 1000 body bytes"),
        "stderr: {stderr}"
    );
}

/// HTTP mode: when a response says the connection ends (`Connection: close`,
/// or HTTP/1.0 without keep-alive), the tester opens a new one, counts it, and
/// that is not an error; HTTP/1.0 with `Connection: keep-alive` stays open.
#[test]
fn http_mode_reconnects_when_the_server_closes() {
    let (addr, accepted) = start_http_with(|connection, request| match request {
        // The third answer on each connection ends it, in one of two ways.
        2 if connection % 2 == 0 => (ok_response(100, "Connection: close\r\n"), true),
        2 => (
            b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n"
                .iter()
                .copied()
                .chain([b'x'; 100])
                .collect(),
            true,
        ),
        1 => (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 100\r\n\r\n"
                .iter()
                .copied()
                .chain([b'x'; 100])
                .collect(),
            false,
        ),
        _ => (ok_response(100, ""), false),
    });
    let fields = clean_report(
        &[
            "http", "--addr", &addr, "--conns", "1", "--rounds", "9", "--warmup", "0",
        ],
        "http",
    );
    assert_eq!(number(&fields, "requests"), 9.0);
    // Closed after the 3rd and the 6th (the 9th was the last request).
    assert_eq!(number(&fields, "reconnects"), 2.0);
    assert_eq!(accepted.load(Ordering::SeqCst), 1 + 3, "the probe, then 3");
}

/// HTTP mode against Python's own `http.server` (the handler behind
/// `python3 -m http.server`): its HTTP/1.0 answers close every connection, and
/// the tester reconnects for each request without an error.
#[test]
fn http_mode_against_python_http_server() {
    if !common::have("python3", "http_mode_against_python_http_server") {
        return;
    }
    let dir = temp_dir("ex05-http-python");
    std::fs::write(dir.join("page.html"), vec![b'p'; 2345]).unwrap();
    let script = "import functools, http.server, sys\n\
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
        handler.func.log_message = lambda *args: None\n\
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)\n\
        print('listening on 127.0.0.1:%d' % server.server_address[1], flush=True)\n\
        server.serve_forever()\n";
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", script, dir.to_str().unwrap()]);
    let server = Server::start_command("python3 http.server", cmd, 1);
    let addr = server.addr().to_string();
    let fields = clean_report(
        &[
            "http",
            "--addr",
            &addr,
            "--path",
            "/page.html",
            "--conns",
            "2",
            "--rounds",
            "5",
            "--warmup",
            "1",
        ],
        "http",
    );
    assert_eq!(number(&fields, "requests"), 10.0);
    assert_eq!(number(&fields, "size"), 2345.0);
    // Every GET after each connection's first needed a new connection.
    assert_eq!(number(&fields, "reconnects"), 10.0);
}

/// HTTP mode: `--server-pid` counts the CPU time of the server's child
/// processes too (nginx serves from workers it forks). The server here is a
/// Python process whose forked child answers, burning 2 ms of CPU per request.
#[test]
fn http_mode_counts_the_cpu_of_the_servers_child_processes() {
    if !common::reference_only(
        TESTER,
        "http_mode_counts_the_cpu_of_the_servers_child_processes",
    ) || !common::have(
        "python3",
        "http_mode_counts_the_cpu_of_the_servers_child_processes",
    ) {
        return;
    }
    // The parent only waits; the child serves one connection at a time. The
    // child asks the kernel to end it when its parent dies (PR_SET_PDEATHSIG),
    // so killing the parent at the end of the test ends both.
    let script = r#"
import ctypes, os, socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
parent = os.getpid()
if os.fork():
    listener.close()
    os.wait()
    sys.exit()
ctypes.CDLL(None).prctl(1, 9)
if os.getppid() != parent:
    sys.exit()
while True:
    conn, _ = listener.accept()
    requests = conn.makefile("rb")
    while True:
        line = requests.readline()
        if not line:
            break
        if line.strip():
            continue
        start = time.process_time()
        while time.process_time() - start < 0.002:
            pass
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    conn.close()
"#;
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", script]);
    let server = Server::start_command("python3 forking server", cmd, 1);
    let addr = server.addr().to_string();
    let pid = server.pid().to_string();
    let output = run(
        &[
            "http",
            "--addr",
            &addr,
            "--conns",
            "1",
            "--rounds",
            "100",
            "--warmup",
            "0",
            "--server-pid",
            &pid,
        ],
        &[],
    );
    assert_clean(&output);
    let fields = report(&output, "http");
    assert_eq!(number(&fields, "requests"), 100.0);
    let cpu = number(&fields, "server_cpu_us_per_req");
    assert!(
        cpu >= 500.0,
        "the child burned 2,000 us per request, the report says {cpu}"
    );
    assert!(number(&fields, "server_hwm_mib") > 0.0);
}

/// Runs the load tester (or the learner's, under the override) with `args`
/// (and extra environment) and returns its output.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(TESTER)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("could not run the load tester")
}

/// Parses the one report line: `MODE key=value key=value …`.
fn report(output: &Output, mode: &str) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one report line, got {stdout:?} (stderr: {stderr})"
    );
    let mut words = lines[0].split(' ');
    assert_eq!(
        words.next(),
        Some(mode),
        "the line should start with the mode: {stdout:?}"
    );
    words
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {w:?} in {stdout:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Asserts that `fields[key]` is a number and returns it.
fn number(fields: &HashMap<String, String>, key: &str) -> f64 {
    let text = fields
        .get(key)
        .unwrap_or_else(|| panic!("no {key}= in the report: {fields:?}"));
    text.parse()
        .unwrap_or_else(|_| panic!("{key}={text} is not a number"))
}

/// Starts `example` and runs the load tester against it: `mode`, `--addr`
/// with the server's address, then `args`. Asserts a clean run, as
/// [`clean_report`] does, and returns the fields of its `report` line.
fn clean_run_against(
    example: &str,
    mode: &str,
    args: &[&str],
    report: &str,
) -> HashMap<String, String> {
    let server = Server::start(example, &[]);
    let addr = server.addr().to_string();
    let mut all = vec![mode, "--addr", &addr];
    all.extend_from_slice(args);
    clean_report(&all, report)
}

/// Runs the load tester, asserts a clean run (exit 0) that counted zero
/// errors, and returns the fields of its `mode` report.
fn clean_report(args: &[&str], mode: &str) -> HashMap<String, String> {
    let output = run(args, &[]);
    assert_clean(&output);
    let fields = report(&output, mode);
    assert_eq!(number(&fields, "errors"), 0.0);
    fields
}

/// Runs the load tester where it must find errors: asserts exit status 1,
/// and returns the fields of its `mode` report and what it said on stderr.
fn failed_report(args: &[&str], mode: &str) -> (HashMap<String, String>, String) {
    let output = run(args, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "errors must make the exit status 1"
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (report(&output, mode), stderr)
}

/// A clean run succeeds (exit 0) and reports zero errors.
fn assert_clean(output: &Output) {
    assert!(
        output.status.success(),
        "the load tester failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The CPU time this thread has used: the first field of
/// `/proc/thread-self/schedstat`, in nanoseconds.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("this test reads /proc/thread-self/schedstat (Linux)");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat starts with the time on the CPU, in ns");
    Duration::from_nanos(ns)
}

/// Starts the file server on a fresh folder of its own (under the temp dir
/// `name`), with one user `bench` whose secret is `secret`, plus `extra`.
fn start_file_server(name: &str, secret: &str, extra: &[&str]) -> Server {
    let dir = temp_dir(name);
    let users = dir.join("users");
    std::fs::write(&users, format!("bench:{secret}\n")).unwrap();
    let root = dir.join("root");
    let mut args = vec![
        "--root",
        root.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start("03_file_server", &args)
}

/// A stand-in echo server on a free loopback port, a thread per connection,
/// that answers each read with `reply(connection, bytes)`, where
/// `connection` counts from 0 in the order they were accepted. Returns its
/// address and a count of the connections it has accepted.
fn start_echo_with<F>(reply: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, &[u8]) -> Vec<u8> + Clone + Send + 'static,
{
    serve_each(move |connection, mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&reply(connection, &buf[..n])).is_err() {
                return;
            }
        }
    })
}

/// Accepts on a free loopback port and runs `handle(connection, stream)`
/// on a thread per connection, `connection` counting from 0 in the order
/// they were accepted. Returns the address and a count of the connections
/// accepted so far.
fn serve_each<F>(handle: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let connection = count.fetch_add(1, Ordering::SeqCst);
            let handle = handle.clone();
            thread::spawn(move || handle(connection, stream));
        }
    });
    (addr, accepted)
}

/// A server that echoes the right number of bytes, but in upper case.
fn start_shouting_echo() -> String {
    start_echo_with(|_, bytes: &[u8]| bytes.to_ascii_uppercase()).0
}

/// `HTTP/1.1 200 OK`, `extra` header lines, and a body of `len` bytes.
fn ok_response(len: usize, extra: &str) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: {len}\r\n\r\n").into_bytes();
    response.resize(response.len() + len, b'x');
    response
}

/// A stand-in web server on a free loopback port, a thread per connection.
/// It reads request heads (lines up to an empty one) and answers each with
/// `answer(connection, request)`: the whole response, and whether to close
/// the connection after it. `connection` counts from 0 in the order they
/// were accepted, `request` from 0 on each connection. Returns its address
/// and a count of the connections it has accepted.
fn start_http_with<F>(answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, usize) -> (Vec<u8>, bool) + Clone + Send + 'static,
{
    serve_each(move |connection, mut stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        for request in 0.. {
            // The head: lines until an empty one (or the end).
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line.trim_end().is_empty() => break,
                    Ok(_) => {}
                }
            }
            let (response, close) = answer(connection, request);
            if stream.write_all(&response).is_err() || close {
                return;
            }
        }
    })
}
