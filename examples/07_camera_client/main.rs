//! # 07_camera_client: a speed camera sends one report over UDP
//!
//! Reads a photo, then sends it with its details (camera, plate, speed, time)
//! to `07_camera_server` as signed datagrams ([`netlessons::datagram`]):
//!
//! ```text
//! NETLESSONS_SECRET=… cargo run --example 07_camera_client -- \
//!     --camera demo --plate 'AB 123' --speed 87 photo.jpg
//! ```
//!
//! UDP delivers each datagram whole or not at all, and tells the sender
//! nothing either way. Everything TCP would do for us, this client does by
//! hand, and each piece has its own function in `sender.rs` so you can find
//! it. Read this file first (the flags and `run`), then `sender.rs`:
//!
//! * the **window** (`Sender::fill_window`): at most `--window` chunks in
//!   flight, so a burst never overflows the server's receive buffer (TCP's
//!   flow control);
//! * the **selective resend** (`Sender::on_ack`): the server's ACK says
//!   exactly which chunks it holds, and a chunk that three later chunks
//!   overtook is resent at once (TCP's fast retransmit with SACK);
//! * the **timer and its doubling** (`Sender::on_timer`): a chunk not
//!   acknowledged in 500 ms is resent, and each loss doubles its wait, up to
//!   4 s (TCP's retransmission timeout and backoff);
//! * the **give-up** (`Timer::gave_up`): after 8 tries the server is
//!   declared gone, and the client exits 1 with a clear message (TCP's
//!   connection timeout).
//!
//! With `--no-retry` it sends everything once, without window or resends,
//! and prints how many chunks the server says it got: the lost-pixel
//! counter of the course, showing that loss is real even on one machine.
#![warn(clippy::too_many_lines)]

mod sender;

use netlessons::cli::{self, Command, Matches};
use netlessons::datagram::{self, Dropper, Hello};
use netlessons::sha256::sha256;
use sender::{Reply, Sender, Timer};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

fn main() -> ExitCode {
    let args = Command::new(
        "07_camera_client",
        "Sends one speed camera report (a photo and its details) to 07_camera_server over UDP.",
    )
    .opt("--addr", "HOST:PORT", "the server's UDP address", Some("127.0.0.1:7007"))
    .opt("--camera", "NAME", "this camera's name, as in the server's users file", None)
    .opt("--plate", "TEXT", "the licence plate read from the photo", None)
    .opt("--speed", "KMH", "the measured speed, a whole number of km/h", None)
    .opt("--secret", "SECRET", "the camera's secret (better: set NETLESSONS_SECRET, which other users cannot see in `ps`)", None)
    .opt("--window", "N", "at most N chunks in flight at once", Some("32"))
    .opt("--drop", "PERCENT", "throw away this share of the datagrams we send (to watch recovery)", Some("0"))
    .opt("--seed", "N", "the seed that chooses which datagrams --drop throws away", Some("1"))
    .opt("--report", "HEX", "send under this report id (16 hex digits), as a camera resending a report does (default: a new random id)", None)
    .flag("--adaptive", "let the window shrink on loss and grow back (chapter 12, exercise 2)")
    .flag("--no-retry", "send every chunk once, no window, no resends; print how many arrived")
    .flag("--trace", "show every datagram that leaves or arrives on stderr")
    // Test knobs: shorter timers, so that "the server never answers" takes
    // a fraction of a second in a test instead of about twenty.
    .hidden_opt("--retry-base-ms", Some("500"))
    .hidden_opt("--retry-max-ms", Some("4000"))
    .positional("PHOTO", "the photo file to send")
    .after_help("The secret comes from the NETLESSONS_SECRET environment variable (or --secret).")
    .parse_env();

    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(message) => args.fail(&message),
    };
    // `Ok(false)`: the run ended without DONE (`--no-retry` with chunks
    // missing), which is exit status 1 as an error is.
    cli::exit_status(run(&config).map(|done| {
        if done {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }))
}

/// Everything the flags say.
struct Config {
    addr: SocketAddr,
    secret: String,
    photo: Vec<u8>,
    hello: Hello,
    report: u64,
    window: usize,
    adaptive: bool,
    no_retry: bool,
    trace: bool,
    dropper: Dropper,
    timer: Timer,
}

impl Config {
    fn from_args(args: &Matches) -> Result<Config, String> {
        let [path] = args.positionals() else {
            return Err("give exactly one PHOTO to send".to_string());
        };
        let camera = args.get("--camera").ok_or("--camera NAME is required")?;
        let plate = args.get("--plate").ok_or("--plate TEXT is required")?;
        let speed: u32 = args
            .parse_value("--speed")
            .ok_or("--speed KMH is required")?;
        for (flag, text) in [("--camera", camera), ("--plate", plate)] {
            if text.is_empty() || text.contains(['\n', '\r']) {
                return Err(format!("{flag} must be one non-empty line"));
            }
        }
        let secret = args
            .get("--secret")
            .map(str::to_string)
            .or_else(|| std::env::var("NETLESSONS_SECRET").ok())
            .filter(|s| !s.is_empty())
            .ok_or("no secret: set NETLESSONS_SECRET (or pass --secret); the server prints it")?;
        let addr = args
            .get("--addr")
            .unwrap_or("127.0.0.1:7007")
            .to_socket_addrs()
            .map_err(|e| format!("bad --addr: {e}"))?
            .next()
            .ok_or("--addr names no address")?;
        let photo = std::fs::read(path).map_err(|e| format!("could not read {path}: {e}"))?;
        if photo.is_empty() {
            return Err(format!("{path} is empty: there is no photo to send"));
        }
        if datagram::chunk_count(photo.len() as u64) > u64::from(u32::MAX) {
            return Err(format!("{path} is far too large to send"));
        }
        let ext = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| "bin".to_string());
        let lines = format!(
            "camera={camera}\nplate={plate}\nspeed={speed}\ntime={}\next={ext}\n",
            datagram::utc_time(SystemTime::now())
        );
        if lines.len() > datagram::MAX_HELLO_LINES {
            return Err("--camera and --plate are too long to fit in a HELLO".to_string());
        }
        let report = report_id(args.get("--report"))?;
        let window: usize = args.value("--window");
        let drop: f64 = args.value("--drop");
        if window == 0 {
            return Err("--window must be at least 1".to_string());
        }
        if !(0.0..=100.0).contains(&drop) {
            return Err("--drop takes a percentage from 0 to 100".to_string());
        }
        Ok(Config {
            addr,
            secret,
            hello: Hello {
                size: photo.len() as u64,
                sha256: sha256(&photo),
                lines,
            },
            photo,
            report,
            window,
            adaptive: args.flag("--adaptive"),
            no_retry: args.flag("--no-retry"),
            trace: args.flag("--trace"),
            dropper: Dropper::new(drop, args.value("--seed")),
            timer: Timer {
                base: Duration::from_millis(args.value("--retry-base-ms")),
                max: Duration::from_millis(args.value("--retry-max-ms")),
                tries: 8,
            },
        })
    }
}

/// The report id: `--report HEX` (16 hex digits), or a new random one.
fn report_id(given: Option<&str>) -> Result<u64, String> {
    match given {
        Some(hex) if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).map_err(|e| format!("--report: {e}"))
        }
        Some(_) => Err("--report takes 16 hex digits".to_string()),
        None => {
            let mut bytes = [0u8; 8];
            netlessons::auth::fill_random(&mut bytes)
                .map_err(|e| format!("no random numbers: {e}"))?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// Sends the report; `Ok(true)` when the server said DONE.
fn run(config: &Config) -> io::Result<bool> {
    // Any free local port of the server's family; `connect` on a UDP socket
    // sends no packet, it only fixes the peer, so that `recv` returns only
    // the server's datagrams and `send` needs no address.
    let local = if config.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(config.addr)?;
    let mut sender = Sender::new(config, socket);
    let started = Instant::now();
    match sender.hello()? {
        Reply::Done => {
            println!(
                "already stored: report {:016x} (the server had it from an earlier send)",
                config.report
            );
            return Ok(true);
        }
        Reply::Ack(ack) => sender.on_ack(&ack),
    }
    if config.no_retry {
        return sender.send_once();
    }
    sender.send_all()?;
    let secs = started.elapsed().as_secs_f64();
    let total = sender.chunks.len();
    let rtt = sender.rtt.map_or_else(
        || "not measured".to_string(),
        |r| format!("{:.2} ms", r.as_secs_f64() * 1000.0),
    );
    let window = if config.adaptive {
        format!(
            ", window between {} and {}",
            sender.window.smallest, sender.window.largest
        )
    } else {
        String::new()
    };
    println!(
        "stored: report {:016x}, {} bytes in {total} chunks, {:.2} s, {} datagrams sent ({:.2} per chunk), round trip {rtt}{window}",
        config.report,
        config.photo.len(),
        secs,
        sender.sent,
        sender.sent as f64 / total as f64,
    );
    Ok(true)
}
