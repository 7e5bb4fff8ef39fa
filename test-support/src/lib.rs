//! Test support for Terminus, used only as a dev-dependency: nothing here is
//! part of the product (`terminus` does not depend on this crate).
//!
//! - [`FakeRegistry`]: an in-memory schema registry speaking the Confluent
//!   REST protocol on 127.0.0.1, for the codec's unit tests, the registry and
//!   worker integration tests, and the interop test against Confluent's own
//!   Python serializers (`tests/confluent_interop.rs`).

pub mod fake_registry;

pub use fake_registry::FakeRegistry;

/// `base64(user:password)`, the token of an HTTP basic `Authorization` header.
pub fn basic_auth_token(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
