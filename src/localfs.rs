//! Reading and replacing local files the operator (or anyone who can write
//! beside them) controls: inventory files, a saved plan, the known-hosts
//! file, the order journal, a kubeconfig to merge into or write.
//!
//! A path is untrusted like any other input. `std::fs::read_to_string` on a
//! FIFO waits for a writer forever, and on `/dev/zero` (or a symlink to it
//! dropped into `customers/`) reads until memory runs out. So every local
//! read goes through [`read_text_file`]: it reads regular files only (a
//! symlink to one is fine), checks the type before opening and again on the
//! opened descriptor, opens with `O_NONBLOCK` so that a FIFO swapped in
//! between the two checks cannot block the open, and stops at a size limit
//! that names the file.
//!
//! Writing has the same trap the other way round: a file is replaced by
//! renaming a new one over its path, and `plan --out /dev/null` (run as
//! root) once replaced the device with a regular file, and a FIFO, a socket
//! or a symbolic link at the path went the same way. So every file
//! kiwi-infra replaces goes through [`replace_file`], which replaces only a
//! regular file (or creates a new one) and refuses anything else, writing
//! nothing; [`check_replaceable`] says so before a command does any work.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Limit of one inventory file (`kiwi.toml`, `customers/*.toml`, the
/// operator's `.pub` file): far above any real one.
pub const INVENTORY_FILE_LIMIT: u64 = 1024 * 1024;
/// Limit of a saved plan (`plan --out`): a plan of thousands of steps is a
/// few MiB of JSON.
pub const SAVED_PLAN_LIMIT: u64 = 64 * 1024 * 1024;
/// Limit of the known-hosts file: one short line per node.
pub const KNOWN_HOSTS_LIMIT: u64 = 16 * 1024 * 1024;
/// Limit of the order journal: a few hundred bytes per order, kept for the
/// inventory's whole life.
pub const JOURNAL_LIMIT: u64 = 256 * 1024 * 1024;
/// Limit of a kubeconfig to merge into.
pub const KUBECONFIG_LIMIT: u64 = 16 * 1024 * 1024;

/// A local file that cannot be read as text.
#[derive(Debug, thiserror::Error)]
pub enum LocalFileError {
    /// The path exists but is not a regular file.
    #[error("{} is {kind}, not a regular file; expected a regular file", path.display())]
    NotRegular {
        /// The path as given.
        path: PathBuf,
        /// What it is instead, e.g. `a FIFO (named pipe)`.
        kind: &'static str,
    },
    /// The file is larger than the limit for its kind.
    #[error(
        "{} is larger than {limit} bytes; expected at most that for this kind of file",
        path.display()
    )]
    TooLarge {
        /// The path as given.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The bytes are not UTF-8.
    #[error("{} is not UTF-8 text; expected a UTF-8 text file", path.display())]
    NotUtf8 {
        /// The path as given.
        path: PathBuf,
    },
    /// Opening or reading failed (missing, permission denied, …).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A path to be written exists and is not a regular file.
    #[error(
        "{} is {kind}, not a regular file; kiwi-infra replaces only a regular file (or \
         creates a new one), so nothing was written. Give the path of a regular file",
        path.display()
    )]
    NotReplaceable {
        /// The path as given.
        path: PathBuf,
        /// What it is instead, e.g. `a symbolic link`.
        kind: &'static str,
    },
    /// Writing failed (missing directory, permission denied, disk full, …).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl LocalFileError {
    /// True when the file does not exist (callers that accept a missing
    /// file treat it as empty).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::NotRegular { path, .. }
            | Self::TooLarge { path, .. }
            | Self::NotUtf8 { path }
            | Self::Io { path, .. }
            | Self::NotReplaceable { path, .. }
            | Self::Write { path, .. } => path,
        }
    }

    /// What went wrong, without the path (for messages that name the file
    /// themselves, such as inventory diagnostics).
    pub fn reason(&self) -> String {
        match self {
            Self::NotRegular { kind, .. } => {
                format!("this is {kind}, not a regular file; expected a regular file")
            }
            Self::TooLarge { limit, .. } => {
                format!("the file is larger than {limit} bytes; expected at most that")
            }
            Self::NotUtf8 { .. } => "the file is not UTF-8; expected UTF-8 text".to_string(),
            Self::Io { source, .. } => format!("cannot read the file: {source}"),
            Self::NotReplaceable { kind, .. } => {
                format!("this is {kind}, not a regular file; nothing was written")
            }
            Self::Write { source, .. } => format!("cannot write the file: {source}"),
        }
    }
}

/// Reads a regular file of at most `max_bytes` bytes as UTF-8 text. FIFOs,
/// sockets, devices and directories are refused without being read, and
/// opening never blocks.
pub fn read_text_file(path: &Path, max_bytes: u64) -> Result<String, LocalFileError> {
    let io = |source| LocalFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Refuse before opening: opening some devices has effects of its own.
    check_regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = OpenOptions::new()
        .read(true)
        // A FIFO put in place after the check would block a plain open
        // until a writer comes; with O_NONBLOCK the open returns at once
        // and the check on the descriptor below refuses it.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    check_regular(path, &metadata)?;
    if metadata.len() > max_bytes {
        return Err(too_large(path, max_bytes));
    }
    read_at_most(path, file, max_bytes)
}

/// Like [`read_text_file`], but a missing file reads as `None`.
pub fn read_text_file_if_exists(
    path: &Path,
    max_bytes: u64,
) -> Result<Option<String>, LocalFileError> {
    match read_text_file(path, max_bytes) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of the folder `dir` whose name ends in `.{extension}`, in
/// name order (what they are is checked when each is read, through
/// [`read_text_file`]). The inventory lists `customers/*.toml` with this,
/// so that it does no I/O of its own.
pub fn files_with_extension(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Checks that `path` is a regular file (following symlinks) without
/// opening it: for files another program reads, such as the SSH identity
/// `ssh` is given, where a FIFO would hang that program instead.
pub fn check_regular_file(path: &Path) -> Result<(), LocalFileError> {
    let metadata = std::fs::metadata(path).map_err(|source| LocalFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_regular(path, &metadata)
}

fn read_at_most(path: &Path, file: File, max_bytes: u64) -> Result<String, LocalFileError> {
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file that grew past the limit
    // after the size check from one that ends exactly at it.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| LocalFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max_bytes {
        return Err(too_large(path, max_bytes));
    }
    String::from_utf8(bytes).map_err(|_| LocalFileError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

fn too_large(path: &Path, limit: u64) -> LocalFileError {
    LocalFileError::TooLarge {
        path: path.to_path_buf(),
        limit,
    }
}

fn check_regular(path: &Path, metadata: &Metadata) -> Result<(), LocalFileError> {
    match kind_of(metadata.file_type()) {
        None => Ok(()),
        Some(kind) => Err(LocalFileError::NotRegular {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// What a file that is not a regular file is, for messages; `None` for a
/// regular file.
fn kind_of(t: FileType) -> Option<&'static str> {
    let kind = if t.is_file() {
        return None;
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    Some(kind)
}

/// Checks that `path` can be replaced by [`replace_file`]: it does not
/// exist, or it is a regular file itself (a symbolic link is refused, not
/// followed: replacing it would drop the link, writing through it would
/// write elsewhere). Lets a command refuse before it does any work.
pub fn check_replaceable(path: &Path) -> Result<(), LocalFileError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LocalFileError::Write {
            path: path.to_path_buf(),
            source,
        }),
        Ok(metadata) => match kind_of(metadata.file_type()) {
            None => Ok(()),
            Some(kind) => Err(LocalFileError::NotReplaceable {
                path: path.to_path_buf(),
                kind,
            }),
        },
    }
}

/// Writes `bytes` to `path`, which must not exist or be a regular file
/// ([`check_replaceable`]; anything else is refused and nothing is
/// written), through a temporary file with a random name in the same
/// directory. The temporary file is created exclusively (`O_EXCL`: a file
/// or link planted at a predictable name like `FILE.tmp` is never opened)
/// with `mode` before a byte is written, synced, and renamed over `path`.
/// A crash leaves either the old file or the new one.
///
/// The type is checked just before the rename. Someone who can write to
/// the directory could still swap another kind of file in between; the
/// rename then replaces that entry (it never writes through it).
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LocalFileError> {
    let write = |source| LocalFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    check_replaceable(path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".kiwi-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(write)?;
    // The mode exactly, whatever the umask made of it at creation.
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write)?;
    file.write_all(bytes).map_err(write)?;
    file.as_file().sync_all().map_err(write)?;
    check_replaceable(path)?;
    // On failure the temporary file is removed when the error drops it.
    file.persist(path).map_err(|e| write(e.error))?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_regular_file_reads_whole_and_a_symlink_to_one_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "x = 1\n").unwrap();
        assert_eq!(read_text_file(&path, 6).unwrap(), "x = 1\n");
        let link = dir.path().join("b.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_text_file(&link, 100).unwrap(), "x = 1\n");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, "1234567").unwrap();
        let err = read_text_file(&path, 6).unwrap_err();
        assert!(matches!(err, LocalFileError::TooLarge { limit: 6, .. }));
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn dev_zero_and_a_symlink_to_it_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for path in [Path::new("/dev/zero"), link.as_path()] {
            let err = read_text_file(path, INVENTORY_FILE_LIMIT).unwrap_err();
            assert!(
                matches!(
                    err,
                    LocalFileError::NotRegular {
                        kind: "a character device",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("acme.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let started = Instant::now();
        let err = read_text_file(&fifo, INVENTORY_FILE_LIMIT).unwrap_err();
        assert!(matches!(err, LocalFileError::NotRegular { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn directories_missing_files_and_binary_files_each_say_so() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_text_file(dir.path(), 10),
            Err(LocalFileError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
        let missing = dir.path().join("missing");
        assert!(read_text_file(&missing, 10).unwrap_err().is_not_found());
        assert_eq!(read_text_file_if_exists(&missing, 10).unwrap(), None);
        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            read_text_file(&binary, 10),
            Err(LocalFileError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn a_planted_temporary_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("plan.json");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        for planted in ["plan.tmp", "plan.json.tmp", "plan.kiwi-tmp"] {
            std::os::unix::fs::symlink(&victim, dir.path().join(planted)).unwrap();
        }
        replace_file(&target, b"{}", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600);
        assert_eq!(mode & 0o022, 0, "never writable by others: {mode:o}");
    }

    #[test]
    fn plan_out_never_replaces_a_device_fifo_socket_directory_or_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let victim = at("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, at("link")).unwrap();
        std::os::unix::fs::symlink("/dev/null", at("null-link")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(at("fifo"))
            .status()
            .unwrap();
        assert!(fifo.success());
        let _socket = std::os::unix::net::UnixListener::bind(at("socket")).unwrap();
        std::fs::create_dir(at("dir")).unwrap();
        let mut cases = vec![
            ("link", "a symbolic link"),
            ("null-link", "a symbolic link"),
            ("fifo", "a FIFO (named pipe)"),
            ("socket", "a socket"),
            ("dir", "a directory"),
        ];
        // A device of its own (the null device's numbers), where the test
        // may make one: never /dev/null itself.
        let made = std::process::Command::new("mknod")
            .arg(at("null"))
            .args(["c", "1", "3"])
            .status();
        if made.is_ok_and(|s| s.success()) {
            cases.push(("null", "a character device"));
        } else {
            eprintln!("cannot make a device here; the device case is not run");
        }
        for (name, kind) in cases {
            let path = at(name);
            let before = std::fs::symlink_metadata(&path).unwrap().file_type();
            let err = replace_file(&path, b"{}", 0o644).unwrap_err();
            assert!(
                matches!(&err, LocalFileError::NotReplaceable { kind: k, .. } if *k == kind),
                "{name}: {err}"
            );
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            assert!(err.to_string().contains("nothing was written"), "{err}");
            assert!(check_replaceable(&path).is_err(), "{name}");
            let after = std::fs::symlink_metadata(&path).unwrap().file_type();
            assert_eq!(before, after, "{name} was replaced");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".kiwi-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_regular_file_or_a_new_path_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        assert!(check_replaceable(&path).is_ok());
        replace_file(&path, b"one", 0o644).unwrap();
        assert!(check_replaceable(&path).is_ok());
        replace_file(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let err = replace_file(&dir.path().join("missing/plan.json"), b"x", 0o644).unwrap_err();
        assert!(matches!(err, LocalFileError::Write { .. }), "{err}");
    }
}
