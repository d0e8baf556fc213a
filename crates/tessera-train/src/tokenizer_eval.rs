//! `tessera eval tokenizer`: any tokenizer run scored through [`ImageTokenizer`], whatever its kind
//! ([`crate::frozen::load_tokenizer`]), with the loops of [`tessera_eval::reconstruction`]:
//! L1, PSNR, SSIM, usage, perplexity and dead codes on the run's validation split,
//! Trans_eq_acc on the MNIST64x64 translated set, and the agreement of codes under a shift.

use std::path::Path;
use std::sync::Arc;

use tch::{Device, Tensor};
use tessera_data::{DataConfig, DataLoader, Dataset, LoaderConfig, Split};
use tessera_models::tokenizer::ImageTokenizer;

use crate::error::{Result, TrainError};
use crate::metrics::Record;

/// What to score.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Validation batches (0 = the whole split).
    pub val_batches: usize,
    pub batch_size: usize,
    /// Trans_eq_acc on the translated set (MNIST64x64 data only).
    pub trans_eq: bool,
}

/// Reconstruction and codebook metrics over `limit` batches of `val` (0 = all), and Trans_eq_acc
/// over `translated` when given (its batches hold whole 5-image groups); `reconstruct` returns a
/// batch's reconstruction and its codes on the `side`×`side` grid (any shape with that many).
/// The training tasks validate with it, so every tokenizer is scored by the same loop.
pub fn evaluate_loaders(
    val: &DataLoader,
    translated: Option<&DataLoader>,
    limit: usize,
    num_codes: i64,
    side: i64,
    mut reconstruct: impl FnMut(&Tensor) -> Result<(Tensor, Tensor)>,
) -> Result<Record> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let images = val.epoch(0).map(|b| b.map(|b| b.images).map_err(TrainError::from));
    let mut rec =
        tessera_eval::reconstruction::reconstruction_metrics(images, limit, num_codes, &mut reconstruct)?;
    if let Some(tr) = translated {
        let images = tr.epoch(0).map(|b| b.map(|b| b.images).map_err(TrainError::from));
        let acc = tessera_eval::reconstruction::trans_eq_accuracy(images, |x| {
            Ok::<_, TrainError>(reconstruct(x)?.1.view([-1, side, side]))
        })?;
        rec.insert("trans_eq_acc".into(), acc);
    }
    Ok(rec)
}

/// The loaders a tokenizer is validated on: `data`'s validation split in batches of `batch`, and,
/// with `trans_eq` on MNIST64x64 data, the translated set in batches of whole 5-image groups
/// (Trans_eq_acc compares the images of a group).
pub fn validation_loaders(
    data: &DataConfig,
    root: &Path,
    batch: usize,
    trans_eq: bool,
    device: Device,
) -> Result<(DataLoader, Option<DataLoader>)> {
    let loader = |ds: Arc<dyn Dataset>, batch: usize| DataLoader::new(ds, LoaderConfig::eval(batch), device);
    let val = loader(data.open(Split::Validation, root)?, batch);
    let translated = (trans_eq && data.source == tessera_data::SourceKind::Mnist64)
        .then(|| data.translated(root).map(|ds| loader(ds, batch.div_ceil(5) * 5)))
        .transpose()?;
    Ok((val, translated))
}

/// Reconstruction and codebook metrics of `tok` on `data`'s validation split, and Trans_eq_acc.
pub fn evaluate(
    tok: &mut dyn ImageTokenizer,
    data: &DataConfig,
    root: &Path,
    opts: &EvalOptions,
    device: Device,
) -> Result<Record> {
    let side = single_grid(tok)?;
    let (val, translated) = validation_loaders(data, root, opts.batch_size, opts.trans_eq, device)?;
    let num_codes = tok.num_codes() as i64;
    evaluate_loaders(&val, translated.as_ref(), opts.val_batches, num_codes, side, |x| {
        let codes = tok.encode(x)?;
        Ok((tok.decode(&codes), codes))
    })
}

/// The side of the one square code grid of `tok`; shifts and Trans_eq_acc need one.
fn single_grid(tok: &dyn ImageTokenizer) -> Result<i64> {
    tok.layout().single_square().ok_or_else(|| {
        TrainError::Invalid(format!(
            "this {} tokenizer lays its codes out as {:?}; shifted codes are defined on one square grid",
            tok.kind(),
            tok.layout().grids
        ))
    })
}

/// The fraction of equal codes on the overlap when `n` validation images are rolled by
/// `(dy, dx)` pixels (multiples of the downsampling factor).
#[allow(clippy::too_many_arguments)]
pub fn shifted_agreement(
    tok: &mut dyn ImageTokenizer,
    data: &DataConfig,
    root: &Path,
    n: usize,
    (dy, dx): (i64, i64),
    batch_size: usize,
    device: Device,
) -> Result<f64> {
    let side = single_grid(tok)?;
    let f = tok.resolution() / side;
    if dy % f != 0 || dx % f != 0 {
        return Err(TrainError::Invalid(format!(
            "shift ({dy}, {dx}) px is not a multiple of the downsampling factor f = {f}"
        )));
    }
    let sub: Arc<dyn Dataset> = Arc::new(tessera_data::Subset::new(data.open(Split::Validation, root)?, n));
    let loader = DataLoader::new(sub, LoaderConfig::eval(batch_size.max(1)), device);
    let (mut sum, mut count) = (0.0, 0usize);
    for b in loader.epoch(0) {
        let x = b?.images;
        let a = tok.encode(&x)?.view([-1, side, side]);
        let c = tok.encode(&x.roll([dy, dx], [2, 3]))?.view([-1, side, side]);
        let m = a.size()[0] as usize;
        sum += tessera_eval::equivariance::shifted_agreement(&a, &c, dy / f, dx / f) * m as f64;
        count += m;
    }
    if count == 0 {
        return Err(TrainError::Invalid("the validation set is empty".into()));
    }
    Ok(sum / count as f64)
}
