//! LG-VQ's vision transformer, masked text decoder, heads and three losses against upstream's
//! own modules and loss methods (`reference/lgvq_fixtures.py`, which imports
//! 623851394/LG-VQ-language-guided-codebook-learning@42c3ff1 from a checkout): forward values,
//! the losses, and the gradients to the straight-through codes and to every parameter. The
//! fixture's model has one head; a second (`h2.`) has two.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_models::lg::text_decoder::{MaskedTextDecoder, PadMask};
use tessera_models::lg::{LgConfig, LgHeads, LgLosses, TextBatch};

fn fixture() -> HashMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/lgvq_losses.safetensors", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// `max |a − b| / max(max |b|, floor)`.
fn rel(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
    assert_eq!(a.size(), b.size());
    let scale = b.abs().max().double_value(&[]).max(floor);
    (a - b).abs().max().double_value(&[]) / scale
}

fn config(heads: i64, pad_mask: PadMask) -> LgConfig {
    LgConfig { heads, ffn_hidden: 24, text_len: 8, pad_mask, ..LgConfig::default() }
}

/// The fixture's weights for the model with `heads` heads (`h2.` holds the two-head vision
/// transformer and decoder; the heads and mask vectors are shared).
fn heads(f: &HashMap<String, Tensor>, heads: i64, pad_mask: PadMask) -> (VarStore, LgHeads) {
    let vs = VarStore::new(Device::Cpu);
    let m = LgHeads::new(&vs.root(), config(heads, pad_mask), 16, 16, 24, 50);
    let mut named: HashMap<String, Tensor> = f.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
    if heads == 2 {
        for (k, t) in f.iter().filter_map(|(k, t)| k.strip_prefix("h2.").map(|k| (k, t))) {
            named.insert(k.to_string(), t.shallow_clone());
        }
    }
    tessera_nn::weights::copy_named(&vs, "", &named).unwrap();
    (vs, m)
}

struct Inputs {
    quant: Tensor,
    ids: Tensor,
    pad: Tensor,
    keep: Tensor,
}

fn inputs(f: &HashMap<String, Tensor>) -> Inputs {
    Inputs {
        quant: f["quant"].copy().set_requires_grad(true),
        ids: f["text_tokens"].to_kind(Kind::Int64),
        pad: f["mask_padding"].shallow_clone(),
        keep: f["text_mask"].to_kind(Kind::Int64),
    }
}

fn run(f: &HashMap<String, Tensor>, m: &LgHeads, x: &Inputs) -> LgLosses {
    let text = TextBatch {
        ids: &x.ids,
        pad: &x.pad,
        keep: &x.keep,
        tokens: &f["all_text_features"],
        sentence: &f["last_text_feature"],
        token_embedding: &f["token_embedding"],
    };
    m.losses(&x.quant, &text, false)
}

fn grad_of(loss: &Tensor, wrt: &Tensor) -> Tensor {
    Tensor::run_backward(&[loss], &[wrt], true, false).pop().unwrap()
}

#[test]
fn forward_losses_and_gradients_match_upstream() {
    let f = fixture();
    for (h, pre) in [(1, ""), (2, "h2.")] {
        let (vs, m) = heads(&f, h, PadMask::Reference);
        let x = inputs(&f);
        let out = run(&f, &m, &x);
        let key = |k: &str| f[&format!("{pre}{k}")].shallow_clone();
        assert!(rel(&out.vision, &key("vision_tokens"), 1.0) < 1e-5, "V, {h} heads");
        assert!(rel(out.decoder.last().unwrap(), &key("dec_out"), 1.0) < 1e-5, "decoder, {h} heads");
        let logits = m.mlm_logits(out.decoder.last().unwrap(), &f["token_embedding"]);
        assert!(rel(&logits, &key("mlm_logits"), 1.0) < 1e-5, "MLM logits, {h} heads");
        assert!(out.relation.indices.equal(&key("ras_indices")), "the codes each word picks, {h} heads");
        assert!(rel(&out.relation.codes, &key("R_c"), 1.0) < 1e-5, "R_c, {h} heads");
        for (name, got) in [("gsa", &out.gsa), ("mtp", &out.mtp), ("ras", &out.ras), ("total", &out.total)] {
            let want = key(&format!("loss_{name}"));
            assert!(
                rel(got, &want, 1e-3) < 1e-5,
                "L_{name}: {} vs {}, {h} heads",
                f64::try_from(got).unwrap(),
                f64::try_from(&want).unwrap()
            );
        }
        for (name, loss) in [("gsa", &out.gsa), ("mtp", &out.mtp), ("ras", &out.ras), ("total", &out.total)] {
            let g = grad_of(loss, &x.quant);
            let e = rel(&g, &key(&format!("grad_quant_{name}")), 0.0);
            assert!(e < 1e-5, "∂L_{name}/∂quant differs by {e:.2e} (relative), {h} heads");
        }
        // The total's gradient to every trainable parameter.
        let vars = vs.trainable_variables();
        let names: Vec<String> = {
            let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(vars.len(), names.len());
        let all = vs.variables();
        let params: Vec<&Tensor> = names.iter().map(|n| &all[n]).collect();
        let grads = Tensor::run_backward(&[&out.total], &params, false, false);
        // The two-head model's fixture has gradients for its own transformer and decoder only.
        let want_of = |n: &String| match h {
            1 => f.get(&format!("grad.{n}")),
            _ => f.get(&format!("grad.h2.{n}")),
        };
        // Some gradients are zero in exact arithmetic (an attention key bias shifts every score of
        // a query equally) and float noise in both: judge them against the largest gradient.
        let largest =
            names.iter().filter_map(want_of).map(|w| w.abs().max().double_value(&[])).fold(0.0, f64::max);
        let mut compared = 0;
        for (n, g) in names.iter().zip(grads) {
            let Some(want) = want_of(n) else { continue };
            compared += 1;
            let e = rel(&g, want, 1e-2 * largest);
            assert!(e < 1e-5, "∂L/∂{n} differs by {e:.2e} (relative), {h} heads");
        }
        let stored =
            f.keys().filter(|k| k.starts_with("grad.h2.") == (h == 2) && k.starts_with("grad.")).count();
        assert_eq!(compared, stored, "every fixture gradient is compared");
    }
}

/// The decoder on the fixture's weights, alone.
fn decoder(f: &HashMap<String, Tensor>, pad_mask: PadMask) -> (VarStore, MaskedTextDecoder) {
    let vs = VarStore::new(Device::Cpu);
    let d = MaskedTextDecoder::new(&vs.root(), 24, 24, 1, 2, 0.1, pad_mask);
    tessera_nn::weights::copy_named(&vs, "mask_dec.", f).unwrap();
    (vs, d)
}

#[test]
fn pad_mask_keys_hides_padding_and_reference_reproduces_upstream() {
    let f = fixture();
    let (text, vision, pad) = (&f["dec_in"], &f["vision_tokens"], &f["mask_padding"]);
    let (_a, reference) = decoder(&f, PadMask::Reference);
    let got = reference.forward_all(text, vision, pad, false).pop().unwrap();
    assert!(rel(&got, &f["dec_out"], 1.0) < 1e-5, "the reference mask is upstream's no-op");
    let (_b, keys) = decoder(&f, PadMask::Keys);
    let full = keys.forward_all(text, vision, pad, false).pop().unwrap();
    // Row 1 has 5 tokens and 3 padding slots: with padding hidden (and no positional encoding), its
    // tokens come out as if the row were cut to its 5 tokens.
    let row = |t: &Tensor, n: i64| t.narrow(0, 1, 1).narrow(1, 0, n);
    assert_eq!(pad.get(1).sum(Kind::Float).double_value(&[]), 5.0);
    let cut = keys.forward_all(&row(text, 5), &vision.narrow(0, 1, 1), &row(pad, 5), false).pop().unwrap();
    assert!(rel(&row(&full, 5), &cut, 1.0) < 1e-5, "padding is invisible to the tokens");
    let seen = rel(&row(&got, 5), &cut, 1.0);
    assert!(seen > 1e-2, "upstream's tokens do attend to padding ({seen:.2e})");
}

#[test]
fn the_mask_ratio_is_drawn_inside_its_interval_and_keeps_framing_tokens() {
    let r = tessera_models::lg::masking::MaskRatio::default();
    tch::manual_seed(0);
    let draws: Vec<f64> = (0..400).map(|_| r.sample()).collect();
    assert!(draws.iter().all(|x| (0.1..=0.3).contains(x)));
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!((mean - 0.2629).abs() < 0.01, "TruncNormal(0.5, 0.1) on [0.1, 0.3] has mean 0.263, drew {mean}");
    let pad = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 0, 0]).view([1, 8]).repeat([64, 1]);
    let special = Tensor::from_slice(&[1i64, 0, 0, 0, 0, 1, 0, 0]).view([1, 8]).repeat([64, 1]);
    let keep = r.keep_mask(&pad, &special);
    assert!(
        keep.narrow(1, 0, 1).eq(1).all().int64_value(&[]) == 1
            && keep.narrow(1, 5, 1).eq(1).all().int64_value(&[]) == 1
    );
    assert_eq!(keep.narrow(1, 6, 2).sum(Kind::Int64).int64_value(&[]), 0, "padding is never kept");
    let content_kept = keep.narrow(1, 1, 4).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((0.6..0.95).contains(&content_kept), "about 1 − X of the content is kept: {content_kept}");
    assert!(tessera_models::lg::masking::MaskRatio { low: 0.3, high: 0.1, ..r }.check().is_err());
}
