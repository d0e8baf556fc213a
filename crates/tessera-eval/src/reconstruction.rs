//! A tokenizer's reconstruction and codebook metrics over a validation set: mean L1, PSNR and
//! SSIM of the reconstructions, and codebook usage, perplexity and dead codes of their codes
//! (taming logs `rec_loss`; TE-VQGAN's paper reports PSNR, SSIM and usage, spec §2.7); and
//! TE-VQGAN's `Trans_eq_acc` over its translated set.
//!
//! The loops take the tokenizer as a closure, so any tokenizer (and any weight swap, such as an
//! EMA, around it) is scored the same way.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};
use tessera_quant::CodebookStats;

use crate::equivariance::TransEq;

/// Reconstruction metrics over `batches` (images in `[-1, 1]`), stopping after `limit` batches.
/// `reconstruct` returns the reconstruction `(B, 3, H, W)` and the code indices (any shape) of a
/// batch. Keys: `rec_l1`, `psnr`, `ssim`, `usage`, `perplexity`, `dead_codes`.
pub fn reconstruction_metrics<E>(
    batches: impl Iterator<Item = Result<Tensor, E>>,
    limit: usize,
    num_codes: i64,
    mut reconstruct: impl FnMut(&Tensor) -> Result<(Tensor, Tensor), E>,
) -> Result<BTreeMap<String, f64>, E> {
    let mut stats = CodebookStats::new(num_codes as usize, usize::MAX >> 1);
    let (mut l1, mut psnr, mut ssim, mut n) = (0.0, 0.0, 0.0, 0usize);
    for x in batches.take(limit) {
        let x = x?;
        let (xr, idx) = reconstruct(&x)?;
        let b = x.size()[0] as usize;
        let (x01, r01) = ((&x + 1.0) / 2.0, ((&xr + 1.0) / 2.0).clamp(0.0, 1.0));
        l1 += (&x - &xr).abs().mean(Kind::Float).double_value(&[]) * b as f64;
        psnr += crate::image::psnr(&x01, &r01).clamp_max(100.0).sum(Kind::Float).double_value(&[]);
        ssim += crate::image::ssim(&x01, &r01).sum(Kind::Float).double_value(&[]);
        let counts = idx.flatten(0, -1).bincount::<Tensor>(None, num_codes);
        let counts: Vec<i64> = Vec::try_from(counts).expect("bincount gives int64");
        stats.observe(&counts.iter().map(|&c| c as u64).collect::<Vec<_>>());
        n += b;
    }
    let n = n.max(1) as f64;
    Ok(BTreeMap::from([
        ("rec_l1".to_string(), l1 / n),
        ("psnr".to_string(), psnr / n),
        ("ssim".to_string(), ssim / n),
        ("usage".to_string(), stats.window_usage()),
        ("perplexity".to_string(), stats.window_perplexity()),
        ("dead_codes".to_string(), stats.dead_codes() as f64),
    ]))
}

/// TE-VQGAN's `Trans_eq_acc` over its translated set (spec §2.7): `encode` gives the code indices
/// `(B, h, w)` of a batch of the set, in the set's order.
pub fn trans_eq_accuracy<E>(
    batches: impl Iterator<Item = Result<Tensor, E>>,
    mut encode: impl FnMut(&Tensor) -> Result<Tensor, E>,
) -> Result<f64, E> {
    let mut te = TransEq::default();
    for x in batches {
        te.add(&encode(&x?)?);
    }
    Ok(te.accuracy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_reconstruction_scores_its_codes() {
        let x = Tensor::rand([4, 3, 16, 16], (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
        let codes = Tensor::from_slice(&[0i64, 1, 1, 3]).view([4, 1]);
        let batches = vec![Ok::<_, ()>(x)];
        let m = reconstruction_metrics(batches.into_iter(), usize::MAX, 8, |x| Ok((x.copy(), codes.copy())))
            .unwrap();
        assert_eq!(m["rec_l1"], 0.0);
        assert_eq!(m["psnr"], 100.0);
        assert!((m["ssim"] - 1.0).abs() < 1e-5);
        assert_eq!(m["usage"], 3.0 / 8.0);
        assert_eq!(m["dead_codes"], 5.0);
    }

    #[test]
    fn errors_of_the_tokenizer_reach_the_caller() {
        let x = Tensor::zeros([1, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
        let r = reconstruction_metrics(vec![Ok(x)].into_iter(), 1, 4, |_| Err("broken"));
        assert_eq!(r.unwrap_err(), "broken");
    }
}
