//! A user-supplied CLIP text tower (OpenAI state-dict names, as LG-VQ loads `ViT-B-32.pt`), tested
//! with weights generated here: it loads by name from safetensors, its features are causal (a
//! token never sees later ones) and the sentence feature is the end token's projected row; a
//! folder without a usable encoder, or with another encoder's tokenizer, is a clear error.

use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_models::lg::LgConfig;
use tessera_models::text_encoder::clip::{ClipText, ClipTextConfig};
use tessera_models::text_encoder::TextEncoder;
use tessera_train::lg_encoder::{load_clip_text, open_encoder};

mod common;
use common::data_root;

/// A small CLIP text tower with random weights, written with OpenAI's names into `dir`.
fn write_tower(dir: &Path) -> ClipTextConfig {
    let config =
        ClipTextConfig { vocab_size: 40, width: 16, heads: 2, layers: 2, context_length: 77, embed_dim: 16 };
    let vs = VarStore::new(Device::Cpu);
    let _model = ClipText::new(&vs.root(), config.clone());
    tch::manual_seed(5);
    let named: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.randn_like() * 0.3)).collect();
    Tensor::write_safetensors(&named, dir.join("clip_text.safetensors")).unwrap();
    config
}

#[test]
fn a_generated_clip_tower_loads_by_name_and_is_causal() {
    let d = tempfile::tempdir().unwrap();
    let config = write_tower(d.path());
    let (vs, clip) = load_clip_text(&d.path().join("clip_text.safetensors"), Some(2), Device::Cpu).unwrap();
    assert_eq!(clip.config, config, "sizes read off the state dict");
    // Two captions: SOT (38), content, EOT (39, the largest id), zero padding.
    let ids = Tensor::from_slice(&[38i64, 5, 6, 7, 39, 0, 0, 0, 38, 5, 6, 39, 0, 0, 0, 0]).view([2, 8]);
    let pad = ids.ne(0).to_kind(Kind::Int64);
    let f = tch::no_grad(|| clip.encode(&ids, &pad));
    assert_eq!((f.tokens.size(), f.sentence.size()), (vec![2, 8, 16], vec![2, 16]));
    // Causal: changing token 3 leaves positions 0..3 alone and changes position 3.
    let other = ids.copy();
    let _ = other.get(0).get(3).fill_(9);
    let g = tch::no_grad(|| clip.encode(&other, &pad));
    let first = |t: &Tensor, n: i64| t.get(0).narrow(0, 0, n);
    assert!(first(&f.tokens, 3).allclose(&first(&g.tokens, 3), 1e-6, 1e-6, false));
    assert!(!f.tokens.get(0).get(3).allclose(&g.tokens.get(0).get(3), 1e-3, 1e-3, false));
    // The sentence feature is the end token's row (position 4, then 3) times text_projection.
    let proj = &vs.variables()["text_projection"];
    assert!(f.sentence.get(0).allclose(&f.tokens.get(0).get(4).matmul(proj), 1e-5, 1e-5, false));
    assert!(f.sentence.get(1).allclose(&f.tokens.get(1).get(3).matmul(proj), 1e-5, 1e-5, false));
    // Heads default to width / 64 (OpenAI's build_model): 16 wide has none, which is refused.
    let e =
        load_clip_text(&d.path().join("clip_text.safetensors"), None, Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("not a CLIP text tower"), "{e}");
}

#[test]
fn an_encoder_folder_is_checked() {
    let d = tempfile::tempdir().unwrap();
    let lg = |dir: &Path| LgConfig {
        encoder: Some(dir.to_path_buf()),
        encoder_heads: Some(2),
        ..LgConfig::default()
    };
    let e = open_encoder(&lg(d.path()), &data_root(), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    // MiniLM's tokenizer (30,522 ids) with a 40-token CLIP tower: refused, not an index panic.
    let minilm = tessera_data::text_encoder_fetch::minilm_dir(&data_root());
    std::fs::copy(minilm.join("tokenizer.json"), d.path().join("tokenizer.json")).unwrap();
    let e = open_encoder(&lg(d.path()), &data_root(), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("neither a BERT"), "{e}");
    write_tower(d.path());
    let e = open_encoder(&lg(d.path()), &data_root(), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("30522 tokens but the encoder embeds 40"), "{e}");
}

/// LG-VQ's own `CLIP.encode_text` (`reference/clip_text_fixtures.py`, LG-VQ@42c3ff1
/// `taming/clip/model.py`, a small tower with perturbed weights): the state dict is read from the
/// `.pth` a user would have, and every stage matches.
#[test]
fn clip_text_matches_lgvq_encode_text() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tessera-models/tests/fixtures");
    let f: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixtures.join("clip_text.safetensors")).unwrap().into_iter().collect();
    let (_vs, clip) =
        load_clip_text(&fixtures.join("clip_text_state_dict.pth"), Some(2), Device::Cpu).unwrap();
    assert_eq!((clip.config.width, clip.config.layers, clip.config.embed_dim), (24, 2, 16));
    let ids = &f["text"];
    let rel = |a: &Tensor, b: &Tensor| {
        let scale = b.abs().max().double_value(&[]).max(1.0);
        (a - b).abs().max().double_value(&[]) / scale
    };
    let states = tch::no_grad(|| clip.hidden_states(ids));
    assert!(rel(&states[0], &f["x_after_embed"]) < 1e-5, "embeddings");
    assert!(rel(&states[1], &f["x_after_block0"]) < 1e-5, "block 0 (causal mask)");
    assert!(rel(&states[2], &f["x_after_block1"]) < 1e-5, "block 1");
    let out = tch::no_grad(|| clip.encode(ids, &ids.ne(0)));
    assert!(rel(&out.tokens, &f["all_text_features"]) < 1e-5, "all_text_features (ln_final)");
    assert!(rel(&out.sentence, &f["last_text_feature"]) < 1e-5, "last_text_feature (end token · projection)");
}
