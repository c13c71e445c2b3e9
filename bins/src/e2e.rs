//! End-to-end encryption of a topic's values (`encrypt = true`, docs/SECURITY.md): sealed
//! where they are produced, under keys the gateways in between do not hold, and opened
//! only by whoever holds the topic's key file. The sync path carries a sealed value as any
//! other bytes.
//!
//! A sealed value (an envelope; PROTOCOL.md, "End-to-end encrypted values"):
//!
//! ```text
//! 0   magic       4 bytes   "OPE1"
//! 4   key_id      u32 LE    which key of the topic's key file sealed it
//! 8   nonce       24 bytes  unique: 16 random bytes per load of the key file, a counter
//! 32  ciphertext  the value's length, then the 16-byte Poly1305 tag
//! ```
//!
//! The associated data binds an envelope to where it belongs: the topic's name, the
//! origin that wrote it (its node id) and the record's key. A gateway that moves an
//! envelope to another topic, claims it for another origin, re-keys it or changes one bit
//! gets [`OpenError::Tampered`] at the consumer, never a value.
//!
//! A nonce is 16 random bytes drawn from the operating system when the key file is loaded,
//! then a counter: unique without a system call per value (which cost more than the
//! cipher), and never repeated across restarts, since each load draws a new prefix. This
//! runs in the shells, never in the core, which draws nothing unseeded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use outpost_core::types::NodeId;

/// The first bytes of every envelope: protocol and version.
pub const MAGIC: [u8; 4] = *b"OPE1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + 4 + NONCE_LEN;
/// Bytes an envelope adds to a value.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
const KEY_LEN: usize = 32;
/// Keys a key file may hold (rotations kept so that old records still open).
pub const KEYS_MAX: usize = 1024;

/// Where a sealed value belongs: what its associated data binds it to.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub topic: &'a str,
    pub origin: NodeId,
    pub key: Option<&'a [u8]>,
}

impl Context<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let key = self.key.unwrap_or_default();
        let mut aad = Vec::with_capacity(32 + self.topic.len() + key.len());
        aad.extend_from_slice(b"outpost-e2e-v1\0");
        aad.extend_from_slice(&(self.topic.len() as u32).to_le_bytes());
        aad.extend_from_slice(self.topic.as_bytes());
        aad.extend_from_slice(&self.origin.0.to_le_bytes());
        aad.push(u8::from(self.key.is_some()));
        aad.extend_from_slice(&(key.len() as u32).to_le_bytes());
        aad.extend_from_slice(key);
        aad
    }
}

/// Why an envelope did not open. None of them returns a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than an envelope, or not starting with [`MAGIC`]: a value written in clear
    /// (by a producer without the keys), or not an envelope at all.
    NotSealed,
    /// Sealed with a key id this key file does not hold (rotated in elsewhere, or lost).
    UnknownKey(u32),
    /// The tag does not match: a bit changed, or the envelope was moved to another topic,
    /// origin or record key. Never returned as valid.
    Tampered,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NotSealed => f.write_str("not an end-to-end envelope (a value written in clear?)"),
            OpenError::UnknownKey(id) => write!(f, "sealed with key {id}, which the key file does not hold"),
            OpenError::Tampered => f.write_str(
                "tampered: the envelope does not authenticate for this topic, origin and key (changed in transit or \
                 at rest, or moved)",
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// The keys of one topic, by id; the highest id seals.
pub struct Keyring {
    keys: BTreeMap<u32, Key>,
    /// The sealing key's cipher, set up once.
    sealer: XChaCha20Poly1305,
    /// The nonces' random first 16 bytes, new at every load.
    nonce_prefix: [u8; 16],
    /// The nonces' last 8 bytes: values sealed since the load.
    sealed: AtomicU64,
}

impl Clone for Keyring {
    /// A clone draws a prefix of its own, so that two sealers never share a nonce.
    fn clone(&self) -> Keyring {
        Keyring::new(self.keys.clone())
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys, sealing with {})", self.keys.len(), self.current_id())
    }
}

impl Keyring {
    /// Reads a key file: one key per line, `ID HEX` (a u32 and 64 hex digits), `#`
    /// comments and blank lines ignored (`outpost keys add` writes them).
    pub fn load(path: &Path) -> Result<Keyring, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Keyring::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut keys = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}; expected `ID HEX` (a key id and 64 hex digits)", i + 1);
            let (id, hex) = line.split_once(char::is_whitespace).ok_or_else(|| bad("one field"))?;
            let id: u32 = id.parse().map_err(|_| bad("the key id is not a number"))?;
            let bytes = hex::decode(hex.trim())
                .ok()
                .filter(|b| b.len() == KEY_LEN)
                .ok_or_else(|| bad("not 32 bytes of hex"))?;
            if keys.insert(id, *Key::from_slice(&bytes)).is_some() {
                return Err(bad(&format!("key id {id} twice")));
            }
            if keys.len() > KEYS_MAX {
                return Err(format!("more than {KEYS_MAX} keys"));
            }
        }
        if keys.is_empty() {
            return Err("no key in it (`outpost keys add --file FILE` makes one)".into());
        }
        Ok(Keyring::new(keys))
    }

    fn new(keys: BTreeMap<u32, Key>) -> Keyring {
        let (_, current) = keys.last_key_value().expect("a keyring holds a key");
        let mut nonce_prefix = [0u8; 16];
        OsRng.fill_bytes(&mut nonce_prefix);
        Keyring { sealer: XChaCha20Poly1305::new(current), keys, nonce_prefix, sealed: AtomicU64::new(0) }
    }

    /// The id of the key that seals: the highest.
    pub fn current_id(&self) -> u32 {
        *self.keys.keys().next_back().expect("a keyring holds a key")
    }

    /// Seals `value` for `ctx` under the current key.
    pub fn seal(&self, ctx: &Context<'_>, value: &[u8]) -> Vec<u8> {
        let id = self.current_id();
        let mut nonce = XNonce::default();
        nonce[..16].copy_from_slice(&self.nonce_prefix);
        nonce[16..].copy_from_slice(&self.sealed.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let aad = ctx.associated_data();
        let sealed =
            self.sealer.encrypt(&nonce, Payload { msg: value, aad: &aad }).expect("a value fits XChaCha20's range");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens an envelope sealed for `ctx` by a holder of one of these keys.
    pub fn open(&self, ctx: &Context<'_>, envelope: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (id, nonce, sealed) = split(envelope)?;
        let key = self.keys.get(&id).ok_or(OpenError::UnknownKey(id))?;
        let aad = ctx.associated_data();
        XChaCha20Poly1305::new(key)
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| OpenError::Tampered)
    }
}

/// Whether `bytes` has an envelope's shape (not whether it authenticates).
pub fn is_sealed(bytes: &[u8]) -> bool {
    split(bytes).is_ok()
}

/// An envelope's key id, nonce and sealed bytes (ciphertext and tag).
fn split(envelope: &[u8]) -> Result<(u32, &[u8], &[u8]), OpenError> {
    if envelope.len() < OVERHEAD || envelope[..4] != MAGIC {
        return Err(OpenError::NotSealed);
    }
    let id = u32::from_le_bytes(envelope[4..8].try_into().expect("4 bytes"));
    Ok((id, &envelope[8..HEADER_LEN], &envelope[HEADER_LEN..]))
}

/// Adds a new random key to the key file at `path` (created, readable by its owner only,
/// if missing), with the next id. Returns the id. The new key seals from the next start of
/// every producer given the file; keep the old keys in it while records they sealed are
/// still read.
pub fn add_key(path: &Path) -> Result<u32, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(Keyring::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let id = match &existing {
        Some(k) => k.current_id().checked_add(1).ok_or("the key ids are used up")?,
        None => 1,
    };
    let key = XChaCha20Poly1305::generate_key(&mut OsRng);
    let mut line = String::new();
    if existing.is_none() {
        line.push_str("# Outpost end-to-end keys: ID HEX, one per line; the highest id seals. Keep it secret.\n");
    }
    let _ = writeln!(line, "{id} {}", hex::encode(key));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    const TWO: &str = "# rotated\n2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n";

    fn ctx(topic: &str) -> Context<'_> {
        Context { topic, origin: NodeId(7), key: Some(b"till-1") }
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed_for_and_every_flipped_bit_is_tampering() {
        let ring = Keyring::parse(ONE).expect("a key file");
        let value = b"card 4111 1111 1111 1111, 12.50 EUR";
        let sealed = ring.seal(&ctx("pos"), value);
        assert_eq!(sealed.len(), value.len() + OVERHEAD);
        assert!(!sealed.windows(value.len()).any(|w| w == value), "no plaintext in the envelope");
        assert_eq!(ring.open(&ctx("pos"), &sealed).expect("opens"), value);
        assert_ne!(ring.seal(&ctx("pos"), value), sealed, "a fresh nonce each time");
        let twin = ring.clone();
        assert_ne!(twin.seal(&ctx("pos"), value)[8..32], ring.seal(&ctx("pos"), value)[8..32], "a clone's own nonces");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut flipped = sealed.clone();
                flipped[i] ^= 1 << bit;
                let e = ring.open(&ctx("pos"), &flipped).expect_err("a flipped bit never opens");
                assert!(matches!(e, OpenError::Tampered | OpenError::NotSealed | OpenError::UnknownKey(_)), "{e}");
            }
        }
        let moved = [
            Context { topic: "other", ..ctx("pos") },
            Context { origin: NodeId(8), ..ctx("pos") },
            Context { key: Some(b"till-2"), ..ctx("pos") },
            Context { key: None, ..ctx("pos") },
        ];
        for c in moved {
            assert_eq!(ring.open(&c, &sealed), Err(OpenError::Tampered), "{c:?}");
        }
        assert_eq!(ring.open(&ctx("pos"), value), Err(OpenError::NotSealed));
        assert_eq!(ring.open(&ctx("pos"), &sealed[..OVERHEAD - 1]), Err(OpenError::NotSealed));
    }

    #[test]
    fn a_rotated_key_file_seals_with_the_newest_key_and_still_opens_the_old() {
        let old = Keyring::parse(ONE).expect("one key");
        let rotated = Keyring::parse(&format!("{ONE}{TWO}")).expect("two keys");
        assert_eq!(rotated.current_id(), 2);
        let before = old.seal(&ctx("t"), b"v1");
        let after = rotated.seal(&ctx("t"), b"v2");
        assert_eq!(rotated.open(&ctx("t"), &before).expect("the old key is kept"), b"v1");
        assert_eq!(old.open(&ctx("t"), &after), Err(OpenError::UnknownKey(2)));
        for (bad, why) in [
            ("", "no key"),
            ("1 00\n", "not 32 bytes"),
            ("x 0001\n", "not a number"),
            (&format!("{ONE}{ONE}"), "twice"),
            ("1\n", "one field"),
        ] {
            let e = Keyring::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn keys_are_added_with_the_next_id_to_a_private_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("pos.keys");
        assert_eq!(add_key(&path), Ok(1));
        assert_eq!(add_key(&path), Ok(2));
        let ring = Keyring::load(&path).expect("loads");
        assert_eq!(ring.current_id(), 2);
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
