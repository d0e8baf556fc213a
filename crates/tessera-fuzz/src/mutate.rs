//! Byte-level mutations in the style of AFL's havoc stage: bit flips, interesting values
//! (0, −1, powers of two, i32/u32 limits) written as 1, 2, 4 or 8 bytes in either byte order,
//! inserted, deleted and duplicated ranges, truncation, and splices with another input.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Values that find off-by-one, sign and overflow bugs in length and count fields.
const INTERESTING: [u64; 12] =
    [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, u64::MAX];

/// Inputs never grow past this many bytes.
pub const MAX_LEN: usize = 1 << 20;

/// Apply 1 to 8 random mutations to `data`; `other` is a second input to splice from.
pub fn mutate(data: &mut Vec<u8>, other: &[u8], rng: &mut ChaCha8Rng) {
    let rounds = 1 << rng.gen_range(0..4);
    for _ in 0..rounds {
        mutate_once(data, other, rng);
    }
    data.truncate(MAX_LEN);
}

fn mutate_once(data: &mut Vec<u8>, other: &[u8], rng: &mut ChaCha8Rng) {
    if data.is_empty() {
        data.extend((0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>()));
        return;
    }
    let n = data.len();
    let at = rng.gen_range(0..n);
    match rng.gen_range(0..9) {
        0 => data[at] ^= 1 << rng.gen_range(0..8),
        1 => data[at] = rng.gen(),
        2 => write_interesting(data, at, rng),
        3 => data[at] = data[at].wrapping_add(rng.gen_range(1..36)).wrapping_sub(17),
        4 => {
            let len = rng.gen_range(1..=16.min(MAX_LEN - n).max(1));
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            data.splice(at..at, bytes);
        }
        5 => {
            let end = (at + rng.gen_range(1..=64)).min(n);
            data.drain(at..end);
        }
        6 => {
            let end = (at + rng.gen_range(1..=64)).min(n);
            let chunk = data[at..end].to_vec();
            let to = rng.gen_range(0..=data.len());
            data.splice(to..to, chunk);
        }
        7 => data.truncate(rng.gen_range(0..n)),
        _ if !other.is_empty() => {
            let from = rng.gen_range(0..other.len());
            let end = (from + rng.gen_range(1..=256)).min(other.len());
            data.splice(at..(at + end - from).min(n), other[from..end].iter().copied());
        }
        _ => data[at] = !data[at],
    }
}

fn write_interesting(data: &mut [u8], at: usize, rng: &mut ChaCha8Rng) {
    let v = INTERESTING[rng.gen_range(0..INTERESTING.len())];
    let v = if rng.gen() { v } else { v.wrapping_neg() };
    let width = [1usize, 2, 4, 8][rng.gen_range(0..4)].min(data.len() - at);
    let bytes = if rng.gen() { v.to_le_bytes() } else { v.to_be_bytes() };
    let bytes = if bytes[0] == 0 && width < 8 && rng.gen() { &bytes[8 - width..] } else { &bytes[..width] };
    data[at..at + width].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutations_change_inputs_deterministically_and_stay_bounded() {
        let seed = b"IDX\x00\x00\x08\x03 some bytes to change".to_vec();
        let run = |s: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(s);
            (0..200)
                .map(|_| {
                    let mut d = seed.clone();
                    mutate(&mut d, b"other input", &mut rng);
                    d
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(1), run(1));
        assert_eq!(a, b, "same seed, same mutations");
        assert!(a.iter().filter(|d| **d != seed).count() > 150, "most mutations change the input");
        assert!(a.iter().all(|d| d.len() <= MAX_LEN));
        let mut empty = Vec::new();
        mutate(&mut empty, b"", &mut ChaCha8Rng::seed_from_u64(3));
        assert!(!empty.is_empty(), "an empty input grows");
    }
}
