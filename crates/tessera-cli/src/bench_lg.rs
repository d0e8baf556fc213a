//! `tessera bench lg`: what LG-VQ's losses cost a tokenizer step (the paper does not say). The
//! same tokenizer step on the same captioned MNIST64x64 batch, without `[lg]` and with it
//! (all-MiniLM-L6-v2 forward, the heads, the three losses and their backward), timed alternately
//! in one process; the ratio is the overhead.

use anyhow::Result;
use tch::Device;
use tessera_data::{DataLoader, LoaderConfig, Split};
use tessera_train::runner::Task;
use tessera_train::tokenizer::{TokenizerRunConfig, TokenizerTask};

/// What `bench lg` was asked for.
#[derive(clap::Args, Debug)]
pub struct LgBench {
    /// quick (configs/mnist64-te-tiny.toml, the LG study's tokenizer) or a VQGAN tokenizer TOML.
    #[arg(long, default_value = "quick")]
    pub config: String,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
}

pub fn run(o: &LgBench, device: Device, root: &std::path::Path) -> Result<()> {
    tch::set_num_threads(o.threads);
    let mut base: TokenizerRunConfig =
        crate::bench_cmd::load_preset(&o.config, &[("quick", "mnist64-te-tiny.toml")])?;
    base.lg = None;
    let with = TokenizerRunConfig { lg: Some(Default::default()), ..base.clone() };
    let loader = DataLoader::new(base.data.open(Split::Train, root)?, LoaderConfig::eval(o.batch), device);
    let batch = loader.epoch(0).next().expect("a batch")?;
    let mut tasks = [TokenizerTask::new(base, device, root)?, TokenizerTask::new(with, device, root)?];
    let mut times = [Vec::new(), Vec::new()];
    for rep in 0..=o.reps {
        for (task, t) in tasks.iter_mut().zip(times.iter_mut()) {
            let s = crate::bench_cmd::timed(device, || {
                Ok(task.train_step(std::slice::from_ref(&batch), rep as i64).map(drop)?)
            })?;
            if rep > 0 {
                t.push(s);
            }
        }
    }
    let [plain, lg] = times.map(crate::bench_cmd::median);
    println!(
        "tokenizer step ({}, batch {}, {} threads, median of {}): without [lg] {plain:.3} s, with [lg] {lg:.3} s \
         (all-MiniLM-L6-v2, 30 caption tokens, paper's heads): {:.2}× the step, +{:.0} %",
        o.config,
        o.batch,
        o.threads,
        o.reps,
        lg / plain,
        100.0 * (lg / plain - 1.0)
    );
    Ok(())
}
