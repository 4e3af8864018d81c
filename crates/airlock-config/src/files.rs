//! Reading the files a config names (the config itself, the policy, secret files, CA and key
//! files): regular files only, at most [`MAX_FILE_BYTES`], so that a mistyped path such as
//! `/dev/zero`, a FIFO or a huge file is a clear error instead of a hang or an exhausted memory.

use std::io::{self, Read as _};
use std::path::Path;

/// The largest file a config may name (configs, policies, keys and CA bundles are far smaller).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of the regular file at `path`, if it holds at most [`MAX_FILE_BYTES`].
pub(crate) fn read(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
        ));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub(crate) fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_whole() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a");
        std::fs::write(&path, "text\n")?;
        assert_eq!(read_to_string(&path)?, "text\n");
        Ok(())
    }

    #[test]
    fn a_directory_a_device_and_a_huge_file_are_refused() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let err = read(dir.path()).expect_err("a directory");
        assert_eq!(err.to_string(), "not a regular file");
        #[cfg(unix)]
        {
            let err = read(Path::new("/dev/zero")).expect_err("a device never ends");
            assert_eq!(err.to_string(), "not a regular file");
        }
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)?.set_len(MAX_FILE_BYTES + 1)?;
        let err = read(&huge).expect_err("too large");
        assert_eq!(err.to_string(), "larger than 4 MiB");
        let exact = dir.path().join("exact");
        std::fs::File::create(&exact)?.set_len(MAX_FILE_BYTES)?;
        assert_eq!(read(&exact)?.len() as u64, MAX_FILE_BYTES);
        Ok(())
    }

    #[test]
    fn text_must_be_utf8() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xff, 0xfe])?;
        assert_eq!(
            read_to_string(&path).expect_err("binary").to_string(),
            "not UTF-8 text"
        );
        Ok(())
    }
}
