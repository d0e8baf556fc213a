//! tessera-quant against PyTorch: fixtures from `reference/quant_fixtures.py` and hand computations.
//! The quantizers of taming (CompVis/taming-transformers@3ba01b2 `VectorQuantizer2`, legacy β,
//! `EmbeddingEMA`) and TE-VQGAN (wcshin-git/TE-VQGAN@248f883 `VectorQuantizer`: L2, `cos_sim`,
//! orthogonality) are the upstream code itself; the cosine-with-normalised-codes, factorized and FSQ
//! cases, which neither has, are PyTorch computations of the formulas.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_quant::distance::{distances, nearest_codes, Metric};
use tessera_quant::ema::ema_step;
use tessera_quant::ortho::orthogonality_loss;
use tessera_quant::{
    BetaPlacement, CodebookUpdate, Distance, Fsq, FsqConfig, OrthoConfig, VectorQuantizer, VqConfig,
};

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant.safetensors");
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.size(), b.size());
    let diff = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[]);
    assert!(diff <= tol, "max |diff| = {diff:e} > {tol:e}");
    eprintln!("max |diff| {diff:.1e} (tolerance {tol:.0e}) {:?}", a.size());
}

fn config(k: i64, d: i64) -> VqConfig {
    VqConfig { num_codes: k, dim: d, ..VqConfig::default() }
}

#[test]
fn distances_and_argmin_match_pytorch() {
    let f = fixtures();
    let (z, e) = (&f["z"], &f["codebook"]);
    close(&distances(z, e, Metric::Euclidean), &f["euclid_dist"], 1e-5);
    assert_eq!(nearest_codes(z, e, Metric::Euclidean, 1024), f["euclid_idx"]);
    let (zn, en) = (tessera_quant::l2_normalize(z), tessera_quant::l2_normalize(e));
    assert_eq!(nearest_codes(&zn, &en, Metric::Cosine, 1024), f["cos_idx"]);
}

#[test]
fn chunked_search_equals_the_plain_one() {
    tch::manual_seed(1);
    let z = Tensor::randn([1000, 16], (Kind::Float, Device::Cpu));
    let e = Tensor::randn([300, 16], (Kind::Float, Device::Cpu));
    let plain = distances(&z, &e, Metric::Euclidean).argmin(1, false);
    for chunk in [1, 7, 128, 999, 1000, 5000] {
        assert_eq!(nearest_codes(&z, &e, Metric::Euclidean, chunk), plain, "chunk {chunk}");
    }
}

/// Run a fixture case through the quantizer: loss, output, and the gradients of
/// `sum(out · upstream) + loss` with respect to the input and the codebook.
fn run_case(f: &HashMap<String, Tensor>, cfg: VqConfig, prefix: &str) {
    let vs = VarStore::new(Device::Cpu);
    let mut vq = VectorQuantizer::new(&(vs.root() / "quantize"), cfg).unwrap();
    vq.set_codebook(&f["codebook"]);
    let z = f["z"].copy().set_requires_grad(true);
    let out = vq.forward_t(&z, false).unwrap();
    assert_eq!(out.indices, f[&format!("{prefix}_idx")]);
    close(&out.loss, &f[&format!("{prefix}_loss")], 1e-6);
    close(&out.quantized, &f[&format!("{prefix}_quantized")], 1e-6);
    ((&out.quantized * &f["upstream"]).sum(Kind::Float) + &out.loss).backward();
    close(&z.grad(), &f[&format!("{prefix}_z_grad")], 1e-6);
    close(&vq.embedding.grad(), &f[&format!("{prefix}_codebook_grad")], 1e-6);
}

#[test]
fn beta_on_commitment_matches_pytorch_with_ste_gradients() {
    run_case(&fixtures(), config(16, 8), "vq");
}

#[test]
fn taming_legacy_beta_placement_matches_pytorch() {
    run_case(&fixtures(), VqConfig { beta_placement: BetaPlacement::Legacy, ..config(16, 8) }, "legacy");
}

#[test]
fn cosine_path_matches_pytorch() {
    run_case(&fixtures(), VqConfig { distance: Distance::Cosine, ..config(16, 8) }, "cosine");
}

#[test]
fn te_vqgan_cos_sim_matches_pytorch() {
    // Nearest by cosine, raw codes out, losses on the raw vectors (TE-VQGAN distance_measure='cos_sim').
    run_case(&fixtures(), VqConfig { distance: Distance::CosineRawCodes, ..config(16, 8) }, "cosraw");
}

#[test]
fn ste_routes_output_gradient_to_input_and_only_vq_terms_to_codebook() {
    // Hand check with β = 0.25, one vector z = (1, 0), codes e0 = (0, 0), e1 = (2, 2): nearest e0.
    let vs = VarStore::new(Device::Cpu);
    let mut vq = VectorQuantizer::new(&vs.root(), config(2, 2)).unwrap();
    vq.set_codebook(&Tensor::from_slice(&[0f32, 0., 2., 2.]).view([2, 2]));
    let z = Tensor::from_slice(&[1f32, 0.]).view([1, 2]).set_requires_grad(true);
    let out = vq.forward_t(&z, false).unwrap();
    assert_eq!(out.indices.int64_value(&[0]), 0);
    // commitment = 0.25 * mean((0 - z)^2) = 0.25 * 0.5; codebook = mean((e0 - z)^2) = 0.5
    assert!((out.losses.commitment.double_value(&[]) - 0.125).abs() < 1e-7);
    assert!((out.losses.codebook.double_value(&[]) - 0.5).abs() < 1e-7);
    out.quantized.sum(Kind::Float).backward();
    // Output gradient (ones) passes straight through to the input; the codebook gets none of it.
    assert_eq!(Vec::<f32>::try_from(z.grad().view([-1])).unwrap(), vec![1.0, 1.0]);
    let g = vq.embedding.grad();
    assert!(!g.defined() || g.abs().sum(Kind::Float).double_value(&[]) == 0.0);
    // The loss alone: d/de0 mean((e0 - z)^2) = 2(e0 - z)/2 = (-1, 0); e1 unused gets nothing.
    vq.embedding.zero_grad();
    let z2 = Tensor::from_slice(&[1f32, 0.]).view([1, 2]).set_requires_grad(true);
    vq.forward_t(&z2, false).unwrap().loss.backward();
    assert_eq!(Vec::<f32>::try_from(vq.embedding.grad().view([-1])).unwrap(), vec![-1.0, 0.0, 0.0, 0.0]);
    // Input gets only the commitment gradient: 0.25 * 2(z - e0)/2 = (0.25, 0).
    assert_eq!(Vec::<f32>::try_from(z2.grad().view([-1])).unwrap(), vec![0.25, 0.0]);
}

#[test]
fn factorized_codes_match_pytorch() {
    let f = fixtures();
    let vs = VarStore::new(Device::Cpu);
    let cfg = VqConfig { codebook_dim: Some(4), ..config(16, 8) };
    let mut vq = VectorQuantizer::new(&vs.root(), cfg).unwrap();
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, key) in [
            ("project_in.weight", "fac_w_in"),
            ("project_in.bias", "fac_b_in"),
            ("project_out.weight", "fac_w_out"),
            ("project_out.bias", "fac_b_out"),
        ] {
            vars[name].shallow_clone().copy_(&f[key]);
        }
    });
    vq.set_codebook(&f["fac_codebook"]);
    let x = f["z"].copy().set_requires_grad(true);
    let out = vq.forward_t(&x, false).unwrap();
    assert_eq!(out.indices, f["fac_idx"]);
    close(&out.quantized, &f["fac_out"], 1e-5);
    ((&out.quantized * &f["upstream"]).sum(Kind::Float) + out.losses.commitment).backward();
    close(&x.grad(), &f["fac_x_grad"], 1e-5);
    // decode_indices gives the same vectors as the forward pass (the STE value is the code).
    close(&vq.decode_indices(&out.indices), &out.quantized, 1e-5);
}

#[test]
fn orthogonality_matches_pytorch_closed_form_and_is_zero_when_orthonormal() {
    let f = fixtures();
    let e = f["codebook"].copy().set_requires_grad(true);
    let l = orthogonality_loss(&e, true) * 10.0;
    close(&l, &f["ortho_loss"], 1e-6);
    close(&l, &f["ortho_closed_form"], 1e-5);
    l.backward();
    close(&e.grad(), &f["ortho_grad"], 1e-6);
    close(&(orthogonality_loss(&f["codebook"], false) * 10.0), &f["ortho_raw_loss"], 1e-5);
    // Rows of a scaled identity: orthogonal; normalised they are orthonormal.
    let eye = Tensor::eye(6, (Kind::Float, Device::Cpu)) * 3.0;
    assert!(orthogonality_loss(&eye, true).double_value(&[]).abs() < 1e-12);
    // Unnormalised (force_emb_len_1), length 3 rows are not: Σ (9-1)^2 / 36 = 6·64/36.
    assert!((orthogonality_loss(&eye, false).double_value(&[]) - 6.0 * 64.0 / 36.0).abs() < 1e-5);
}

#[test]
fn orthogonality_term_trains_only_the_codebook_and_respects_subsets() {
    let f = fixtures();
    let vs = VarStore::new(Device::Cpu);
    let ortho = OrthoConfig { weight: 10.0, ..OrthoConfig::default() };
    let mut vq = VectorQuantizer::new(&vs.root(), VqConfig { ortho, ..config(16, 8) }).unwrap();
    vq.set_codebook(&f["codebook"]);
    let z = f["z"].copy().set_requires_grad(true);
    let out = vq.forward_t(&z, false).unwrap();
    close(&out.losses.orthogonal, &f["ortho_loss"], 1e-6);
    out.losses.orthogonal.backward();
    close(&vq.embedding.grad(), &f["ortho_grad"], 1e-6);
    assert!(!z.grad().defined() || z.grad().abs().sum(Kind::Float).double_value(&[]) == 0.0);

    // Active codes only: the term over the used codes equals the formula over those rows.
    let vs = VarStore::new(Device::Cpu);
    let ortho = OrthoConfig { weight: 1.0, active_codes_only: true, ..OrthoConfig::default() };
    let mut vq = VectorQuantizer::new(&vs.root(), VqConfig { ortho, ..config(16, 8) }).unwrap();
    vq.set_codebook(&f["codebook"]);
    let out = vq.forward_t(&f["z"], false).unwrap();
    let used = out.indices.bincount::<Tensor>(None, 16).gt(0).nonzero().squeeze_dim(1);
    let expect = orthogonality_loss(&f["codebook"].index_select(0, &used), true);
    close(&out.losses.orthogonal, &expect, 1e-6);

    // At most k codes: the term is computed over k rows (its value is then that of some k-subset,
    // which for k = 1 is exactly 0).
    let vs = VarStore::new(Device::Cpu);
    let ortho = OrthoConfig { weight: 1.0, max_codes: Some(1), ..OrthoConfig::default() };
    let mut vq = VectorQuantizer::new(&vs.root(), VqConfig { ortho, ..config(16, 8) }).unwrap();
    vq.set_codebook(&f["codebook"]);
    assert!(vq.forward_t(&f["z"], false).unwrap().losses.orthogonal.double_value(&[]).abs() < 1e-7);
}

#[test]
fn orthogonality_with_ema_is_refused_not_silently_ignored() {
    let vs = VarStore::new(Device::Cpu);
    let cfg = VqConfig {
        update: CodebookUpdate::Ema,
        ortho: OrthoConfig { weight: 10.0, ..OrthoConfig::default() },
        ..config(4, 2)
    };
    let e = VectorQuantizer::new(&vs.root(), cfg).unwrap_err().to_string();
    assert!(e.contains("silently"), "{e}");
}

#[test]
fn ema_update_matches_taming_embedding_ema() {
    let f = fixtures();
    let s = ema_step(&f["z"], &f["euclid_idx"], &f["ema_cs"], &f["ema_ea"], 0.99, 1e-5);
    close(&s.cluster_size, &f["ema_cs_new"], 1e-6);
    close(&s.embed_avg, &f["ema_ea_new"], 1e-6);
    close(&s.weight, &f["ema_weight_new"], 1e-6);
}

#[test]
fn ema_quantizer_updates_in_training_only_and_loss_is_commitment_only() {
    let f = fixtures();
    let vs = VarStore::new(Device::Cpu);
    let mut vq =
        VectorQuantizer::new(&vs.root(), VqConfig { update: CodebookUpdate::Ema, ..config(16, 8) }).unwrap();
    vq.set_codebook(&f["codebook"]);
    let before = vq.embedding.copy();
    let out = vq.forward_t(&f["z"], false).unwrap();
    assert_eq!(out.losses.codebook.double_value(&[]), 0.0);
    assert_eq!(vq.embedding, before, "evaluation must not move the codebook");
    assert!(!vq.embedding.requires_grad());
    let out = vq.forward_t(&f["z"], true).unwrap();
    // State started at cluster_size 0, embed_avg = codebook: one EMA step from there.
    let expect = ema_step(
        &f["z"],
        &out.indices,
        &Tensor::zeros([16], (Kind::Float, Device::Cpu)),
        &before,
        0.99,
        1e-5,
    );
    close(&vq.embedding, &expect.weight, 1e-6);
    close(vq.cluster_size(), &expect.cluster_size, 1e-7);
    // EMA state is in the VarStore, i.e. in checkpoints.
    let names: Vec<String> = vs.variables().into_keys().collect();
    for n in ["embedding.weight", "embedding.cluster_size", "embedding.embed_avg", "initialized"] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
}

#[test]
fn dead_codes_are_revived_from_batch_vectors_with_state_reset() {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let cfg = VqConfig { update: CodebookUpdate::Ema, dead_code_threshold: 0.5, ..config(8, 4) };
    let mut vq = VectorQuantizer::new(&vs.root(), cfg).unwrap();
    // All data near +10; code 0 sits there, codes 1..7 far away and never chosen.
    let mut codes = vec![-50f32; 32];
    codes[..4].copy_from_slice(&[10.0; 4]);
    vq.set_codebook(&Tensor::from_slice(&codes).view([8, 4]));
    let z = Tensor::randn([256, 4], (Kind::Float, Device::Cpu)) * 0.1 + 10.0;
    let out = vq.forward_t(&z, true).unwrap();
    // cluster_size starts at 0: after one step code 0 has 0.01·256 = 2.56 ≥ 0.5, the others 0.
    assert_eq!(out.revived, 7);
    let cs = Vec::<f32>::try_from(vq.cluster_size()).unwrap();
    assert!((cs[0] - 2.56).abs() < 1e-4 && cs[1..].iter().all(|&c| c == 0.5), "{cs:?}");
    // Revived codes are batch vectors, and embed_avg / cluster_size reproduces them.
    let w = vq.embedding.narrow(0, 1, 7);
    let exact = (w.unsqueeze(1) - z.unsqueeze(0)).abs().amax(2, false).amin(1, false);
    assert_eq!(exact.max().double_value(&[]), 0.0, "revived codes must be batch vectors");
    let ratio = vq.embed_avg().unwrap().narrow(0, 1, 7) / 0.5;
    close(&ratio, &w, 1e-5);
    // Now data spreads over the revived codes too.
    let out = vq.forward_t(&z, true).unwrap();
    let used = out.indices.bincount::<Tensor>(None, 8).gt(0).sum(Kind::Int64).int64_value(&[]);
    assert!(used > 1, "{used}");
}

#[test]
fn kmeans_init_finds_the_clusters_and_runs_once() {
    tch::manual_seed(5);
    let centres = Tensor::from_slice(&[0f32, 0., 10., 0., 0., 10., 10., 10.]).view([4, 2]);
    let assign = Tensor::arange(400, (Kind::Int64, Device::Cpu)).remainder(4);
    let z = centres.index_select(0, &assign) + Tensor::randn([400, 2], (Kind::Float, Device::Cpu)) * 0.1;
    let vs = VarStore::new(Device::Cpu);
    let cfg = VqConfig { init: tessera_quant::CodebookInit::Kmeans, kmeans_iters: 20, ..config(4, 2) };
    let mut vq = VectorQuantizer::new(&vs.root(), cfg).unwrap();
    let _ = vq.forward_t(&z, true).unwrap();
    // Every true centre has a code within 0.1.
    let d = distances(&centres, &vq.embedding.detach(), Metric::Euclidean).min_dim(1, false).0;
    assert!(d.max().double_value(&[]) < 0.01, "{d:?}");
    let after = vq.embedding.copy();
    // A second training batch far away does not re-run the initialisation.
    let _ = vq.forward_t(&(z + 100.0), true).unwrap();
    close(&vq.embedding.detach(), &after, 0.0);
}

#[test]
fn image_and_sequence_layouts_round_trip() {
    let vs = VarStore::new(Device::Cpu);
    let mut vq = VectorQuantizer::new(&vs.root(), config(32, 6)).unwrap();
    let x = Tensor::randn([2, 6, 3, 5], (Kind::Float, Device::Cpu));
    let out = vq.forward_t(&x, false).unwrap();
    assert_eq!(out.quantized.size(), vec![2, 6, 3, 5]);
    // NCHW-contiguous, as its input: a channels-last output would switch the decoder's kernels.
    assert!(out.quantized.is_contiguous(), "strides {:?}", out.quantized.stride());
    assert_eq!(out.indices.size(), vec![2, 3, 5]);
    close(&vq.decode_indices(&out.indices), &out.quantized, 1e-6);
    assert!(vq.decode_indices(&out.indices).is_contiguous());
    // The same vectors as a sequence give the same codes.
    let seq = x.permute([0, 2, 3, 1]).reshape([2, 15, 6]);
    let out2 = vq.forward_t(&seq, false).unwrap();
    assert_eq!(out2.indices.reshape([2, 3, 5]), out.indices);
    // Lower precision in, same precision out; the codebook math ran in f32 (same codes).
    let half = vq.forward_t(&x.to_kind(Kind::BFloat16), false).unwrap();
    assert_eq!(half.quantized.kind(), Kind::BFloat16);
    let out_bf = vq.forward_t(&x.to_kind(Kind::BFloat16).to_kind(Kind::Float), false).unwrap();
    assert_eq!(half.indices, out_bf.indices);
    let e = vq.forward_t(&Tensor::zeros([2, 5, 3, 3], (Kind::Float, Device::Cpu)), false).unwrap_err();
    assert!(e.to_string().contains("C = 6"), "{e}");
}

#[test]
fn fsq_matches_pytorch_and_indices_round_trip() {
    let f = fixtures();
    for (name, levels) in [("fsq8555", vec![8, 5, 5, 5]), ("fsq43", vec![4, 3])] {
        let vs = VarStore::new(Device::Cpu);
        let fsq = Fsq::new(&vs.root(), FsqConfig { levels: levels.clone(), dim: None }).unwrap();
        let (q, idx) = fsq.forward(&f[&format!("{name}_z")]);
        close(&q, &f[&format!("{name}_codes")], 1e-6);
        assert_eq!(idx, f[&format!("{name}_idx")]);
        let all = Tensor::arange(fsq.codebook_size(), (Kind::Int64, Device::Cpu));
        assert_eq!(fsq.codes_to_indices(&fsq.indices_to_codes(&all)), all, "{name}");
        close(&fsq.indices_to_codes(&idx), &q, 1e-6);
    }
    // Straight-through: the gradient of the rounded output passes to the input (times d tanh).
    let vs = VarStore::new(Device::Cpu);
    let fsq = Fsq::new(&vs.root(), FsqConfig { levels: vec![5], dim: None }).unwrap();
    let z = Tensor::zeros([1, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    fsq.quantize(&z).sum(Kind::Float).backward();
    // d/dz [tanh(z)·half_l / 2] at 0 = half_l / 2 = (4·1.001/2)/2.
    assert!((z.grad().double_value(&[0, 0]) - 1.001).abs() < 1e-6);
}

#[test]
fn residual_vq_quantizes_successive_residuals() {
    tch::manual_seed(7);
    let x = Tensor::randn([50, 4], (Kind::Float, Device::Cpu));
    for shared in [false, true] {
        let vs = VarStore::new(Device::Cpu);
        let cfg = tessera_quant::ResidualVqConfig {
            num_quantizers: 3,
            shared_codebook: shared,
            vq: VqConfig { init: tessera_quant::CodebookInit::Normal, ..config(16, 4) },
        };
        let mut rvq = tessera_quant::ResidualVq::new(&vs.root(), cfg).unwrap();
        let out = rvq.forward_t(&x, false).unwrap();
        assert_eq!(out.indices.size(), vec![50, 3]);
        // Stage i quantizes x − Σ_{j<i} q_j: recompute stage by stage by hand.
        let mut residual = x.copy();
        let mut total = Tensor::zeros_like(&x);
        for (i, stage) in out.stages.iter().enumerate() {
            let layer = &rvq.layers()[if shared { 0 } else { i }];
            let want = nearest_codes(&residual, &layer.embedding.detach(), Metric::Euclidean, 1024);
            assert_eq!(stage.indices, want, "stage {i}");
            let q = layer.embedding.detach().index_select(0, &want);
            residual -= &q;
            total += q;
        }
        close(&out.quantized, &total, 1e-5);
        close(&rvq.decode_indices(&out.indices), &total, 1e-5);
        assert_eq!(vs.variables().len(), if shared { 3 } else { 9 });
    }
}
