//! Each command carried out: `LIST`, `GET`, `PUT`, and the two exercises of
//! chapter 5, `STAT` and `DELETE`. Bodies go through a buffer of [`CHUNK`]
//! bytes, never one the size of the file.

use crate::request::valid_name;
use crate::store::open_served;
use crate::{CHUNK, Shared, TEMP_PREFIX, activity};
use netlessons::connection::Connection;
use netlessons::durable::{TempFile, sync_dir};
use netlessons::framing;
use netlessons::sha256::{Sha256, to_hex};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};

/// `LIST` → `OK <n>`, then one `<size> <sha256> <name>` line per file, sorted.
pub fn list(conn: &mut Connection, shared: &Shared, user: &str) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(&shared.root)? {
        // File names on disk need not be UTF-8 or valid for us (someone may
        // have copied files in by hand); we list only the ones a client
        // could GET, which also hides our temporaries.
        if let Ok(name) = entry?.file_name().into_string() {
            if valid_name(name.as_bytes()) {
                names.push(name);
            }
        }
    }
    names.sort(); // byte order, the same on every system
    let mut lines = Vec::with_capacity(names.len());
    for name in &names {
        // A folder, a symlink or a file deleted meanwhile is not listed.
        if let Some((file, meta)) = open_served(&shared.root, name)? {
            let digest = shared.digests.digest(name, &file, &meta)?;
            lines.push(format!("{} {} {name}", meta.len(), to_hex(&digest)));
        }
    }
    shared.digests.keep_only(&names);
    conn.send_line(format!("OK {}", lines.len()))?;
    for line in &lines {
        conn.send_line(line)?;
    }
    activity(conn, user, &format!("listed {} file(s)", lines.len()));
    Ok(())
}

/// `GET <name>` → `OK <size> <sha256>` and the bytes, or `ERR no such file`.
pub fn get(conn: &mut Connection, shared: &Shared, user: &str, name: &str) -> io::Result<()> {
    let Some((mut file, meta)) = open_served(&shared.root, name)? else {
        return conn.send_line("ERR no such file");
    };
    // The header carries the digest, so we must know it before the first
    // byte goes out. Hashing costs one pass over the file; the cache saves
    // that pass on every later GET of the same, unchanged file.
    let digest = shared.digests.digest(name, &file, &meta)?;
    let size = meta.len();
    conn.send_line(format!("OK {size} {}", to_hex(&digest)))?;

    // Now exactly `size` bytes, a buffer at a time. We read from the file we
    // opened (and hashed): if someone renames a new upload over the name
    // meanwhile, this client still gets the old file whole, never a mix.
    let mut buf = vec![0u8; CHUNK];
    framing::copy_exact(&mut file, size, &mut buf, |chunk| conn.send_body(chunk)).map_err(|e| {
        if framing::is_short_source(&e) {
            // The file shrank under us (someone edited it in place). We
            // promised `size` bytes and cannot keep the promise: hanging up
            // is the only honest answer; the client sees a short body.
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} shrank while being sent; closing the connection"),
            )
        } else {
            e
        }
    })?;
    activity(conn, user, &format!("sent {name} ({size} bytes)"));
    Ok(())
}

/// `PUT <name> <size> <sha256>` → `READY`, the bytes, then `OK <size> <sha256>`.
///
/// The upload is written to a temporary file, synced, checked and only then
/// renamed over `name`. So at every moment `name` is either the old file or
/// the complete new one; a client that vanishes, a wrong digest or a server
/// killed halfway leaves nothing behind under `name`.
pub fn put(
    conn: &mut Connection,
    shared: &Shared,
    user: &str,
    name: &str,
    size: u64,
    digest: [u8; 32],
) -> io::Result<()> {
    // Refuse what we can *before* READY: the client then sends no body, and
    // we do not have to read (and throw away) a gigabyte to say no.
    if size > shared.max_size {
        return conn.send_line("ERR too large");
    }
    let target = shared.root.join(name);
    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        return conn.send_line("ERR bad name"); // a folder holds that name
    }
    // The temporary sits in the root itself: `rename` is atomic only within
    // one file system. Its name starts with `.`, so LIST never shows it.
    let temp = TempFile::create_in(&shared.root, TEMP_PREFIX)?;
    conn.send_line("READY")?;

    // Receive the body straight into the temporary file, hashing each chunk
    // on its way past. `read_body` stops after exactly `size` bytes: what
    // follows is the client's next command, not part of this file.
    //
    // A disk can fill up half-way through. Then the rest of the body is
    // still on its way, and the client will read our answer only after it
    // has sent it all; so `DiskSink` notes the failure, throws the rest
    // away, and the client gets `ERR disk full` with its connection still in
    // step (its next command is read as a command, not as file bytes).
    let mut hasher = Sha256::new();
    let mut sink = DiskSink::new(temp.file());
    let mut out = BufWriter::with_capacity(CHUNK, &mut sink);
    conn.read_body(size, &mut out, |chunk| hasher.update(chunk))
        .map_err(|e| io::Error::new(e.kind(), format!("upload of {name} abandoned: {e}")))?;
    out.flush()?;
    drop(out);
    if let Some(e) = sink.failed {
        // `temp` is dropped on return, which deletes the partial file.
        return refuse_upload(conn, user, name, e);
    }

    if hasher.finish() != digest {
        // `temp` is dropped here, which deletes it: the wrong bytes are never
        // visible, and an older file of the same name is untouched.
        drop(temp);
        activity(conn, user, &format!("refused {name}: digest mismatch"));
        return conn.send_line("ERR digest mismatch");
    }

    // Durability, in the only order that works (`netlessons::durable`):
    // sync the file, rename it over the name in one atomic step, sync the
    // folder so the rename is on disk too. Only after all three may we say OK.
    // (A file system that allocates late, such as ext4 or XFS, may report a
    // full disk only here, when the file is synced.)
    let stored = match temp.persist(&target) {
        Ok(stored) => stored,
        Err(e) if is_disk_full(&e) => return refuse_upload(conn, user, name, e),
        Err(e) => return Err(e),
    };
    // We hashed every byte on the way in, so the first GET need not hash
    // again. (The metadata is taken after the rename, which changes ctime.)
    shared.digests.remember(name, &stored.metadata()?, digest);

    conn.send_line(format!("OK {size} {}", to_hex(&digest)))?;
    activity(conn, user, &format!("stored {name} ({size} bytes)"));
    Ok(())
}

/// Where an upload's bytes go: the temporary file, until a write fails.
/// After that it keeps accepting (and dropping) bytes, so that the body can
/// still be read to its end, and remembers the first error.
struct DiskSink<'a> {
    file: &'a File,
    failed: Option<io::Error>,
}

impl<'a> DiskSink<'a> {
    fn new(file: &'a File) -> DiskSink<'a> {
        DiskSink { file, failed: None }
    }
}

impl Write for DiskSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_none() {
            match self.file.write_all(buf) {
                Ok(()) => {}
                // Only a full disk is survivable here; any other error
                // (the disk is failing, say) ends the upload as before.
                Err(e) if is_disk_full(&e) => self.failed = Some(e),
                Err(e) => return Err(e),
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A write failed for want of room: the disk is full (`ENOSPC`), a quota is
/// used up (`EDQUOT`), or the file would pass the size this process may
/// write (`EFBIG`, `ulimit -f`).
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// Answers an upload that could not be stored for want of room, and logs it.
/// The caller drops the temporary file, which deletes it.
fn refuse_upload(conn: &mut Connection, user: &str, name: &str, e: io::Error) -> io::Result<()> {
    activity(conn, user, &format!("refused {name}: disk full ({e})"));
    conn.send_line("ERR disk full")
}

/// `STAT <name>` → `OK <size> <sha256>` without the body (exercise 2).
pub fn stat(conn: &mut Connection, shared: &Shared, name: &str) -> io::Result<()> {
    match open_served(&shared.root, name)? {
        Some((file, meta)) => {
            let digest = shared.digests.digest(name, &file, &meta)?;
            conn.send_line(format!("OK {} {}", meta.len(), to_hex(&digest)))
        }
        None => conn.send_line("ERR no such file"),
    }
}

/// `DELETE <name>` → `OK`, or `ERR no such file` (exercise 1).
pub fn delete(conn: &mut Connection, shared: &Shared, user: &str, name: &str) -> io::Result<()> {
    let path = shared.root.join(name);
    // Only what GET would serve can be deleted: a regular file, not a folder
    // or a symlink (`symlink_metadata` looks at the link, not its target).
    let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
    if !is_file {
        return conn.send_line("ERR no such file");
    }
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return conn.send_line("ERR no such file"),
        Err(e) => return Err(e),
    }
    sync_dir(&shared.root)?;
    shared.digests.forget(name);
    activity(conn, user, &format!("deleted {name}"));
    conn.send_line("OK")
}
