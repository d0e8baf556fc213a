//! `online_reinit` (CVQ-VAE's online re-initialisation and contrastive term, LG-CVQ's quantizer)
//! against upstream's own `CVQVectorQuantiser` (`reference/cvq_fixtures.py`, LG-VQ@42c3ff1
//! `taming/modules/vqvae/quantize.py`): two consecutive training calls, with upstream's anchor
//! draws replayed, then one in eval mode — codes, loss parts, the codebook and usage EMA after
//! each call, and the gradients to the input and the codebook.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_quant::cvq::{contrastive_loss, neg_sq_distance, OnlineReinit};
use tessera_quant::{BetaPlacement, CodebookUpdate, VectorQuantizer, VqConfig};

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cvq.safetensors");
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// `max |a − b| / max(max |b|, floor)`.
fn rel(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
    assert_eq!(a.size(), b.size());
    let scale = b.abs().max().double_value(&[]).max(floor);
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[]) / scale
}

fn quantizer(f: &HashMap<String, Tensor>) -> (VarStore, VectorQuantizer) {
    let vs = VarStore::new(Device::Cpu);
    let cfg = VqConfig {
        num_codes: 16,
        dim: 4,
        beta: 0.25,
        beta_placement: BetaPlacement::Commitment,
        update: CodebookUpdate::Gradient,
        online_reinit: Some(OnlineReinit::default()),
        ..VqConfig::default()
    };
    let mut q = VectorQuantizer::new(&(vs.root() / "quantize"), cfg).unwrap();
    q.set_codebook(&f["init.codebook"]);
    (vs, q)
}

#[test]
fn two_training_calls_and_an_eval_call_match_upstream() {
    let f = fixture();
    let (vs, mut q) = quantizer(&f);
    for call in ["train0", "train1", "eval"] {
        let key = |k: &str| f[&format!("{call}.{k}")].shallow_clone();
        let train = call != "eval";
        assert!(rel(&q.embedding, &key("codebook_before"), 1.0) < 1e-6, "{call}: codebook before");
        if train {
            q.replay_anchors = Some(key("anchor_idx"));
        }
        let z = key("z").set_requires_grad(true);
        let out = q.forward_t(&z, train).unwrap();
        assert!(out.indices.flatten(0, -1).equal(&key("indices")), "{call}: codes");
        assert!(rel(&out.quantized, &key("z_q"), 1.0) < 1e-6, "{call}: z_q");
        let parts = [
            ("loss_commit", &out.losses.commitment),
            ("loss_codebook", &out.losses.codebook),
            ("loss", &out.loss),
        ];
        for (name, got) in parts {
            assert!(rel(got, &key(name), 1e-6) < 1e-5, "{call}: {name}");
        }
        if train {
            assert!(rel(&out.losses.contrastive, &key("loss_contra"), 1e-6) < 1e-5, "{call}: contrastive");
        } else {
            assert_eq!(out.losses.contrastive.double_value(&[]), 0.0, "eval has no contrastive term");
        }
        assert!((out.perplexity - key("perplexity").double_value(&[])).abs() < 1e-4, "{call}: perplexity");
        // After the call: the re-initialised codebook and the usage EMA (unchanged in eval).
        assert!(rel(&q.embedding, &key("codebook_after"), 1.0) < 1e-6, "{call}: codebook after");
        let usage = &vs.variables()["quantize.embedding.embed_prob"];
        assert!(rel(usage, &key("embed_prob_after"), 1.0) < 1e-6, "{call}: usage EMA");
        // Gradients of the loss to the input (straight-through) and to the codebook.
        let g = Tensor::run_backward(&[&out.loss], &[&z, &q.embedding], true, false);
        assert!(rel(&g[0], &key("grad_z_loss"), 1e-9) < 1e-5, "{call}: ∂loss/∂z");
        assert!(rel(&g[1], &key("grad_codebook_loss"), 1e-9) < 1e-5, "{call}: ∂loss/∂codebook");
        let zq2 = out.quantized.square().sum(Kind::Float);
        let g = Tensor::run_backward(&[&zq2], &[&z], false, false);
        assert!(rel(&g[0], &key("grad_z_zq2"), 1e-9) < 1e-5, "{call}: ∂Σz_q²/∂z");
    }
}

#[test]
fn the_contrastive_term_and_its_gradient_match_upstream_from_the_distances() {
    let f = fixture();
    let k = |c: &str, n: &str| f[&format!("{c}.{n}")].shallow_clone();
    for call in ["train0", "train1"] {
        let e = k(call, "codebook_before").set_requires_grad(true);
        let z = k(call, "z").permute([0, 2, 3, 1]).reshape([-1, 4]);
        let d = neg_sq_distance(&z, &e);
        assert!(rel(&d, &k(call, "d"), 1e-3) < 1e-5, "{call}: d");
        let d_leaf = k(call, "d").set_requires_grad(true);
        let loss = contrastive_loss(&d_leaf, 0.07);
        assert!(rel(&loss, &k(call, "loss_contra"), 1e-6) < 1e-5, "{call}: contrastive");
        let g = Tensor::run_backward(&[&loss], &[&d_leaf], false, false);
        assert!(rel(&g[0], &k(call, "contra_grad_d"), 1e-9) < 1e-5, "{call}: ∂contrastive/∂d");
    }
    // A config that cannot re-initialise is refused by name.
    let vs = VarStore::new(Device::Cpu);
    let cfg = VqConfig {
        update: CodebookUpdate::Ema,
        online_reinit: Some(OnlineReinit::default()),
        ..VqConfig::default()
    };
    let e = VectorQuantizer::new(&vs.root(), cfg).err().unwrap().to_string();
    assert!(e.contains("online_reinit"), "{e}");
}
