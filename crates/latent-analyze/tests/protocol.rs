//! The probe protocol's pieces against known answers: scikit-learn's logistic regression,
//! hand-computed kNN votes, subset sizes, and the degenerate inputs that must not crash.

use std::path::PathBuf;

use latent_analyze::features::{FeatureSet, standardise};
use latent_analyze::knn::{KnnSettings, knn_scores};
use latent_analyze::linalg::Matrix;
use latent_analyze::logistic::{FitSettings, fit};
use latent_analyze::probe::{ProbeSettings, linear_probe, stratified_folds, stratified_subset};
use serde_json::Value;

fn matrix(rows: &[Vec<f64>]) -> Matrix {
    let cols = rows[0].len();
    Matrix::from_vec(
        rows.len(),
        cols,
        rows.iter().flatten().map(|&v| v as f32).collect(),
    )
}

fn rows_of(value: &Value) -> Vec<Vec<f64>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn logistic_regression_reaches_scikit_learns_optimum() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/logistic_sklearn.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let x = matrix(&rows_of(&fixture["x"]));
    let labels: Vec<i32> = fixture["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i32)
        .collect();
    let test_x = matrix(&rows_of(&fixture["test_x"]));

    for reference in fixture["fits"].as_array().unwrap() {
        let c = reference["C"].as_f64().unwrap();
        let settings = FitSettings {
            max_iter: 20_000,
            tol: 1e-8,
            ..FitSettings::new(c)
        };
        let model = fit(&x, &labels, settings, None);
        assert!(model.converged, "C {c}: did not converge");

        // scikit-learn's coef_ is classes x dim; ours is dim x classes.
        let coef = rows_of(&reference["coef"]);
        let classes = coef.len();
        for (class, row) in coef.iter().enumerate() {
            for (feature, expected) in row.iter().enumerate() {
                let ours = model.weights[feature * classes + class];
                assert!(
                    (ours - expected).abs() < 1e-5 * expected.abs().max(1.0),
                    "C {c}, class {class}, feature {feature}: {ours} vs sklearn {expected}"
                );
            }
        }
        for (class, expected) in reference["intercept"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let expected = expected.as_f64().unwrap();
            let ours = model.intercepts[class];
            assert!(
                (ours - expected).abs() < 1e-4 * expected.abs().max(1.0),
                "C {c}: {ours} vs {expected}"
            );
        }
        let expected: Vec<i32> = reference["test_predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect();
        assert_eq!(model.predict(&test_x, 1), expected, "C {c}");
    }
}

#[test]
fn warm_started_fit_reaches_the_same_optimum() {
    let x = Matrix::from_vec(
        6,
        2,
        vec![
            0.0, 1.0, 1.0, 0.2, 2.0, -1.0, -1.0, 0.5, 0.3, 0.3, -2.0, -0.4,
        ],
    );
    let labels = [0, 1, 2, 0, 1, 2];
    let tight = |c| FitSettings {
        tol: 1e-9,
        max_iter: 10_000,
        ..FitSettings::new(c)
    };
    let cold = fit(&x, &labels, tight(0.5), None);
    let previous = fit(&x, &labels, tight(0.05), None);
    let warm = fit(&x, &labels, tight(0.5), Some(&previous));
    for (a, b) in cold.weights.iter().zip(&warm.weights) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn knn_votes_and_weights_match_hand_computed_neighbours() {
    // Query (1, 0): similarities 1 (class 1), 0.8 and 0.8 (class 0), 0 and -1 (class 1).
    // Vote of 3: two class-0 neighbours win. Weighted by exp(s / 0.1): e^10 > 2 e^8, so
    // class 1 wins. Query (0, 1): neighbours (0,1) class 1, (0.8,0.6) class 0, then (1,0)
    // and (-1,0) tie at 0 and the lower index, class 1, is taken: both votes say class 1.
    let train = Matrix::from_vec(
        5,
        2,
        vec![1.0, 0.0, 0.8, 0.6, 0.8, -0.6, 0.0, 1.0, -1.0, 0.0],
    );
    let train_labels = [1, 0, 0, 1, 1];
    let test = Matrix::from_vec(2, 2, vec![2.0, 0.0, 0.0, 3.0]);
    let settings = KnnSettings {
        vote_k: 3,
        weighted_k: 200,
        temperature: 0.1,
    };

    let scores = knn_scores(&train, &train_labels, &test, &[0, 1], settings, 1);
    assert_eq!(scores.vote_accuracy, 1.0);
    assert_eq!(scores.weighted_accuracy, 0.5);

    let scores = knn_scores(&train, &train_labels, &test, &[1, 1], settings, 1);
    assert_eq!(scores.vote_accuracy, 0.5);
    assert_eq!(scores.weighted_accuracy, 1.0);
}

#[test]
fn knn_vote_ties_go_to_the_lowest_class_id() {
    let train = Matrix::from_vec(2, 2, vec![1.0, 0.0, 0.0, 1.0]);
    let test = Matrix::from_vec(1, 2, vec![1.0, 1.0]);
    let settings = KnnSettings {
        vote_k: 2,
        weighted_k: 2,
        temperature: 0.1,
    };
    let says_zero = knn_scores(&train, &[3, 0], &test, &[0], settings, 1);
    assert_eq!(
        (says_zero.vote_accuracy, says_zero.weighted_accuracy),
        (1.0, 1.0)
    );
}

#[test]
fn stratified_subsets_take_rounded_class_shares_with_at_least_one() {
    // Class sizes 100, 37, 1 and 4: at 10% that is 10, round(3.7) = 4, 1 (at least one)
    // and round(0.4) = 0 raised to 1.
    let mut labels = Vec::new();
    for (class, size) in [(0, 100), (1, 37), (2, 1), (3, 4)] {
        labels.extend(std::iter::repeat_n(class, size));
    }
    let subset = stratified_subset(&labels, 0.1, 7, 0);
    let count = |class| subset.iter().filter(|&&r| labels[r] == class).count();
    assert_eq!([count(0), count(1), count(2), count(3)], [10, 4, 1, 1]);
    assert!(
        subset.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );

    assert_eq!(
        stratified_subset(&labels, 0.1, 7, 0),
        subset,
        "same seed, same rows"
    );
    assert_ne!(
        stratified_subset(&labels, 0.1, 7, 1),
        subset,
        "another seed, other rows"
    );
    assert_eq!(stratified_subset(&labels, 1.0, 7, 0).len(), labels.len());
}

#[test]
fn stratified_folds_share_every_class_evenly() {
    let labels: Vec<i32> = (0..30).map(|i| i % 3).collect();
    let folds = stratified_folds(&labels, 3, 0, 0);
    for fold in 0..3 {
        for class in 0..3 {
            let n = (0..30)
                .filter(|&r| folds[r] == fold && labels[r] == class)
                .count();
            assert!((3..=4).contains(&n), "fold {fold} class {class}: {n} rows");
        }
    }
}

/// Two well separated classes in 3-d plus a third class with a single example.
fn separable_with_a_singleton() -> (Matrix, Vec<i32>, Matrix, Vec<i32>) {
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for i in 0..12 {
        let wiggle = (i as f32 * 0.37).sin() * 0.2;
        data.extend([1.0 + wiggle, -wiggle, 0.1 * wiggle]);
        labels.push(0);
        data.extend([-1.0 - wiggle, wiggle, -0.1 * wiggle]);
        labels.push(1);
    }
    data.extend([0.0, 0.0, 3.0]);
    labels.push(2);
    let train = Matrix::from_vec(labels.len(), 3, data);
    let test = Matrix::from_vec(3, 3, vec![1.1, 0.0, 0.0, -0.9, 0.1, 0.0, 0.0, 0.1, 2.5]);
    (train, labels, test, vec![0, 1, 2])
}

#[test]
fn a_class_with_a_single_example_uses_c_one_and_does_not_crash() {
    let (train, labels, test, test_labels) = separable_with_a_singleton();
    let settings = ProbeSettings::default();

    let full = linear_probe(&train, &labels, &test, &test_labels, 1.0, &settings);
    let seed = &full.per_seed[0];
    assert_eq!(seed.c, 1.0);
    assert!(seed.cv_accuracy.is_empty(), "no search with a 1-row class");
    assert_eq!(seed.accuracy, 1.0, "the three test rows are easy");

    // At 10% every class keeps at least one row: 1, 1 and 1.
    let small = linear_probe(&train, &labels, &test, &test_labels, 0.1, &settings);
    assert_eq!(small.per_seed.len(), 3);
    assert!(small.per_seed.iter().all(|s| s.rows == 3 && s.c == 1.0));
    assert!(small.mean.is_finite() && small.std.is_finite());
}

#[test]
fn the_search_picks_a_c_from_the_grid_when_classes_are_large_enough() {
    let (train, labels, test, test_labels) = separable_with_a_singleton();
    let keep: Vec<usize> = (0..labels.len()).filter(|&r| labels[r] != 2).collect();
    let train = train.select_rows(&keep);
    let labels: Vec<i32> = keep.iter().map(|&r| labels[r]).collect();
    let settings = ProbeSettings::default();
    let result = linear_probe(
        &train,
        &labels,
        &test.select_rows(&[0, 1]),
        &test_labels[..2],
        1.0,
        &settings,
    );
    let seed = &result.per_seed[0];
    assert_eq!(seed.cv_accuracy.len(), settings.c_grid.len());
    assert!(settings.c_grid.contains(&seed.c));
    // The classes are separable, so some C gets every held-out row right, and the chosen
    // C is the smallest that does.
    let best = seed.cv_accuracy.iter().cloned().fold(0.0, f64::max);
    assert_eq!(best, 1.0);
    let first_best = seed.cv_accuracy.iter().position(|&a| a == best).unwrap();
    assert_eq!(seed.c, settings.c_grid[first_best]);
    assert_eq!(result.mean, 1.0);
}

#[test]
fn zero_variance_columns_become_zero_not_nan() {
    // Column 0: train [1, 3] -> mean 2, std 1. Column 1 is constant on the train split.
    let mut set = FeatureSet {
        name: "t".into(),
        source: PathBuf::from("t"),
        train: Matrix::from_vec(2, 2, vec![1.0, 4.0, 3.0, 4.0]),
        train_labels: vec![0, 1],
        test: Matrix::from_vec(1, 2, vec![5.0, 7.0]),
        test_labels: vec![0],
        train_ids: vec![10, 11],
        test_ids: vec![12],
        skipped_rows: 0,
        description: "encoder, trained".into(),
    };
    standardise(&mut set);
    assert_eq!(set.train.data, vec![-1.0, 0.0, 1.0, 0.0]);
    assert_eq!(set.test.data, vec![3.0, 0.0]);
}

#[test]
fn clustering_scores_match_scikit_learn() {
    use latent_analyze::cluster::{
        adjusted_rand_index, cosine_distances, normalized_mutual_info, silhouette,
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cluster_sklearn.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ints = |key: &str| -> Vec<i32> {
        fixture[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect()
    };
    let (labels, clusters) = (ints("labels"), ints("clusters"));
    let x = matrix(&rows_of(&fixture["x"]));

    let close = |ours: f64, key: &str, tolerance: f64| {
        let expected = fixture[key].as_f64().unwrap();
        assert!(
            (ours - expected).abs() < tolerance,
            "{key}: {ours} vs sklearn {expected}"
        );
    };
    close(normalized_mutual_info(&labels, &clusters), "nmi", 1e-12);
    close(adjusted_rand_index(&labels, &clusters), "ari", 1e-12);
    let silhouette_labels = silhouette(&cosine_distances(&x), &labels).unwrap();
    close(silhouette_labels, "silhouette_cosine_labels", 1e-5);
}

#[test]
fn degenerate_partitions_give_documented_values_not_nan() {
    use latent_analyze::cluster::{
        adjusted_rand_index, cosine_distances, normalized_mutual_info, silhouette,
    };
    let one_group = [5, 5, 5, 5];
    assert_eq!(normalized_mutual_info(&one_group, &one_group), 1.0);
    assert_eq!(adjusted_rand_index(&one_group, &one_group), 1.0);
    let x = Matrix::from_vec(4, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    let distances = cosine_distances(&x);
    assert!(
        distances.data.iter().all(|d| d.is_finite()),
        "a zero row gives no NaN"
    );
    assert_eq!(silhouette(&distances, &one_group), None, "one group");
    assert_eq!(
        silhouette(&distances, &[0, 1, 2, 3]),
        None,
        "every row its own group"
    );
}

#[test]
fn kmeans_recovers_well_separated_groups() {
    use latent_analyze::cluster::{KmeansSettings, cluster_scores};
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for i in 0..30 {
        let class = i % 3;
        let wiggle = ((i * 7) % 5) as f32 * 0.05;
        let centre = [[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]][class];
        data.extend([centre[0] + wiggle, centre[1] - wiggle]);
        labels.push(class as i32 + 10);
    }
    let x = Matrix::from_vec(30, 2, data);
    let scores = cluster_scores(&x, &labels, 3, KmeansSettings::default(), 0);
    assert!((scores.kmeans_nmi - 1.0).abs() < 1e-12, "{scores:?}");
    assert!((scores.kmeans_ari - 1.0).abs() < 1e-12, "{scores:?}");
    assert!(scores.silhouette_kmeans.unwrap() > 0.9, "{scores:?}");
}
