//! all-MiniLM-L6-v2's own `tokenizer.json` through [`EncoderTokenizer`] gives the ids Hugging Face
//! gave the fixture (`reference/minilm_fixtures.py`, length 30 as LG-VQ's text length), keeps
//! `[SEP]` last when it cuts, and names what it cut.

use std::path::PathBuf;

use tessera_data::encoder_text::EncoderTokenizer;
use tessera_data::text_encoder_fetch::{minilm_dir, FETCH_COMMAND};

const SENTENCES: [&str; 5] = [
    "the upper left is red 3, the lower right is blue 7.",
    "A blackbird.",
    "",
    "a small green triangle sits above a large yellow circle, while two purple squares on the far right \
     overlap a thin orange line that crosses the whole picture from the top edge to the bottom edge.",
    "Café — naïve façade!",
];

fn data_root() -> PathBuf {
    std::env::var_os("TESSERA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"))
}

#[test]
fn ids_match_transformers_and_cuts_keep_sep_last() {
    let path = minilm_dir(&data_root()).join("tokenizer.json");
    assert!(path.is_file(), "{} missing: run `{FETCH_COMMAND}`", path.display());
    let tk = EncoderTokenizer::load(&path, 30).unwrap();
    let caps: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let b = tk.encode(&caps).unwrap();
    let fixture =
        format!("{}/../tessera-models/tests/fixtures/minilm.safetensors", env!("CARGO_MANIFEST_DIR"));
    let f: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(fixture).unwrap().into_iter().collect();
    let want_ids = Vec::<i64>::try_from(f["input_ids"].flatten(0, -1)).unwrap();
    let want_mask = Vec::<i64>::try_from(f["attention_mask"].flatten(0, -1)).unwrap();
    assert_eq!((b.batch, b.len), (5, 30));
    assert_eq!(b.ids, want_ids);
    assert_eq!(b.attention, want_mask);
    assert_eq!(b.truncated, vec![3], "only the long caption is cut");
    assert_eq!(b.ids[3 * 30 + 29], 102, "[SEP] stays last");
    // [CLS] and [SEP] are special (never masked); padding is not.
    let row = |v: &[i64], i: usize| v[i * 30..(i + 1) * 30].to_vec();
    let special = row(&b.special, 1);
    assert_eq!(&special[..7], &[1, 0, 0, 0, 0, 1, 0], "[CLS] a black ##bird . [SEP] [PAD]");
    assert_eq!(row(&b.special, 2).iter().sum::<i64>(), 2);
    assert!(EncoderTokenizer::load(&path, 1).is_err());
    let e = EncoderTokenizer::load(&PathBuf::from("/nowhere/tokenizer.json"), 30).err().unwrap().to_string();
    assert!(e.contains("/nowhere/tokenizer.json"), "{e}");
}
