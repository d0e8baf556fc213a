//! The pickle-free reader against files written by PyTorch's `torch.save`
//! (reference/torch_files.py; regenerate with `.venv/bin/python reference/torch_files.py`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};
use tessera_torchfile::{TorchFile, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn state_dict_tensors_match_pytorch_for_every_storage_type_and_view() {
    let file = TorchFile::open(&fixture("mixed.pth")).unwrap();
    let got: HashMap<String, Tensor> = file.state_dict().unwrap().into_iter().collect();
    let want: HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture("mixed.safetensors")).unwrap().into_iter().collect();
    assert_eq!(got.len(), want.len() + 1, "{:?}", got.keys());
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(g.kind(), w.kind(), "{name}");
        assert_eq!(g.size(), w.size(), "{name}");
        assert!(g.is_contiguous(), "{name}");
        assert!(g.equal(w), "{name}: {g:?} vs {w:?}");
    }
    assert_eq!(got["empty"].size(), vec![0, 3]);
    // Views keep their own values although they share `w`'s storage.
    assert!(got["w_t"].equal(&got["w"].tr()));
    assert_eq!(got["scalar"].size(), Vec::<i64>::new());
    assert_eq!(got["bf16"].kind(), Kind::BFloat16);
    // Keys with dots stay as they are.
    assert!(got.contains_key("nested.deep"));
}

#[test]
fn code_in_a_checkpoint_is_not_run() {
    let sentinel = Path::new("/tmp/tessera-torch-file-test-pwned");
    let _ = std::fs::remove_file(sentinel);
    let file = TorchFile::open(&fixture("evil.pth")).unwrap();
    let tensors = file.state_dict().unwrap();
    assert_eq!(tensors.len(), 1);
    assert!(tensors[0].1.equal(&Tensor::arange(4, (Kind::Float, tch::Device::Cpu))));
    match file.root.get("payload") {
        Some(Value::Object { callable, .. }) => {
            assert!(matches!(&**callable, Value::Global { name, .. } if name == "system"), "{callable:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!sentinel.exists(), "the pickled os.system call ran");
}

#[test]
fn damaged_files_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("mixed.pth")).unwrap();
    // Cut anywhere: the zip directory (at the end) or a storage goes missing.
    for cut in [bytes.len() / 3, bytes.len() - 10] {
        let p = d.path().join(format!("cut{cut}.pth"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = TorchFile::open(&p)
            .and_then(|f| f.state_dict())
            .map(|_| ())
            .expect_err("a truncated file must fail");
        assert!(e.to_string().contains("truncated"), "{e}");
    }
    let p = d.path().join("junk.pth");
    std::fs::write(&p, b"hello, not a checkpoint").unwrap();
    let e = TorchFile::open(&p).err().unwrap().to_string();
    assert!(e.contains("not a PyTorch zip") && e.contains("junk.pth"), "{e}");
    // Legacy (PyTorch < 1.6) files start with a pickled magic number.
    std::fs::write(&p, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]).unwrap();
    let e = TorchFile::open(&p).err().unwrap().to_string();
    assert!(e.contains("legacy"), "{e}");
    // A safetensors file goes through the same door.
    let st = TorchFile::open(&fixture("mixed.safetensors")).unwrap();
    assert_eq!(st.state_dict().unwrap().len(), 13);
}
