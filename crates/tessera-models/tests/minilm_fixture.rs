//! The BERT encoder on all-MiniLM-L6-v2's weights against the same weights run by Hugging Face
//! `transformers` (`reference/minilm_fixtures.py`: BertModel, eval, float32). The weights come
//! from the data cache (`tessera data fetch --text-encoder`); the fixture holds only ids and
//! features.

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use tessera_models::text_encoder::{load_bert, TextEncoder};

fn minilm_dir() -> PathBuf {
    let root = std::env::var_os("TESSERA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"));
    let dir = root.join("text-encoder/all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 is not in {}: run `tessera data fetch --text-encoder` (scripts/setup.sh does)",
        dir.display()
    );
    dir
}

fn fixture() -> HashMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/minilm.safetensors", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// `max |a − b|` over the positions where `mask` is 1 (`mask: (B, L)`, features `(B, L, H)`).
fn max_diff_on(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let m = mask.to_kind(Kind::Float).unsqueeze(-1);
    ((a - b).abs() * m).max().double_value(&[])
}

#[test]
fn minilm_token_and_sentence_features_match_transformers() {
    let f = fixture();
    let (_vs, bert) = load_bert(&minilm_dir(), Device::Cpu).unwrap();
    let (ids, mask) = (&f["input_ids"], &f["attention_mask"]);
    let states = tch::no_grad(|| bert.hidden_states(ids, mask));
    let all = Tensor::ones_like(mask);
    // Every position (padding rows included: BertModel computes them too) within 1e-5.
    let emb = max_diff_on(&states[0], &f["embeddings_output"], &all);
    assert!(emb < 1e-5, "embeddings differ by {emb}");
    let l0 = max_diff_on(&states[1], &f["layer0_output"], &all);
    assert!(l0 < 1e-5, "layer 0 differs by {l0}");
    let last = max_diff_on(&states[6], &f["last_hidden_state"], mask);
    assert!(last < 1e-5, "last layer differs on tokens by {last}");
    let feats = tch::no_grad(|| bert.encode(ids, mask));
    assert_eq!(feats.tokens.size(), [5, 30, 384]);
    let pooled = (&feats.sentence - &f["mean_pooled"]).abs().max().double_value(&[]);
    assert!(pooled < 1e-5, "mean pool differs by {pooled}");
    let unit = &feats.sentence / feats.sentence.norm_scalaropt_dim(2, [1], true);
    let sent = (unit - &f["sentence"]).abs().max().double_value(&[]);
    assert!(sent < 1e-5, "sentence feature differs by {sent}");
    eprintln!("max |Δ|: embeddings {emb:.2e}, layer 0 {l0:.2e}, last layer {last:.2e}, mean pool {pooled:.2e}, sentence {sent:.2e}");
    // The empty caption ([CLS] [SEP]) pools its two tokens; the padding is never read.
    assert_eq!(mask.get(2).sum(Kind::Int64).int64_value(&[]), 2);
    assert_eq!(bert.token_embedding().size(), [30522, 384]);
    assert!(bert.name().contains("6 layers") && bert.dim() == 384);
}

#[test]
fn a_missing_or_broken_encoder_folder_is_named() {
    let d = tempfile::tempdir().unwrap();
    let e = load_bert(d.path(), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(d.path().join("config.json"), r#"{"hidden_size": 8, "num_attention_heads": 3}"#).unwrap();
    std::fs::write(d.path().join("model.safetensors"), b"not safetensors").unwrap();
    let e = load_bert(d.path(), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    // Weights generated for a small BERT load; one of the wrong shape is refused by name.
    let small = r#"{"hidden_size": 8, "num_attention_heads": 2, "vocab_size": 5, "num_hidden_layers": 1,
        "intermediate_size": 16, "max_position_embeddings": 12}"#;
    std::fs::write(d.path().join("config.json"), small).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let cfg: tessera_models::text_encoder::bert::BertConfig = serde_json::from_str(small).unwrap();
    let _model = tessera_models::text_encoder::bert::Bert::new(&vs.root(), cfg).unwrap();
    let mut named: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (format!("bert.{n}"), t.randn_like())).collect();
    Tensor::write_safetensors(&named, d.path().join("model.safetensors")).unwrap();
    let (_vs2, loaded) = load_bert(d.path(), Device::Cpu).unwrap();
    let want = named.iter().find(|(n, _)| n == "bert.embeddings.word_embeddings.weight").unwrap();
    assert!(loaded.token_embedding().equal(&want.1), "the bert. prefix of BertForMaskedLM files is read");
    for (n, t) in named.iter_mut() {
        if n.ends_with("word_embeddings.weight") {
            *t = Tensor::zeros([4, 8], (Kind::Float, Device::Cpu));
        }
    }
    Tensor::write_safetensors(&named, d.path().join("model.safetensors")).unwrap();
    let e = load_bert(d.path(), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("word_embeddings") && e.contains("[4, 8]") && e.contains("[5, 8]"), "{e}");
    std::fs::write(d.path().join("config.json"), r#"{"hidden_size": 8, "num_attention_heads": 3}"#).unwrap();
    let e = load_bert(d.path(), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("multiple"), "{e}");
}
