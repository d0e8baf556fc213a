//! `tessera`: the command line. It parses arguments, loads configs and calls library functions;
//! no library crate depends on it.

mod bench_augvae;
mod bench_cmd;
mod bench_lg;
mod bench_vit;
mod data_cmd;
mod gen_cmd;
mod progress;
mod study_cmd;
mod train_cmd;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use tessera_core::DeviceArg;

#[derive(Parser, Debug)]
#[command(
    name = "tessera",
    version,
    about = "Discrete image tokenizers and a bidirectional text<->image transformer, on libtorch."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// cpu, cuda, cuda:N or auto (CUDA if libtorch sees a GPU).
    #[arg(long, global = true, default_value = "auto")]
    pub device: DeviceArg,
    /// The data cache (default: $TESSERA_DATA, else ./data).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Torch intra-op threads (default: libtorch's choice).
    #[arg(long, global = true)]
    pub threads: Option<i32>,
}

impl GlobalArgs {
    pub fn data_root(&self) -> PathBuf {
        tessera_data::fetch::data_root(self.data_dir.as_deref())
    }
    pub fn device(&self) -> Result<tch::Device> {
        Ok(self.device.resolve()?)
    }
}

/// `--config FILE` and `--set key=value` overrides, shared by commands that read a config.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// A TOML config (presets in configs/).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one config value, e.g. --set mnist64.seed=3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    pub fn source(&self) -> tessera_core::ConfigSource {
        tessera_core::ConfigSource::new(self.config.clone(), self.overrides.clone())
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch, inspect and export data sets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Train a model.
    #[command(subcommand)]
    Train(train_cmd::TrainCommand),
    /// Evaluate a trained model.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Images to code indices (safetensors `indices`, (B, h, w)).
    Encode {
        run: PathBuf,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Code indices back to images.
    Decode {
        run: PathBuf,
        codes: PathBuf,
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// An image and its reconstruction side by side.
    Reconstruct {
        run: PathBuf,
        image: PathBuf,
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Sample from a generator run: images from a caption, or captions from images.
    #[command(subcommand)]
    Generate(gen_cmd::GenerateCommand),
    /// Turn an original checkpoint into a Tessera run.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Reproduce a paper's study end to end, with a report.
    #[command(subcommand)]
    Study(study_cmd::StudyCommand),
    /// Benchmarks against PyTorch on this machine (speed ratios).
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
}

#[derive(Subcommand, Debug)]
enum ImportCommand {
    /// A taming-transformers / TE-VQGAN checkpoint (a Lightning .ckpt, a .pth/.pt state_dict or
    /// .safetensors; pickles are read without running their code) with the run config that matches it.
    Taming(train_cmd::ImportArgs),
    /// A thuanz123/enhancing-transformers ViT-VQGAN checkpoint (Lightning .ckpt, .pth/.pt
    /// state_dict or .safetensors) with the ViT-VQGAN run config that matches it.
    VitVqgan(train_cmd::ImportArgs),
}

#[derive(Subcommand, Debug)]
enum EvalCommand {
    /// PSNR, SSIM, codebook usage, perplexity, dead codes, Trans_eq_acc of a tokenizer run (JSON).
    Tokenizer {
        run: PathBuf,
        /// Validation batches of 100 (0 = all).
        #[arg(long, default_value_t = 0)]
        batches: usize,
        /// Also measure code agreement under a shift of DY,DX pixels (multiples of f) on the run's
        /// own validation data — Trans_eq_acc's generalisation to any data set.
        #[arg(long, value_delimiter = ',', value_name = "DY,DX", allow_hyphen_values = true)]
        shift: Option<Vec<i64>>,
        /// Validation images for --shift.
        #[arg(long, default_value_t = 500)]
        shift_images: usize,
    },
    /// T2I and I2T accuracy of a generator run per bucket (spec §9.1), as JSON.
    Generator(gen_cmd::EvalGeneratorArgs),
    /// A generator run on free-text captions (Tux Paint, a caption folder): an HTML report with
    /// the tokenizer's reconstruction, the validation losses, captions sampled for validation
    /// images and images sampled for their captions.
    Captions(gen_cmd::EvalCaptionsArgs),
    /// VIM on a Fashion-MNIST class-conditional generator: per-class samples scored by the
    /// Fashion-MNIST classifier, and linear probes of VIM features, codes and pixels.
    Vim(gen_cmd::EvalVimArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    if let Some(t) = cli.global.threads {
        tch::set_num_threads(t);
    }
    // Resolve the device up front so `--device cuda` on a machine without one fails at once.
    let result = cli.global.device().and_then(|device| {
        tracing::debug!("device: {device:?}");
        match cli.command {
            Command::Data(cmd) => data_cmd::run(cmd, &cli.global),
            Command::Bench(cmd) => bench_cmd::run(cmd, device, &cli.global.data_root()),
            Command::Train(cmd) => train_cmd::train(cmd, &cli.global, device),
            Command::Eval(EvalCommand::Tokenizer { run, batches, shift, shift_images }) => {
                train_cmd::eval(&run, batches, shift.as_deref(), shift_images, &cli.global, device)
            }
            Command::Eval(EvalCommand::Generator(args)) => gen_cmd::eval(&args, &cli.global, device),
            Command::Eval(EvalCommand::Captions(args)) => gen_cmd::eval_captions(&args, &cli.global, device),
            Command::Eval(EvalCommand::Vim(args)) => gen_cmd::eval_vim(&args, &cli.global, device),
            Command::Study(cmd) => study_cmd::run(cmd, &cli.global, device),
            Command::Generate(cmd) => gen_cmd::generate(cmd, &cli.global, device),
            Command::Import(cmd) => {
                let (kind, a) = match &cmd {
                    ImportCommand::Taming(a) => (tessera_train::tokenizer::KIND, a),
                    ImportCommand::VitVqgan(a) => (tessera_train::vit_tokenizer::KIND, a),
                };
                train_cmd::import(kind, a, &cli.global, device)
            }
            Command::Encode { run, images, out } => {
                train_cmd::encode(&run, &images, &out, &cli.global, device)
            }
            Command::Decode { run, codes, out } => train_cmd::decode(&run, &codes, &out, &cli.global, device),
            Command::Reconstruct { run, image, out } => {
                train_cmd::reconstruct(&run, &image, &out, &cli.global, device)
            }
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
