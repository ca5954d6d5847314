//! Reading an image folder packed in a tar archive, without extracting it.
//!
//! Two passes over the archive. The first reads only the headers (seeking over the
//! data) to list the files, so that class names, labels, ids and the stratified split are
//! known before any row is written. The second streams the entries in archive order
//! (finding each entry's row by its position among the file entries, not by name),
//! reading the bytes of one row group at a time, so memory stays flat whatever the size
//! of the archive. Paths inside the archive follow the folder layout of [`crate::folder`],
//! files directly in the root (or in a split folder) included, which are unlabelled.

use std::fs::File;
use std::io::Read;

use crate::decode::{Reason, Rejection};
use crate::error::{IngestError, Result};
use crate::layout::{self, Candidate, SPLIT_FOLDERS};
use crate::pipeline::{Input, Job, Sink, run_pipeline};
use crate::{IngestOptions, Summary};

/// What the first pass found: the candidates, whose locator is the position of the entry
/// among the archive's file entries, and how many file entries there are.
struct Listing {
    candidates: Vec<Candidate<usize>>,
    file_entries: usize,
}

/// Lists the files of the archive as candidates.
fn list_tar(options: &IngestOptions) -> Result<Listing> {
    let path = &options.source;
    let file = File::open(path).map_err(|e| IngestError::io(path, "opening the archive", e))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| IngestError::io(path, "reading the archive", e))?;

    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::io(path, "reading an archive header", e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path_bytes();
        let utf8 = std::str::from_utf8(&raw).is_ok();
        names.push((String::from_utf8_lossy(&raw).into_owned(), utf8));
    }

    let prefix = common_top_folder(&names);
    if let Some(prefix) = &prefix {
        tracing::info!("every entry sits under {prefix}/, which is taken as the root");
    }
    let relative = |name: &str| -> Vec<String> {
        let parts = name.split('/').filter(|p| !p.is_empty() && *p != ".");
        parts
            .skip(prefix.is_some() as usize)
            .map(String::from)
            .collect()
    };
    let has_splits = names.iter().any(|(name, _)| {
        relative(name)
            .first()
            .is_some_and(|first| SPLIT_FOLDERS.contains(&first.as_str()))
    });

    let file_entries = names.len();
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for (ordinal, (name, utf8)) in names.into_iter().enumerate() {
        let parts = relative(&name);
        let (split, class, file) = match (has_splits, parts.as_slice()) {
            (true, [split, rest @ ..]) => {
                match (SPLIT_FOLDERS.iter().find(|s| *s == split), rest) {
                    (Some(split), [class, file]) => (Some(*split), Some(class), file),
                    (Some(split), [file]) => (Some(*split), None, file),
                    _ => {
                        skipped.push(name);
                        continue;
                    }
                }
            }
            (false, [class, file]) => (None, Some(class), file),
            // A file directly in the root has no class.
            (false, [file]) => (None, None, file),
            _ => {
                skipped.push(name);
                continue;
            }
        };
        if file.starts_with('.') {
            continue;
        }
        let rejected = (!utf8).then(|| {
            Rejection::new(
                Reason::NonUtf8Name,
                "the entry name is not valid UTF-8, so it cannot be stored as the image's source",
            )
        });
        candidates.push(Candidate {
            rel: parts.join("/"),
            split,
            class: class.filter(|_| !options.unlabelled).cloned(),
            rejected,
            locator: ordinal,
        });
    }
    if let Some(first) = skipped.first() {
        let layout = if has_splits {
            "<split>/<class>/<file>"
        } else {
            "<class>/<file>"
        };
        tracing::warn!(
            "{} archive entries skipped, not at {layout} (first: {first})",
            skipped.len()
        );
    }
    Ok(Listing {
        candidates,
        file_entries,
    })
}

/// The one folder every entry sits under (as in `cifar10/train/cat/0.jpg`), unless it is a
/// split folder itself.
fn common_top_folder(names: &[(String, bool)]) -> Option<String> {
    // A top folder needs at least <top>/<class>/<file> below it, so that a one-class
    // archive (<class>/<file>) is not mistaken for one.
    let top = |name: &str| {
        let parts: Vec<&str> = name
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        (parts.len() >= 3).then(|| parts[0].to_string())
    };
    let first = top(&names.first()?.0)?;
    let shared = names
        .iter()
        .all(|(name, _)| top(name).as_deref() == Some(first.as_str()));
    (shared && !SPLIT_FOLDERS.contains(&first.as_str())).then_some(first)
}

/// A planned file waiting for its entry: what [`layout::Planned`] holds, in 56 bytes
/// instead of 96, since the archive's whole plan is held while it is read.
struct Row {
    id: i64,
    label: Option<i32>,
    split: &'static str,
    rel: Box<str>,
    rejected: Option<Box<Rejection>>,
}

impl From<layout::Planned<usize>> for Row {
    fn from(file: layout::Planned<usize>) -> Self {
        Row {
            id: file.id,
            label: file.label,
            split: file.split,
            rel: file.rel.into_boxed_str(),
            rejected: file.rejected.map(Box::new),
        }
    }
}

/// Ingests a tar archive of an image folder.
pub fn ingest_tar(options: &IngestOptions) -> Result<Summary> {
    let Listing {
        candidates,
        file_entries,
    } = list_tar(options)?;
    if candidates.is_empty() {
        return Err(IngestError::source(
            &options.source,
            "the archive holds no files at <class>/<image> or <split>/<class>/<image>",
        ));
    }
    let plan = layout::plan(candidates, [], &options.split);
    tracing::info!(
        "{} files in {} classes to read from the archive",
        plan.files.len(),
        plan.class_names.len()
    );
    let sink = Sink::create(options, &plan.class_names, plan.files.len())?;

    // The plan in archive order, indexed by file entry, so that the second pass finds each
    // entry's row by position (a map keyed by name cost three times the memory).
    let mut wanted: Vec<Option<Row>> = Vec::new();
    wanted.resize_with(file_entries, || None);
    for file in plan.files {
        let ordinal = file.locator;
        wanted[ordinal] = Some(Row::from(file));
    }

    let path = &options.source;
    let file = File::open(path).map_err(|e| IngestError::io(path, "opening the archive", e))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive
        .entries()
        .map_err(|e| IngestError::io(path, "reading the archive", e))?;
    let chunk_size = options.row_group_size;
    let mut ordinal = 0;

    let chunks = std::iter::from_fn(|| {
        let mut chunk = Vec::with_capacity(chunk_size);
        while chunk.len() < chunk_size {
            let mut entry = match entries.next() {
                None => break, // end of the archive; the partial chunk is still sent
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    return Some(Err(IngestError::io(path, "reading an archive entry", e)));
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            ordinal += 1;
            let Some(planned) = wanted.get_mut(ordinal - 1).and_then(Option::take) else {
                continue;
            };
            if !String::from_utf8_lossy(&entry.path_bytes()).ends_with(&*planned.rel) {
                return Some(Err(IngestError::source(
                    path,
                    format!(
                        "entry {ordinal} is not {} as in the first pass; did the archive \
                         change while it was read?",
                        planned.rel
                    ),
                )));
            }
            let input = match planned.rejected {
                Some(rejection) => Input::Rejected(*rejection),
                None => {
                    let mut bytes = Vec::with_capacity(entry.header().size().unwrap_or(0) as usize);
                    match entry.read_to_end(&mut bytes) {
                        Ok(_) => Input::Bytes(bytes),
                        Err(e) => {
                            Input::Rejected(Rejection::new(Reason::Unreadable, e.to_string()))
                        }
                    }
                }
            };
            chunk.push(Job {
                id: planned.id,
                label: planned.label,
                split: planned.split,
                source: planned.rel.into(),
                input,
            });
        }
        (!chunk.is_empty()).then_some(Ok(chunk))
    });
    run_pipeline(chunks, sink, options)
}
