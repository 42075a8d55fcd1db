//! From a request target to a file, safely: percent-decoding, the path
//! checks, directories and their listings, and MIME types.
//!
//! The target is text the client chose, and the server is about to open a
//! file named after it. Every check in [`resolve`] exists because a real
//! server once lacked it (chapter 10 names them):
//!
//! * `..` segments, raw or encoded (`/%2e%2e/`), walk out of the root:
//!   the path traversal of CVE-2021-41773 and CVE-2021-42013 (Apache 2.4.49
//!   and 2.4.50), decoded once more than the check looked.
//! * An encoded slash (`..%2f`) or a backslash (`..\`, which Windows reads
//!   as a separator) hides a `..` from a check that splits on `/`: IIS's
//!   CVE-2000-0884 (the "Unicode" traversal) and CVE-2001-0333 (double
//!   decoding).
//! * An encoded NUL (`%00`) cuts a name short in any C library below us:
//!   `secret.txt%00.html` passes a check for `.html` and opens `secret.txt`.
//! * Dot-files (`.git`, `.env`, `.htpasswd`) hold secrets that were never
//!   meant to be served: every year some site leaks its `.git` folder.
//! * A symlink inside the root can point anywhere: we serve a file only if
//!   its canonical path is still under the root (nginx's
//!   `disable_symlinks`, Apache's `FollowSymLinks`).
//! * A redirect to `//evil.example/` is read by browsers as another host:
//!   the open redirect of CVE-2021-28861 in Python's `http.server`.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

/// What a request target leads to.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file, opened, with its metadata and MIME type.
    File {
        /// The open file.
        file: File,
        /// Its size and modification time.
        meta: Metadata,
        /// Its `Content-Type`.
        mime: &'static str,
    },
    /// A directory asked for without its trailing slash: redirect here.
    Redirect(String),
    /// A directory without `index.html`: this HTML listing.
    Listing(String),
    /// No such file, or one we will not serve.
    NotFound,
    /// A target that breaks a rule (see the module docs).
    BadRequest,
    /// A file the server's user may not read.
    Forbidden,
}

/// What [`resolve`] needs to know about the site.
#[derive(Debug, Clone)]
pub struct Site {
    /// The root folder, canonical (symlinks and `..` resolved at start).
    pub root: PathBuf,
    /// Answer folders without `index.html` with a listing (else `404`).
    pub listing: bool,
}

/// Maps a request target to what it names under the site's root.
pub fn resolve(site: &Site, target: &str) -> Resolved {
    let Some(segments) = decode_target(target) else {
        return Resolved::BadRequest;
    };
    // Checked after decoding, so an encoded dot counts as a dot.
    if segments.iter().any(|s| s == b"..") {
        return Resolved::BadRequest;
    }
    if segments.iter().any(|s| s.starts_with(b".")) {
        return Resolved::NotFound;
    }
    let mut path = site.root.clone();
    for segment in &segments {
        let Some(name) = os_name(segment) else {
            return Resolved::BadRequest;
        };
        path.push(name);
    }
    let meta = match checked_metadata(&site.root, &path, segments.len()) {
        Ok(Some(meta)) => meta,
        Ok(None) => return Resolved::NotFound,
        Err(e) => return io_refusal(&e),
    };
    if meta.is_dir() {
        let slash = target.split(['?', '#']).next().unwrap_or("").ends_with('/');
        if !slash {
            return Resolved::Redirect(directory_location(&segments, target));
        }
        let index = path.join("index.html");
        return match checked_metadata(&site.root, &index, segments.len() + 1) {
            Ok(Some(meta)) if meta.is_file() => open_file(&index, meta),
            Ok(_) if site.listing => match listing(&path, &segments) {
                Ok(html) => Resolved::Listing(html),
                Err(e) => io_refusal(&e),
            },
            Ok(_) => Resolved::NotFound,
            Err(e) => io_refusal(&e),
        };
    }
    if !meta.is_file() {
        return Resolved::NotFound; // a device, a socket, a pipe: never
    }
    open_file(&path, meta)
}

/// Splits the target's path into percent-decoded segments: `None` (a `400`)
/// for a target that is neither origin-form (`/a/b?q`) nor absolute-form
/// (`http://host/a/b`), an invalid escape, or a segment that decodes to a
/// `/`, a `\` or a NUL. Empty segments (`//`) are dropped.
fn decode_target(target: &str) -> Option<Vec<Vec<u8>>> {
    let path = if target.starts_with('/') {
        target
    } else {
        // Absolute-form: scheme and host are the client's business (and
        // must be accepted, RFC 9112 §3.2.2); the path is what we serve.
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))?;
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    };
    // The query is for programs, not for files; a fragment never belongs
    // in a request at all.
    let path = path.split('?').next().unwrap_or("");
    if path.contains('#') {
        return None;
    }
    let mut segments = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        // Decoded exactly once: a `%252e` stays the three bytes `%2e`.
        let segment = percent_decode(raw.as_bytes())?;
        if segment.iter().any(|&b| matches!(b, b'/' | b'\\' | 0)) {
            return None;
        }
        segments.push(segment);
    }
    Some(segments)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `%41` → `A`, once. `None` if a `%` is not followed by two hex digits.
pub fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Percent-encodes a name for use in a URL path: everything but unreserved
/// characters (RFC 3986 §2.3) becomes `%XX`.
pub fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for HTML: a file may be called `<script>alert(1)</script>`.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name's bytes as an OS file name. On Unix any bytes will do; elsewhere
/// the name must be UTF-8.
fn os_name(bytes: &[u8]) -> Option<&OsStr> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes).ok().map(OsStr::new)
    }
}

/// The metadata of `path` (`depth` names below `root`), but only if no
/// symlink on the way leads out of the root. `Ok(None)`: not found, or
/// found outside.
///
/// `symlink_metadata` (`lstat`) looks at each name itself, not where it
/// points. The usual case, no symlink at all, costs one call per name;
/// only when a symlink appears do we resolve the whole path
/// (`canonicalize`) and insist that it is still under the root.
fn checked_metadata(root: &Path, path: &Path, depth: usize) -> io::Result<Option<Metadata>> {
    let mut symlink = false;
    let mut meta = None;
    // The root itself (depth 0) was made canonical at start: never a symlink.
    for ancestor in path.ancestors().take(depth.max(1)) {
        let m = match fs::symlink_metadata(ancestor) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // `/file.txt/more`: a name below a file.
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(None),
            Err(e) => return Err(e),
        };
        symlink |= m.file_type().is_symlink();
        if meta.is_none() {
            meta = Some(m);
        }
    }
    if !symlink {
        return Ok(meta);
    }
    match fs::canonicalize(path) {
        Ok(real) if real.starts_with(root) => fs::metadata(&real).map(Some),
        Ok(_) => Ok(None), // leads out of the root
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None), // dangling
        Err(e) => Err(e),
    }
}

/// Opens a checked file. The open follows the same path the check looked
/// at; comparing the open file with what was checked (device and inode)
/// catches a file swapped in between.
///
/// A simplification: a real server avoids the gap between check and open
/// altogether with `openat2(RESOLVE_BENEATH)` or `O_NOFOLLOW` on each
/// name, which std does not offer.
fn open_file(path: &Path, checked: Metadata) -> Resolved {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return io_refusal(&e),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return io_refusal(&e),
    };
    if !same_file(&meta, &checked) || !meta.is_file() {
        return Resolved::NotFound;
    }
    let mime = mime_type(path.file_name().unwrap_or_default());
    Resolved::File { file, meta, mime }
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

fn io_refusal(e: &io::Error) -> Resolved {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Resolved::Forbidden,
        _ => Resolved::NotFound,
    }
}

/// `Location` for a directory asked for without its slash: `/a/b/`, built
/// from the decoded segments (re-encoded), so it always starts with exactly
/// one `/`: never `//host` or `/\host`, which a browser would take for
/// another site. The query, if any, is kept.
fn directory_location(segments: &[Vec<u8>], target: &str) -> String {
    let mut location = String::from("/");
    for segment in segments {
        location.push_str(&percent_encode(segment));
        location.push('/');
    }
    if let Some((_, query)) = target.split_once('?') {
        location.push('?');
        location.push_str(query);
    }
    location
}

/// The HTML listing of a directory: names sorted by byte order, escaped for
/// HTML and percent-encoded in links, folders ending in `/`, sizes, and no
/// dot-files (which could not be fetched anyway).
fn listing(dir: &Path, segments: &[Vec<u8>]) -> io::Result<String> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes().to_vec();
        if bytes.starts_with(b".") {
            continue;
        }
        // `fs::metadata` follows a symlink, so a link to a folder lists as one.
        let meta = fs::metadata(entry.path()).ok();
        let is_dir = meta.as_ref().is_some_and(Metadata::is_dir);
        let size = meta.as_ref().map_or(0, Metadata::len);
        entries.push((bytes, is_dir, size));
    }
    entries.sort();
    let mut title = String::from("/");
    for segment in segments {
        title.push_str(&String::from_utf8_lossy(segment));
        title.push('/');
    }
    let title = html_escape(&title);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if !segments.is_empty() {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (bytes, is_dir, size) in entries {
        let slash = if is_dir { "/" } else { "" };
        let shown = html_escape(&String::from_utf8_lossy(&bytes));
        let size = if is_dir {
            String::new()
        } else {
            format!(" {size} bytes")
        };
        html.push_str(&format!(
            "<li><a href=\"{}{slash}\">{shown}{slash}</a>{size}</li>\n",
            percent_encode(&bytes)
        ));
    }
    html.push_str("</ul>\n</body></html>\n");
    Ok(html)
}

/// The `Content-Type` for a file name, by its last extension (compared
/// without regard to case). Text types say their character set, so a
/// browser does not have to guess.
pub fn mime_type(name: &OsStr) -> &'static str {
    let name = name.as_encoded_bytes();
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(i) => &name[i + 1..],
        None => return "application/octet-stream",
    };
    let ext = String::from_utf8_lossy(ext).to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" | "rs" | "toml" | "lock" | "csv" => "text/plain; charset=utf-8",
        // Chapter 10's first exercise: subtitles for a served video.
        "vtt" => "text/vtt; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}
