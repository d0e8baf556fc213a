//! The study pipeline end to end at toy size: four arms (VQGAN, TE-VQGAN, ViT-VQGAN, AugVAE-SL), their
//! tokenizers and generators, the shared classifier, results.json and both reports; a second
//! call skips every finished stage. And `--arms` selection.

use std::path::{Path, PathBuf};

use tch::Device;
use tessera_train::study::{self, Arm, ArmKind, StudyConfig};

mod common;
use common::data_root;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn toy_study_runs_resumes_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let tok = write(
        d.path(),
        "tok.toml",
        r#"
[data.loader]
batch_size = 2
[data.mnist64]
translated_groups = 4
[model]
ch = 16
ch_mult = [1, 1, 2, 2]
num_res_blocks = 1
attn_resolutions = []
z_channels = 16
[quantizer]
num_codes = 16
dim = 16
[loss]
perceptual_weight = 0.0
disc_start = 100
[train]
max_steps = 2
validate_every = 1
image_every = 2
[eval]
batch_size = 10
"#,
    );
    let gen = write(
        d.path(),
        "gen.toml",
        r#"
[data.loader]
batch_size = 4
[model]
n_layer = 1
n_head = 2
n_embd = 16
head_dim = 8
text_len = 24
[text]
corpus_images = 100
[codes]
train_images = 8
[eval]
loss_images = 4
i2t_images = 2
batch_size = 4
[train]
max_steps = 2
validate_every = 2
image_every = 2
"#,
    );
    let vit = write(
        d.path(),
        "vit.toml",
        r#"
[data]
source = "mnist64"
[data.loader]
batch_size = 2
[data.mnist64]
translated_groups = 4
[model]
resolution = 64
patch_size = 16
[model.encoder]
dim = 16
depth = 1
heads = 2
mlp_dim = 32
dim_head = 8
[model.decoder]
dim = 16
depth = 1
heads = 2
mlp_dim = 32
dim_head = 8
[quantizer]
num_codes = 16
dim = 8
distance = "cosine"
straight_through = "raw"
[disc]
width = 8
[loss]
perceptual_weight = 0.0
[train]
max_steps = 2
validate_every = 1
image_every = 2
[eval]
batch_size = 10
"#,
    );
    let augvae = |sl: bool| {
        format!(
            r#"
{init}
[data.loader]
batch_size = 2
[data.mnist64]
translated_groups = 4
[model]
hidden_dim = 8
ch_mult = [1, 2, 2]
num_res_blocks = 1
levels = [16, 8, 4]
resolution = 64
z_channels = 8
{single}
[quantizer]
num_codes = 16
dim = 8
update = "ema"
[loss]
loss_type = "mse"
[train]
max_steps = 2
validate_every = 1
image_every = 2
[eval]
batch_size = 10
"#,
            init = if sl { "init_from = \"set-by-the-study\"" } else { "" },
            single = if sl { "single_level = 8" } else { "" },
        )
    };
    let aug_ml = write(d.path(), "aug-ml.toml", &augvae(false));
    let aug_sl = write(d.path(), "aug-sl.toml", &augvae(true));
    let mut cfg = StudyConfig {
        tokenizer: tok,
        generator: gen,
        classifier: tessera_train::classifier::ClassifierRunConfig {
            steps: 2,
            batch_size: 8,
            val_crops: 16,
            model: tessera_models::classifier::ClassifierConfig { width: 8, blocks: [1, 1, 1, 1] },
            ..Default::default()
        },
        tokenizer_val_batches: 1,
        eval_images: 4,
        ..Default::default()
    };
    cfg.arms.push(Arm {
        name: "vit".into(),
        ortho_weight: 0.0,
        kind: ArmKind::VitVqgan,
        tokenizer: Some(vit),
        stage1: None,
        generator_steps: Some(3),
        default: false,
        lg: None,
    });
    cfg.arms.push(Arm {
        name: "aug".into(),
        ortho_weight: 0.0,
        kind: ArmKind::AugvaeSl,
        tokenizer: Some(aug_sl),
        stage1: Some(aug_ml),
        generator_steps: None,
        default: false,
        lg: None,
    });
    // An LG-VQ arm: the VQGAN arm's tokenizer with [lg] (the `tessera study lg-vq` pair).
    let lg = tessera_models::lg::LgConfig { text_len: 16, ..Default::default() };
    cfg.arms.push(Arm { name: "vqgan-lg".into(), lg: Some(lg), ..Arm::vqgan("x", 0.0) });
    cfg.retrieval_images = 12;
    cfg.select_arms(Some(&["all".to_string()])).unwrap();
    let out = d.path().join("study");
    let res = study::run(&cfg, "toy", 1, &out, Device::Cpu, &data_root(), None).unwrap();
    tessera_train::study::report::write(&res, &out).unwrap();
    assert_eq!(res.runs.len(), 5);
    // The AugVAE-SL arm fine-tuned its own AugVAE-ML run and generates from the 8×8 level.
    assert!(out.join("seed0/aug/tokenizer-ml/checkpoints/last.safetensors").is_file());
    assert!(res.runs[3].tokenizer_config.contains("single_level = 8"));
    assert!(res.runs[3].tokenizer_config.contains("tokenizer-ml"), "init_from points at the arm's ML run");
    assert!(res.runs[2].tokenizer_config.contains("patch_size = 16"), "the ViT arm trained its own preset");
    assert!(res.runs[2].generator_config.contains("max_steps = 3"), "the ViT arm's own generator budget");
    assert!(!res.runs[0].generator_config.contains("max_steps = 3"));
    // Wall time spans the stages; the arms ran one after the other here, so it covers their sum.
    let wall = res.wall_seconds.unwrap();
    assert!(wall > 0.0 && wall + 1.0 >= res.total_seconds, "{wall} vs {}", res.total_seconds);
    assert_eq!(res.runs[0].arm, "vqgan");
    assert!(res.runs[1].tokenizer_config.contains("weight = 10.0"));
    for r in &res.runs {
        assert!(r.tokenizer.contains_key("trans_eq_acc") && r.tokenizer.contains_key("psnr"));
        assert!(r.generator["test-unseen"].t2i["all"].labels >= 4);
    }
    // Only the LG arm has retrieval, over the images asked for, in [0, 1] with its interval.
    assert!(res.runs[..4].iter().all(|r| r.retrieval.is_none()));
    let ret = res.runs[4].retrieval.as_ref().expect("the LG arm's retrieval");
    assert_eq!(ret.gallery, 12);
    let r1 = &ret.image_to_text.at1;
    assert!(0.0 <= r1.lo && r1.lo <= r1.mean && r1.mean <= r1.hi && r1.hi <= 1.0, "{r1:?}");
    assert!(ret.text_to_image.at5.mean >= ret.text_to_image.at1.mean);
    assert!(res.runs[4].tokenizer_config.contains("[lg]"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("LG-VQ study")
            && html.contains("Code↔caption retrieval")
            && html.contains("all-MiniLM-L6-v2")
    );
    assert!(html.contains("vqgan-lg (λ_o = 0, LG)"));
    assert!(html.contains("Trans_eq_acc") && html.contains("<img src=\"seed0/vqgan/tokenizer/samples/"));
    assert!(html.contains("seed0/te-vqgan/generator/eval/t2i_validation.png"));
    assert!(html.contains("vit (ViT-VQGAN)"), "the ViT arm has its own column");
    assert!(html.contains("aug (AugVAE-SL)"));
    assert!(out.join("seed0/te-vqgan/generator/eval/t2i_validation.png").is_file());
    assert!(out.join("plots/trans_eq_acc.svg").is_file() && out.join("results.json").is_file());
    // Same seed, same initial weights: the arms differ only through λ_o.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| Trans_eq_acc (↑) |"));

    // Re-running skips every finished stage: nothing is retrained (checkpoint untouched).
    let ck = out.join("seed0/vqgan/generator/checkpoints/last.safetensors");
    let before = std::fs::metadata(&ck).unwrap().modified().unwrap();
    let again = study::run(&cfg, "toy", 1, &out, Device::Cpu, &data_root(), None).unwrap();
    assert_eq!(std::fs::metadata(&ck).unwrap().modified().unwrap(), before);
    assert_eq!(again.runs[0].tokenizer, res.runs[0].tokenizer);
}

/// Without `--arms` the preset's default arms run; names pick arms (in the preset's order),
/// `all` keeps every arm, an unknown name is refused with the preset's arms listed.
#[test]
fn arms_are_selected_by_name() {
    let quick: StudyConfig = tessera_core::ConfigSource::new(
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/study-te-quick.toml")),
        vec![],
    )
    .load()
    .unwrap();
    let names = |c: &StudyConfig| c.arms.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
    let mut c = quick.clone();
    c.select_arms(None).unwrap();
    assert_eq!(names(&c), ["vqgan", "te-vqgan"], "the ViT-VQGAN arm runs only when named");
    let mut c = quick.clone();
    c.select_arms(Some(&["all".into()])).unwrap();
    assert_eq!(names(&c), ["vqgan", "te-vqgan", "vit-vqgan", "augvae-sl"]);
    let mut c = quick.clone();
    c.select_arms(Some(&["vit-vqgan".into(), "vqgan".into()])).unwrap();
    assert_eq!(names(&c), ["vqgan", "vit-vqgan"]);
    let e = quick.clone().select_arms(Some(&["vit".into()])).unwrap_err().to_string();
    assert!(e.contains("`vit`") && e.contains("te-vqgan"), "{e}");
    // An augvae-sl arm needs the ML config it fine-tunes; other arms take none.
    let text =
        "tokenizer = \"t.toml\"\n[[arms]]\nname = \"a\"\nkind = \"augvae-sl\"\ntokenizer = \"sl.toml\"\n";
    let e = tessera_core::config::load_str::<StudyConfig>(text, &[], "study.toml").unwrap_err().to_string();
    assert!(e.contains("arms[0].stage1"), "{e}");
    // A vit-vqgan arm without its tokenizer config is refused at load time.
    let text = "tokenizer = \"t.toml\"\n[[arms]]\nname = \"v\"\nkind = \"vit-vqgan\"\n";
    let e = tessera_core::config::load_str::<StudyConfig>(text, &[], "study.toml").unwrap_err().to_string();
    assert!(e.contains("arms[0].tokenizer"), "{e}");
}
