//! Go's `binary.PutVarint` / `binary.ReadVarint`: zig-zag encoded `i64`, then
//! unsigned LEB128 in 1 to 10 bytes.
//!
//! Decoding follows Go exactly, including what it accepts: non-minimal
//! encodings (`80 00` is zero) are fine, an encoding longer than 10 bytes or
//! whose 10th byte is greater than 1 overflows.

use bytes::BufMut;

/// The longest encoding of a 64-bit value.
pub const MAX_LEN: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The input ended inside the varint (Go: `EOF`, or `unexpected EOF`
    /// from Go 1.20 on when at least one byte was read).
    #[error("message ends inside a varint")]
    Truncated,
    /// More than 64 bits (Go: `binary: varint overflows a 64-bit integer`).
    #[error("varint overflows a 64-bit integer")]
    Overflow,
}

/// Number of bytes [`put`] writes for `value`.
pub fn encoded_len(value: i64) -> usize {
    let bits = 64 - zigzag(value).leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// Appends `value` to `buf`.
pub fn put(buf: &mut impl BufMut, value: i64) {
    let mut ux = zigzag(value);
    while ux >= 0x80 {
        buf.put_u8((ux as u8) | 0x80);
        ux >>= 7;
    }
    buf.put_u8(ux as u8);
}

/// Reads a varint from the front of `input`; returns the value and the number
/// of bytes it took.
pub fn get(input: &[u8]) -> Result<(i64, usize), VarintError> {
    let mut ux: u64 = 0;
    let mut shift = 0u32;
    for (i, &b) in input.iter().enumerate() {
        if i == MAX_LEN {
            return Err(VarintError::Overflow);
        }
        if b < 0x80 {
            if i == MAX_LEN - 1 && b > 1 {
                return Err(VarintError::Overflow);
            }
            ux |= u64::from(b) << shift;
            return Ok((unzigzag(ux), i + 1));
        }
        ux |= u64::from(b & 0x7f) << shift;
        shift += 7;
    }
    if input.len() >= MAX_LEN {
        return Err(VarintError::Overflow);
    }
    Err(VarintError::Truncated)
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(ux: u64) -> i64 {
    let x = (ux >> 1) as i64;
    if ux & 1 != 0 { !x } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, v);
        out
    }

    #[test]
    fn matches_go_encodings() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x02]);
        assert_eq!(enc(-1), [0x01]);
        assert_eq!(enc(63), [0x7e]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(-65), [0x81, 0x01]);
        assert_eq!(enc(15000), [0xb0, 0xea, 0x01]);
        assert_eq!(
            enc(i64::MIN),
            [0xff; 9].iter().copied().chain([1]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn lengths_agree_with_put() {
        for v in [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i64::MAX,
            i64::MIN,
            1 << 40,
        ] {
            assert_eq!(encoded_len(v), enc(v).len(), "{v}");
            assert_eq!(get(&enc(v)).unwrap(), (v, enc(v).len()));
        }
    }

    #[test]
    fn rejects_like_go() {
        assert_eq!(get(&[]), Err(VarintError::Truncated));
        assert_eq!(get(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(get(&[0xff; 10]), Err(VarintError::Overflow));
        assert_eq!(get(&[0xff; 11]), Err(VarintError::Overflow));
        let mut tenth_too_big = vec![0xff; 9];
        tenth_too_big.push(2);
        assert_eq!(get(&tenth_too_big), Err(VarintError::Overflow));
        assert_eq!(get(&[0x80, 0x00]), Ok((0, 2)));
    }
}
