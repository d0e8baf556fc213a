//! Every numeric config key, walked through 0, −1, NaN and a huge value (issue: "no panics").
//!
//! For each run config (tokenizer, generator, classifier) the test lists every numeric leaf of the
//! resolved default TOML (array elements too), sets it with `--set` exactly as the CLI does, and
//! then either
//! - the config is refused when it is resolved, and the message names the key; or
//! - the value is accepted (it has a documented meaning: 0 = never, huge seed, …), and a two-step
//!   training run with it ends in `Ok` or a clean error.
//!
//! A panic anywhere fails the test with the key and the value, so an `exit 101` cannot hide.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use tch::Device;
use tessera_train::classifier::{train_classifier, ClassifierRunConfig};
use tessera_train::generator::{self, GeneratorRunConfig};
use tessera_train::tokenizer::{self, TokenizerRunConfig};
use toml::Value;

mod common;
use common::{data_root, TORCH_RNG};

/// The values every numeric key is tried with.
fn hostile(is_float: bool) -> [&'static str; 4] {
    ["0", "-1", "nan", if is_float { "1e300" } else { "9223372036854775807" }]
}

/// Every numeric leaf of `table` as `(key, override text builder)`: a scalar is replaced by the
/// value; an array element by the whole array with that element replaced.
fn numeric_keys(table: &toml::Table, prefix: &str, out: &mut Vec<(String, String, bool)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Integer(_) => out.push((key.clone(), key, false)),
            Value::Float(_) => out.push((key.clone(), key, true)),
            Value::Table(t) => numeric_keys(t, &key, out),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if matches!(item, Value::Integer(_) | Value::Float(_)) {
                        let mut parts: Vec<String> = items.iter().map(|x| x.to_string()).collect();
                        parts[i] = "{}".into();
                        let template = format!("{key}=[{}]", parts.join(", "));
                        out.push((format!("{key}[{i}]"), template, matches!(item, Value::Float(_))));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The `--set` text of `key` (or an array template) with `value`.
fn override_for(template: &str, value: &str) -> String {
    if template.contains("{}") {
        template.replace("{}", value)
    } else {
        format!("{template}={value}")
    }
}

#[derive(Default)]
struct Tally {
    refused: usize,
    ran: usize,
    failed_cleanly: usize,
    problems: Vec<String>,
}

/// Try every hostile value of every numeric key of `base`'s config type `T`; `run` trains briefly.
fn sweep<T>(
    base: &str,
    default_toml: &str,
    run: impl Fn(T) -> Result<(), Box<dyn std::error::Error>>,
) -> Tally
where
    T: serde::de::DeserializeOwned + tessera_core::Validate,
{
    let table: toml::Table = toml::from_str(default_toml).unwrap();
    let mut keys = Vec::new();
    numeric_keys(&table, "", &mut keys);
    assert!(keys.len() >= 8, "found only {keys:?}");
    let mut tally = Tally::default();
    for (name, template, is_float) in keys {
        for value in hostile(is_float) {
            let set = override_for(&template, value);
            let case = format!("--set {set}");
            // `with_grad`: tch's `no_grad` does not restore grad mode when it unwinds, so a case
            // after a panicking one would otherwise start with gradients off.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                tch::with_grad(|| -> Result<bool, String> {
                    let cfg: T =
                        match tessera_core::config::load_str(base, std::slice::from_ref(&set), "sweep") {
                            Ok(c) => c,
                            Err(e) => return Err(e.to_string()),
                        };
                    run(cfg).map(|_| true).or_else(|e| {
                        let msg = e.to_string();
                        if msg.is_empty() {
                            Err("an empty error".into())
                        } else {
                            Ok(false)
                        }
                    })
                })
            }));
            let leaf = name.rsplit('.').next().unwrap().split('[').next().unwrap().to_string();
            match outcome {
                Err(_) => tally.problems.push(format!("{case}: PANIC")),
                Ok(Err(msg)) if msg.contains(&leaf) => tally.refused += 1,
                Ok(Err(msg)) => {
                    tally.problems.push(format!("{case}: refused without naming `{leaf}`: {msg}"))
                }
                Ok(Ok(true)) => tally.ran += 1,
                Ok(Ok(false)) => tally.failed_cleanly += 1,
            }
        }
    }
    tally
}

fn report(what: &str, t: &Tally) {
    eprintln!(
        "{what}: {} refused at resolution, {} accepted and trained, {} accepted and failed cleanly",
        t.refused, t.ran, t.failed_cleanly
    );
    assert!(t.problems.is_empty(), "{what}:\n{}", t.problems.join("\n"));
    assert!(t.refused > 0 && t.ran > 0, "the sweep exercised both outcomes");
}

/// At most two steps, whatever the key under test asked for (a huge `max_steps` is accepted).
fn short(train: &mut tessera_train::runner::LoopConfig) {
    train.max_steps = train.max_steps.min(2);
}

const TOKENIZER: &str = r#"
[data.loader]
batch_size = 2
workers = 1
[data.mnist64]
train_size = 64
validation_size = 8
test_size = 8
test_unseen_size = 8
translated_groups = 2
[model]
ch = 8
ch_mult = [1, 2]
attn_resolutions = [32]
z_channels = 8
resolution = 64
[quantizer]
num_codes = 16
dim = 8
dead_code_threshold = 1.0
[quantizer.ortho]
weight = 1.0
[loss]
perceptual_weight = 0.0
disc_start = 0
[disc]
ndf = 8
n_layers = 2
[train]
max_steps = 2
checkpoint_every = 1
log_every = 1
image_every = 2
validate_every = 2
[eval]
val_batches = 1
batch_size = 2
"#;

#[test]
fn every_numeric_tokenizer_key_is_refused_or_meaningful() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let base: TokenizerRunConfig = tessera_core::config::load_str(TOKENIZER, &[], "base").unwrap();
    let t = sweep(TOKENIZER, &tessera_core::config::to_toml(&base), |mut cfg: TokenizerRunConfig| {
        short(&mut cfg.train);
        let dir = tempfile::tempdir()?;
        tokenizer::train(cfg, Device::Cpu, &data_root(), dir.path(), false)?;
        Ok(())
    });
    report("tokenizer", &t);
}

fn tiny_tokenizer_run(dir: &Path) {
    let cfg: TokenizerRunConfig =
        tessera_core::config::load_str(TOKENIZER, &["train.max_steps=1".into()], "tok").unwrap();
    tokenizer::train(cfg, Device::Cpu, &data_root(), dir, false).unwrap();
}

fn generator_base(tok: &Path) -> String {
    format!(
        r#"
tokenizer = "{}"
[data.loader]
batch_size = 2
workers = 1
[data.mnist64]
train_size = 64
validation_size = 8
test_size = 8
test_unseen_size = 8
translated_groups = 2
[model]
n_layer = 1
n_head = 2
n_embd = 16
head_dim = 8
text_len = 24
conv_kernel = 3
[optim]
warmup_steps = 1
[text]
vocab_size = 64
corpus_images = 32
[codes]
train_images = 8
batch_size = 4
[eval]
loss_images = 4
i2t_images = 2
t2i_images = 0
images = 2
batch_size = 2
[train]
max_steps = 2
checkpoint_every = 1
log_every = 1
image_every = 2
validate_every = 2
"#,
        tok.display()
    )
}

#[test]
fn every_numeric_generator_key_is_refused_or_meaningful() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let tok = tempfile::tempdir().unwrap();
    tiny_tokenizer_run(tok.path());
    let text = generator_base(tok.path());
    let base: GeneratorRunConfig = tessera_core::config::load_str(&text, &[], "base").unwrap();
    let t = sweep(&text, &tessera_core::config::to_toml(&base), |mut cfg: GeneratorRunConfig| {
        short(&mut cfg.train);
        let dir = tempfile::tempdir()?;
        generator::train(cfg, Device::Cpu, &data_root(), dir.path(), false)?;
        Ok(())
    });
    report("generator", &t);
}

#[test]
fn every_numeric_classifier_key_is_refused_or_meaningful() {
    let _serial = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let base = "steps = 2\nbatch_size = 4\nval_crops = 4\n[model]\nwidth = 4\n";
    let parsed: ClassifierRunConfig = tessera_core::config::load_str(base, &[], "base").unwrap();
    let g = tessera_data::DataConfig::default().mnist64(&data_root()).unwrap();
    let t = sweep(base, &tessera_core::config::to_toml(&parsed), |mut cfg: ClassifierRunConfig| {
        cfg.steps = cfg.steps.min(2);
        let dir = tempfile::tempdir()?;
        train_classifier(g.clone(), &cfg, Device::Cpu, dir.path())?;
        Ok(())
    });
    report("classifier", &t);
}
