//! Example 03, the file server and client: the transfer contract, the
//! handshake in front of it, the attacks it must survive, interop with a
//! Python client, and the exercises of chapters 5 and 6.
//!
//! Check your own file server (it must take `--addr`, `--root` and `--users`):
//! `NETLESSONS_03_FILE_SERVER="python3 my_files.py" cargo test --test ex03_file_transfer`
//! and your own client (chapter 6, exercises 3 and 4):
//! `NETLESSONS_03_FILE_CLIENT="python3 my_client.py" cargo test --test ex03_file_transfer exercise_`

mod common;

use assert_cmd::Command as AssertCommand;
use common::fake::FakeServer;
use common::files::{FileClient, hex_digest};
use common::report::assert_bytes;
use common::{
    Rng, Server, dir_entries, file_login_lines, have, override_command, reference_only, temp_dir,
};
use netlessons::auth;
use predicates::prelude::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const SERVER: &str = "03_file_server";
const CLIENT: &str = "03_file_client";

const SECRET: &str = "correct-horse-battery-staple";
const USERS: &str = "# the test users\nlearner:correct-horse-battery-staple\nada:pw:with:colons\n";

/// How long a client example may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fake server's conversation may go on after its client has
/// exited: anything the client sent is already there, so a few seconds.
const FAKE_AFTER_CLIENT: Duration = Duration::from_secs(10);

/// Files of 0 B, 1 B, 64 KiB + 1 and 20 MiB go up and come back byte for
/// byte through the client example, and land in the root unchanged.
#[test]
fn client_example_round_trips() {
    let setup = Setup::new("client-round-trips");
    let server = setup.start(&[]);
    let mut rng = Rng::from_time("client_example_round_trips");
    for size in [0, 1, 64 * 1024 + 1, 20 * 1024 * 1024] {
        let data = rng.bytes(size);
        let name = format!("file-{size}.bin");
        fs::write(setup.dir.join(&name), &data).unwrap();
        client(server.addr(), &setup.dir, &["put", &name])
            .assert()
            .success();
        assert!(
            fs::read(setup.root.join(&name)).unwrap() == data,
            "{name} stored differently"
        );
        let back = format!("back-{size}.bin");
        client(server.addr(), &setup.dir, &["get", &name, "-o", &back])
            .assert()
            .success();
        assert!(
            fs::read(setup.dir.join(&back)).unwrap() == data,
            "{name} came back differently"
        );
    }
}

/// The same sizes over the raw protocol: the server confirms size and
/// digest, and GET returns the same bytes, on one connection.
#[test]
fn raw_protocol_round_trips() {
    let setup = Setup::new("raw-round-trips");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    let mut rng = Rng::from_time("raw_protocol_round_trips");
    for size in [0, 1, 64 * 1024 + 1, 20 * 1024 * 1024] {
        let mut data = rng.bytes(size);
        // Line endings and NULs inside a body are just bytes.
        if size > 8 {
            data[..8].copy_from_slice(b"\n\r\n\0OK\n\n");
        }
        let name = format!("raw-{size}.bin");
        raw.put_ok(&name, &data);
        assert!(
            raw.get(&name).unwrap() == data,
            "{name} came back differently"
        );
        assert!(
            fs::read(setup.root.join(&name)).unwrap() == data,
            "{name} stored differently"
        );
    }
    assert_eq!(raw.ask("QUIT"), "BYE");
    assert!(raw.rest().is_empty(), "the server closes after BYE");
}

/// A PUT over an existing name replaces the file.
#[test]
fn put_replaces_an_existing_file() {
    let setup = Setup::new("replace");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    raw.put_ok("notes.txt", b"first version\n");
    raw.put_ok("notes.txt", b"second\n");
    assert_eq!(raw.get("notes.txt").unwrap(), b"second\n");
    assert_eq!(setup.root_entries(), ["notes.txt"]);
}

/// LIST: sorted by byte order, right sizes and digests; temporaries, hidden
/// files, folders and names a client could not ask for are not listed.
#[test]
fn list_is_sorted_and_shows_only_servable_files() {
    let setup = Setup::new("list");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    assert!(raw.list().is_empty(), "an empty root lists nothing");
    let files: [(&str, &[u8]); 4] = [
        ("b.txt", b"bee\n"),
        ("a.txt", b""),
        ("Z-last-but-upper.txt", b"zed"),
        ("a.txt.1", b"\x00\xff"),
    ];
    for (name, data) in files {
        raw.put_ok(name, data);
    }
    // Things that are in the folder but are not files a client may GET.
    fs::write(setup.root.join(".upload-leftover"), b"partial").unwrap();
    fs::write(setup.root.join(".hidden"), b"x").unwrap();
    fs::write(setup.root.join("has space.txt"), b"x").unwrap();
    fs::create_dir(setup.root.join("subfolder")).unwrap();

    let listed = raw.list();
    let mut expected: Vec<(u64, String, String)> = files
        .iter()
        .map(|(n, d)| (d.len() as u64, hex_digest(d), n.to_string()))
        .collect();
    expected.sort_by(|a, b| a.2.as_bytes().cmp(b.2.as_bytes()));
    assert_eq!(listed, expected);
    assert_eq!(
        listed[0].2, "Z-last-but-upper.txt",
        "byte order: upper case sorts first"
    );
}

/// Every name outside the rule gets `ERR bad name`, for GET and for PUT
/// (before READY, so no body is sent), and nothing outside the root changes.
#[test]
fn bad_names_are_refused_and_nothing_outside_the_root_changes() {
    let setup = Setup::new("bad-names");
    fs::write(setup.dir.join("x"), b"outside").unwrap();
    let server = setup.start(&[]);
    let before = dir_entries(&setup.dir);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    let long = "a".repeat(256);
    let bad: Vec<&[u8]> = vec![
        b"../x",
        b"/etc/passwd",
        b".hidden",
        b"a/b",
        b"a\\b",
        b"a\x00b",
        long.as_bytes(),
        b".",
        b"..",
        b"",
        b"caf\xc3\xa9.txt",
        b"tab\there",
        b"x:y",
    ];
    let data = b"must not land anywhere";
    for name in &bad {
        let shown = String::from_utf8_lossy(name);
        assert_eq!(
            raw.ask([b"GET ", *name].concat()),
            "ERR bad name",
            "GET {shown:?}"
        );
        let header = [
            b"PUT ",
            *name,
            format!(" {} {}", data.len(), hex_digest(data)).as_bytes(),
        ]
        .concat();
        assert_eq!(raw.ask(header), "ERR bad name", "PUT {shown:?}");
    }
    // A space inside the name is a bad name too, not a protocol error.
    assert_eq!(raw.ask("GET my notes.txt"), "ERR bad name");
    assert_eq!(
        raw.ask(format!("PUT my notes.txt 3 {}", hex_digest(b"abc"))),
        "ERR bad name"
    );
    // The connection is still in step: no body was expected after a refusal.
    assert!(raw.list().is_empty());
    assert_eq!(
        dir_entries(&setup.dir),
        before,
        "something changed outside the root"
    );
    assert_eq!(fs::read(setup.dir.join("x")).unwrap(), b"outside");
    assert!(
        setup.root_entries().is_empty(),
        "{:?}",
        setup.root_entries()
    );
    // The longest legal name (255 bytes) works.
    let longest = "b".repeat(255);
    raw.put_ok(&longest, b"ok");
    assert_eq!(raw.get(&longest).unwrap(), b"ok");
}

/// A symlink in the root is not followed out of it: not served, not listed,
/// and a PUT of that name replaces the link, never the file it points to.
#[cfg(unix)]
#[test]
fn symlinks_are_not_followed_out_of_the_root() {
    let setup = Setup::new("symlinks");
    let outside = setup.dir.join("secret.txt");
    fs::write(&outside, b"top secret").unwrap();
    std::os::unix::fs::symlink("../secret.txt", setup.root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, setup.root.join("abs-link")).unwrap();
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    assert_eq!(raw.get("link.txt"), Err("ERR no such file".to_string()));
    assert_eq!(raw.get("abs-link"), Err("ERR no such file".to_string()));
    assert!(raw.list().is_empty(), "symlinks are not listed");
    raw.put_ok("link.txt", b"replaced");
    assert_eq!(
        fs::read(&outside).unwrap(),
        b"top secret",
        "the file outside was written through the link"
    );
    assert!(
        fs::symlink_metadata(setup.root.join("link.txt"))
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(raw.get("link.txt").unwrap(), b"replaced");
}

/// A GET of a missing file is `ERR no such file`, and the connection goes on.
#[test]
fn missing_file_is_no_such_file() {
    let setup = Setup::new("missing");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    assert_eq!(
        raw.get("nothing-here.txt"),
        Err("ERR no such file".to_string())
    );
    raw.put_ok("now-here.txt", b"1");
    assert_eq!(raw.get("now-here.txt").unwrap(), b"1");
}

/// Malformed requests get `ERR bad request` or `ERR unknown command`, and
/// the connection stays usable.
#[test]
fn malformed_requests_are_refused() {
    let setup = Setup::new("malformed");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    let digest = hex_digest(b"abc");
    for (request, reply) in [
        (format!("PUT a.txt -3 {digest}"), "ERR bad request"),
        (format!("PUT a.txt +3 {digest}"), "ERR bad request"),
        (format!("PUT a.txt 0x3 {digest}"), "ERR bad request"),
        (format!("PUT a.txt 3 {}", &digest[..63]), "ERR bad request"),
        (format!("PUT a.txt 3 {digest}00"), "ERR bad request"),
        ("PUT a.txt 3 not-a-digest".to_string(), "ERR bad request"),
        ("PUT a.txt 3".to_string(), "ERR bad request"),
        ("PUT".to_string(), "ERR bad request"),
        ("GET".to_string(), "ERR bad request"),
        ("FROBNICATE".to_string(), "ERR unknown command"),
        ("RETR a.txt".to_string(), "ERR unknown command"),
    ] {
        assert_eq!(raw.ask(&request), reply, "{request}");
    }
    assert!(raw.list().is_empty());
    assert!(setup.root_entries().is_empty());
}

/// A wrong secret, an unknown user and a malformed AUTH line all get the
/// same `DENIED`, and then the connection closes.
#[test]
fn wrong_secret_and_unknown_user_get_the_same_denied() {
    let setup = Setup::new("denied");
    let server = setup.start(&[]);
    let attempts: [(&str, &str); 3] = [("learner", "guess"), ("nobody", SECRET), ("ada", SECRET)];
    for (user, secret) in attempts {
        let mut raw = FileClient::connect(server.addr());
        let sn = raw.challenge();
        raw.send(file_login_lines(&sn, user, secret).unwrap().line);
        assert_eq!(raw.rest(), b"DENIED\n", "{user} with a wrong secret");
    }
    let mut raw = FileClient::connect(server.addr());
    raw.challenge();
    raw.send("AUTH learner");
    assert_eq!(raw.rest(), b"DENIED\n", "malformed AUTH line");
    // A command before logging in is not a way around the handshake.
    let mut raw = FileClient::connect(server.addr());
    raw.challenge();
    raw.send("LIST");
    assert_eq!(raw.rest(), b"DENIED\n", "LIST instead of AUTH");
    // And a secret with colons in it (split at the first ':') works.
    FileClient::login(server.addr(), "ada", "pw:with:colons");
}

/// The client example explains a wrong secret and exits non-zero.
#[test]
fn client_example_explains_denied() {
    let setup = Setup::new("client-denied");
    let server = setup.start(&[]);
    client(server.addr(), &setup.dir, &["list"])
        .env("NETLESSONS_SECRET", "wrong")
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("access denied")
                .and(predicate::str::contains("NETLESSONS_SECRET")),
        );
}

/// A response captured from one login and replayed on a new connection is
/// denied: the new connection has a new server nonce.
#[test]
fn replayed_response_is_denied() {
    let setup = Setup::new("replay");
    let server = setup.start(&[]);
    let mut first = FileClient::connect(server.addr());
    let sn = first.challenge();
    let captured = file_login_lines(&sn, "learner", SECRET).unwrap().line;
    first.send(&captured);
    assert!(first.line().starts_with("OK "));
    let mut second = FileClient::connect(server.addr());
    assert_ne!(
        second.challenge(),
        sn,
        "every connection gets a fresh nonce"
    );
    second.send(&captured);
    assert_eq!(second.rest(), b"DENIED\n");
}

/// A client written in Python, with `hmac` and `hashlib` only, logs in,
/// checks the server's proof, downloads a file and checks its digest.
#[test]
fn python_client_logs_in_and_downloads() {
    if !have("python3", "python_client_logs_in_and_downloads") {
        return;
    }
    let setup = Setup::new("python");
    let server = setup.start(&[]);
    let data = Rng::new(3).bytes(300_000);
    FileClient::login(server.addr(), "learner", SECRET).put_ok("data.bin", &data);
    let script = r#"
import hashlib, hmac, os, socket, sys
port, user, secret, name = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), sys.argv[4]
with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
    f = s.makefile("rwb")
    sn = f.readline().decode().split()[2]
    cn = os.urandom(32).hex()
    def proof(role):
        return hmac.new(secret, f"{role} {sn} {cn} {user}".encode(), hashlib.sha256).hexdigest()
    f.write(f"AUTH {user} {cn} {proof('client')}\n".encode()); f.flush()
    ok, server_proof = f.readline().decode().split()
    if ok != "OK" or not hmac.compare_digest(server_proof, proof("server")):
        sys.exit("the server could not prove it knows the secret")
    f.write(f"GET {name}\n".encode()); f.flush()
    ok, size, digest = f.readline().decode().split()
    data = f.read(int(size))
    if hashlib.sha256(data).hexdigest() != digest:
        sys.exit("digest mismatch")
    f.write(b"QUIT\n"); f.flush()
    print(f.readline().decode().strip(), len(data), digest)
"#;
    let port = server.addr().port().to_string();
    let out = common::python(script, &[&port, "learner", SECRET, "data.bin"]);
    assert_eq!(
        out.trim(),
        format!("BYE {} {}", data.len(), hex_digest(&data))
    );
}

/// A body that does not match its digest gets `ERR digest mismatch`, is
/// not stored, and an older file of that name is untouched.
#[test]
fn digest_mismatch_stores_nothing() {
    let setup = Setup::new("mismatch");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    raw.put_ok("kept.txt", b"the good version");
    for name in ["new.txt", "kept.txt"] {
        let claimed = hex_digest(b"what I said I would send");
        assert_eq!(raw.ask(format!("PUT {name} 24 {claimed}")), "READY");
        raw.writer.write_all(b"what I actually sent!!!!").unwrap();
        assert_eq!(raw.line(), "ERR digest mismatch", "{name}");
    }
    assert_eq!(raw.get("new.txt"), Err("ERR no such file".to_string()));
    assert_eq!(raw.get("kept.txt").unwrap(), b"the good version");
    assert_eq!(
        setup.root_entries(),
        ["kept.txt"],
        "a temporary was left behind"
    );
}

/// When the disk fills up half-way through an upload, the client gets
/// `ERR disk full` once it has sent its body, the partial file is gone, the
/// server logs it, and the same connection goes on working (a small upload
/// then succeeds). The full disk is simulated honestly but not exactly: the
/// server runs under `ulimit -f` (with `SIGXFSZ` ignored, as a shell's `trap`
/// leaves it for the program it starts), so a write past the limit fails
/// with `EFBIG` where a full disk gives `ENOSPC`; the server treats both
/// alike. (Reference only: it runs the server through its own shell.)
#[test]
fn a_full_disk_mid_upload_gets_err_disk_full() {
    if !reference_only(SERVER, "a_full_disk_mid_upload_gets_err_disk_full") {
        return;
    }
    let setup = Setup::new("disk-full");
    let mut cmd = Command::new("sh");
    // 400 blocks: 200 KiB in dash (512-byte blocks), 400 KiB in bash.
    cmd.arg("-c")
        .arg("trap '' XFSZ && ulimit -f 400 && exec \"$0\" \"$@\"")
        .arg(common::example_path(SERVER))
        .args(["--addr", "127.0.0.1:0", "--deny-delay-ms", "20"])
        .arg("--root")
        .arg(&setup.root)
        .arg("--users")
        .arg(&setup.users);
    let server = Server::start_command(SERVER, cmd, 1);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(raw.put("big.bin", &big), "ERR disk full");
    server.expect_stderr("refused big.bin: disk full", Duration::from_secs(10));
    assert_eq!(
        setup.root_entries(),
        Vec::<String>::new(),
        "a partial file was left"
    );
    raw.put_ok("small.txt", b"there was room for this one");
    assert_eq!(
        raw.get("small.txt").unwrap(),
        b"there was room for this one"
    );
    assert_eq!(setup.root_entries(), ["small.txt"]);
}

/// A client that disappears halfway through an upload leaves nothing: no
/// file under the name, no temporary, the older version intact.
#[test]
fn client_dropped_mid_upload_leaves_nothing() {
    let setup = Setup::new("client-dropped");
    let server = setup.start(&[]);
    FileClient::login(server.addr(), "learner", SECRET).put_ok("old.bin", b"old");
    for name in ["fresh.bin", "old.bin"] {
        let raw = start_partial_upload(server.addr(), name, 1 << 20, 300_000);
        drop(raw); // what a killed client looks like to the server
        let clean = eventually(Duration::from_secs(10), || {
            setup.root_entries() == ["old.bin"]
        });
        assert!(clean, "after dropping {name}: {:?}", setup.root_entries());
    }
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    let old = raw.get("old.bin").expect("GET old.bin");
    assert_bytes(
        "GET old.bin after the dropped uploads",
        b"old",
        b"old",
        &old,
    );
    assert_eq!(raw.get("fresh.bin"), Err("ERR no such file".to_string()));
}

/// The server killed (SIGKILL) halfway through an upload: the partial data
/// never shows under the file's name, and a restart on the same root
/// removes the temporary it left.
#[test]
fn server_killed_mid_upload_leaves_nothing_after_restart() {
    let setup = Setup::new("server-killed");
    let mut server = setup.start(&[]);
    FileClient::login(server.addr(), "learner", SECRET).put_ok("old.bin", b"old");
    let _raw = start_partial_upload(server.addr(), "old.bin", 4 << 20, 1 << 20);
    // Wait until part of the upload is on disk, under some temporary name.
    let partial = || {
        fs::read_dir(&setup.root)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name() != "old.bin" && e.metadata().is_ok_and(|m| m.len() > 0))
    };
    let seen = eventually(Duration::from_secs(10), partial);
    if override_command(SERVER).is_none() {
        assert!(
            seen,
            "the upload never reached the disk: {:?}",
            setup.root_entries()
        );
    }
    server.kill();
    assert_bytes(
        "old.bin on disk after the kill (the old file was damaged)",
        b"old",
        b"old",
        &fs::read(setup.root.join("old.bin")).unwrap(),
    );

    let server = setup.start(&[]);
    let clean = eventually(Duration::from_secs(5), || {
        setup.root_entries() == ["old.bin"]
    });
    assert!(clean, "leftovers after restart: {:?}", setup.root_entries());
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    assert_eq!(raw.list().len(), 1);
    let old = raw.get("old.bin").expect("GET old.bin");
    assert_bytes("GET old.bin after the restart", b"old", b"old", &old);
}

/// Uploads over `--max-size` are refused before `READY`; one at the limit is fine.
#[test]
fn too_large_is_refused_before_ready() {
    let setup = Setup::new("too-large");
    let server = setup.start(&["--max-size", "1000"]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    let big = vec![b'x'; 1001];
    assert_eq!(
        raw.ask(format!("PUT big.bin 1001 {}", hex_digest(&big))),
        "ERR too large"
    );
    assert_eq!(
        raw.ask(format!(
            "PUT huge.bin 99999999999999999999999 {}",
            hex_digest(b"")
        )),
        "ERR too large"
    );
    raw.put_ok("just-fits.bin", &big[..1000]);
    assert_eq!(setup.root_entries(), ["just-fits.bin"]);
    fs::write(setup.dir.join("big.bin"), &big).unwrap();
    let assert = client(server.addr(), &setup.dir, &["put", "big.bin"])
        .assert()
        .failure();
    if override_command(CLIENT).is_none() {
        assert.stderr(predicate::str::contains("larger than the server accepts"));
    }
}

/// Several clients uploading the same name at once: every upload is
/// confirmed, and the file that remains is exactly one of them, never a mix.
#[test]
fn concurrent_uploads_of_one_name_leave_one_whole_file() {
    let setup = Setup::new("concurrent");
    let server = setup.start(&[]);
    let addr = server.addr();
    let versions: Vec<Vec<u8>> = (0..4).map(|i| Rng::new(100 + i).bytes(1 << 20)).collect();
    let uploads: Vec<_> = versions
        .iter()
        .cloned()
        .map(|data| {
            thread::spawn(move || {
                FileClient::login(addr, "learner", SECRET).put_ok("same.bin", &data)
            })
        })
        .collect();
    for upload in uploads {
        upload.join().unwrap();
    }
    let stored = fs::read(setup.root.join("same.bin")).unwrap();
    assert!(
        versions.contains(&stored),
        "the stored file is not one of the uploads"
    );
    assert_eq!(setup.root_entries(), ["same.bin"]);
}

/// A download whose bytes do not match the digest, or that is cut short, is
/// reported and not saved: no file, no leftover part file, an existing file
/// untouched.
#[test]
fn client_example_refuses_a_damaged_download() {
    let setup = Setup::new("client-mismatch");
    let header = format!("OK 5 {}", hex_digest(b"hello"));
    let fake = fake_server(SECRET, header.clone(), b"HELLO".to_vec());
    let assert = client(fake.addr(), &setup.dir, &["get", "greeting.txt"])
        .assert()
        .failure();
    fake.result(FAKE_AFTER_CLIENT);
    if override_command(CLIENT).is_none() {
        assert.stderr(predicate::str::contains("digest mismatch"));
    }
    fs::write(setup.dir.join("existing.txt"), b"keep me").unwrap();
    let fake = fake_server(SECRET, header, b"HELLO".to_vec());
    client(
        fake.addr(),
        &setup.dir,
        &["get", "greeting.txt", "-o", "existing.txt"],
    )
    .assert()
    .failure();
    fake.result(FAKE_AFTER_CLIENT);
    assert_eq!(
        fs::read(setup.dir.join("existing.txt")).unwrap(),
        b"keep me"
    );
    // A body cut short: the connection closes after 2 of 5 bytes.
    let fake = fake_server(
        SECRET,
        format!("OK 5 {}", hex_digest(b"hello")),
        b"he".to_vec(),
    );
    let assert = client(fake.addr(), &setup.dir, &["get", "greeting.txt"])
        .assert()
        .failure();
    fake.result(FAKE_AFTER_CLIENT);
    if override_command(CLIENT).is_none() {
        assert.stderr(
            predicate::str::contains("stopped after")
                .and(predicate::str::contains("nothing was saved")),
        );
    }
    assert_eq!(
        dir_entries(&setup.dir),
        ["existing.txt", "root", "users.txt"],
        "something was left behind"
    );
}

/// The client example's messages for a missing file, a refused connection,
/// and a missing secret are clear, and it exits non-zero.
#[test]
fn client_example_explains_failures() {
    if !reference_only(CLIENT, "client_example_explains_failures") {
        return;
    }
    let setup = Setup::new("client-failures");
    let server = setup.start(&[]);
    client(server.addr(), &setup.dir, &["get", "nope.txt"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no file named \"nope.txt\""));
    let port = common::free_port();
    client(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &setup.dir,
        &["list"],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains("could not connect"));
    client(server.addr(), &setup.dir, &["list"])
        .env_remove("NETLESSONS_SECRET")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("NETLESSONS_SECRET"));
    client(server.addr(), &setup.dir, &["get", "../etc/passwd"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a name the server accepts"));
    fs::write(setup.dir.join("my notes.txt"), b"x").unwrap();
    client(server.addr(), &setup.dir, &["put", "my notes.txt"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--as NAME"));
    client(
        server.addr(),
        &setup.dir,
        &["put", "my notes.txt", "--as", "notes.txt"],
    )
    .assert()
    .success();
    assert_eq!(setup.root_entries(), ["notes.txt"]);
}

/// Started with no flags but `--addr`, the server makes its folder and a
/// secret, and the command it prints works as printed, both ways.
#[test]
fn no_flags_start_prints_a_command_that_works() {
    if !reference_only(SERVER, "no_flags_start_prints_a_command_that_works") {
        return;
    }
    let dir = temp_dir("ex03-no-flags");
    let mut cmd = common::command(SERVER);
    cmd.current_dir(&dir).args(["--addr", "127.0.0.1:0"]);
    let server = Server::start_command(SERVER, cmd, 1);
    server.expect_stderr("--user learner list", Duration::from_secs(10));
    assert!(
        dir.join("files").is_dir(),
        "the default root ./files was not created"
    );
    let stderr = server.stderr();
    let printed = stderr
        .lines()
        .find(|l| l.contains("NETLESSONS_SECRET="))
        .unwrap()
        .trim();
    let (secret, rest) = printed
        .strip_prefix("NETLESSONS_SECRET=")
        .unwrap()
        .split_once(' ')
        .unwrap();
    let args: Vec<&str> = rest
        .strip_prefix("cargo run --example 03_file_client -- ")
        .expect("the printed command runs the client example")
        .split(' ')
        .collect();
    assert_eq!(
        args,
        [
            "--addr",
            &server.addr().to_string(),
            "--user",
            "learner",
            "list"
        ]
    );
    let run = |extra: &[&str]| {
        let mut cmd = AssertCommand::from_std(common::command(CLIENT));
        cmd.current_dir(&dir)
            .env("NETLESSONS_SECRET", secret)
            .args(&args[..4])
            .args(extra)
            .timeout(CLIENT_TIMEOUT);
        cmd.assert().success()
    };
    fs::write(dir.join("hello.txt"), b"hello, file server\n").unwrap();
    run(&["put", "hello.txt"]);
    run(&["list"]).stdout(predicate::str::contains("hello.txt"));
    run(&["get", "hello.txt", "-o", "back.txt"]);
    assert_eq!(
        fs::read(dir.join("back.txt")).unwrap(),
        b"hello, file server\n"
    );
    assert_eq!(
        fs::read(dir.join("files/hello.txt")).unwrap(),
        b"hello, file server\n"
    );
}

/// A start cleans up the reference's temporaries that an earlier run left, and says so.
#[test]
fn stale_temporaries_are_removed_at_start() {
    // Which names count as "ours" is the reference's choice (`.upload-…`);
    // server_killed_mid_upload_leaves_nothing_after_restart checks any server.
    if !reference_only(SERVER, "stale_temporaries_are_removed_at_start") {
        return;
    }
    let setup = Setup::new("stale");
    fs::write(
        setup.root.join(".upload-0123456789abcdef"),
        b"half an upload",
    )
    .unwrap();
    fs::write(setup.root.join("kept.txt"), b"kept").unwrap();
    let server = setup.start(&[]);
    // Cleaned before the server listens: no client can ever see a leftover.
    assert_eq!(setup.root_entries(), ["kept.txt"]);
    server.expect_stderr("removed 1 unfinished upload", Duration::from_secs(10));
}

/// With `--max-conns 1`, a second client gets `ERR server full` and is closed.
#[test]
fn max_conns_refuses_with_err_server_full() {
    if !reference_only(SERVER, "max_conns_refuses_with_err_server_full") {
        return;
    }
    let setup = Setup::new("max-conns");
    let server = setup.start(&["--max-conns", "1"]);
    let mut first = FileClient::login(server.addr(), "learner", SECRET);
    let mut second = FileClient::connect(server.addr());
    assert_eq!(second.rest(), b"ERR server full\n");
    client(server.addr(), &setup.dir, &["list"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("server full"));
    assert!(first.list().is_empty(), "the first client is still served");
}

/// `--trace` shows the protocol on stderr, bodies summarised by size.
#[test]
fn trace_shows_the_protocol() {
    if !reference_only(SERVER, "trace_shows_the_protocol") {
        return;
    }
    let setup = Setup::new("trace");
    let server = setup.start(&["--trace"]);
    FileClient::login(server.addr(), "learner", SECRET).put_ok("notes.txt", b"hello world\n");
    let wait = Duration::from_secs(10);
    let put = format!("<- PUT notes.txt 12 {}", hex_digest(b"hello world\n"));
    server.expect_stderr(&put, wait);
    server.expect_stderr("-> READY", wait);
    server.expect_stderr("<- [12 bytes]", wait);
    server.expect_stderr("-> AUTH HMAC-SHA256 ", wait);
    assert!(
        !server.stderr().contains(SECRET),
        "the secret must never be shown"
    );
    assert_eq!(
        server.stdout().lines().count(),
        1,
        "stdout holds only the listening line"
    );
}

/// `--help` works and a bad flag or users file is a clear error.
#[test]
fn help_and_bad_flags() {
    for example in [SERVER, CLIENT] {
        common::check_help_and_unknown_flag(example, "--addr", CLIENT_TIMEOUT);
    }
    // The users-file error wording is the reference server's too.
    if !reference_only(SERVER, "help_and_bad_flags (bad users file)") {
        return;
    }
    let setup = Setup::new("bad-users");
    fs::write(&setup.users, "learner:ok\nthis line has no colon\n").unwrap();
    AssertCommand::from_std(common::command(SERVER))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--root",
            setup.root.to_str().unwrap(),
        ])
        .args(["--users", setup.users.to_str().unwrap()])
        .timeout(CLIENT_TIMEOUT)
        .assert()
        .failure()
        .stderr(predicate::str::contains("line 2"));
}

/// `03_file_server 7005` (a port without `--addr`) is refused: exit 2 and
/// "did you mean --addr 127.0.0.1:7005?", not a server listening elsewhere.
#[test]
fn stray_argument_is_refused() {
    common::check_stray_argument(SERVER, "127.0.0.1", Duration::from_secs(30));
}

/// Exercise 1 (chapter 5): `DELETE <name>` removes a file: `OK`, then
/// `ERR no such file`; bad names are refused as everywhere else; a folder
/// or a symlink in the root is not a file the server serves, so DELETE
/// leaves it (and what it points at) alone with `ERR no such file`.
#[test]
fn exercise_1_delete() {
    let setup = Setup::new("ex-delete");
    fs::write(setup.dir.join("x"), b"outside").unwrap();
    fs::create_dir(setup.root.join("photos")).unwrap();
    fs::write(setup.root.join("photos/cat.jpg"), b"meow").unwrap();
    std::os::unix::fs::symlink("../x", setup.root.join("shortcut.txt")).unwrap();
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    raw.put_ok("old-notes.txt", b"delete me");
    raw.put_ok("keep.txt", b"keep me");
    assert_eq!(raw.ask("DELETE old-notes.txt"), "OK");
    assert_eq!(
        raw.get("old-notes.txt"),
        Err("ERR no such file".to_string())
    );
    assert_eq!(raw.ask("DELETE old-notes.txt"), "ERR no such file");
    for bad in ["../x", ".hidden", "a/b", "/etc/passwd", "photos/cat.jpg"] {
        assert_eq!(
            raw.ask(format!("DELETE {bad}")),
            "ERR bad name",
            "DELETE {bad}"
        );
    }
    assert_eq!(
        raw.ask("DELETE photos"),
        "ERR no such file",
        "DELETE of a folder"
    );
    assert_eq!(
        raw.ask("DELETE shortcut.txt"),
        "ERR no such file",
        "DELETE of a symlink"
    );
    assert_eq!(fs::read(setup.dir.join("x")).unwrap(), b"outside");
    assert_eq!(
        fs::read(setup.root.join("photos/cat.jpg")).unwrap(),
        b"meow",
        "DELETE photos removed the folder's contents"
    );
    assert!(
        fs::symlink_metadata(setup.root.join("shortcut.txt")).is_ok_and(|m| m.is_symlink()),
        "DELETE shortcut.txt removed the symlink"
    );
    assert_eq!(
        raw.list()
            .into_iter()
            .map(|(_, _, n)| n)
            .collect::<Vec<_>>(),
        ["keep.txt"]
    );
    assert_eq!(setup.root_entries(), ["keep.txt", "photos", "shortcut.txt"]);
}

/// Exercise 2 (chapter 5): `STAT <name>` answers `OK <size> <sha256>` like
/// GET, but sends no body.
#[test]
fn exercise_2_stat() {
    let setup = Setup::new("ex-stat");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    let data = Rng::new(5).bytes(70_000);
    raw.put_ok("photo.jpg", &data);
    assert_eq!(
        raw.ask("STAT photo.jpg"),
        format!("OK 70000 {}", hex_digest(&data))
    );
    // No body followed: the very next line is the answer to the next command.
    assert_eq!(raw.ask("STAT missing.jpg"), "ERR no such file");
    assert_eq!(raw.ask("STAT ../photo.jpg"), "ERR bad name");
    raw.put_ok("empty", b"");
    assert_eq!(raw.ask("STAT empty"), format!("OK 0 {}", hex_digest(b"")));
}

/// Exercise 3 (chapter 6): your client logs in and `list` prints one line
/// per file: size, digest and name, separated by spaces; a wrong secret
/// makes it exit non-zero.
#[test]
fn exercise_3_client_lists_files() {
    let setup = Setup::new("ex-client-list");
    let server = setup.start(&[]);
    let mut raw = FileClient::login(server.addr(), "learner", SECRET);
    raw.put_ok("b.txt", b"bee");
    raw.put_ok("a.txt", b"");
    let out = client(server.addr(), &setup.dir, &["list"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let lines: Vec<Vec<String>> = String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    let expected = [
        ["0", &hex_digest(b""), "a.txt"],
        ["3", &hex_digest(b"bee"), "b.txt"],
    ];
    assert_eq!(
        lines,
        expected,
        "stdout was:\n{}",
        String::from_utf8_lossy(&out)
    );
    client(server.addr(), &setup.dir, &["list"])
        .env("NETLESSONS_SECRET", "wrong")
        .assert()
        .failure();
}

/// Exercise 4 (chapter 6): your client refuses a server that cannot prove
/// it knows the secret, exits non-zero, and sends it nothing after `AUTH`.
#[test]
fn exercise_4_client_refuses_an_impostor() {
    let fake = FakeServer::start("an impostor file server", |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        writeln!(writer, "AUTH HMAC-SHA256 {}", auth::new_nonce().unwrap()).unwrap();
        let mut line = String::new();
        // A client that never answers: the read times out, and the line stays empty.
        let _ = reader.read_line(&mut line);
        // An impostor does not know the secret, so its "proof" is a guess.
        let _ = writeln!(writer, "OK {}", "0".repeat(64));
        let mut after = Vec::new();
        let _ = reader.read_to_end(&mut after);
        (line, after)
    });
    let dir = temp_dir("ex03-impostor");
    let assert = client(fake.addr(), &dir, &["list"]).assert().failure();
    let output = assert.get_output().clone();
    if override_command(CLIENT).is_none() {
        assert.stderr(predicate::str::contains("impostor"));
    }
    let (auth_line, after) = fake.result_after(FAKE_AFTER_CLIENT, &output);
    assert!(
        auth_line.starts_with("AUTH learner "),
        "the client did not answer the challenge with 'AUTH learner <nonce> <proof>': sent {}",
        common::report::show(auth_line.as_bytes())
    );
    assert!(
        after.is_empty(),
        "the client went on talking to an impostor: sent {}",
        common::report::show(&after)
    );
}

/// One test's folders: `dir/root` is served, `dir/users.txt` lists the users,
/// and `dir` itself is "outside the root", where nothing may ever change.
struct Setup {
    dir: PathBuf,
    root: PathBuf,
    users: PathBuf,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let dir = temp_dir(&format!("ex03-{test}"));
        let root = dir.join("root");
        fs::create_dir(&root).unwrap();
        let users = dir.join("users.txt");
        fs::write(&users, USERS).unwrap();
        Setup { dir, root, users }
    }

    /// Starts the server on this root with these users, plus `extra` flags.
    /// The reference also gets a short pause before DENIED, so that tests of
    /// wrong logins stay fast; a learner's program is not given that flag.
    fn start(&self, extra: &[&str]) -> Server {
        let mut args = vec![
            "--root",
            self.root.to_str().unwrap(),
            "--users",
            self.users.to_str().unwrap(),
        ];
        if override_command(SERVER).is_none() {
            args.extend(["--deny-delay-ms", "20"]);
        }
        args.extend(extra);
        Server::start(SERVER, &args)
    }

    /// The names in the root, sorted (temporaries included).
    fn root_entries(&self) -> Vec<String> {
        dir_entries(&self.root)
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The client example (or a learner's client) working in `cwd` against
/// `addr`, with the test secret in `NETLESSONS_SECRET`.
///
/// A learner's client runs from the crate's folder (so a relative path to
/// it works), so file arguments are given in full: `put PATH` and `-o PATH`
/// are made absolute, and under an override a `get NAME` without `-o`
/// gets `-o cwd/NAME`, where the reference would save it.
fn client(addr: SocketAddr, cwd: &Path, args: &[&str]) -> AssertCommand {
    let mut full: Vec<String> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let is_path = i > 0 && matches!(args[i - 1], "put" | "-o" | "--output");
        full.push(if is_path {
            cwd.join(arg).display().to_string()
        } else {
            arg.to_string()
        });
    }
    if override_command(CLIENT).is_some()
        && args.first() == Some(&"get")
        && !args.contains(&"-o")
        && args.len() == 2
    {
        full.push("-o".to_string());
        full.push(cwd.join(args[1]).display().to_string());
    }
    let mut cmd = AssertCommand::from_std(common::command_in(CLIENT, cwd));
    cmd.env("NETLESSONS_SECRET", SECRET)
        .args(["--addr", &addr.to_string(), "--user", "learner"])
        .args(full)
        .timeout(CLIENT_TIMEOUT);
    cmd
}

/// Starts an upload of `total` bytes and sends only `sent` of them.
fn start_partial_upload(addr: SocketAddr, name: &str, total: usize, sent: usize) -> FileClient {
    let data = Rng::new(9).bytes(total);
    let mut raw = FileClient::login(addr, "learner", SECRET);
    assert_eq!(
        raw.ask(format!("PUT {name} {total} {}", hex_digest(&data))),
        "READY"
    );
    raw.writer.write_all(&data[..sent]).unwrap();
    raw
}

/// A fake server that does the handshake with `secret` (so a client with
/// the same secret accepts it), then answers one GET with `header` and `body`.
fn fake_server(secret: &'static str, header: String, body: Vec<u8>) -> FakeServer<()> {
    FakeServer::start("a fake file server sending a damaged body", move |stream| {
        let (mut reader, mut writer, sn, mut line) = common::files::fake_challenge(stream);
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.len() == 4 && words[0] == "AUTH",
            "expected 'AUTH <user> <nonce> <proof>', got {}",
            common::report::show(line.as_bytes())
        );
        writeln!(
            writer,
            "OK {}",
            auth::server_proof(secret, &sn, words[2], words[1])
        )
        .unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        writeln!(writer, "{header}").unwrap();
        writer.write_all(&body).unwrap();
        // Then end our side: a short body is all the client will ever get.
        writer.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = reader.read_to_end(&mut Vec::new());
    })
}
