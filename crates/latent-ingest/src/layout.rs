//! From a list of files to the plan of the table: ids, labels and splits.
//!
//! The image folder and the tar archive share this step. Files are sorted by their path
//! relative to the source root; the id of a file is its position in that order, so ids
//! are stable across runs and across shards (`--shard I/N` keeps the ids of the whole
//! source, and a rejected file leaves a gap instead of renumbering the rest). Labels are
//! positions of class names in sorted order. When the source has no split folders, each
//! class is split on its own with a seeded shuffle, so every class keeps the same test
//! fraction.

use std::collections::BTreeSet;

use latent_core::rng::{rng_for, stream};
use latent_core::schema::split;
use rand::seq::SliceRandom;

use crate::decode::Rejection;

/// The folder names that mark a split layout (`<root>/<split>/<class>/<file>`).
pub const SPLIT_FOLDERS: [&str; 3] = [split::TRAIN, split::TEST, split::VAL];

/// A file found in the source, before ids and splits are assigned.
#[derive(Debug, Clone)]
pub struct Candidate<L> {
    /// Path relative to the source root with `/` separators (lossy if not UTF-8).
    pub rel: String,
    /// The split folder the file sits in, if the source has split folders.
    pub split: Option<&'static str>,
    /// The class name (its folder, or a manifest's label); `None` for an unlabelled file,
    /// which gets a null label.
    pub class: Option<String>,
    /// A problem found while listing (broken link, non-UTF-8 name): the file is rejected
    /// without being read.
    pub rejected: Option<Rejection>,
    /// How to get at the bytes (a path on disk, an entry name in a tar).
    pub locator: L,
}

/// A file with its id, label and split decided.
#[derive(Debug, Clone)]
pub struct Planned<L> {
    pub id: i64,
    pub label: Option<i32>,
    pub split: &'static str,
    pub rel: String,
    pub rejected: Option<Rejection>,
    pub locator: L,
}

/// Which part of the source to keep and how to split it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitOptions {
    pub seed: u64,
    /// Fraction of each class held out as test when there are no split folders.
    pub test_fraction: f64,
    /// Keep the first N files per class and split (0 keeps all).
    pub limit_per_class: usize,
    /// Keep only shard `index` of `count` (files whose id is `index` modulo `count`).
    pub shard: Option<Shard>,
}

/// One shard of a source: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("expected I/N such as 0/4, found '{text}'"))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("'{i}' is not a shard index"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("'{n}' is not a shard count"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index must be below the count"
            ));
        }
        Ok(Shard { index, count })
    }
}

/// The plan of a table: the files to read, in id order, and the class names.
#[derive(Debug, Clone)]
pub struct Plan<L> {
    pub files: Vec<Planned<L>>,
    pub class_names: Vec<String>,
}

/// Assigns ids, labels and splits to files sorted by path; `extra_classes` are class
/// folders with no files, which still get a label so that labels do not shift when a class
/// is empty in one split.
pub fn plan<L>(
    mut candidates: Vec<Candidate<L>>,
    extra_classes: impl IntoIterator<Item = String>,
    options: &SplitOptions,
) -> Plan<L> {
    candidates.sort_by(|a, b| a.rel.cmp(&b.rel));
    plan_in_order(candidates, extra_classes, options)
}

/// Like [`plan`], but ids follow the order of `candidates` as given (a manifest's rows).
/// Files that come with a split keep it; the others are split per class.
pub fn plan_in_order<L>(
    candidates: Vec<Candidate<L>>,
    extra_classes: impl IntoIterator<Item = String>,
    options: &SplitOptions,
) -> Plan<L> {
    let class_names: Vec<String> = candidates
        .iter()
        .filter(|c| c.rejected.is_none())
        .filter_map(|c| c.class.clone())
        .chain(extra_classes)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let label_of = |class: &str| {
        class_names
            .binary_search_by(|n| n.as_str().cmp(class))
            .ok()
            .map(|i| i as i32)
    };
    let labels: Vec<Option<i32>> = candidates
        .iter()
        .map(|c| c.class.as_deref().and_then(label_of))
        .collect();

    let given: Vec<Option<&'static str>> = candidates.iter().map(|c| c.split).collect();
    let splits = fill_splits(&given, &labels, class_names.len(), options);

    let mut selector = Selector::new(options);
    let files = candidates
        .into_iter()
        .zip(labels)
        .zip(splits)
        .enumerate()
        .filter_map(|(id, ((candidate, label), split))| {
            if !selector.keep(id as i64, label, split) {
                return None;
            }
            Some(Planned {
                id: id as i64,
                label,
                split,
                rel: candidate.rel,
                rejected: candidate.rejected,
                locator: candidate.locator,
            })
        })
        .collect();

    Plan { files, class_names }
}

/// Applies `--limit-per-class` and `--shard` to rows visited in id order.
#[derive(Debug)]
pub struct Selector {
    limit_per_class: usize,
    shard: Option<Shard>,
    kept: std::collections::HashMap<(Option<i32>, &'static str), usize>,
}

impl Selector {
    pub fn new(options: &SplitOptions) -> Self {
        Self {
            limit_per_class: options.limit_per_class,
            shard: options.shard,
            kept: std::collections::HashMap::new(),
        }
    }

    /// Whether the row with this id, label and split is kept. The per-class limit counts
    /// rows of the whole source, so every shard sees the same slice.
    pub fn keep(&mut self, id: i64, label: Option<i32>, split: &'static str) -> bool {
        if self.limit_per_class > 0 {
            let kept = self.kept.entry((label, split)).or_insert(0);
            if *kept >= self.limit_per_class {
                return false;
            }
            *kept += 1;
        }
        match self.shard {
            Some(shard) => id as u64 % shard.count == shard.index,
            None => true,
        }
    }
}

/// The given split of each file, and a stratified split (over those files only) for the
/// files that have none. A folder gives all splits or none, a manifest may give some.
fn fill_splits(
    given: &[Option<&'static str>],
    labels: &[Option<i32>],
    class_count: usize,
    options: &SplitOptions,
) -> Vec<&'static str> {
    let unsplit: Vec<usize> = (0..given.len()).filter(|&i| given[i].is_none()).collect();
    let unsplit_labels: Vec<Option<i32>> = unsplit.iter().map(|&i| labels[i]).collect();
    let drawn = stratified_split(&unsplit_labels, class_count, options);

    let mut splits: Vec<&'static str> = given.iter().map(|s| s.unwrap_or(split::TRAIN)).collect();
    for (&position, split) in unsplit.iter().zip(drawn) {
        splits[position] = split;
    }
    splits
}

/// Test or train for each file, holding out `round(test_fraction * n)` files of each
/// class, chosen by a shuffle seeded with the run seed and the label.
pub fn stratified_split(
    labels: &[Option<i32>],
    class_count: usize,
    options: &SplitOptions,
) -> Vec<&'static str> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); class_count + 1];
    for (position, label) in labels.iter().enumerate() {
        // Files without a label (unlabelled, or rejected while listing) form a group of
        // their own.
        let group = label.map_or(class_count, |l| l as usize);
        members[group].push(position);
    }

    let mut splits = vec![split::TRAIN; labels.len()];
    for (group, positions) in members.iter_mut().enumerate() {
        let test_count = (options.test_fraction * positions.len() as f64).round() as usize;
        let mut rng = rng_for(options.seed, &[stream::SPLIT, group as u64]);
        positions.shuffle(&mut rng);
        for &position in &positions[..test_count.min(positions.len())] {
            splits[position] = split::TEST;
        }
    }
    splits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(classes: &[(&str, usize)]) -> Vec<Candidate<()>> {
        classes
            .iter()
            .flat_map(|&(class, n)| {
                (0..n).map(move |i| Candidate {
                    rel: format!("{class}/{i:04}.png"),
                    split: None,
                    class: Some(class.to_string()),
                    rejected: None,
                    locator: (),
                })
            })
            .collect()
    }

    fn options(test_fraction: f64) -> SplitOptions {
        SplitOptions {
            seed: 3,
            test_fraction,
            limit_per_class: 0,
            shard: None,
        }
    }

    #[test]
    fn each_class_holds_out_its_rounded_fraction() {
        let plan = plan(candidates(&[("b", 10), ("a", 7)]), [], &options(0.25));
        assert_eq!(plan.class_names, ["a", "b"]);
        let tests = |label| {
            plan.files
                .iter()
                .filter(|f| f.label == Some(label) && f.split == split::TEST)
                .count()
        };
        // round(0.25 * 7) = 2, round(0.25 * 10) = 3 (2.5 rounds away from zero).
        assert_eq!(tests(0), 2);
        assert_eq!(tests(1), 3);
    }

    #[test]
    fn different_seeds_pick_different_test_files() {
        let a = plan(candidates(&[("a", 50)]), [], &options(0.2));
        let mut other = options(0.2);
        other.seed = 4;
        let b = plan(candidates(&[("a", 50)]), [], &other);
        let picks = |p: &Plan<()>| -> Vec<i64> {
            p.files
                .iter()
                .filter(|f| f.split == split::TEST)
                .map(|f| f.id)
                .collect()
        };
        assert_eq!(picks(&a).len(), 10);
        assert_ne!(picks(&a), picks(&b));
    }

    #[test]
    fn shards_partition_the_files_and_keep_global_ids() {
        let all = plan(candidates(&[("a", 5), ("b", 4)]), [], &options(0.0));
        let mut ids = Vec::new();
        for index in 0..3 {
            let mut o = options(0.0);
            o.shard = Some(Shard { index, count: 3 });
            ids.extend(
                plan(candidates(&[("a", 5), ("b", 4)]), [], &o)
                    .files
                    .iter()
                    .map(|f| f.id),
            );
        }
        ids.sort();
        let expected: Vec<i64> = all.files.iter().map(|f| f.id).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn empty_class_folder_still_takes_its_label() {
        let plan = plan(candidates(&[("c", 1)]), ["a".to_string()], &options(0.0));
        assert_eq!(plan.class_names, ["a", "c"]);
        assert_eq!(plan.files[0].label, Some(1));
    }

    #[test]
    fn given_splits_are_kept_and_only_the_rest_is_split_per_class() {
        let mut files = candidates(&[("a", 10)]);
        for file in &mut files[..4] {
            file.split = Some(split::VAL);
        }
        let mut unlabelled = candidates(&[("z", 5)]);
        for file in &mut unlabelled {
            file.class = None;
        }
        files.extend(unlabelled);

        let plan = plan_in_order(files, [], &options(0.5));

        assert_eq!(plan.class_names, ["a"]);
        let count = |label: Option<i32>, name: &str| {
            plan.files
                .iter()
                .filter(|f| f.label == label && f.split == name)
                .count()
        };
        // Four given val; of the other six of class a, round(0.5 * 6) = 3 are test; the
        // five unlabelled files are one group: round(2.5) = 3 test.
        assert_eq!(count(Some(0), split::VAL), 4);
        assert_eq!(count(Some(0), split::TEST), 3);
        assert_eq!(count(None, split::TEST), 3);
        assert_eq!(count(None, split::TRAIN), 2);
        let ids: Vec<i64> = plan.files.iter().map(|f| f.id).collect();
        assert_eq!(ids, (0..15).collect::<Vec<_>>());
    }

    #[test]
    fn shard_text_is_parsed_and_checked() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }
}
