//! Extra terms of a tokenizer's training loss ([`ExtraLoss`], LG-VQ's losses), applied the same
//! way by every tokenizer task: `L += Σ weight · value`, each value logged as `loss/<name>`.

use tch::Tensor;
use tessera_models::tokenizer::{ExtraLoss, LossInputs};

use crate::error::{Result, TrainError};
use crate::metrics::Record;
use crate::tokenizer::{add_mean, finite};

/// The extra terms of one task.
#[derive(Default)]
pub struct ExtraTerms(Vec<Box<dyn ExtraLoss>>);

impl ExtraTerms {
    /// A run's terms from its `[lg]` section (none without one): LG-VQ's heads under `p` (the
    /// tokenizer's `lg` path, so its optimiser and checkpoints hold them) for `codes` positions of
    /// `code_dim` channels; `root` is the data cache (the text encoder).
    pub fn from_lg(
        lg: Option<&tessera_models::lg::LgConfig>,
        p: &tch::nn::Path,
        (codes, code_dim): (i64, i64),
        root: &std::path::Path,
    ) -> Result<Self> {
        let mut terms = Self::default();
        if let Some(lg) = lg {
            terms.push(Box::new(crate::lg_term::LgTerm::new(p, lg, codes, code_dim, root)?));
        }
        Ok(terms)
    }

    pub fn push(&mut self, term: Box<dyn ExtraLoss>) {
        self.0.push(term);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first term of type `T` (LG-VQ's, for its retrieval evaluation).
    pub fn find<T: 'static>(&self) -> Option<&T> {
        self.0.iter().find_map(|t| t.as_any().downcast_ref::<T>())
    }

    /// `total + Σ weight · value` over every term of this batch, logging each value as the mean
    /// over `k` micro-batches.
    pub fn add_to(
        &self,
        total: Tensor,
        inputs: &LossInputs,
        step: i64,
        log: &mut Record,
        k: f64,
    ) -> Result<Tensor> {
        let mut total = total;
        for term in &self.0 {
            for t in term.terms(inputs).map_err(TrainError::Invalid)? {
                add_mean(log, &format!("loss/{}", t.name), finite(step, &t.name, &t.value)?, k);
                total += t.value * t.weight;
            }
        }
        Ok(total)
    }
}
