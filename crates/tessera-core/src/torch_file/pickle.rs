//! A pickle reader that builds plain values and never runs code.
//!
//! PyTorch's `torch.save` writes a pickle (protocol 2) whose tensors are calls to
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` and whose storages are
//! persistent ids `('storage', torch.FloatStorage, key, location, numel)`. Python's unpickler would
//! import and call whatever globals the file names (which is how a malicious checkpoint runs code).
//! This reader only *records* globals and calls: the tensor-building ones it recognises become
//! [`Value::Tensor`], a handful of containers (`OrderedDict`, `set`) become containers, and every
//! other call stays an inert [`Value::Object`].
//!
//! Limitation: memoised containers are copied when fetched again (`BINGET`), so a dict or list that
//! the file references twice is seen as it was when first memoised. State dicts and Lightning
//! checkpoints reference each container once.

use std::collections::HashMap;

use thiserror::Error;

/// A pickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered pairs (Python dicts and `OrderedDict`s).
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A reference to `module.name` (a class or function). Never imported.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)`, recorded and not evaluated, with the state a `BUILD` gave it.
    Object {
        callable: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
    },
    /// A torch storage named by a persistent id.
    Storage(StorageRef),
    /// A strided view on a storage.
    Tensor(TensorRef),
}

/// `('storage', torch.<Type>Storage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The storage class, e.g. `FloatStorage`: it fixes the element type.
    pub class: String,
    /// The entry `data/<key>` in the archive.
    pub key: String,
    pub location: String,
    /// Elements in the storage.
    pub numel: i64,
}

/// `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

impl Value {
    /// The value under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => {
                pairs.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    fn as_ints(&self) -> Option<Vec<i64>> {
        match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::as_int).collect(),
            _ => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum PickleError {
    #[error("the pickle ends early (truncated file?)")]
    Truncated,
    #[error("unsupported pickle opcode 0x{0:02x} at byte {1}")]
    Opcode(u8, usize),
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed { at: usize, what: String },
}

/// Read one pickle from `data` (up to its `STOP`).
pub fn read(data: &[u8]) -> Result<Value, PickleError> {
    Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }.run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Machine<'a> {
    fn bad(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed { at: self.pos, what: what.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or(PickleError::Truncated)?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn len_u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        usize::try_from(u64::from_le_bytes(self.le()?)).map_err(|_| self.bad("length overflows"))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated)?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.bad("non-UTF-8 text line"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.stack.pop().ok_or_else(|| self.bad("pop from an empty stack"))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let at = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed { at, what: "empty stack".into() })
    }

    /// Everything pushed since the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let m = self.marks.pop().ok_or_else(|| self.bad("no MARK"))?;
        if m > self.stack.len() {
            return Err(self.bad("MARK above the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| self.bad(format!("memo key {key} unset")))?;
        self.stack.push(v);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.bad("odd number of dict items"));
        }
        let at = self.pos;
        match self.top()? {
            Value::Dict(pairs) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    match pairs.iter_mut().find(|(old, _)| *old == k) {
                        Some(slot) => slot.1 = v,
                        None => pairs.push((k, v)),
                    }
                }
                Ok(())
            }
            // Items set on an opaque object (a dict subclass we do not know) are dropped.
            Value::Object { .. } => Ok(()),
            _ => Err(PickleError::Malformed { at, what: "SETITEM(S) on a non-dict".into() }),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let at = self.pos;
        match self.top()? {
            Value::List(v) | Value::Set(v) => {
                v.extend(items);
                Ok(())
            }
            Value::Object { .. } => Ok(()),
            _ => Err(PickleError::Malformed { at, what: "APPEND(S) on a non-list".into() }),
        }
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.le::<8>()?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.len_u32()? };
                    let bytes = self.take(n)?;
                    self.stack.push(Value::Int(
                        long_from_le(bytes).ok_or_else(|| self.bad("integer wider than 64 bits"))?,
                    ));
                }
                b'I' | b'L' => {
                    let line = self.line()?.trim_end_matches('L');
                    let v = match line {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => Value::Int(s.parse().map_err(|_| self.bad(format!("bad integer `{s}`")))?),
                    };
                    self.stack.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.stack.push(Value::Float(v));
                }
                b'F' => {
                    let s = self.line()?;
                    let v = s.parse().map_err(|_| self.bad(format!("bad float `{s}`")))?;
                    self.stack.push(Value::Float(v));
                }
                b'X' | b'T' => {
                    let n = self.len_u32()?;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'V' => {
                    let s = self.line()?.to_string();
                    self.stack.push(Value::Str(s));
                }
                b'S' => {
                    let s = self.line()?.trim();
                    let s = s.trim_matches(|c| c == '\'' || c == '"').to_string();
                    self.stack.push(Value::Str(s));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len_u32()?,
                        b'C' => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v));
                }
                b')' => self.stack.push(Value::Tuple(vec![])),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.bad("TUPLEn on a short stack"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b']' => self.stack.push(Value::List(vec![])),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => self.stack.push(Value::Dict(vec![])),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(vec![]));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                0x8f => self.stack.push(Value::Set(vec![])),
                0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Set(items));
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.stack.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.stack.push(Value::Global { module, name })
                        }
                        _ => return Err(self.bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args).map_err(|what| PickleError::Malformed { at, what })?;
                    self.stack.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Object {
                        callable: Box::new(cls),
                        args: Box::new(args),
                        state: None,
                    });
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Object {
                        callable: Box::new(cls),
                        args: Box::new(args),
                        state: None,
                    });
                }
                b'b' => {
                    let state = self.pop()?;
                    // A dict's BUILD state is its instance `__dict__` (e.g. a state_dict's
                    // `_metadata`), not items; only opaque objects keep it.
                    if let Value::Object { state: slot, .. } = self.top()? {
                        *slot = Some(Box::new(state));
                    }
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.len_u32()? as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let s = self.line()?;
                    let k = s.parse().map_err(|_| self.bad(format!("bad memo key `{s}`")))?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.len_u32()? as u64;
                    self.memo_get(k)?;
                }
                b'g' => {
                    let s = self.line()?;
                    let k = s.parse().map_err(|_| self.bad(format!("bad memo key `{s}`")))?;
                    self.memo_get(k)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid).map_err(|what| PickleError::Malformed { at, what })?;
                    self.stack.push(v);
                }
                other => return Err(PickleError::Opcode(other, at)),
            }
        }
    }
}

/// A little-endian two's-complement integer of at most 8 bytes (`LONG1`/`LONG4`).
fn long_from_le(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() {
        return Some(0);
    }
    if bytes.len() > 8 {
        return None;
    }
    let fill = if bytes[bytes.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut b = [fill; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    Some(i64::from_le_bytes(b))
}

/// torch's persistent ids: `('storage', storage_type, key, location, numel)`.
fn persistent_load(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = &pid else {
        return Err(format!("unknown persistent id {pid:?}"));
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global { name, .. }, Value::Str(key), Value::Str(location), numel]
            if kind == "storage" =>
        {
            let numel = numel.as_int().ok_or("storage numel is not an integer")?;
            Ok(Value::Storage(StorageRef {
                class: name.clone(),
                key: key.clone(),
                location: location.clone(),
                numel,
            }))
        }
        _ => Err(format!("unknown persistent id {pid:?}")),
    }
}

/// The calls a checkpoint's structure needs; any other call is kept as an inert object.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global { module, name } = &callable else {
        return Ok(Value::Object { callable: Box::new(callable), args: Box::new(args), state: None });
    };
    let argv = match &args {
        Value::Tuple(v) => v.as_slice(),
        _ => &[],
    };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [Value::Storage(storage), offset, size, stride, ..] = argv else {
                return Err(format!("{module}.{name} with unexpected arguments {args:?}"));
            };
            let bad = || format!("{module}.{name}: offset, size and stride must be integers");
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: offset.as_int().ok_or_else(bad)?,
                size: size.as_ints().ok_or_else(bad)?,
                stride: stride.as_ints().ok_or_else(bad)?,
            }))
        }
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            argv.first().cloned().ok_or_else(|| format!("{module}.{name} without arguments"))
        }
        ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
            let mut pairs = Vec::new();
            if let Some(Value::List(items) | Value::Tuple(items)) = argv.first() {
                for item in items {
                    match item {
                        Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => {
                            pairs.push((kv[0].clone(), kv[1].clone()))
                        }
                        _ => return Err(format!("{module}.{name} with a non-pair item")),
                    }
                }
            }
            Ok(Value::Dict(pairs))
        }
        ("builtins", "set") | ("builtins", "frozenset") | ("__builtin__", "set") => match argv.first() {
            Some(Value::List(items) | Value::Tuple(items)) => Ok(Value::Set(items.clone())),
            _ => Ok(Value::Set(vec![])),
        },
        _ => Ok(Value::Object { callable: Box::new(callable), args: Box::new(args), state: None }),
    }
}

#[cfg(test)]
mod tests {
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
}
