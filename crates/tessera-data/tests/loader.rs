//! The batch loader: deterministic for a seed whatever the worker count, resumable mid-epoch.

use std::sync::Arc;

use tch::Device;
use tessera_data::{DataLoader, Dataset, FakeData, LoaderConfig};

fn loader(workers: usize, seed: u64, shuffle: bool) -> DataLoader {
    let ds: Arc<dyn Dataset> = Arc::new(FakeData { len: 23, size: 8, seed: 9 });
    let cfg = LoaderConfig {
        batch_size: 4,
        shuffle,
        drop_last: false,
        workers,
        prefetch: 1,
        seed,
        random_caption: true,
    };
    DataLoader::new(ds, cfg, Device::Cpu)
}

fn collect(l: &DataLoader, epoch: u64, start: usize) -> Vec<(Vec<usize>, Vec<f32>)> {
    l.epoch_from(epoch, start)
        .map(|b| {
            let b = b.unwrap();
            assert_eq!(b.images.size()[1..], [3, 8, 8]);
            (b.indices, Vec::<f32>::try_from(b.images.flatten(0, -1)).unwrap())
        })
        .collect()
}

#[test]
fn same_seed_same_batches_for_any_worker_count() {
    let a = collect(&loader(1, 7, true), 0, 0);
    let b = collect(&loader(3, 7, true), 0, 0);
    assert_eq!(a, b);
    assert_eq!(a.len(), 6);
    assert_eq!(a.last().unwrap().0.len(), 3, "drop_last = false keeps the short batch");
    let mut all: Vec<usize> = a.iter().flat_map(|(i, _)| i.clone()).collect();
    all.sort();
    assert_eq!(all, (0..23).collect::<Vec<_>>(), "an epoch visits every index once");
}

#[test]
fn seed_and_epoch_change_the_order() {
    let order = |s, e| loader(2, s, true).order(e);
    assert_ne!(order(7, 0), order(8, 0));
    assert_ne!(order(7, 0), order(7, 1));
    assert_eq!(loader(2, 7, false).order(3), (0..23).collect::<Vec<_>>());
}

#[test]
fn resuming_mid_epoch_continues_the_same_sequence() {
    let l = loader(2, 11, true);
    let full = collect(&l, 2, 0);
    let rest = collect(&l, 2, 4);
    assert_eq!(full[4..], rest[..]);
}

#[test]
fn images_are_in_minus_one_to_one_and_batches_stop_when_dropped() {
    let l = loader(2, 1, true);
    let mut it = l.epoch(0);
    let b = it.next().unwrap().unwrap();
    let (lo, hi) = (b.images.min().double_value(&[]), b.images.max().double_value(&[]));
    assert!((-1.0..=-0.99).contains(&lo) && (0.99..=1.0).contains(&hi), "{lo} {hi}");
    assert_eq!(it.position(), 1);
    drop(it); // must not hang on workers blocked in send
}
