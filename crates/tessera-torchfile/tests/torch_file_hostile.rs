//! Crafted files the torch_file reader must refuse with a clear error, never a crash. Each test
//! builds its file here: a pickle opcode by opcode, inside a zip laid out as `torch.save` does.

use std::io::Write;

use tch::{Kind, Tensor};
use tessera_torchfile::TorchFile;
use zip::write::{FileOptions, ZipWriter};

/// A zip of stored (uncompressed) entries.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A `torch.save` archive of pickle `pkl` and storages `(key, bytes)`.
fn checkpoint(pkl: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let names: Vec<String> = storages.iter().map(|(k, _)| format!("archive/data/{k}")).collect();
    let mut entries = vec![("archive/data.pkl", pkl), ("archive/byteorder", &b"little"[..])];
    entries.extend(names.iter().map(String::as_str).zip(storages.iter().map(|(_, b)| *b)));
    zip(&entries)
}

/// Write `bytes` to a file and read its state_dict.
fn load(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("crafted.pth");
    std::fs::write(&p, bytes).unwrap();
    TorchFile::open(&p).and_then(|f| f.state_dict()).map_err(|e| e.to_string())
}

/// The error reading `bytes` gives (it must fail).
fn error(bytes: &[u8]) -> String {
    match load(bytes) {
        Ok(t) => panic!("{} tensors read from a crafted file", t.len()),
        Err(e) => e,
    }
}

/// `BINUNICODE s`.
fn text(s: &str) -> Vec<u8> {
    [&[b'X'][..], &(s.len() as u32).to_le_bytes(), s.as_bytes()].concat()
}

/// Any i64, as `LONG1` of 8 bytes.
fn int(v: i64) -> Vec<u8> {
    [&[0x8a, 8][..], &v.to_le_bytes()].concat()
}

/// `(v0, v1, …)` of integers.
fn ints(v: &[i64]) -> Vec<u8> {
    [vec![b'('], v.iter().flat_map(|&i| int(i)).collect(), vec![b't']].concat()
}

/// `_rebuild_tensor_v2(storage, offset, size, stride)` of storage `key`: `class` with `numel` elements.
fn tensor(class: &str, key: &str, numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let storage =
        [text("storage"), format!("ctorch\n{class}\n").into_bytes(), text(key), text("cpu"), int(numel)];
    let mut p = b"ctorch._utils\n_rebuild_tensor_v2\n((".to_vec();
    p.extend(storage.concat());
    p.extend(b"tQ");
    p.extend([int(offset), ints(size), ints(stride)].concat());
    p.extend(b"tR");
    p
}

/// A pickled dict `{name: value}` of pickled values.
fn dict(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'('];
    for (k, v) in items {
        p.extend(text(k));
        p.extend(v);
    }
    p.extend(b"u.");
    p
}

/// Four float32s, 1 to 4.
fn floats() -> Vec<u8> {
    [1f32, 2., 3., 4.].iter().flat_map(|f| f.to_le_bytes()).collect()
}

#[test]
fn crafted_checkpoint_loads() {
    // The builders above make a file the reader takes: the hostile ones differ in one thing each.
    let w = tensor("FloatStorage", "0", 4, 0, &[2, 2], &[1, 2]);
    let got = load(&checkpoint(&dict(&[("w", w)]), &[("0", &floats())])).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "w");
    assert!(got[0].1.equal(&Tensor::from_slice(&[1f32, 3., 2., 4.]).reshape([2, 2])));
}

#[test]
fn views_outside_their_storage_are_errors() {
    let max = i64::MAX;
    let cases: [(i64, &[i64], &[i64]); 9] = [
        (0, &[-1], &[1]),        // negative size
        (0, &[2], &[-1]),        // negative stride
        (-1, &[2], &[1]),        // negative offset
        (0, &[2, 2], &[1]),      // sizes and strides disagree
        (0, &[5], &[1]),         // past the end
        (3, &[2], &[1]),         // past the end by its offset
        (0, &[max, 2], &[1, 1]), // element count overflows
        (0, &[3], &[max]),       // last index overflows
        (max, &[2], &[1]),       // offset + index overflows
    ];
    for (offset, size, stride) in cases {
        let w = tensor("FloatStorage", "0", 4, offset, size, stride);
        let e = error(&checkpoint(&dict(&[("w", w)]), &[("0", &floats())]));
        assert!(e.contains("`w`: view") && e.contains("does not fit its storage of 4 elements"), "{e}");
    }
}

#[test]
fn storage_sizes_that_lie_are_errors() {
    let e = error(&checkpoint(&dict(&[("w", tensor("FloatStorage", "0", -4, 0, &[1], &[1]))]), &[]));
    assert!(e.contains("storage `0` has -4 elements"), "{e}");
    // numel × 4 bytes overflows i64: compared without overflowing, and refused.
    let w = tensor("FloatStorage", "0", i64::MAX, 0, &[1], &[1]);
    let e = error(&checkpoint(&dict(&[("w", w)]), &[("0", &floats())]));
    assert!(e.contains("holds 16 bytes, not 9223372036854775807 × 4"), "{e}");
}

#[test]
fn zero_stride_views_cannot_take_unbounded_memory() {
    // One float viewed 2^40 (or 2^29: 2 GiB) times: contiguous() would allocate it all.
    for n in [1 << 40, 1 << 29] {
        let w = tensor("FloatStorage", "0", 1, 0, &[n], &[0]);
        let e = error(&checkpoint(&dict(&[("w", w)]), &[("0", &1f32.to_le_bytes())]));
        assert!(e.contains("its tensors would take over 1024 MiB"), "{e}");
    }
    // A small zero-stride view is fine.
    let w = tensor("FloatStorage", "0", 1, 0, &[3], &[0]);
    let got = load(&checkpoint(&dict(&[("w", w)]), &[("0", &2f32.to_le_bytes())])).unwrap();
    assert!(got[0].1.equal(&Tensor::from_slice(&[2f32; 3])));
}

#[test]
fn a_storage_used_with_another_type_or_size_is_an_error() {
    let w = tensor("FloatStorage", "0", 4, 0, &[4], &[1]);
    for (class, numel) in [("LongStorage", 2), ("FloatStorage", 2)] {
        let v = tensor(class, "0", numel, 0, &[2], &[1]);
        let e = error(&checkpoint(&dict(&[("w", w.clone()), ("v", v)]), &[("0", &floats())]));
        assert!(
            e.contains(&format!("`v`: storage `0` is a {class} of {numel} elements"))
                && e.contains("an earlier tensor has it as a FloatStorage of 4"),
            "{e}"
        );
    }
}

#[test]
fn a_zip_entry_declaring_a_huge_size_is_an_error() {
    // data.pkl's central-directory entry says 2^62 bytes (zip64): a buffer of the declared size
    // would abort the process.
    let pkl = dict(&[]);
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file_with_extra_data("archive/data.pkl", options).unwrap();
    zip.end_local_start_central_extra_data().unwrap();
    zip.write_all(&[0x77, 0x77, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(); // room for the zip64 field
    zip.end_extra_data().unwrap();
    zip.write_all(&pkl).unwrap();
    let mut bytes = zip.finish().unwrap().into_inner();
    let name = b"archive/data.pkl";
    let cd = (0..bytes.len()).find(|&i| bytes[i..].starts_with(b"PK\x01\x02")).unwrap();
    assert_eq!(&bytes[cd + 46..cd + 46 + name.len()], name);
    bytes[cd + 24..cd + 28].copy_from_slice(&[0xff; 4]); // uncompressed size: see zip64 field
    let extra = cd + 46 + name.len();
    bytes[extra..extra + 2].copy_from_slice(&[1, 0]); // the zip64 extended-information field
    bytes[extra + 4..extra + 12].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = error(&bytes);
    assert!(e.contains("`archive/data.pkl` declares 4611686018427387904 bytes but holds"), "{e}");
}

#[test]
fn torchscript_archives_are_refused_with_a_hint() {
    let pkl = dict(&[]);
    let e = error(&zip(&[
        ("archive/data.pkl", pkl.as_slice()),
        ("archive/constants.pkl", b"\x80\x02).".as_slice()),
        ("archive/code/__torch__/m.py", b"class M(Module): pass".as_slice()),
    ]));
    assert!(e.contains("TorchScript") && e.contains("torch.save(model.state_dict(), path)"), "{e}");
    let e =
        error(&zip(&[("archive/data.pkl", pkl.as_slice()), ("archive/code/__torch__/m.py", b"".as_slice())]));
    assert!(e.contains("TorchScript"), "{e}");
}

#[test]
fn a_file_without_tensors_is_an_error() {
    let e = error(&checkpoint(&dict(&[("global_step", int(3))]), &[]));
    assert!(e.ends_with("crafted.pth: no tensors found in this file"), "{e}");
    // A Lightning checkpoint whose state_dict is empty too.
    let e = error(&checkpoint(&dict(&[("state_dict", b"}".to_vec())]), &[]));
    assert!(e.contains("no tensors found"), "{e}");
}

#[test]
fn bare_pickles_of_any_protocol_get_the_legacy_hint() {
    for head in [&[0x80, 0x02, 0x8a, 0x0a][..], &[0x80, 0x04, 0x95, 0x0b], &[0x80, 0x05, b'N', b'.']] {
        let e = error(head);
        assert!(e.contains("legacy (PyTorch < 1.6)") && e.contains("torch.save(torch.load("), "{e}");
    }
}

#[test]
fn deep_nesting_loads_to_the_limit_and_is_refused_beyond() {
    // A tensor inside 900 nested lists loads under its dotted name (flatten recurses per level).
    let nested = |n: usize| {
        let w = tensor("FloatStorage", "0", 4, 0, &[4], &[1]);
        [vec![b']'; n], w, vec![b'a'; n]].concat()
    };
    let got = load(&checkpoint(&dict(&[("w", nested(900))]), &[("0", &floats())])).unwrap();
    assert_eq!(got[0].0, format!("w{}", ".0".repeat(900)));
    assert_eq!(got[0].1.kind(), Kind::Float);
    let e = error(&checkpoint(&dict(&[("w", nested(5000))]), &[("0", &floats())]));
    assert!(e.contains("nested more than 1000 deep"), "{e}");
    // A million TUPLE1s on one None.
    let pkl = [vec![0x80, 2, b'N'], vec![0x85; 1_000_000], vec![b'.']].concat();
    let e = error(&checkpoint(&pkl, &[]));
    assert!(e.contains("nested more than 1000 deep"), "{e}");
}

#[test]
fn a_memo_doubling_bomb_is_an_error() {
    // `]`, memoised; then (fetch it twice, pair, memoise) 40 times: 2^40 values if copied.
    let pkl = [vec![0x80, 2, b']', b'q', 0], b"h\x00h\x00\x86q\x00".repeat(40), vec![b'.']].concat();
    let e = error(&checkpoint(&pkl, &[]));
    assert!(e.contains("pickle bomb"), "{e}");
}
