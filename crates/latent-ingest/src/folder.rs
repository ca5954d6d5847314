//! Listing an image folder: `<root>/<class>/<file>` or `<root>/<split>/<class>/<file>`.
//!
//! Files sitting directly in the root (or in a split folder) have no class: they are
//! unlabelled, and so is every file when the caller asks for it (`--unlabelled`), for
//! pretraining on images nobody labelled.
//!
//! Listing never reads image bytes. Problems that can be seen from the directory entry
//! alone (a link that leads nowhere, a name that is not UTF-8, a FIFO) are recorded on
//! the candidate, so the file becomes a reject with its own reason instead of failing the
//! run. Hidden files (names starting with `.`) and folders nested inside class folders
//! are skipped with a warning, since they are not images of that class.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::decode::{Reason, Rejection};
use crate::error::{IngestError, Result};
use crate::layout::{Candidate, SPLIT_FOLDERS};

/// What listing a folder found.
#[derive(Debug)]
pub struct Listing {
    pub candidates: Vec<Candidate<PathBuf>>,
    /// Class folders that hold no files (they still get a label).
    pub empty_classes: Vec<String>,
}

/// Lists every file of an image folder, with split folders if the root has any. With
/// `unlabelled`, class folders are read but their names are not used as labels.
pub fn list_folder(root: &Path, unlabelled: bool) -> Result<Listing> {
    let meta = fs::metadata(root).map_err(|e| IngestError::io(root, "opening the source", e))?;
    if !meta.is_dir() {
        return Err(IngestError::source(root, "is not a folder"));
    }

    let mut listing = Listing {
        candidates: Vec::new(),
        empty_classes: Vec::new(),
    };
    let split_dirs: Vec<&'static str> = SPLIT_FOLDERS
        .into_iter()
        .filter(|s| root.join(s).is_dir())
        .collect();
    if split_dirs.is_empty() {
        list_classes(root, root, None, unlabelled, &mut listing)?;
    } else {
        for split in split_dirs {
            list_classes(
                root,
                &root.join(split),
                Some(split),
                unlabelled,
                &mut listing,
            )?;
        }
    }
    Ok(listing)
}

/// Lists the class folders of `dir` and the unlabelled files sitting beside them.
fn list_classes(
    root: &Path,
    dir: &Path,
    split: Option<&'static str>,
    unlabelled: bool,
    listing: &mut Listing,
) -> Result<()> {
    let mut loose_files = 0;
    let mut class_folders = 0;
    for entry in read_dir_sorted(dir)? {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }

        // Anything that is not a folder (a file, a broken link, a FIFO) is a candidate
        // without a class; it is rejected later if it is not an image.
        if !fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            if let Some(candidate) = file_candidate(root, &entry, split, None, true) {
                loose_files += 1;
                listing.candidates.push(candidate);
            }
            continue;
        }

        class_folders += 1;
        let class = name.to_string_lossy().into_owned();
        let class_ok = name.to_str().is_some();
        let before = listing.candidates.len();
        for file in read_dir_sorted(&path)? {
            if file.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let class = (!unlabelled).then(|| class.clone());
            if let Some(candidate) = file_candidate(root, &file, split, class, class_ok) {
                listing.candidates.push(candidate);
            }
        }
        if listing.candidates.len() == before {
            tracing::warn!("{}: class folder holds no files", path.display());
            if !unlabelled {
                listing.empty_classes.push(class);
            }
        }
    }

    if loose_files > 0 && class_folders > 0 {
        tracing::warn!(
            "{}: {loose_files} files sit beside {class_folders} class folders; \
             they are ingested unlabelled",
            dir.display()
        );
    }
    Ok(())
}

/// The candidate for one directory entry, or `None` for a folder nested where files are
/// expected (skipped with a warning).
fn file_candidate(
    root: &Path,
    entry: &fs::DirEntry,
    split: Option<&'static str>,
    class: Option<String>,
    class_ok: bool,
) -> Option<Candidate<PathBuf>> {
    let path = entry.path();
    let rel = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .to_string_lossy()
        .replace(std::path::MAIN_SEPARATOR, "/");

    // The entry's own type is free (no extra system call); only links need a stat.
    let kind = match entry.file_type() {
        Ok(kind) if kind.is_symlink() => fs::metadata(&path).map(|m| m.file_type()),
        other => other,
    };
    let rejected = match kind {
        Ok(kind) if kind.is_dir() => {
            tracing::warn!("{}: nested folder skipped", path.display());
            return None;
        }
        Ok(kind) if !kind.is_file() => Some(Rejection::new(
            Reason::Unreadable,
            "not a regular file (a FIFO, socket or device)",
        )),
        Ok(_) if !class_ok || entry.file_name().to_str().is_none() => Some(Rejection::new(
            Reason::NonUtf8Name,
            "the path is not valid UTF-8, so it cannot be stored as the image's source",
        )),
        Ok(_) => None,
        Err(e) => Some(link_or_unreadable(&e)),
    };
    Some(Candidate {
        rel,
        split,
        class,
        rejected,
        locator: path,
    })
}

fn link_or_unreadable(error: &std::io::Error) -> Rejection {
    let loop_or_dangling = matches!(error.kind(), ErrorKind::NotFound)
        || error.raw_os_error() == Some(40) // ELOOP on Linux
        || error.to_string().contains("symbolic links");
    if loop_or_dangling {
        Rejection::new(
            Reason::BrokenLink,
            format!("a symbolic link that leads nowhere or into a loop: {error}"),
        )
    } else {
        Rejection::new(Reason::Unreadable, error.to_string())
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)
        .and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| IngestError::io(dir, "listing the folder", e))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}
