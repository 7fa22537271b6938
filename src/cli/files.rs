//! Replacing a local file safely. A predictable temporary name
//! (`FILE.tmp`) lets anyone who can write to the directory plant a file or
//! a symbolic link there first, and have kiwi-infra write through it
//! (keeping credentials readable, or overwriting another file). Every file
//! the CLI replaces goes through [`replace_file`] instead.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file with a random name in
/// the same directory, created exclusively (`O_EXCL`: a planted file or
/// link is never opened) with `mode` before a byte is written, synced, and
/// renamed over `path` (which replaces `path` itself, never a link's
/// target). A crash leaves either the old file or the new one.
pub(super) fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".kiwi-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    // On failure the temporary file is removed when the error drops it.
    file.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
