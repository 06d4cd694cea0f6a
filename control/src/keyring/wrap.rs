//! Wrapping the data key under a passphrase, and the wrapped key's one-line text form:
//!
//! ```text
//! vpnkey1$argon2id$m=19456,t=2,p=1$<salt>$<check>$<sealed key>
//! ```
//!
//! Argon2id(passphrase, 16-byte random salt) gives 48 bytes: the first 32 are the key-encryption
//! key (KEK), the last 16 a check value stored in the clear. The data key is sealed under the KEK
//! with XChaCha20-Poly1305 and a random 24-byte nonce (`<sealed key>` is the base64 of nonce,
//! ciphertext and tag); everything before the last `$` (format version, algorithm, parameters,
//! salt, check value) is its associated data, so none of it can be changed unnoticed.
//!
//! The check value is what lets [`DataKey::unwrap`] tell a wrong passphrase
//! ([`KeyringError::WrongPassphrase`]) from a damaged key ([`KeyringError::Damaged`]). It reveals
//! no more than the AEAD tag does: testing a guess against either costs one Argon2id run.

use std::fmt;
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::CryptoRngCore;
use vpn_crypto::xaead;
use zeroize::Zeroizing;

use super::{b64, DataKey, KeyringError, Passphrase};

/// The version tag that starts every wrapped key.
pub const WRAPPED_PREFIX: &str = "vpnkey1";
const ALGORITHM: &str = "argon2id";
const SALT_LEN: usize = 16;
const CHECK_LEN: usize = 16;
const KDF_OUT_LEN: usize = 32 + CHECK_LEN;
const NONCE_LEN: usize = xaead::NONCE_LEN;
const SEALED_BYTES: usize = NONCE_LEN + 32 + xaead::TAG_LEN;
const WHAT: &str = "wrapped data key";

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes (degree of parallelism).
    pub p_cost: u32,
}

impl KdfParams {
    /// OWASP's recommended Argon2id setting (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1
    /// lane. About a few tens of milliseconds per unlock on a server.
    pub const DEFAULT: Self = Self { m_cost_kib: 19456, t_cost: 2, p_cost: 1 };

    /// For a passphrase that is itself a random 256-bit secret ([`super::Passphrase::generate`]):
    /// 1 MiB, 1 pass, 1 lane, about a millisecond. Stretching exists to slow the guessing of
    /// passphrases people choose; guessing 256 random bits is out of reach at any cost, so every
    /// `vpn` command need not pay tens of milliseconds for it. A passphrase a person supplies
    /// gets [`KdfParams::DEFAULT`].
    pub const RANDOM_PASSPHRASE: Self = Self { m_cost_kib: 1024, t_cost: 1, p_cost: 1 };

    /// The cheapest setting Argon2id allows (8 KiB, 1 pass, 1 lane). **For tests only**: it offers
    /// no protection against guessing.
    pub const TEST: Self = Self { m_cost_kib: 8, t_cost: 1, p_cost: 1 };

    /// The most memory accepted, in KiB (4 GiB), so that a crafted key file cannot make an unlock
    /// allocate without bound.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// The most passes accepted.
    pub const MAX_T_COST: u32 = 64;
    /// The most lanes accepted.
    pub const MAX_P_COST: u32 = 16;

    /// Checks the parameters against Argon2's minimums and this program's maximums.
    ///
    /// # Errors
    /// [`KeyringError::UnsupportedKdfParams`].
    pub fn validate(&self) -> Result<(), KeyringError> {
        let ok = (1..=Self::MAX_P_COST).contains(&self.p_cost)
            && (1..=Self::MAX_T_COST).contains(&self.t_cost)
            && self.m_cost_kib >= 8 * self.p_cost
            && self.m_cost_kib <= Self::MAX_M_COST_KIB;
        if ok {
            Ok(())
        } else {
            Err(KeyringError::UnsupportedKdfParams { m_cost_kib: self.m_cost_kib, t_cost: self.t_cost, p_cost: self.p_cost })
        }
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for KdfParams {
    /// The stored form, `m=19456,t=2,p=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={},t={},p={}", self.m_cost_kib, self.t_cost, self.p_cost)
    }
}

/// A decimal without sign or leading zeros, as `Display` writes it.
fn parse_canonical_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn parse_params(s: &str) -> Option<KdfParams> {
    let mut it = s.split(',');
    let m = parse_canonical_u32(it.next()?.strip_prefix("m=")?)?;
    let t = parse_canonical_u32(it.next()?.strip_prefix("t=")?)?;
    let p = parse_canonical_u32(it.next()?.strip_prefix("p=")?)?;
    it.next().is_none().then_some(KdfParams { m_cost_kib: m, t_cost: t, p_cost: p })
}

/// The data key wrapped under a passphrase: what is kept at rest. Its text form (`Display`,
/// `FromStr`) is one line; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    check: [u8; CHECK_LEN],
    sealed: [u8; SEALED_BYTES],
}

impl WrappedKey {
    /// The Argon2id parameters it was wrapped with (e.g. to re-wrap with stronger ones).
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// Everything before the sealed key: the associated data.
    fn header(&self) -> String {
        format!("{WRAPPED_PREFIX}${ALGORITHM}${}${}${}", self.params, b64::encode(&self.salt), b64::encode(&self.check))
    }
}

impl fmt::Display for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}${}", self.header(), b64::encode(&self.sealed))
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey").field("params", &self.params).finish_non_exhaustive()
    }
}

impl FromStr for WrappedKey {
    type Err = KeyringError;

    /// Parses the text form. A text cut short gives [`KeyringError::Truncated`], a later format
    /// [`KeyringError::UnsupportedVersion`], out-of-range parameters
    /// [`KeyringError::UnsupportedKdfParams`], anything else [`KeyringError::Malformed`].
    fn from_str(s: &str) -> Result<Self, KeyringError> {
        let truncated = || KeyringError::Truncated { what: WHAT, len: s.len() };
        let malformed = |reason| KeyringError::Malformed { what: WHAT, reason };
        let fields: Vec<&str> = s.split('$').collect();
        if fields[0] != WRAPPED_PREFIX {
            if fields.len() == 1 && WRAPPED_PREFIX.starts_with(fields[0]) {
                return Err(truncated());
            }
            if let Some(v) = fields[0].strip_prefix("vpnkey") {
                if !v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(KeyringError::UnsupportedVersion { what: WHAT, found: fields[0].to_owned() });
                }
            }
            return Err(malformed("it does not start with `vpnkey1$` (it is not a wrapped key)"));
        }
        if fields.len() < 6 {
            return Err(truncated());
        }
        if fields.len() > 6 {
            return Err(malformed("it has more `$`-separated fields than the format"));
        }
        if fields[1] != ALGORITHM {
            return Err(malformed("its key derivation is not argon2id"));
        }
        let params = parse_params(fields[2]).ok_or(malformed("its parameters are not of the form m=<KiB>,t=<passes>,p=<lanes>"))?;
        params.validate()?;
        let salt = b64::decode_array(fields[3]).ok_or(malformed("its salt is not 16 bytes of base64"))?;
        let check = b64::decode_array(fields[4]).ok_or(malformed("its check value is not 16 bytes of base64"))?;
        let body = fields[5];
        if body.len() < b64::encoded_len(SEALED_BYTES) {
            return Err(truncated());
        }
        let sealed = b64::decode_array(body).ok_or(malformed("its sealed key is not 72 bytes of base64"))?;
        Ok(Self { params, salt, check, sealed })
    }
}

/// Argon2id(passphrase, salt): the KEK, then the check value.
fn derive(pass: &Passphrase, salt: &[u8; SALT_LEN], params: KdfParams) -> Result<Zeroizing<[u8; KDF_OUT_LEN]>, KeyringError> {
    params.validate()?;
    let kdf_err = |e: argon2::Error| KeyringError::Kdf(e.to_string());
    let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(KDF_OUT_LEN)).map_err(kdf_err)?;
    let mut out = Zeroizing::new([0u8; KDF_OUT_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(pass.as_bytes(), salt, &mut out[..])
        .map_err(kdf_err)?;
    Ok(out)
}

/// Compares two check values in constant time.
fn check_matches(a: &[u8; CHECK_LEN], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl DataKey {
    /// Wraps this key under `pass` with Argon2id cost `params`, a fresh salt and a fresh nonce.
    ///
    /// # Errors
    /// [`KeyringError::EmptyPassphrase`], [`KeyringError::UnsupportedKdfParams`], or
    /// [`KeyringError::Kdf`] when Argon2id cannot run (e.g. it cannot allocate its memory).
    pub fn wrap(&self, pass: &Passphrase, params: KdfParams, rng: &mut dyn CryptoRngCore) -> Result<WrappedKey, KeyringError> {
        if pass.is_empty() {
            return Err(KeyringError::EmptyPassphrase { from: "given to wrap the data key".into() });
        }
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let derived = derive(pass, &salt, params)?;
        let (kek, check) = derived.split_at(32);
        let kek: &[u8; 32] = kek.try_into().expect("KEK length");
        let mut wrapped = WrappedKey { params, salt, check: check.try_into().expect("check length"), sealed: [0; SEALED_BYTES] };
        let header = wrapped.header();
        let (nonce, ciphertext) = wrapped.sealed.split_at_mut(NONCE_LEN);
        rng.fill_bytes(nonce);
        let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().expect("nonce length");
        xaead::seal(kek, nonce, header.as_bytes(), &self.key[..], ciphertext);
        Ok(wrapped)
    }

    /// Unwraps a data key with its passphrase. Costs one Argon2id run at the key's parameters.
    ///
    /// # Errors
    /// [`KeyringError::WrongPassphrase`] when the passphrase does not match (or the salt or
    /// parameters were changed), [`KeyringError::Damaged`] when it matches but the sealed key does
    /// not authenticate, [`KeyringError::Kdf`] when Argon2id cannot run.
    pub fn unwrap(wrapped: &WrappedKey, pass: &Passphrase) -> Result<DataKey, KeyringError> {
        let derived = derive(pass, &wrapped.salt, wrapped.params)?;
        let (kek, check) = derived.split_at(32);
        if !check_matches(&wrapped.check, check) {
            return Err(KeyringError::WrongPassphrase);
        }
        let kek: &[u8; 32] = kek.try_into().expect("KEK length");
        let (nonce, ciphertext) = wrapped.sealed.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("nonce length");
        let mut key = Zeroizing::new([0u8; 32]);
        xaead::open(kek, nonce, wrapped.header().as_bytes(), ciphertext, &mut key[..]).map_err(|_| KeyringError::Damaged)?;
        Ok(DataKey { key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn params_text_is_canonical() {
        assert_eq!(KdfParams::DEFAULT.to_string(), "m=19456,t=2,p=1");
        assert_eq!(parse_params("m=19456,t=2,p=1"), Some(KdfParams::DEFAULT));
        for bad in [
            "m=019456,t=2,p=1",
            "m=19456,t=2",
            "m=19456,t=2,p=1,x=1",
            "t=2,m=19456,p=1",
            "m=+1,t=2,p=1",
            "m=,t=2,p=1",
            "m=99999999999,t=1,p=1",
        ] {
            assert_eq!(parse_params(bad), None, "{bad}");
        }
    }

    #[test]
    fn params_bounds() {
        assert!(KdfParams::DEFAULT.validate().is_ok());
        assert!(KdfParams::TEST.validate().is_ok());
        for bad in [
            KdfParams { m_cost_kib: 7, t_cost: 1, p_cost: 1 },
            KdfParams { m_cost_kib: 8, t_cost: 0, p_cost: 1 },
            KdfParams { m_cost_kib: 8, t_cost: 1, p_cost: 0 },
            KdfParams { m_cost_kib: 8, t_cost: 1, p_cost: 2 },
            KdfParams { m_cost_kib: KdfParams::MAX_M_COST_KIB + 1, t_cost: 1, p_cost: 1 },
            KdfParams { m_cost_kib: 8, t_cost: KdfParams::MAX_T_COST + 1, p_cost: 1 },
        ] {
            assert!(matches!(bad.validate(), Err(KeyringError::UnsupportedKdfParams { .. })), "{bad}");
        }
    }

    #[test]
    fn text_form_round_trips() {
        let k = DataKey::generate(&mut OsRng);
        let w = k.wrap(&Passphrase::new(b"pw".to_vec()), KdfParams::TEST, &mut OsRng).unwrap();
        let text = w.to_string();
        assert!(text.starts_with("vpnkey1$argon2id$m=8,t=1,p=1$"), "{text}");
        assert!(!text.contains('\n'));
        assert_eq!(text.parse::<WrappedKey>().unwrap(), w);
        assert_eq!(w.params(), KdfParams::TEST);
        assert!(!format!("{w:?}").contains(&b64::encode(&w.sealed)));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Answers from the reference implementation's command-line tool (phc-winner-argon2,
    /// `argon2 SALT -id -t T -k M -p P -l 48 -r`), which shares no code with the `argon2` crate.
    #[test]
    fn argon2id_known_answers() {
        let out = derive(&Passphrase::new(b"password".to_vec()), b"somesaltsomesalt", KdfParams::TEST).unwrap();
        assert_eq!(hex(&out[..]), "85263a6e82d0ea7daf5ac4299355d922bdbee7bca40371fa0eefd1eeb0bfeb8f0ef784460ee2b3f7653d72f3b7898870");
        let out = derive(&Passphrase::new(b"correct horse battery staple".to_vec()), b"saltsaltsaltsalt", KdfParams::DEFAULT).unwrap();
        assert_eq!(hex(&out[..]), "fb718c32fabafd10e528f80becd8b95b542cf7fda589e7743fdd783fd41931cca303e6f85788d9c374cf7a0305a6a717");
    }
}
