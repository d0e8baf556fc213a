use super::*;

// Byte strings below were checked with CPython's `pickle.loads` / `pickletools.dis`.

#[test]
fn reads_scalars_containers_and_memo() {
    // {'a': [1, -2, 300, 70000, 2**40], 'b': (1.5, None, True), 'a2': 'a'} with the opcodes
    // CPython's protocol-2 pickler uses, plus a memoised string fetched again (`pickle.loads`
    // of these bytes gives that dict).
    let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b'q', 1, b']', b'q', 2, b'('];
    p.extend([b'K', 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'M', 0x2c, 0x01, b'J', 0x70, 0x11, 0x01, 0x00]);
    p.extend([0x8a, 6, 0, 0, 0, 0, 0, 1, b'e']);
    p.extend([b'X', 1, 0, 0, 0, b'b', b'G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, b'N', 0x88, 0x87]);
    p.extend([b'X', 2, 0, 0, 0, b'a', b'2', b'h', 1, b'u', b'.']);
    let v = read(&p).unwrap();
    assert_eq!(
        v.get("a"),
        Some(&Value::List(vec![
            Value::Int(1),
            Value::Int(-2),
            Value::Int(300),
            Value::Int(70000),
            Value::Int(1 << 40)
        ]))
    );
    assert_eq!(v.get("b"), Some(&Value::Tuple(vec![Value::Float(1.5), Value::None, Value::Bool(true)])));
    assert_eq!(v.get("a2"), Some(&Value::Str("a".into())));
}

#[test]
fn globals_are_recorded_never_called() {
    // pickle.dumps of an object whose __reduce__ is (os.system, ('echo pwned',))
    let mut p = b"\x80\x02cposix\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.".to_vec();
    let v = read(&p).unwrap();
    match v {
        Value::Object { callable, args, .. } => {
            assert_eq!(*callable, Value::Global { module: "posix".into(), name: "system".into() });
            assert_eq!(*args, Value::Tuple(vec![Value::Str("echo pwned".into())]));
        }
        other => panic!("{other:?}"),
    }
    // Truncation anywhere is an error, not a panic.
    for n in 0..p.len() - 1 {
        assert!(read(&p[..n]).is_err(), "{n}");
    }
    p[2] = 0xff;
    assert!(matches!(read(&p), Err(PickleError::Opcode(0xff, 2))));
}

#[test]
fn rebuild_tensor_reads_storage_view() {
    // (torch._utils._rebuild_tensor_v2, (pid, 2, (2, 3), (1, 2), False, OrderedDict()))
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x08tQK\x02K\x02K\x03\x86K\x01K\x02\x86\x89ccollections\nOrderedDict\n)R".to_vec();
    p.extend(b"tR.");
    let v = read(&p).unwrap();
    assert_eq!(
        v,
        Value::Tensor(TensorRef {
            storage: StorageRef {
                class: "FloatStorage".into(),
                key: "0".into(),
                location: "cpu".into(),
                numel: 8
            },
            offset: 2,
            size: vec![2, 3],
            stride: vec![1, 2],
        })
    );
}

#[test]
fn long_integers_sign_extend() {
    assert_eq!(long_from_le(&[0xff]), Some(-1));
    assert_eq!(long_from_le(&[0x00, 0x80]), Some(-32768));
    assert_eq!(long_from_le(&[0xff, 0x00]), Some(255));
    assert_eq!(long_from_le(&[0; 9]), None);
}

/// `80 02 ] q 00`, `rounds` × `h 00 h 00 86 q 00`, `.`: each round memoises a pair of the last
/// value, so the value doubles every round.
fn doubling(rounds: usize) -> Vec<u8> {
    [vec![0x80, 2, b']', b'q', 0], b"h\x00h\x00\x86q\x00".repeat(rounds), vec![b'.']].concat()
}

#[test]
fn memo_doubling_bomb_is_refused() {
    let pair = |v: Value| Value::Tuple(vec![v.clone(), v]);
    assert_eq!(read(&doubling(2)).unwrap(), pair(pair(Value::List(vec![]))));
    // 64 rounds would make 2^64 values; `read`'s 64 MiB budget refuses it.
    let e = read(&doubling(64)).unwrap_err().to_string();
    assert!(e.contains("pickle bomb"), "{e}");
}

#[test]
fn memo_copies_are_bounded_in_all() {
    // A 1 MiB string fetched (and popped) 3000 times: 3 GiB of copies, never much at once.
    // Refused once 64 MiB were copied.
    let mut p = vec![0x80, 2, b'X'];
    p.extend((1u32 << 20).to_le_bytes());
    p.extend(vec![b'a'; 1 << 20]);
    p.extend([b'q', 0]);
    p.extend(b"h\x000".repeat(3000));
    p.push(b'.');
    let e = read(&p).unwrap_err().to_string();
    assert!(e.contains("copied over 64 MiB") && e.contains("pickle bomb"), "{e}");
}

#[test]
fn deep_nesting_is_refused() {
    let (n, m) = (1_000_000, 5000);
    let cases = [
        ("TUPLE1", [vec![0x80, 2, b'N'], vec![0x85; n], vec![b'.']].concat()),
        ("MARK…TUPLE", [vec![b'('; n], vec![b'N'], vec![b't'; n], vec![b'.']].concat()),
        ("APPEND", [vec![b']'; m], vec![b'a'; m - 1], vec![b'.']].concat()),
        ("SETITEM", [vec![b'}'], b"K\x01}".repeat(m - 1), vec![b's'; m - 1], vec![b'.']].concat()),
    ];
    for (what, p) in cases {
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("nested more than 1000 deep"), "{what}: {e}");
    }
}

#[test]
fn values_at_the_depth_limit_are_safe_to_use() {
    let nested = |depth: usize| [vec![0x80, 2, b'N'], vec![0x85; depth - 1], vec![b'.']].concat();
    let v = read(&nested(MAX_DEPTH)).unwrap();
    // Clone, compare, print and drop recurse per level: they fit in a 1 MiB stack.
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let w = v.clone();
            assert_eq!(v, w);
            assert!(format!("{w:?}").ends_with(&"])".repeat(MAX_DEPTH - 1)));
            drop((v, w));
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(read(&nested(MAX_DEPTH + 1)).is_err());
}

#[test]
fn repeated_dict_keys_merge_like_python() {
    // {'a': 1, 'b': 2, 'a': 3, 5: 4, 5: 6} via SETITEMS, then a second SETITEM of 'b':
    // Python gives {'a': 3, 'b': 8, 5: 6}.
    let a = [b'X', 1, 0, 0, 0, b'a'];
    let b = [b'X', 1, 0, 0, 0, b'b'];
    let p = [
        &[0x80, 2, b'}', b'('][..],
        &a,
        &[b'K', 1],
        &b,
        &[b'K', 2],
        &a,
        &[b'K', 3, b'K', 5, b'K', 4, b'K', 5, b'K', 6, b'u'],
        &b,
        &[b'K', 8, b's', b'.'],
    ]
    .concat();
    let int = Value::Int;
    let s = |k: &str| Value::Str(k.into());
    assert_eq!(read(&p).unwrap(), Value::Dict(vec![(s("a"), int(3)), (s("b"), int(8)), (int(5), int(6))]));
}

#[test]
fn many_distinct_keys_all_load() {
    // 300 000 single SETITEMs (quadratic, and so minutes long, if each scanned the keys
    // before it).
    let n = 300_000;
    let mut p = vec![0x80, 2, b'}'];
    for i in 0..n as i32 {
        p.push(b'J');
        p.extend(i.to_le_bytes());
        p.extend([b'N', b's']);
    }
    p.push(b'.');
    let Value::Dict(pairs) = read(&p).unwrap() else { panic!("not a dict") };
    assert_eq!(pairs.len(), n);
    assert_eq!(pairs[n - 1].0, Value::Int(n as i64 - 1));
}

#[test]
fn integers_beyond_64_bits_are_kept() {
    // {'big': 2**64 (LONG1), 'neg': -2**80 (LONG4), 'n': 7}
    let mut p = b"\x80\x02}(X\x03\x00\x00\x00big\x8a\x09".to_vec();
    p.extend([0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend(b"X\x03\x00\x00\x00neg\x8b\x0b\x00\x00\x00");
    p.extend([0; 10]);
    p.push(0xff);
    p.extend(b"X\x01\x00\x00\x00nK\x07u.");
    let v = read(&p).unwrap();
    assert_eq!(v.get("big"), Some(&Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1])));
    assert_eq!(v.get("neg"), Some(&Value::BigInt([vec![0; 10], vec![0xff]].concat())));
    assert_eq!(v.get("n"), Some(&Value::Int(7)));
}

#[test]
fn errors_quote_values_briefly() {
    // _rebuild_tensor_v2 called with 100 000 Nones: the message quotes only their start.
    let p = [&b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("[..], &[b'N'; 100_000], b"tR."].concat();
    let e = read(&p).unwrap_err().to_string();
    assert!(e.contains("unexpected arguments Tuple([None, None") && e.len() < 400, "{e}");
}
