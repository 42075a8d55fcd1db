//! Clients the crate did not write: curl, wget, Python's `http.client` and
//! `urllib`, and a real browser (headless Chromium) loading this course.
//! A missing tool is reported on stderr and the test skipped; CI installs
//! them all (`.ci/run`).

use super::{SERVER, hello, start};
use crate::common::{Server, files_under, have, say, skipped, temp_dir};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Runs `cmd` under `timeout` seconds (the `timeout` tool), capturing its output.
fn run(cmd: &mut Command, timeout_secs: u32) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut wrapped = Command::new("timeout");
    wrapped
        .arg("--kill-after=5")
        .arg(timeout_secs.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
        .output()
        .unwrap_or_else(|e| panic!("could not run {program}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// curl reuses one kept-alive connection for two URLs, fetches a range
/// (`-r`), sends `If-Modified-Since` (`-z`) and gets 304, and with
/// `--path-as-is` sends a `..` that is refused.
#[test]
fn curl_reuse_range_conditional_and_path_as_is() {
    if !have("curl", "curl_reuse_range_conditional_and_path_as_is") {
        return;
    }
    let (server, _root) = start("curl", &[]);
    let url = format!("http://{}/hello.txt", server.addr());
    let out = run(Command::new("curl").args(["-sv", &url, &url]), 60);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, [hello(), hello()].concat());
    let verbose = text(&out.stderr);
    assert!(
        verbose.contains("Re-using existing connection"),
        "curl opened a second connection:\n{verbose}"
    );

    let out = run(Command::new("curl").args(["-s", "-r", "10-19", &url]), 60);
    assert_eq!(out.stdout, hello()[10..20].to_vec());

    let head = run(Command::new("curl").args(["-sI", &url]), 60);
    let date = text(&head.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("Last-Modified: ")
                .map(|d| d.trim().to_string())
        })
        .expect("curl -I shows Last-Modified");
    assert_eq!(curl_status(&["-z", &date, &url]), "304");
    let old = "Sat, 01 Jan 2000 00:00:00 GMT";
    let out = run(Command::new("curl").args(["-s", "-z", old, &url]), 60);
    assert_eq!(out.stdout, hello());

    let sneaky = format!("http://{}/docs/../../outside.txt", server.addr());
    assert_eq!(curl_status(&["--path-as-is", &sneaky]), "400");
    // Without --path-as-is, curl itself removes the dots first.
    assert_eq!(curl_status(&[&sneaky]), "404");
}

/// Python's `http.client` keeps one connection for several requests
/// (GET, HEAD, a range, a 404), and `urllib` follows the folder redirect.
#[test]
fn python_http_client_and_urllib() {
    if !have("python3", "python_http_client_and_urllib") {
        return;
    }
    let (server, _root) = start("python", &[]);
    let script = r#"
import http.client, sys, urllib.request, urllib.error
host, port = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection(host, port, timeout=20)
seen = set()
for method, path, headers in [("GET", "/hello.txt", {}), ("HEAD", "/hello.txt", {}),
                              ("GET", "/hello.txt", {"Range": "bytes=0-4"}), ("GET", "/missing", {})]:
    c.request(method, path, headers=headers)
    r = c.getresponse()
    body = r.read()
    seen.add(c.sock.getsockname())
    print(method, path, r.status, len(body), r.getheader("Content-Length"))
print("connections", len(seen))
with urllib.request.urlopen(f"http://{host}:{port}/docs", timeout=20) as r:
    page = r.read().decode()
    print("urllib", r.status, r.geturl().endswith("/docs/"), "five.txt" in page)
try:
    urllib.request.urlopen(f"http://{host}:{port}/nothing", timeout=20)
except urllib.error.HTTPError as e:
    print("urllib error", e.code)
"#;
    let addr = server.addr();
    let out = run(
        Command::new("python3").args([
            "-c",
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ]),
        120,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let expected = "GET /hello.txt 200 1000 1000\n\
                    HEAD /hello.txt 200 0 1000\n\
                    GET /hello.txt 206 5 5\n\
                    connections 1\n";
    for line in expected.lines() {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains("GET /missing 404"), "{stdout}");
    assert!(stdout.contains("urllib 200 True True"), "{stdout}");
    assert!(stdout.contains("urllib error 404"), "{stdout}");
}

/// `wget -r` mirrors the course as built by `cargo doc`: the copies are
/// identical, and every error it meets is a correct answer: a 404 only for
/// a file that is not there, a 400 only for a path that breaks a rule (wget
/// makes up links with backslashes by reading rustdoc's scripts).
#[test]
fn wget_mirrors_the_course() {
    if !have("wget", "wget_mirrors_the_course") {
        return;
    }
    let Some((server, doc)) = serve_docs() else {
        return;
    };
    let dest = temp_dir("wget-mirror");
    let url = format!("http://{}/netlessons/index.html", server.addr());
    let out = run(
        Command::new("wget")
            .args([
                "-r",
                "-l",
                "5",
                "-nv",
                "-e",
                "robots=off",
                "--tries=1",
                "--timeout=20",
                "-P",
            ])
            .arg(&dest)
            .arg(&url),
        600,
    );
    // 0: all fine; 8: the server answered some request with an error.
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(8)),
        "wget exited {code:?}:\n{}",
        text(&out.stderr)
    );
    let log = wait_for_log_quiet(&server);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (target, status) in log_entries(&log) {
        *counts.entry(status.clone()).or_default() += 1;
        let path = target.split('?').next().unwrap_or("");
        match status.as_str() {
            "200" | "301" | "304" => {}
            "404" => assert!(!exists_under(&doc, path), "404 for {target}, which exists"),
            "400" => assert!(
                path.contains('\\')
                    || path.to_ascii_lowercase().contains("%5c")
                    || path.contains("/../"),
                "400 for {target}, which breaks no rule"
            ),
            other => panic!("wget got {other} for {target}"),
        }
    }
    say(&format!(
        "wget_mirrors_the_course: answers by status {counts:?}"
    ));
    assert!(
        counts.get("200").copied().unwrap_or(0) > 20,
        "wget fetched too little: {counts:?}"
    );
    // Every file wget saved is byte for byte the one on disk.
    let site = dest.join(server.addr().to_string());
    let mut compared = 0;
    for relative in files_under(&site) {
        let original = doc.join(&relative);
        if original.is_file() {
            assert_eq!(
                fs::read(site.join(&relative)).unwrap(),
                fs::read(&original).unwrap(),
                "{relative}"
            );
            compared += 1;
        }
    }
    assert!(
        compared > 20,
        "only {compared} mirrored files to compare under {}",
        site.display()
    );
}

/// Headless Chromium renders the served course, and the server's log shows
/// every stylesheet, script and font it asked for answered `200`.
#[test]
fn chromium_renders_the_course() {
    let Some(browser) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) else {
        skipped("chromium_renders_the_course: `chromium` is not installed");
        return;
    };
    let Some((server, _doc)) = serve_docs() else {
        return;
    };
    let url = format!("http://{}/netlessons/tutorial/", server.addr());
    let profile = temp_dir("chromium-profile");
    let out = run(
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--dump-dom", &url]),
        180,
    );
    let dom = text(&out.stdout);
    assert!(
        dom.contains("<title>netlessons::tutorial"),
        "no rendered page:\n{}\n{}",
        &dom[..dom.len().min(2000)],
        text(&out.stderr)
    );
    let log = wait_for_log_quiet(&server);
    let entries = log_entries(&log);
    let mut kinds = BTreeMap::new();
    let mut served = std::collections::BTreeSet::new();
    for (target, status) in &entries {
        let path = target.split('?').next().unwrap_or("");
        let kind = [".css", ".js", ".woff2", ".woff", ".ttf"]
            .into_iter()
            .find(|ext| path.ends_with(ext));
        if let Some(kind) = kind {
            // The first answer for each file is a 200. A browser may ask
            // again within one load (a font named by a preload and by a
            // stylesheet) with the validators it just got: then a 304 is right.
            let first = !served.contains(target);
            let fine = status == "200" || (!first && status == "304");
            assert!(fine, "{target} was answered {status}:\n{log}");
            served.insert(target.clone());
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    say(&format!(
        "chromium_renders_the_course: {} requests, assets by kind {kinds:?}",
        entries.len()
    ));
    for kind in [".css", ".js", ".woff2"] {
        assert!(
            kinds.contains_key(kind),
            "the browser asked for no {kind} file:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// The status code curl reports for one request made with `args` (the body
/// is thrown away).
fn curl_status(args: &[&str]) -> String {
    let all = [&["-s", "-o", "/dev/null", "-w", "%{http_code}"][..], args].concat();
    text(&run(Command::new("curl").args(all), 60).stdout)
}

/// Builds this crate's documentation once (`cargo doc --no-deps`) and returns
/// the folder that holds it, or `None` (and says so) if that failed.
fn built_docs() -> Option<PathBuf> {
    static DOC: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut doc = DOC.get_or_init(Default::default).lock().unwrap();
    if doc.is_none() {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-doc");
        let status = Command::new(env!("CARGO"))
            .args(["doc", "--no-deps", "--quiet", "--target-dir"])
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("could not run cargo doc");
        assert!(status.success(), "cargo doc --no-deps failed");
        *doc = Some(target.join("doc"));
    }
    doc.clone()
}

/// The server on the course as `cargo doc` built it, and the folder it
/// serves; `None` if the docs could not be built.
fn serve_docs() -> Option<(Server, PathBuf)> {
    let doc = built_docs()?;
    let server = Server::start(SERVER, &["--root", doc.to_str().unwrap()]);
    Some((server, doc))
}

/// The server's stderr once it has stopped growing (the client is done, but
/// the last log lines may still be on their way).
fn wait_for_log_quiet(server: &Server) -> String {
    let mut last = server.stderr();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let now = server.stderr();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// (target, status) of every access-log line: `peer "GET /x HTTP/1.1" 200 …`.
fn log_entries(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" \"")?;
            let (request, rest) = rest.rsplit_once("\" ")?;
            let target = request.split(' ').nth(1)?.to_string();
            let status = rest.split(' ').next()?.to_string();
            Some((target, status))
        })
        .collect()
}

/// Does the (percent-encoded) URL path name a file or folder under `root`?
fn exists_under(root: &Path, path: &str) -> bool {
    let mut here = root.to_path_buf();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let mut bytes = Vec::new();
        let raw = segment.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            match (
                raw[i],
                raw.get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok()),
            ) {
                (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                    bytes.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                (b, _) => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        here.push(String::from_utf8_lossy(&bytes).as_ref());
    }
    here.exists()
}
