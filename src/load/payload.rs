//! Message bytes as a pure function of (connection id, message sequence, offset), so the
//! echo can be verified byte for byte without keeping a copy of what was sent.
//!
//! Each message gets a 64-bit seed from (conn, seq); 8-byte word `j` of the message is a
//! cheap mix of the seed and `j`. Neighbouring messages and neighbouring words differ,
//! so a corrupted, dropped, duplicated or reordered byte is caught.

const K_CONN: u64 = 0x9E37_79B9_7F4A_7C15;
const K_SEQ: u64 = 0xC2B2_AE3D_27D4_EB4F;
const K_WORD: u64 = 0x1656_67B1_9E37_79F9;
const K_MIX: u64 = 0xFF51_AFD7_ED55_8CCD;

#[inline]
fn seed(conn: u32, seq: u64) -> u64 {
    let x = (u64::from(conn) + 1).wrapping_mul(K_CONN) ^ seq.wrapping_add(1).wrapping_mul(K_SEQ);
    x ^ (x >> 31)
}

#[inline(always)]
fn word(seed: u64, j: u64) -> u64 {
    let mut w = seed.wrapping_add(j.wrapping_mul(K_WORD));
    w ^= w >> 32;
    w = w.wrapping_mul(K_MIX);
    w ^ (w >> 29)
}

/// Fill `out` with bytes `off..off + out.len()` of message `seq` of connection `conn`.
#[inline]
pub fn fill(conn: u32, seq: u64, off: usize, out: &mut [u8]) {
    let s = seed(conn, seq);
    let mut out = out;
    let mut pos = off;
    if !pos.is_multiple_of(8) {
        // Unaligned head: part of one word.
        let w = word(s, (pos / 8) as u64).to_le_bytes();
        let b = pos % 8;
        let n = (8 - b).min(out.len());
        out[..n].copy_from_slice(&w[b..b + n]);
        pos += n;
        out = &mut out[n..];
    }
    let mut j = (pos / 8) as u64;
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&word(s, j).to_le_bytes());
        j += 1;
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let n = rest.len();
        rest.copy_from_slice(&word(s, j).to_le_bytes()[..n]);
    }
}

/// True when `data` equals bytes `off..off + data.len()` of message `seq` of `conn`.
#[inline]
pub fn verify(conn: u32, seq: u64, off: usize, data: &[u8]) -> bool {
    let s = seed(conn, seq);
    let mut data = data;
    let mut pos = off;
    if !pos.is_multiple_of(8) {
        let w = word(s, (pos / 8) as u64).to_le_bytes();
        let b = pos % 8;
        let n = (8 - b).min(data.len());
        if data[..n] != w[b..b + n] {
            return false;
        }
        pos += n;
        data = &data[n..];
    }
    let mut j = (pos / 8) as u64;
    let mut diff = 0u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        diff |= u64::from_le_bytes(c.try_into().expect("8-byte chunk")) ^ word(s, j);
        j += 1;
    }
    let rest = chunks.remainder();
    diff == 0 && (rest.is_empty() || rest == &word(s, j).to_le_bytes()[..rest.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(conn: u32, seq: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        fill(conn, seq, 0, &mut v);
        v
    }

    #[test]
    fn pieces_match_whole_at_every_split() {
        let w = whole(7, 42, 61);
        for a in 0..=w.len() {
            for b in a..=w.len() {
                let mut part = vec![0; b - a];
                fill(7, 42, a, &mut part);
                assert_eq!(part, &w[a..b], "fill {a}..{b}");
                assert!(verify(7, 42, a, &w[a..b]), "verify {a}..{b}");
            }
        }
    }

    #[test]
    fn every_single_byte_corruption_is_caught() {
        let w = whole(3, 9, 130);
        for i in 0..w.len() {
            for flip in [1u8, 0x80, 0xFF] {
                let mut c = w.clone();
                c[i] ^= flip;
                assert!(!verify(3, 9, 0, &c), "byte {i} xor {flip:#x} not caught");
                assert!(!verify(3, 9, i, &c[i..i + 1]), "single byte {i} not caught");
            }
        }
    }

    #[test]
    fn messages_and_connections_differ() {
        let a = whole(0, 0, 64);
        assert_ne!(a, whole(0, 1, 64));
        assert_ne!(a, whole(1, 0, 64));
        assert!(!verify(0, 1, 0, &a));
        // A stream shifted by one byte is caught.
        assert!(!verify(0, 0, 1, &a[..63]));
        // Not a constant or short-period pattern.
        assert!(a.windows(8).any(|x| x != &a[..8]));
    }
}
