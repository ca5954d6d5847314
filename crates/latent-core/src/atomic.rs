//! Output files that appear under their final name only when complete.
//!
//! A stage that is interrupted must never leave a half-written file that the next stage
//! would trust. [`AtomicFile`] writes to a hidden temporary name in the same folder and
//! renames it over the final name in [`AtomicFile::commit`]; dropping it without a
//! commit (an error, a panic, Ctrl-C unwinding) deletes the temporary file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A file being written under a temporary name next to its final path.
#[derive(Debug)]
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Creates `.<name>.<pid>.tmp` beside `path`, creating the parent folder if needed.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let final_path = path.as_ref().to_path_buf();
        let parent = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(&parent, "creating the output folder", e))?;

        let name = final_path
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: not a file path", final_path.display())))?
            .to_string_lossy()
            .into_owned();
        let temp_path = parent.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&temp_path)
            .map_err(|e| Error::io(&temp_path, "creating a temporary output file", e))?;

        Ok(Self {
            final_path,
            temp_path,
            file: Some(file),
        })
    }

    /// The file handle to write to (unbuffered; wrap it when writing small pieces).
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// A clone of the file handle, for writers that want to own one (Parquet, Arrow).
    pub fn try_clone(&self) -> Result<File> {
        self.file
            .as_ref()
            .expect("file is present until commit")
            .try_clone()
            .map_err(|e| Error::io(&self.temp_path, "duplicating a file handle", e))
    }

    /// The final path this file will have once committed.
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes to disk and renames the temporary file to its final name.
    pub fn commit(mut self) -> Result<PathBuf> {
        let file = self.file.take().expect("file is present until commit");
        file.sync_all()
            .map_err(|e| Error::io(&self.temp_path, "flushing to disk", e))?;
        drop(file);
        if let Err(e) = std::fs::rename(&self.temp_path, &self.final_path) {
            // The handle is gone, so Drop will not clean up: remove the temporary file here.
            let _ = std::fs::remove_file(&self.temp_path);
            return Err(Error::io(
                &self.final_path,
                "renaming the finished file into place",
                e,
            ));
        }
        Ok(self.final_path.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
    let mut out = AtomicFile::create(path)?;
    let temp = out.temp_path.clone();
    {
        let mut w = BufWriter::new(out.file());
        w.write_all(bytes)
            .and_then(|_| w.flush())
            .map_err(|e| Error::io(&temp, "writing", e))?;
    }
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.parquet");
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.file().write_all(b"half").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn committed_file_has_its_final_name_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/out.txt");
        write_bytes(&target, b"done").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"done");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
