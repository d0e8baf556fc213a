//! Batches made by worker threads with a bounded prefetch queue, deterministic for a seed.
//!
//! Worker `w` of `W` builds batches `w, w+W, w+2W, …` of the epoch's order and sends them down its
//! own bounded channel (capacity `prefetch`); the consumer takes batch `b` from channel `b mod W`.
//! So the order is fixed by the seed alone, whatever the thread timing, and at most
//! `W·prefetch` batches wait in memory. Randomness inside a sample (augmentation, which caption)
//! comes from a stream seeded by (seed, epoch, index).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::dataset::Dataset;
use crate::error::Result;
use crate::mnist64::stream;
use crate::tensor::images_to_tensor;

/// Batching settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    /// Worker threads building batches.
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    /// Pick a random caption per access (training, as Bi-DALL-E) instead of the first one.
    pub random_caption: bool,
}

impl tessera_core::Validate for LoaderConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        use tessera_core::validate::MAX_BATCH;
        c.int("batch_size", self.batch_size, 1, MAX_BATCH, "");
        c.int("workers", self.workers, 0, 256, "0 means 1");
        c.int("prefetch", self.prefetch, 0, 1024, "batches per worker; 0 means 1");
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            shuffle: true,
            drop_last: true,
            workers: 2,
            prefetch: 2,
            seed: 23,
            random_caption: true,
        }
    }
}

impl LoaderConfig {
    /// In order, every sample, first caption: for validation and evaluation.
    pub fn eval(batch_size: usize) -> Self {
        Self { batch_size, shuffle: false, drop_last: false, random_caption: false, ..Self::default() }
    }
}

/// One batch.
#[derive(Debug)]
pub struct Batch {
    /// (B, 3, H, W) float32 in [-1, 1] (spec §1.1), on the loader's device.
    pub images: Tensor,
    /// One caption per image (empty string for uncaptioned data).
    pub captions: Vec<String>,
    /// Dataset indices of the images.
    pub indices: Vec<usize>,
}

const ORDER_DOMAIN: u64 = 300;
const SAMPLE_DOMAIN: u64 = 400;

/// Drives a [`Dataset`] into batches.
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    pub config: LoaderConfig,
    device: Device,
}

impl DataLoader {
    pub fn new(dataset: Arc<dyn Dataset>, config: LoaderConfig, device: Device) -> Self {
        assert!(config.batch_size > 0, "batch_size must be positive");
        Self { dataset, config, device }
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The order in which `epoch` visits the dataset.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut stream(self.config.seed, ORDER_DOMAIN, epoch));
        }
        order
    }

    /// All batches of `epoch`.
    pub fn epoch(&self, epoch: u64) -> Batches {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `start` on (resuming mid-epoch).
    pub fn epoch_from(&self, epoch: u64, start: usize) -> Batches {
        let order = Arc::new(self.order(epoch));
        let end = self.batches_per_epoch();
        let workers = self.config.workers.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(self.config.prefetch.max(1));
            receivers.push(rx);
            let (ds, cfg, order, stop) =
                (self.dataset.clone(), self.config.clone(), order.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                for b in (start + w..end).step_by(workers) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let lo = b * cfg.batch_size;
                    let idx = &order[lo..(lo + cfg.batch_size).min(order.len())];
                    if tx.send(build_batch(ds.as_ref(), &cfg, epoch, idx)).is_err() {
                        break;
                    }
                }
            }));
        }
        Batches { receivers, handles, next: start, start, end, device: self.device, stop }
    }
}

/// A CPU batch on its way from a worker.
type CpuBatch = Result<(Tensor, Vec<String>, Vec<usize>)>;

fn build_batch(ds: &dyn Dataset, cfg: &LoaderConfig, epoch: u64, indices: &[usize]) -> CpuBatch {
    let mut images = Vec::with_capacity(indices.len());
    let mut captions = Vec::with_capacity(indices.len());
    for &i in indices {
        let mut rng = stream(cfg.seed, SAMPLE_DOMAIN + epoch, i as u64);
        let s = ds.get(i, &mut rng)?;
        let caption = match s.captions.len() {
            0 => String::new(),
            n if cfg.random_caption => s.captions[rng.gen_range(0..n)].clone(),
            _ => s.captions[0].clone(),
        };
        images.push(s.image);
        captions.push(caption);
    }
    Ok((images_to_tensor(&images)?, captions, indices.to_vec()))
}

/// The batches of one epoch, in order. Dropping it stops the workers.
pub struct Batches {
    receivers: Vec<Receiver<CpuBatch>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    start: usize,
    end: usize,
    device: Device,
    stop: Arc<AtomicBool>,
}

impl Batches {
    /// Index (within the epoch) of the batch the next call to `next` returns.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let w = (self.next - self.start) % self.receivers.len();
        self.next += 1;
        let received = self.receivers[w].recv().expect("loader worker ended early (it panicked)");
        Some(received.map(|(images, captions, indices)| Batch {
            images: images.to_device(self.device),
            captions,
            indices,
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
