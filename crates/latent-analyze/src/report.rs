//! The report: its JSON structure (documented key by key in `REPORT_FORMAT.md`) and the
//! Markdown summary written beside it.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::cluster::{ClusterScores, KmeansSettings};
use crate::knn::{KnnScores, KnnSettings};
use crate::probe::{FractionResult, ProbeSettings};

/// Version of the `report.json` structure; raised when a key changes meaning or goes.
pub const FORMAT_VERSION: u32 = 1;

/// Everything `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub product: String,
    pub product_version: String,
    pub protocol: Protocol,
    pub inputs: Inputs,
    pub feature_sets: Vec<FeatureSetReport>,
    /// Summary of the training steps table, when `--steps` was given.
    pub training: Option<TrainingSummary>,
    /// PNG pictures written beside the report, in the order report.md shows them.
    pub pictures: Vec<Picture>,
    pub timings_s: Timings,
}

/// A PNG picture written into the output folder beside the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Picture {
    /// File name, relative to the output folder.
    pub file: String,
    /// `loss`, `map`, `neighbours`, `confusion`, `interpolation` or `reconstructions`.
    pub kind: String,
    /// The feature set it shows (none for the training curves).
    pub feature_set: Option<String>,
    /// What it shows, in words.
    pub caption: String,
}

/// The fixed protocol every number was measured with.
#[derive(Debug, Clone, Serialize)]
pub struct Protocol {
    pub standardisation: String,
    pub label_fractions: Vec<f64>,
    pub linear_probe: ProbeSettings,
    pub linear_probe_objective: String,
    pub knn: KnnSettings,
    pub knn_similarity: String,
    pub kmeans: KmeansSettings,
    pub clustering: String,
}

/// Where the inputs came from.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub images: PathBuf,
    pub latents: Vec<NamedInput>,
    pub steps: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// A `--latent NAME=PATH` input.
#[derive(Debug, Clone, Serialize)]
pub struct NamedInput {
    pub name: String,
    pub path: PathBuf,
}

/// The scores of one feature set.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSetReport {
    pub name: String,
    pub source: PathBuf,
    /// What the features are: "raw pixels", or the latent table's representation and
    /// model kind ("encoder, trained", "head:1, trained", "bottleneck, trained",
    /// "encoder, random-init"), "unknown" when the table does not record them.
    pub features: String,
    pub dim: usize,
    pub classes: usize,
    pub train_rows: usize,
    pub test_rows: usize,
    pub skipped_rows: usize,
    pub linear_probe: Vec<FractionResult>,
    pub knn: KnnScores,
    pub clustering: ClusterScores,
    /// Confusion counts of one linear probe fit (none when there was no probe).
    pub confusion: Option<Confusion>,
    pub timings_s: FeatureSetTimings,
}

/// Test rows by true and predicted class for the linear probe of one label subset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// The label fraction and subset seed of the fit.
    pub fraction: f64,
    pub seed: u64,
    /// `counts[true class][predicted class]`, classes x classes.
    pub counts: Vec<Vec<usize>>,
}

/// Seconds spent on one feature set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeatureSetTimings {
    pub load: f64,
    pub standardise: f64,
    /// One entry per label fraction, in the order of `linear_probe`.
    pub linear_probe: Vec<f64>,
    pub knn: f64,
    pub clustering: f64,
    pub total: f64,
}

/// The end of the training run, from its steps table.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingSummary {
    pub path: PathBuf,
    pub steps: usize,
    pub final_loss: f64,
    /// Name of the column the positive top-1 was read from (none if the table has none).
    pub positive_top1_column: Option<String>,
    pub final_positive_top1: Option<f64>,
}

/// Seconds of the whole analysis.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Drawing and writing the pictures.
    pub pictures: f64,
    pub total: f64,
}

/// The Markdown summary: one row per feature set, then the protocol in words.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let fractions = &report.protocol.label_fractions;
    let knn = &report.protocol.knn;

    let _ = writeln!(md, "# Latent space report\n");
    let _ = writeln!(
        md,
        "Test-split accuracy in % (clustering scores as fractions), {} {}. Linear probes at label fractions below 100% are \
         the mean ± std over subset seeds {:?}.\n",
        report.product, report.product_version, report.protocol.linear_probe.seeds
    );
    let mut header = String::from("| features | layer | dim |");
    let mut rule = String::from("| --- | --- | --- |");
    for f in fractions {
        let _ = write!(header, " lin {} |", percent_label(*f));
        rule.push_str(" --- |");
    }
    let _ = write!(
        header,
        " kNN{} vote | kNN{} weighted | k-means NMI | ARI | silh. (labels) | silh. (k-means) |",
        knn.vote_k, knn.weighted_k
    );
    rule.push_str(" --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(md, "{header}\n{rule}");
    for set in &report.feature_sets {
        // A `|` in a name would open a new column of the Markdown table.
        let cell = |text: &str| text.replace('|', "\\|");
        let mut line = format!(
            "| {} | {} | {} |",
            cell(&set.name),
            cell(&set.features),
            set.dim
        );
        for probe in &set.linear_probe {
            let flag = if probe.converged {
                ""
            } else {
                " (not converged)"
            };
            if probe.per_seed.len() > 1 {
                let _ = write!(
                    line,
                    " {:.1} ± {:.1}{flag} |",
                    100.0 * probe.mean,
                    100.0 * probe.std
                );
            } else {
                let _ = write!(line, " {:.1}{flag} |", 100.0 * probe.mean);
            }
        }
        let _ = write!(
            line,
            " {:.1} | {:.1} |",
            100.0 * set.knn.vote_accuracy,
            100.0 * set.knn.weighted_accuracy
        );
        let scores = &set.clustering;
        let _ = write!(
            line,
            " {:.3} | {:.3} | {} | {} |",
            scores.kmeans_nmi,
            scores.kmeans_ari,
            optional(scores.silhouette_labels),
            optional(scores.silhouette_kmeans)
        );
        let _ = writeln!(md, "{line}");
    }

    if let Some(training) = &report.training {
        let _ = writeln!(
            md,
            "\nTraining ({}): {} steps, final loss {:.4}{}.",
            training.path.display(),
            training.steps,
            training.final_loss,
            training
                .final_positive_top1
                .map(|t| format!(", final positive top-1 {:.1}%", 100.0 * t))
                .unwrap_or_default()
        );
    }

    if !report.pictures.is_empty() {
        let _ = writeln!(md, "\n## Pictures\n");
        for picture in &report.pictures {
            let _ = writeln!(
                md,
                "![{}]({})\n\n{}\n",
                picture.kind, picture.file, picture.caption
            );
        }
    }

    let probe = &report.protocol.linear_probe;
    let _ = writeln!(md, "\n## Protocol\n");
    let _ = writeln!(
        md,
        "- Features: frozen; the layer column says which output of which model (read from \
         the latent table's metadata). {}.",
        report.protocol.standardisation
    );
    let _ = writeln!(
        md,
        "- Linear probe: {}.",
        report.protocol.linear_probe_objective
    );
    let _ = writeln!(
        md,
        "- Label subsets: round(fraction x class size) train rows per class (at least 1), \
         drawn with seed {} and subset seeds {:?}; 100% uses every train row once.",
        probe.run_seed, probe.seeds
    );
    let _ = writeln!(
        md,
        "- C chosen per subset from {:?} by {}-fold stratified cross-validation on the subset \
         only (best mean accuracy, ties to the smaller C); C = {} when a class has fewer than \
         {} rows. The test split is never used to choose anything.",
        probe.c_grid, probe.folds, probe.fallback_c, probe.folds
    );
    let _ = writeln!(
        md,
        "- kNN: {}; k = {} majority vote (ties to the lowest class id) and k = {} weighted \
         by exp(similarity / {}).",
        report.protocol.knn_similarity, knn.vote_k, knn.weighted_k, knn.temperature
    );
    let _ = writeln!(md, "- Clustering: {}.", report.protocol.clustering);
    let _ = writeln!(md, "\nTotal time {:.1} s.", report.timings_s.total);
    md
}

/// A score that may be undefined ("n/a" then).
fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

fn percent_label(fraction: f64) -> String {
    format!("{}%", (fraction * 100.0 * 1000.0).round() / 1000.0)
}
