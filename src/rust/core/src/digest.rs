//! The checksum that ties a saved model's weights to its configuration.
//!
//! FNV-1a (64 bit) over the model kind, the configuration JSON and the weight
//! bytes, each preceded by its length. Not a cryptographic hash: it detects
//! accidental damage and hand edits, not an adversary. Every single-byte change
//! is detected (each step `h ← (h ⊕ b)·p` with odd `p` is a bijection of the
//! state, so two inputs that differ in one byte never meet again); other changes
//! collide with probability about 2⁻⁶⁴.
const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// One part: its length (8 bytes, little-endian), then its bytes.
fn feed(h: u64, bytes: &[u8]) -> u64 {
    fnv(fnv(h, &(bytes.len() as u64).to_le_bytes()), bytes)
}

/// `"fnv1a64:<16 hex digits>"` of (kind, config, weights).
pub fn model_digest(kind: &str, config_json: &str, weights: &[u8]) -> String {
    let h = [kind.as_bytes(), config_json.as_bytes(), weights]
        .iter()
        .fold(OFFSET, |h, part| feed(h, part));
    format!("fnv1a64:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_and_every_single_byte_change_is_seen() {
        // published FNV-1a 64 test vectors
        assert_eq!(fnv(OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        let w: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let d = model_digest("supervised", "{\"n_d\":8}", &w);
        for i in 0..w.len() {
            let mut v = w.clone();
            v[i] ^= 0x01;
            assert_ne!(model_digest("supervised", "{\"n_d\":8}", &v), d, "byte {i}");
        }
        assert_ne!(model_digest("pretrain", "{\"n_d\":8}", &w), d);
        assert_ne!(model_digest("supervised", "{\"n_d\":9}", &w), d);
        // moving bytes between the parts changes the digest (lengths are hashed)
        assert_ne!(model_digest("ab", "c", &[]), model_digest("a", "bc", &[]));
    }
}
