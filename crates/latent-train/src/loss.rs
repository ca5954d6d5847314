//! NT-Xent, the SimCLR contrastive loss, and the "positive ranked first" accuracy.
//!
//! The batch holds 2N projections: rows 0..N are the first views of N images, rows N..2N
//! the second views in the same order, so the positive of row i is row i+N and the other
//! 2N-2 rows are its negatives.

use candle_core::{D, Device, Tensor};

use crate::error::Result;

/// NT-Xent loss of a batch and its similarity logits.
#[derive(Debug)]
pub struct Contrastive {
    /// Scalar loss: mean over the 2N rows of the cross-entropy of the positive.
    pub loss: Tensor,
    /// Cosine similarities / temperature with the diagonal set to -inf (detached).
    pub logits: Tensor,
}

/// NT-Xent over `projections` `[2N, d]` at `temperature`.
///
/// Projections are L2-normalised (norms clamped below at 1e-12, as PyTorch's
/// `F.normalize`); self-similarity is removed with -inf so it adds exactly nothing to
/// the log-sum-exp; the log-sum-exp subtracts each row's maximum, so low temperatures
/// stay finite. N is the batch's actual row count / 2.
pub fn nt_xent(projections: &Tensor, temperature: f64) -> Result<Contrastive> {
    let rows = projections.dim(0)?;
    let n = rows / 2;
    assert!(
        rows == 2 * n && n >= 1,
        "NT-Xent needs an even number of rows, got {rows}"
    );

    let norms = projections.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
    let z = projections.broadcast_div(&norms)?;
    let logits = (z.matmul(&z.t()?)? / temperature)?;
    let logits = logits.broadcast_add(&self_mask(rows)?)?;

    let row_max = logits.max_keepdim(D::Minus1)?.detach();
    let log_sum_exp = (logits
        .broadcast_sub(&row_max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + row_max)?
        .squeeze(1)?;

    let partners = Tensor::cat(&[z.narrow(0, n, n)?, z.narrow(0, 0, n)?], 0)?;
    let positive = ((&z * &partners)?.sum(1)? / temperature)?;

    let loss = (log_sum_exp - positive)?.mean_all()?;
    Ok(Contrastive {
        loss,
        logits: logits.detach(),
    })
}

/// A `[rows, rows]` matrix with -inf on the diagonal and 0 elsewhere.
fn self_mask(rows: usize) -> Result<Tensor> {
    let mut mask = vec![0f32; rows * rows];
    for i in 0..rows {
        mask[i * rows + i] = f32::NEG_INFINITY;
    }
    Ok(Tensor::from_vec(mask, (rows, rows), &Device::Cpu)?)
}

/// Fraction of the 2N rows whose positive has a strictly higher logit than all 2N-2
/// negatives (top-1 accuracy of finding the other view among 2N-1 candidates).
pub fn positive_top1(logits: &Tensor) -> Result<f64> {
    let rows = logits.dim(0)?;
    let n = rows / 2;
    let values: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    let first = (0..rows)
        .filter(|&i| {
            let row = &values[i * rows..(i + 1) * rows];
            let positive = row[(i + n) % rows];
            row.iter()
                .enumerate()
                .all(|(j, &v)| j == i || j == (i + n) % rows || v < positive)
        })
        .count();
    Ok(first as f64 / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(rows: &[&[f32]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
    }

    fn loss_of(z: &Tensor, t: f64) -> f64 {
        nt_xent(z, t).unwrap().loss.to_scalar::<f32>().unwrap() as f64
    }

    #[test]
    fn identical_views_with_orthogonal_negatives_match_the_closed_form() {
        // Three images, views equal, images orthogonal: each row sees its positive at
        // cosine 1 and 2N-2 = 4 negatives at cosine 0.
        let z = tensor(&[
            &[1., 0., 0.],
            &[0., 1., 0.],
            &[0., 0., 1.],
            &[1., 0., 0.],
            &[0., 1., 0.],
            &[0., 0., 1.],
        ]);
        for t in [0.5f64, 0.1, 1.0] {
            let e = (1.0 / t).exp();
            let expected = -(e / (e + 4.0)).ln();
            assert!((loss_of(&z, t) - expected).abs() < 1e-5, "t={t}");
        }
        let logits = nt_xent(&z, 0.5).unwrap().logits;
        assert_eq!(positive_top1(&logits).unwrap(), 1.0);
    }

    #[test]
    fn two_images_match_the_hand_computation() {
        // a = (1,0) (given as (3,0) to exercise normalisation), b = (0,1),
        // a' = (0.6,0.8), b' = (0.8,0.6). Dot products: a.b 0, a.a' 0.6, a.b' 0.8,
        // b.a' 0.8, b.b' 0.6, a'.b' 0.96. At t = 0.5 the logits double:
        //   row a : -1.2 + ln(e^0 + e^1.2 + e^1.6)     = 1.027124
        //   row b : -1.2 + ln(e^0 + e^1.6 + e^1.2)     = 1.027124
        //   row a': -1.2 + ln(e^1.2 + e^1.6 + e^1.92)  = 1.514303
        //   row b': -1.2 + ln(e^1.6 + e^1.2 + e^1.92)  = 1.514303
        // mean = 1.270714. No positive is ranked first (1.2 < 1.6 in every row).
        let z = tensor(&[&[3., 0.], &[0., 1.], &[0.6, 0.8], &[0.8, 0.6]]);
        assert!(
            (loss_of(&z, 0.5) - 1.270714).abs() < 1e-5,
            "{}",
            loss_of(&z, 0.5)
        );
        let logits = nt_xent(&z, 0.5).unwrap().logits;
        assert_eq!(positive_top1(&logits).unwrap(), 0.0);
    }

    #[test]
    fn permuting_images_with_their_positives_keeps_the_loss() {
        let z = Tensor::randn(0f32, 1., (8, 5), &Device::Cpu).unwrap();
        let order: Vec<u32> = vec![2, 0, 3, 1, 6, 4, 7, 5];
        let permuted = z
            .index_select(&Tensor::new(order.as_slice(), &Device::Cpu).unwrap(), 0)
            .unwrap();
        let (a, b) = (loss_of(&z, 0.5), loss_of(&permuted, 0.5));
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");

        // Breaking the pairing (swap two second views) must change it.
        let broken: Vec<u32> = vec![0, 1, 2, 3, 5, 4, 6, 7];
        let broken = z
            .index_select(&Tensor::new(broken.as_slice(), &Device::Cpu).unwrap(), 0)
            .unwrap();
        assert!((a - loss_of(&broken, 0.5)).abs() > 1e-4);
    }

    #[test]
    fn low_temperature_stays_finite_and_has_finite_gradients() {
        let z =
            candle_core::Var::from_tensor(&Tensor::randn(0f32, 1., (6, 4), &Device::Cpu).unwrap())
                .unwrap();
        let out = nt_xent(z.as_tensor(), 0.01).unwrap();
        let loss = out.loss.to_scalar::<f32>().unwrap();
        assert!(loss.is_finite() && loss >= 0.0, "{loss}");
        let grads = out.loss.backward().unwrap();
        let g: Vec<f32> = grads
            .get(z.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    }
}
