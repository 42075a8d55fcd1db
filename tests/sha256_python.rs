//! Cross-checks `netlessons::sha256` against Python's `hashlib` and `hmac`, an
//! implementation this crate did not write.
//!
//! Every message length from 0 to 300 bytes is covered (so every way the padding can fall
//! across block boundaries), each with a key of a different length (so keys shorter than,
//! equal to and longer than the 64-byte block). A single `python3` process does all the
//! work, which keeps the test fast. Without `python3` the test says so and is skipped.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use netlessons::sha256::{HmacSha256, Sha256, hmac_sha256, sha256, to_hex};

/// The Python side: read every line (message hex, key hex), answer with one line each
/// holding the SHA-256 of the message and the HMAC-SHA256 of the message under the key.
const PYTHON: &str = r#"
import hashlib, hmac, sys
lines = sys.stdin.read().split("\n")
out = []
for line in lines:
    if not line:
        continue
    msg_hex, key_hex = line.split(" ")
    msg, key = bytes.fromhex(msg_hex), bytes.fromhex(key_hex)
    out.append(hashlib.sha256(msg).hexdigest() + " " + hmac.new(key, msg, hashlib.sha256).hexdigest())
sys.stdout.write("\n".join(out) + "\n")
"#;

/// SHA-256 and HMAC-SHA256 agree with Python for every message length from 0 to 300
/// bytes, with keys from 0 to 150 bytes, both one-shot and fed in uneven pieces.
#[test]
fn digests_match_python_hashlib_and_hmac() {
    let mut rng = netlessons::random::Rng::new(0x2545_f491_4f6c_dd1d);
    let cases: Vec<(Vec<u8>, Vec<u8>)> = (0..=300)
        .map(|len| {
            let key_len = (len * 37) % 151;
            (rng.bytes(len), rng.bytes(key_len))
        })
        .collect();

    let mut input = String::new();
    for (msg, key) in &cases {
        input.push_str(&format!("{} {}\n", to_hex(msg), to_hex(key)));
    }

    let child = Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            // libtest captures `eprintln!`; writing to the real stderr makes the skip visible.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED digests_match_python_hashlib_and_hmac: cannot run python3 ({err}); \
                 install Python 3 to run this cross-check"
            );
            return;
        }
    };

    // The script reads all of stdin before writing anything, so writing everything and
    // then closing stdin (by dropping it) cannot deadlock on full pipes.
    {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        stdin
            .write_all(input.as_bytes())
            .expect("write the cases to python3");
    }
    // `wait_with_output` reads stdout and stderr together, so neither can fill up.
    let result = child.wait_with_output().expect("wait for python3");
    assert!(
        result.status.success(),
        "python3 failed ({}): {}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    let output = String::from_utf8(result.stdout).expect("python3 answers in ASCII");

    let answers: Vec<&str> = output.lines().collect();
    assert_eq!(answers.len(), cases.len(), "one answer per case");

    for ((msg, key), answer) in cases.iter().zip(answers) {
        let (want_sha, want_hmac) = answer.split_once(' ').expect("python3 answers 'SHA HMAC'");
        let len = msg.len();

        assert_eq!(to_hex(&sha256(msg)), want_sha, "sha256 of {len} bytes");
        assert_eq!(
            to_hex(&hmac_sha256(key, msg)),
            want_hmac,
            "hmac of {len} bytes, key of {} bytes",
            key.len()
        );

        // The streaming types, fed in pieces whose size depends on the length, must agree.
        let piece = len % 17 + 1;
        let mut hasher = Sha256::new();
        let mut mac = HmacSha256::new(key);
        for chunk in msg.chunks(piece) {
            hasher.update(chunk);
            mac.update(chunk);
        }
        assert_eq!(
            to_hex(&hasher.finish()),
            want_sha,
            "streamed sha256, {len} bytes"
        );
        assert_eq!(
            to_hex(&mac.finish()),
            want_hmac,
            "streamed hmac, {len} bytes"
        );
    }
}
