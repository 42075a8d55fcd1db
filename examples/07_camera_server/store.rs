//! The reports on disk: `DIR/<camera>/<report id>.<ext>` and `.txt`.
//!
//! Two promises, the same as the file server's (chapter 5):
//!
//! * **durable before DONE**: each file is written to a temporary name,
//!   synced, renamed into place and its folder synced (the library's
//!   `durable::replace`, taught in chapter 5), so
//!   a camera that heard DONE can delete its photo: a crash or a power cut
//!   the moment after loses nothing, and a killed server never leaves half a
//!   photo under a real name;
//! * **once**: the `.txt` file is written last and marks a report as stored.
//!   A report whose `.txt` exists is never written again ([`Store::has`]), so
//!   a camera that resends a whole report after a lost DONE, even to a
//!   restarted server, gets DONE and causes no second copy.

use netlessons::durable;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Temporary files start with this (`durable::replace` names them
/// `.NAME.tmp-…`), so no real name (a hex report id) can collide with one
/// and the next start can find and remove leftovers.
const TEMP_PREFIX: char = '.';

/// The folder of stored reports.
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes the
    /// temporary files a killed earlier run left behind. Returns the store
    /// and how many files it removed.
    ///
    /// This assumes one server per folder, as the file server does. (A real
    /// server would take a lock file to make sure.)
    pub fn open(root: &Path) -> io::Result<(Store, usize)> {
        fs::create_dir_all(root).map_err(|e| annotate(e, "could not create the folder", root))?;
        let mut removed = 0;
        for camera in
            fs::read_dir(root).map_err(|e| annotate(e, "could not read the folder", root))?
        {
            let camera = camera?;
            if !camera.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(camera.path())? {
                let file = file?;
                if file.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    fs::remove_file(file.path())?;
                    removed += 1;
                }
            }
        }
        Ok((
            Store {
                root: root.to_path_buf(),
            },
            removed,
        ))
    }

    /// Is the report stored already (by this run or any earlier one)?
    pub fn has(&self, camera: &str, report: u64) -> bool {
        self.path(camera, report, "txt").exists()
    }

    /// Stores a report: the photo first, then the `.txt` with its details,
    /// each durably. Returns the photo's path. When this returns `Ok`, both
    /// files are on the disk.
    pub fn save(
        &self,
        camera: &str,
        report: u64,
        ext: &str,
        photo: &[u8],
        info: &str,
    ) -> io::Result<PathBuf> {
        let dir = self.root.join(camera);
        if !dir.exists() {
            fs::create_dir_all(&dir)
                .map_err(|e| annotate(e, "could not create the folder", &dir))?;
            // The new folder is a name in the store's root: sync the root,
            // or a crash could lose the folder with the report inside.
            durable::sync_dir(&self.root)?;
        }
        let photo_path = self.path(camera, report, ext);
        durable::replace(&photo_path, photo)?;
        // Written last: its presence says "stored", so it must never exist
        // without the photo beside it.
        durable::replace(&self.path(camera, report, "txt"), info.as_bytes())?;
        Ok(photo_path)
    }

    fn path(&self, camera: &str, report: u64, ext: &str) -> PathBuf {
        self.root.join(camera).join(format!("{report:016x}.{ext}"))
    }
}

/// May `name` be a folder in the store? The users file names the cameras,
/// but the name still becomes a path, so it is checked like the file
/// server's names: letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn valid_camera_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The photo's extension: HELLO's `ext=` when it is 1 to 8 lower-case
/// letters or digits, else `bin` (never `txt`, which would overwrite the
/// details).
pub fn extension(ext: Option<&str>) -> String {
    match ext {
        Some(ext)
            if (1..=8).contains(&ext.len())
                && ext != "txt"
                && ext
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
        {
            ext.to_string()
        }
        _ => "bin".to_string(),
    }
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}
