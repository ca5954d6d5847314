//! analyze: how good is a latent space?
//!
//! Scores feature sets (the raw pixels of the image table first, as the baseline, then
//! every latent table) with a fixed protocol: linear probes on stratified label subsets
//! with `C` chosen by cross-validation on the subset, and kNN by cosine similarity. The
//! results go to `report.json` (structure in `REPORT_FORMAT.md`) and a Markdown summary,
//! both written atomically, with PNG pictures beside them (training curves, PCA maps,
//! nearest neighbours, confusion matrices, and with `--decoder` an autoencoder's walks
//! through its latent space and its reconstructions). Inputs are only ever read.

pub mod cluster;
pub mod decoded;
pub mod error;
pub mod features;
pub mod knn;
pub mod linalg;
pub mod logistic;
pub mod pca;
pub mod pictures;
pub mod probe;
pub mod report;
pub mod steps;

use std::path::{Path, PathBuf};
use std::time::Instant;

use latent_core::config::AnalyzeConfig;
use latent_core::image_table::{self, ImageTable};

use decoded::Decoder;
pub use error::{AnalyzeError, Result};
use features::FeatureSet;
use knn::KnnSettings;
use probe::FractionResult;
use probe::ProbeSettings;
use report::{
    Confusion, FeatureSetReport, FeatureSetTimings, Inputs, NamedInput, Picture, Protocol, Report,
    Timings,
};

/// The name the raw-pixel baseline is reported under (not allowed for a `--latent`).
pub const RAW_PIXELS: &str = "raw-pixels";
/// File names written into the output folder.
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
/// The label fraction and subset seed whose linear probe the confusion matrices show (the
/// nearest fraction and the first seed when the config has not these).
pub const CONFUSION_FRACTION: f64 = 0.1;
pub const CONFUSION_SEED: u64 = 0;

/// What to analyse and where to write the report.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// The image table (its raw pixels are the first baseline).
    pub images: PathBuf,
    /// Latent tables, by the name they are reported under.
    pub latents: Vec<(String, PathBuf)>,
    /// Autoencoder model folders, by the `latents` name of the table holding their
    /// bottleneck; each adds the interpolation and reconstructions pictures.
    pub decoders: Vec<(String, PathBuf)>,
    /// The training steps table, if any.
    pub steps: Option<PathBuf>,
    /// The pipeline config the settings came from, recorded in the report.
    pub config_path: Option<PathBuf>,
    /// The `[analyze]` settings.
    pub config: AnalyzeConfig,
    /// The run's seed (`[run].seed`).
    pub seed: u64,
    /// Output folder for `report.json` and `report.md`.
    pub out: PathBuf,
}

/// Runs the whole analysis, writes the report files and returns the report.
pub fn run(options: &AnalyzeOptions) -> Result<Report> {
    let started = Instant::now();
    check_options(options)?;
    let (probe_settings, knn_settings) = settings(options);
    let decoders = options
        .decoders
        .iter()
        .map(|(name, model_dir)| Decoder::load(name, model_dir))
        .collect::<Result<Vec<_>>>()?;
    for decoder in &decoders {
        let (_, table) = options
            .latents
            .iter()
            .find(|(name, _)| name == &decoder.name)
            .expect("check_options: every --decoder names a --latent");
        decoder.check_table(table)?;
    }

    let mut sources: Vec<(String, PathBuf)> =
        vec![(RAW_PIXELS.to_string(), options.images.clone())];
    sources.extend(options.latents.iter().cloned());
    let mut feature_sets = Vec::new();
    let mut pictures = Vec::new();
    let mut pictures_s = 0.0;
    let mut image_table: Option<ImageTable> = None;
    for (index, (name, path)) in sources.iter().enumerate() {
        let load_started = Instant::now();
        let set = if name == RAW_PIXELS {
            let table = image_table.insert(image_table::read_image_table(path)?);
            features::raw_pixels(table)?
        } else {
            features::read_latent_table(name, path)?
        };
        tracing::info!(
            "{name}: {} train / {} test rows of dimension {} from {}",
            set.train.rows,
            set.test.rows,
            set.dim(),
            path.display()
        );
        let load_s = load_started.elapsed().as_secs_f64();
        let decoder = decoders.iter().find(|d| &d.name == name);
        if let Some(decoder) = decoder {
            decoder.check_dim(&set)?;
        }
        // The decoder takes the bottleneck as the table holds it, not standardised.
        let raw = decoder.map(|_| set.clone());
        let mut set = set;
        let scored = score(
            &mut set,
            &options.config.label_fractions,
            &probe_settings,
            knn_settings,
            load_s,
        );
        log_scores(&scored);

        if name != RAW_PIXELS {
            let step = Instant::now();
            let table = image_table.as_ref().expect("the image table is read first");
            let first_latent = index == 1;
            pictures.extend(latent_pictures(
                &set,
                &scored,
                table,
                first_latent,
                options,
            )?);
            if let (Some(decoder), Some(raw)) = (decoder, &raw) {
                pictures.extend(decoded_pictures(raw, decoder, table, options)?);
            }
            pictures_s += step.elapsed().as_secs_f64();
        }
        feature_sets.push(scored);
    }

    let training = options.steps.as_deref().map(steps::summarise).transpose()?;
    if let Some(path) = &options.steps {
        let step = Instant::now();
        let curves = steps::read_curves(path)?;
        pictures.insert(0, pictures::loss_picture(&curves, &options.out)?);
        pictures_s += step.elapsed().as_secs_f64();
    }
    tracing::info!(
        "drew {} pictures into {} in {:.1} s",
        pictures.len(),
        options.out.display(),
        pictures_s
    );
    let report = Report {
        format_version: report::FORMAT_VERSION,
        product: "latent-analyze".into(),
        product_version: latent_core::VERSION.into(),
        protocol: protocol(options, probe_settings, knn_settings),
        inputs: Inputs {
            images: options.images.clone(),
            latents: options
                .latents
                .iter()
                .map(|(name, path)| NamedInput {
                    name: name.clone(),
                    path: path.clone(),
                })
                .collect(),
            steps: options.steps.clone(),
            config: options.config_path.clone(),
        },
        feature_sets,
        training,
        pictures,
        timings_s: Timings {
            pictures: pictures_s,
            total: started.elapsed().as_secs_f64(),
        },
    };

    write_report(&report, &options.out)?;
    Ok(report)
}

/// The probe and kNN settings from the `[analyze]` config and the run seed.
pub fn settings(options: &AnalyzeOptions) -> (ProbeSettings, KnnSettings) {
    let probe = ProbeSettings {
        run_seed: options.seed,
        seeds: options.config.seeds.clone(),
        ..ProbeSettings::default()
    };
    let knn = KnnSettings {
        vote_k: options.config.knn_k,
        ..KnnSettings::default()
    };
    (probe, knn)
}

/// The PCA map, the confusion matrix and (for the first latent table only) the nearest
/// neighbours picture of one scored, standardised latent feature set.
fn latent_pictures(
    set: &FeatureSet,
    scored: &FeatureSetReport,
    table: &ImageTable,
    first_latent: bool,
    options: &AnalyzeOptions,
) -> Result<Vec<Picture>> {
    let class_names = table.class_names();
    let mut drawn = vec![pictures::map_picture(set, &class_names, &options.out)?];
    if first_latent
        && let Some(picture) =
            pictures::neighbours_picture(set, table, &class_names, options.seed, &options.out)?
    {
        drawn.push(picture);
    }

    if let Some(confusion) = &scored.confusion {
        let what = format!(
            "linear probe at {}% labels (subset seed {})",
            (confusion.fraction * 1000.0).round() / 10.0,
            confusion.seed
        );
        drawn.push(pictures::confusion_picture(
            &set.name,
            &confusion.counts,
            &class_names,
            &what,
            &options.out,
        )?);
    }
    Ok(drawn)
}

/// The interpolation and reconstructions pictures of an autoencoder's latent table, drawn
/// from its raw (not standardised) rows.
fn decoded_pictures(
    raw: &FeatureSet,
    decoder: &Decoder,
    table: &ImageTable,
    options: &AnalyzeOptions,
) -> Result<Vec<Picture>> {
    let class_names = table.class_names();
    let seed = options.seed;
    let interpolation =
        decoded::interpolation_picture(raw, decoder, table, &class_names, seed, &options.out)?;
    let reconstructions =
        decoded::reconstructions_picture(raw, decoder, table, &class_names, seed, &options.out)?;
    Ok(interpolation.into_iter().chain(reconstructions).collect())
}

/// The confusion counts of the probe at the label fraction nearest [`CONFUSION_FRACTION`]
/// and subset seed [`CONFUSION_SEED`] (else that fraction's first seed).
fn confusion(set: &FeatureSet, linear_probe: &[FractionResult]) -> Option<Confusion> {
    let distance = |f: f64| (f - CONFUSION_FRACTION).abs();
    let probe = linear_probe
        .iter()
        .min_by(|a, b| distance(a.fraction).total_cmp(&distance(b.fraction)))?;
    let seed = probe
        .per_seed
        .iter()
        .find(|s| s.seed == CONFUSION_SEED)
        .or(probe.per_seed.first())?;
    Some(Confusion {
        fraction: probe.fraction,
        seed: seed.seed,
        counts: pictures::confusion_matrix(&set.test_labels, &seed.test_predictions, set.classes()),
    })
}

/// Every file name the analysis writes into `--out`.
fn output_files(options: &AnalyzeOptions) -> Vec<String> {
    let mut files = vec![REPORT_JSON.to_string(), REPORT_MD.to_string()];
    if options.steps.is_some() {
        files.push("loss.png".into());
    }
    for (name, _) in &options.latents {
        for kind in ["map", "neighbours", "confusion"] {
            files.push(pictures::file_name(kind, name));
        }
    }
    for (name, _) in &options.decoders {
        for kind in ["interpolation", "reconstructions"] {
            files.push(pictures::file_name(kind, name));
        }
    }
    files
}

/// Refuses options that cannot give a meaningful report, or that would overwrite an input.
fn check_options(options: &AnalyzeOptions) -> Result<()> {
    let mut names = vec![RAW_PIXELS];
    for (name, path) in &options.latents {
        if names.contains(&name.as_str()) {
            return Err(AnalyzeError::Usage(format!(
                "--latent {name}={}: the name '{name}' is already taken",
                path.display()
            )));
        }
        names.push(name);
    }
    let mut decoded: Vec<&str> = Vec::new();
    for (name, model_dir) in &options.decoders {
        let option = format!("--decoder {name}={}", model_dir.display());
        if !options.latents.iter().any(|(latent, _)| latent == name) {
            let latents: Vec<&str> = options.latents.iter().map(|(n, _)| n.as_str()).collect();
            return Err(AnalyzeError::Usage(format!(
                "{option}: '{name}' is not the name of a --latent table (given: {})",
                if latents.is_empty() {
                    "none".to_string()
                } else {
                    latents.join(", ")
                }
            )));
        }
        if decoded.contains(&name.as_str()) {
            return Err(AnalyzeError::Usage(format!(
                "{option}: '{name}' already has a decoder"
            )));
        }
        decoded.push(name);
    }
    if options.config.seeds.is_empty() {
        return Err(AnalyzeError::Usage(
            "[analyze].seeds must hold at least one seed".into(),
        ));
    }
    if let Some(bad) = options
        .config
        .label_fractions
        .iter()
        .find(|f| !(**f > 0.0 && **f <= 1.0))
    {
        return Err(AnalyzeError::Usage(format!(
            "[analyze].label_fractions must lie in (0, 1], found {bad}"
        )));
    }
    if options.config.knn_k == 0 {
        return Err(AnalyzeError::Usage(
            "[analyze].knn_k must be at least 1".into(),
        ));
    }

    let inputs = std::iter::once(&options.images)
        .chain(options.latents.iter().map(|(_, p)| p))
        .chain(options.steps.iter())
        .chain(options.config_path.iter());
    let outputs = output_files(options);
    for input in inputs {
        for output in &outputs {
            if same_file(input, &options.out.join(output)) {
                return Err(AnalyzeError::Usage(format!(
                    "--out {}: writing {output} there would overwrite the input {}",
                    options.out.display(),
                    input.display()
                )));
            }
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Standardises one feature set (in place) and runs every probe on it.
fn score(
    set: &mut FeatureSet,
    fractions: &[f64],
    probe_settings: &ProbeSettings,
    knn_settings: KnnSettings,
    load_s: f64,
) -> FeatureSetReport {
    let mut timings = FeatureSetTimings {
        load: load_s,
        ..FeatureSetTimings::default()
    };
    let step = Instant::now();
    features::standardise(set);
    timings.standardise = step.elapsed().as_secs_f64();

    let mut linear_probe = Vec::new();
    for &fraction in fractions {
        let step = Instant::now();
        let result = probe::linear_probe(
            &set.train,
            &set.train_labels,
            &set.test,
            &set.test_labels,
            fraction,
            probe_settings,
        );
        timings.linear_probe.push(step.elapsed().as_secs_f64());
        tracing::info!(
            "{}: linear probe {}% labels: accuracy {:.4} ± {:.4} (C {:?}) in {:.1} s",
            set.name,
            fraction * 100.0,
            result.mean,
            result.std,
            result.per_seed.iter().map(|s| s.c).collect::<Vec<_>>(),
            step.elapsed().as_secs_f64()
        );
        linear_probe.push(result);
    }

    let step = Instant::now();
    let threads = rayon::current_num_threads();
    let knn = knn::knn_scores(
        &set.train,
        &set.train_labels,
        &set.test,
        &set.test_labels,
        knn_settings,
        threads,
    );
    timings.knn = step.elapsed().as_secs_f64();

    let step = Instant::now();
    let clustering = cluster::cluster_scores(
        &set.test,
        &set.test_labels,
        set.classes(),
        cluster::KmeansSettings::default(),
        probe_settings.run_seed,
    );
    timings.clustering = step.elapsed().as_secs_f64();
    timings.total = timings.load
        + timings.standardise
        + timings.linear_probe.iter().sum::<f64>()
        + timings.knn
        + timings.clustering;

    let confusion_counts = confusion(set, &linear_probe);
    FeatureSetReport {
        features: set.description.clone(),
        dim: set.dim(),
        classes: set.classes(),
        train_rows: set.train.rows,
        test_rows: set.test.rows,
        skipped_rows: set.skipped_rows,
        name: set.name.clone(),
        source: set.source.clone(),
        linear_probe,
        knn,
        clustering,
        confusion: confusion_counts,
        timings_s: timings,
    }
}

fn log_scores(set: &FeatureSetReport) {
    tracing::info!(
        "{}: kNN vote {:.4}, kNN weighted {:.4}, k-means NMI {:.3} ARI {:.3}; {:.1} s in all",
        set.name,
        set.knn.vote_accuracy,
        set.knn.weighted_accuracy,
        set.clustering.kmeans_nmi,
        set.clustering.kmeans_ari,
        set.timings_s.total
    );
}

fn protocol(options: &AnalyzeOptions, probe: ProbeSettings, knn: KnnSettings) -> Protocol {
    Protocol {
        standardisation: "each column standardised with the mean and population std of the \
                          train split only; columns constant on the train split are set to 0"
            .into(),
        label_fractions: options.config.label_fractions.clone(),
        linear_probe_objective: format!(
            "multinomial logistic regression minimising C * sum of cross-entropy + \
             0.5 * ||W||^2 (intercepts not penalised), L-BFGS with at most {} iterations, \
             stopping at max |gradient| <= {} of the objective divided by C * rows",
            probe.max_iter, probe.tol
        ),
        linear_probe: probe,
        knn,
        kmeans: cluster::KmeansSettings::default(),
        clustering: "on the standardised test rows: k-means with k = classes, k-means++ starts \
                     seeded from [run].seed, the restart of lowest inertia kept; NMI \
                     (arithmetic normalisation) and ARI against the labels; mean silhouette with \
                     cosine distance, for the labels and for the k-means clusters"
            .into(),
        knn_similarity: "cosine similarity of L2-normalised standardised features, test rows \
                         as queries against every train row"
            .into(),
    }
}

/// Writes `report.json` and `report.md` into `out`, each atomically.
pub fn write_report(report: &Report, out: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report).expect("the report serialises");
    latent_core::atomic::write_bytes(out.join(REPORT_JSON), format!("{json}\n").as_bytes())?;
    latent_core::atomic::write_bytes(out.join(REPORT_MD), report::markdown(report).as_bytes())?;
    Ok(())
}
