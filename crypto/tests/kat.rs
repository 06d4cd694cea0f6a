//! Known-answer tests for `vpn-crypto`.
//!
//! Every expected value below comes from one of two places, never from running this crate:
//! * the published texts: RFC 7748 (X25519), RFC 8439 (ChaCha20-Poly1305), draft-irtf-cfrg-xchacha-03
//!   (XChaCha20-Poly1305), RFC 7693 (BLAKE2s) and the WireGuard paper (the two initial hashes);
//! * an independent computation by `tests/data/gen_vectors.py` (Python's `hashlib`, `hmac`, `base64`,
//!   `struct`, and the `cryptography` package, i.e. OpenSSL). Run it to regenerate: it prints the
//!   constants pasted here and writes `tests/data/chacha20poly1305_wg_nonce.txt`. It also re-checks the
//!   RFC vectors transcribed here against OpenSSL.
//!
//! Inputs that are not from a document are produced by [`det`], a generator that the Python script
//! implements identically.

use proptest::prelude::*;
use vpn_crypto::aead::{self, AeadError, AeadKey, TAG_LEN};
use vpn_crypto::blake2s;
use vpn_crypto::keys;
use vpn_crypto::x25519::{self, LowOrderPoint};
use vpn_crypto::xaead;
use vpn_crypto::{KeyParseError, PresharedKey, PrivateKey, PublicKey, Tai64N};

// ------------------------------------------------------------------------------------------------
// Helpers

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test vector is valid hex")
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().expect("test vector has the expected length")
}

/// `n` deterministic bytes: the low byte of successive xorshift32 states (same as `det` in
/// `tests/data/gen_vectors.py`).
fn det(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn det32(seed: u32) -> [u8; 32] {
    det(seed, 32).try_into().expect("32 bytes")
}

fn x25519_raw(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    *x25519::dh(k, u).expect("not a low-order point")
}

#[test]
fn det_matches_the_python_generator() {
    // Printed by the `det` of gen_vectors.py: det(1, 8) and det(0, 4).
    assert_eq!(hex::encode(det(1, 8)), "7a3d7dfcd4c493bb");
    assert_eq!(hex::encode(det(0, 4)), "2101c54f");
}

// ------------------------------------------------------------------------------------------------
// X25519: RFC 7748

/// RFC 7748 §5.2, first single-shot vector.
#[test]
fn rfc7748_5_2_vector_1() {
    let k = arr("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    let u = arr("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    let out = "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552";
    assert_eq!(hex::encode(x25519_raw(&k, &u)), out);
}

/// RFC 7748 §5.2, second single-shot vector. Its input u-coordinate has the top bit set, which
/// X25519 must ignore.
#[test]
fn rfc7748_5_2_vector_2() {
    let k = arr("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
    let u = arr("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493");
    let out = "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957";
    assert_eq!(hex::encode(x25519_raw(&k, &u)), out);
}

/// The iterated test of RFC 7748 §5.2: k = u = 9, then (k, u) <- (X25519(k, u), k).
fn rfc7748_iterate(iterations: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    for _ in 0..iterations {
        let next = x25519_raw(&k, &u);
        u = k;
        k = next;
    }
    k
}

#[test]
fn rfc7748_5_2_iterated_1_and_1000() {
    assert_eq!(hex::encode(rfc7748_iterate(1)), "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
    assert_eq!(hex::encode(rfc7748_iterate(1000)), "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
}

const ALICE_PRIVATE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_PRIVATE: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const ALICE_BOB_SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

/// RFC 7748 §6.1.
#[test]
fn rfc7748_6_1_diffie_hellman() {
    let (a, b) = (arr(ALICE_PRIVATE), arr(BOB_PRIVATE));
    assert_eq!(hex::encode(x25519::public(&a)), ALICE_PUBLIC);
    assert_eq!(hex::encode(x25519::public(&b)), BOB_PUBLIC);
    assert_eq!(hex::encode(*x25519::dh(&a, &arr(BOB_PUBLIC)).unwrap()), ALICE_BOB_SHARED);
    assert_eq!(hex::encode(*x25519::dh(&b, &arr(ALICE_PUBLIC)).unwrap()), ALICE_BOB_SHARED);

    // The same through the key newtypes (which store the clamped scalar).
    let alice = PrivateKey::from_bytes(a);
    assert_eq!(hex::encode(alice.public_key().as_bytes()), ALICE_PUBLIC);
    assert_eq!(hex::encode(PrivateKey::from_bytes(b).public_key().as_bytes()), BOB_PUBLIC);
    assert_eq!(hex::encode(*x25519::dh(alice.as_bytes(), &arr(BOB_PUBLIC)).unwrap()), ALICE_BOB_SHARED);
}

/// RFC 7748 §5: the most significant bit of a u-coordinate is masked (checked against OpenSSL
/// in gen_vectors.py).
#[test]
fn x25519_ignores_the_top_bit_of_u() {
    let mut alice_pub: [u8; 32] = arr(ALICE_PUBLIC);
    alice_pub[31] |= 0x80;
    assert_eq!(hex::encode(*x25519::dh(&arr(BOB_PRIVATE), &alice_pub).unwrap()), ALICE_BOB_SHARED);
}

/// u-coordinates of small order, canonical and not, for which X25519 yields all zeros; OpenSSL
/// refuses each of them (gen_vectors.py) and so must `dh`.
const LOW_ORDER_POINTS: [&str; 14] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
];

#[test]
fn x25519_rejects_every_low_order_point() {
    let scalar = det32(4);
    assert_eq!(hex::encode(scalar), "45b34821f5a45d92b92fbe370c210f0e88341256752bad1300726d181a1a155b");
    for p in LOW_ORDER_POINTS {
        assert_eq!(x25519::dh(&scalar, &arr(p)), Err(LowOrderPoint), "u = {p}");
        assert_eq!(x25519::dh(&arr(ALICE_PRIVATE), &arr(p)), Err(LowOrderPoint), "u = {p}");
    }
}

// ------------------------------------------------------------------------------------------------
// ChaCha20-Poly1305: RFC 8439 Appendix A.5 and OpenSSL-computed vectors

const A5_KEY: &str = "1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0";
/// The A.5 nonce is 00000000 0102030405060708: four zero bytes then the little-endian counter.
const A5_COUNTER: u64 = 0x0807_0605_0403_0201;
const A5_AAD: &str = "f33388860000000000004e91";
const A5_CIPHERTEXT: &str = concat!(
    "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2",
    "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf",
    "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855",
    "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4",
    "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e",
    "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a",
    "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10",
    "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29",
    "a6ad5cb4022b02709b",
);
const A5_TAG: &str = "eead9d67890cbb22392336fea1851f38";
const A5_PLAINTEXT: &str = concat!(
    "496e7465726e65742d4472616674732061726520647261667420646f63756d65",
    "6e74732076616c696420666f722061206d6178696d756d206f6620736978206d",
    "6f6e74687320616e64206d617920626520757064617465642c207265706c6163",
    "65642c206f72206f62736f6c65746564206279206f7468657220646f63756d65",
    "6e747320617420616e792074696d652e20497420697320696e617070726f7072",
    "6961746520746f2075736520496e7465726e65742d4472616674732061732072",
    "65666572656e6365206d6174657269616c206f7220746f206369746520746865",
    "6d206f74686572207468616e206173202fe2809c776f726b20696e2070726f67",
    "726573732e2fe2809d",
);

fn a5_sealed() -> Vec<u8> {
    let mut v = unhex(A5_CIPHERTEXT);
    v.extend(unhex(A5_TAG));
    v
}

#[test]
fn rfc8439_a5_plaintext_is_the_documented_text() {
    let pt = unhex(A5_PLAINTEXT);
    assert_eq!(pt.len(), 265);
    assert!(std::str::from_utf8(&pt).unwrap().starts_with("Internet-Drafts are draft documents valid for a maximum of six months"));
}

#[test]
fn rfc8439_a5_open() {
    let key = arr(A5_KEY);
    let sealed = a5_sealed();
    let mut out = vec![0u8; sealed.len() - TAG_LEN];
    aead::open(&key, A5_COUNTER, &unhex(A5_AAD), &sealed, &mut out).expect("A.5 authenticates");
    assert_eq!(hex::encode(&out), A5_PLAINTEXT);

    // In place, through the reusable key.
    let mut buf = sealed.clone();
    let plain = AeadKey::new(&key).open_in_place(A5_COUNTER, &unhex(A5_AAD), &mut buf).expect("A.5 authenticates");
    assert_eq!(hex::encode(plain), A5_PLAINTEXT);
}

#[test]
fn rfc8439_a5_seal() {
    let key = arr(A5_KEY);
    let pt = unhex(A5_PLAINTEXT);
    let mut out = vec![0u8; pt.len() + TAG_LEN];
    aead::seal(&key, A5_COUNTER, &unhex(A5_AAD), &pt, &mut out);
    assert_eq!(out, a5_sealed());

    let mut buf = pt.clone();
    let tag = AeadKey::new(&key).seal_in_place(A5_COUNTER, &unhex(A5_AAD), &mut buf);
    assert_eq!(hex::encode(&buf), A5_CIPHERTEXT);
    assert_eq!(hex::encode(tag), A5_TAG);
}

/// Every single-bit change of the ciphertext, the tag or the associated data is refused, as are
/// neighbouring counters and the counter read with the wrong byte order.
#[test]
fn rfc8439_a5_tampering_fails() {
    let key = arr(A5_KEY);
    let aad = unhex(A5_AAD);
    let sealed = a5_sealed();
    let mut out = vec![0u8; sealed.len() - TAG_LEN];
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(aead::open(&key, A5_COUNTER, &aad, &bad, &mut out), Err(AeadError), "ciphertext bit {bit}");
    }
    for bit in 0..aad.len() * 8 {
        let mut bad = aad.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(aead::open(&key, A5_COUNTER, &bad, &sealed, &mut out), Err(AeadError), "aad bit {bit}");
    }
    for counter in [A5_COUNTER - 1, A5_COUNTER + 1, A5_COUNTER.swap_bytes(), 0, u64::MAX] {
        assert_eq!(aead::open(&key, counter, &aad, &sealed, &mut out), Err(AeadError), "counter {counter:#x}");
    }
    let mut bad_key = key;
    bad_key[31] ^= 0x80;
    assert_eq!(aead::open(&bad_key, A5_COUNTER, &aad, &sealed, &mut out), Err(AeadError));
    // Truncated (the tag cut short) and too short for any tag.
    let short = out.len() - 1;
    assert_eq!(aead::open(&key, A5_COUNTER, &aad, &sealed[..sealed.len() - 1], &mut out[..short]), Err(AeadError));
    assert_eq!(aead::open(&key, A5_COUNTER, &aad, &sealed[..TAG_LEN - 1], &mut []), Err(AeadError));
    // The wrong output length is refused rather than truncated.
    assert_eq!(aead::open(&key, A5_COUNTER, &aad, &sealed, &mut out[..short]), Err(AeadError));
}

struct WgNonceVector {
    counter: u64,
    key: [u8; 32],
    aad: Vec<u8>,
    plaintext: Vec<u8>,
    sealed: Vec<u8>,
}

/// Vectors computed by OpenSSL with nonce = 00000000 || LE64(counter); see gen_vectors.py.
fn wg_nonce_vectors() -> Vec<WgNonceVector> {
    let field = |s: &str| if s == "-" { Vec::new() } else { unhex(s) };
    let v: Vec<WgNonceVector> = include_str!("data/chacha20poly1305_wg_nonce.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "malformed vector line");
            WgNonceVector {
                counter: u64::from_str_radix(f[0], 16).expect("hex counter"),
                key: field(f[1]).try_into().expect("32-byte key"),
                aad: field(f[2]),
                plaintext: field(f[3]),
                sealed: field(f[4]),
            }
        })
        .collect();
    assert_eq!(v.len(), 5);
    v
}

#[test]
fn chacha20poly1305_wg_nonce_vectors() {
    let vectors = wg_nonce_vectors();
    // The inputs are the det() streams the Python script used.
    for (i, v) in (0u32..).zip(&vectors) {
        assert_eq!(v.key.to_vec(), det(500 + i, 32));
        assert_eq!(v.aad, det(600 + i, v.aad.len()));
        assert_eq!(v.plaintext, det(700 + i, v.plaintext.len()));
    }
    assert_eq!(vectors.iter().map(|v| v.counter).collect::<Vec<_>>(), [0, 1, 1 << 32, 0x0102_0304_0506_0708, u64::MAX]);
    assert_eq!(vectors[3].plaintext.len(), 1420);

    for v in &vectors {
        let mut sealed = vec![0u8; v.plaintext.len() + TAG_LEN];
        aead::seal(&v.key, v.counter, &v.aad, &v.plaintext, &mut sealed);
        assert_eq!(sealed, v.sealed, "seal, counter {:#x}", v.counter);

        let mut out = vec![0u8; v.plaintext.len()];
        aead::open(&v.key, v.counter, &v.aad, &v.sealed, &mut out).expect("OpenSSL vector authenticates");
        assert_eq!(out, v.plaintext, "open, counter {:#x}", v.counter);

        let mut bad = v.sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert_eq!(aead::open(&v.key, v.counter, &v.aad, &bad, &mut out), Err(AeadError));
        assert_eq!(aead::open(&v.key, v.counter ^ 1, &v.aad, &v.sealed, &mut out), Err(AeadError));
    }
}

// ------------------------------------------------------------------------------------------------
// XChaCha20-Poly1305: draft-irtf-cfrg-xchacha-03 §A.3.1

const XC_KEY: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
const XC_NONCE: &str = "404142434445464748494a4b4c4d4e4f5051525354555657";
const XC_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
const XC_PLAINTEXT: &[u8] =
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
const XC_CIPHERTEXT: &str = concat!(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb",
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452",
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9",
    "21f9664c97637da9768812f615c68b13b52e",
);
const XC_TAG: &str = "c0875924c1c7987947deafd8780acf49";

#[test]
fn xchacha_draft_a3_1_seal_and_open() {
    let (key, nonce, aad) = (arr(XC_KEY), arr(XC_NONCE), unhex(XC_AAD));
    let mut sealed = vec![0u8; XC_PLAINTEXT.len() + TAG_LEN];
    xaead::seal(&key, &nonce, &aad, XC_PLAINTEXT, &mut sealed);
    assert_eq!(hex::encode(&sealed[..XC_PLAINTEXT.len()]), XC_CIPHERTEXT);
    assert_eq!(hex::encode(&sealed[XC_PLAINTEXT.len()..]), XC_TAG);

    let mut expected = unhex(XC_CIPHERTEXT);
    expected.extend(unhex(XC_TAG));
    let mut out = vec![0u8; XC_PLAINTEXT.len()];
    xaead::open(&key, &nonce, &aad, &expected, &mut out).expect("draft vector authenticates");
    assert_eq!(out, XC_PLAINTEXT);
}

#[test]
fn xchacha_draft_a3_1_tampering_fails_and_zeroes_output() {
    let (key, nonce, aad) = (arr::<32>(XC_KEY), arr::<24>(XC_NONCE), unhex(XC_AAD));
    let mut sealed = unhex(XC_CIPHERTEXT);
    sealed.extend(unhex(XC_TAG));
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut out = vec![0xAAu8; XC_PLAINTEXT.len()];
        assert_eq!(xaead::open(&key, &nonce, &aad, &bad, &mut out), Err(AeadError), "bit {bit}");
        assert!(out.iter().all(|&b| b == 0), "no partial plaintext after failure (bit {bit})");
    }
    let mut out = vec![0u8; XC_PLAINTEXT.len()];
    for i in 0..24 {
        let mut bad_nonce = nonce;
        bad_nonce[i] ^= 0x01;
        assert_eq!(xaead::open(&key, &bad_nonce, &aad, &sealed, &mut out), Err(AeadError), "nonce byte {i}");
    }
    assert_eq!(xaead::open(&key, &nonce, b"", &sealed, &mut out), Err(AeadError));
    assert_eq!(xaead::open(&key, &nonce, &aad, &sealed[..TAG_LEN - 1], &mut []), Err(AeadError));
}

// ------------------------------------------------------------------------------------------------
// BLAKE2s: RFC 7693, the WireGuard initial chaining key and hash, and Python-computed vectors

/// RFC 7693 Appendix B: BLAKE2s-256("abc").
#[test]
fn rfc7693_appendix_b() {
    assert_eq!(hex::encode(blake2s::hash(&[b"abc"])), "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
    assert_eq!(hex::encode(blake2s::hash(&[b"a", b"", b"bc"])), "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
}

#[test]
fn blake2s_hash_python_vectors() {
    assert_eq!(hex::encode(blake2s::hash(&[])), "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9");
    assert_eq!(hex::encode(blake2s::hash(&[b""])), "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9");
    let msg = det(1, 1000);
    let expected = "131e1d0f6869085ade1a2e5736110e733cd00d469f20f81349db360efec47f7f";
    assert_eq!(hex::encode(blake2s::hash(&[&msg])), expected);
    // Split at block boundaries and off them.
    assert_eq!(hex::encode(blake2s::hash(&[&msg[..64], &msg[64..129], &msg[129..]])), expected);
}

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const INITIAL_CHAINING_KEY: &str = "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36";
const INITIAL_HASH: &str = "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3";

#[test]
fn wireguard_initial_chaining_key_and_hash() {
    let ci = blake2s::hash(&[CONSTRUCTION]);
    assert_eq!(hex::encode(ci), INITIAL_CHAINING_KEY);
    assert_eq!(hex::encode(blake2s::hash(&[&ci, IDENTIFIER])), INITIAL_HASH);
}

/// Keyed BLAKE2s-128: (key length, message length, expected); key = det(100 + len), message =
/// det(200 + len).
const MAC_VECTORS: [(usize, usize, &str); 9] = [
    (32, 0, "a7cc0af6c13890866116b7b790a808f9"),
    (32, 1, "ed2cc538919f5321a92674c26c9d6907"),
    (32, 64, "c8e626625ba8413f33fe8164d97aae37"),
    (32, 65, "eb9ab7fbceab2353017f41acbada6ffe"),
    (32, 148, "1f01e0d896700c7a604df1bc24cbb4cc"),
    (16, 0, "a85eab18920c026189c38ae1a7ccaf1b"),
    (16, 64, "47c1ca26a545bb81b2a503febba1b8ed"),
    (16, 200, "532efc84042fb336a28475a5769c5ed0"),
    (1, 3, "7aca8c4e71d4303ced58ae133fd28b3f"),
];

#[test]
fn keyed_blake2s_128_python_vectors() {
    for (klen, mlen, expected) in MAC_VECTORS {
        let key = det(100 + klen as u32, klen);
        let msg = det(200 + mlen as u32, mlen);
        assert_eq!(hex::encode(blake2s::mac(&key, &[&msg])), expected, "key {klen} msg {mlen}");
        let half = mlen / 2;
        assert_eq!(hex::encode(blake2s::mac(&key, &[&msg[..half], &msg[half..]])), expected, "split, key {klen} msg {mlen}");
    }
}

/// HMAC-BLAKE2s with key det(2, 32): (message length, expected); message = det(300 + len).
const HMAC_VECTORS: [(usize, &str); 7] = [
    (0, "a17ed7efccf38938a663d7647343280b81fda08260476383175456bb26267e3e"),
    (1, "988271d932cd5a7a2d02d9badc94a983bed87e989f4265a070be05c75db2a62c"),
    (32, "f768e46a55496fdffbe0d0892c0a573fb71212335e4096415b0aee2c3de7cd5d"),
    (63, "8bb9de2b4be45b79a7611fd322e1cab105f9137fca935e878e8d196d2ef11d57"),
    (64, "4f724f694056a83ca765c323d351a72599218f15e4158b951ead8a92cf2170be"),
    (65, "0d180b03531dca979b3d8576b54d24b608aac73c16d52216bd84075c4d4b72e0"),
    (200, "1c42a9700f616617423f4e11e93647c34d551702e3673de0ffe585355ab26e97"),
];

#[test]
fn hmac_blake2s_python_vectors() {
    let key = det32(2);
    for (mlen, expected) in HMAC_VECTORS {
        let msg = det(300 + mlen as u32, mlen);
        assert_eq!(hex::encode(blake2s::hmac(&key, &[&msg])), expected, "msg {mlen}");
        let third = mlen / 3;
        assert_eq!(hex::encode(blake2s::hmac(&key, &[&msg[..third], &msg[third..]])), expected, "split, msg {mlen}");
    }
}

/// KDF with chaining key det(3, 32): (input length, o1, o2, o3); input = det(400 + len).
const KDF_VECTORS: [(usize, &str, &str, &str); 4] = [
    (
        0,
        "f654d7e84d60367338befd8cb00bdd9c6c194ed7e38b7376d349bb8dfd3b155b",
        "8b3d4eb088a2b2e2ace44041691def22205d0b0a7b0a554da4f8e53777762581",
        "6bd52444026447507e5edf89608952ccdcb7ba5dd9b469bd6e1dbc2135748c36",
    ),
    (
        1,
        "82e868fa89716df09cf1987a03fc5e9346dc707eb4237fde2fd7bcb7dab87537",
        "cd90063c9648c845836b94f59443c0dad507d8f8de5d962865dffaa19c62696b",
        "b8f5fab142714de0301e4174d005f75d0fd5bf3cf2bffb738f42308aa6eee2a9",
    ),
    (
        32,
        "456408033aef77e5aeface3a042989a3828d93395c4f78efc4cf8fa8fb039a5c",
        "44925c8909d0254c1521681f44360fcfc916cef3ccaa625c2c30e9a1c392b67e",
        "71a2ba6db9f10d371424bc1935f139b3251dd9efba86ce7bb98f7c9bc30c1210",
    ),
    (
        100,
        "824ac45026d057e456fe96dca84399b0ec95a1d832b00f4cd3d787304b192e24",
        "06f780f5732095d9834f1cbefaf95b278cf3fdcafcc81ed7ecf7784a5bc1efc1",
        "ea7856a4893fc62de6b0273da93c02c4aa1be82146996fce76a1eb0c312620b6",
    ),
];

#[test]
fn kdf_chain_python_vectors() {
    let ck = det32(3);
    for (ilen, o1, o2, o3) in KDF_VECTORS {
        let input = det(400 + ilen as u32, ilen);
        assert_eq!(hex::encode(*blake2s::kdf1(&ck, &input)), o1, "kdf1, input {ilen}");
        let (a, b) = blake2s::kdf2(&ck, &input);
        assert_eq!((hex::encode(*a), hex::encode(*b)), (o1.to_owned(), o2.to_owned()), "kdf2, input {ilen}");
        let (a, b, c) = blake2s::kdf3(&ck, &input);
        assert_eq!(
            (hex::encode(*a), hex::encode(*b), hex::encode(*c)),
            (o1.to_owned(), o2.to_owned(), o3.to_owned()),
            "kdf3, input {ilen}"
        );
    }
}

/// The first KDF of a handshake initiation: C = KDF1(Ci, E_pub), here with RFC 7748 Alice's
/// public key as the ephemeral.
#[test]
fn kdf1_from_initial_chaining_key() {
    let ci = arr(INITIAL_CHAINING_KEY);
    let expected = "354bb2ffe6e5ab22a00e1131aa1cc55ccaa5a90624d163853dc2da76da62ac92";
    assert_eq!(hex::encode(*blake2s::kdf1(&ci, &unhex(ALICE_PUBLIC))), expected);
}

// ------------------------------------------------------------------------------------------------
// TAI64N

/// (UNIX seconds, nanoseconds, expected label) from struct.pack(">QI", 2^62 + 10 + s, ns & ~(2^24 - 1)).
const TAI64N_VECTORS: [(u64, u32, &str); 6] = [
    (0, 0, "400000000000000a00000000"),
    (0, 16_777_215, "400000000000000a00000000"),
    (0, 16_777_216, "400000000000000a01000000"),
    (1_700_000_000, 999_999_999, "400000006553f10a3b000000"),
    (1_700_000_000, 123_456_789, "400000006553f10a07000000"),
    (1_099_511_627_776, 500_000_000, "400001000000000a1d000000"),
];

#[test]
fn tai64n_exact_encodings_and_whitening() {
    for (secs, nanos, expected) in TAI64N_VECTORS {
        let label = Tai64N::from_unix(std::time::Duration::new(secs, nanos));
        assert_eq!(hex::encode(label.0), expected, "{secs}.{nanos:09}");
        // Decoding gives back the seconds and the whitened nanoseconds written in the label.
        let whitened = u32::from_be_bytes(arr::<12>(expected)[8..].try_into().unwrap());
        assert_eq!(label.to_unix(), Some(std::time::Duration::new(secs, whitened)));
    }
}

#[test]
fn tai64n_order_follows_time_slots() {
    let at = |s: u64, ns: u32| Tai64N::from_unix(std::time::Duration::new(s, ns));
    assert!(Tai64N::ZERO < at(0, 0));
    // One whitening slot is 2^24 ns: the last nanosecond of a slot and the first of the next differ.
    assert_eq!(at(7, 0), at(7, 16_777_215));
    assert!(at(7, 16_777_215) < at(7, 16_777_216));
    assert!(at(7, 999_999_999) < at(8, 0));
    assert_eq!(Tai64N(arr("3fffffffffffffff00000000")).to_unix(), None, "before the UNIX epoch");
}

// ------------------------------------------------------------------------------------------------
// Keys

/// (key, Python base64.b64encode(key), clamped as a private key).
const BASE64_VECTORS: [(&str, &str, &str); 6] = [
    (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "0000000000000000000000000000000000000000000000000000000000000040",
    ),
    (
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "//////////////////////////////////////////8=",
        "f8ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
    (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e5f",
    ),
    (
        "2a790c56c0059a47021b1757c203765cceb6baaefd5ee1a3b251d45748cf7817",
        "KnkMVsAFmkcCGxdXwgN2XM62uq79XuGjslHUV0jPeBc=",
        "28790c56c0059a47021b1757c203765cceb6baaefd5ee1a3b251d45748cf7857",
    ),
    (
        "cbb295508e6adf10ecd2afd2c41a76174f3ccf82ce74ad1e94e5e061716299b7",
        "y7KVUI5q3xDs0q/SxBp2F088z4LOdK0elOXgYXFimbc=",
        "c8b295508e6adf10ecd2afd2c41a76174f3ccf82ce74ad1e94e5e06171629977",
    ),
    (
        "e807f03509282fbc9f5fd247c2abf44525387c55e85de56e9fbae01e07d18452",
        "6AfwNQkoL7yfX9JHwqv0RSU4fFXoXeVun7rgHgfRhFI=",
        "e807f03509282fbc9f5fd247c2abf44525387c55e85de56e9fbae01e07d18452",
    ),
];

#[test]
fn base64_matches_python() {
    for (i, (hex_key, b64, clamped)) in BASE64_VECTORS.into_iter().enumerate() {
        let key: [u8; 32] = arr(hex_key);
        if i >= 3 {
            assert_eq!(key.to_vec(), det(8 + i as u32, 32), "det(11..13)");
        }
        assert_eq!(keys::to_base64(&key), b64);
        assert_eq!(keys::from_base64(b64), Ok(key));
        assert_eq!(keys::to_hex(&key), hex_key);
        assert_eq!(keys::from_hex(hex_key), Ok(key));
        assert_eq!(keys::from_hex(&hex_key.to_uppercase()), Ok(key));

        let public = PublicKey::from_base64(b64).unwrap();
        assert_eq!(public.as_bytes(), &key);
        assert_eq!(public.to_base64(), b64);
        assert_eq!(public.to_string(), b64);

        let psk = PresharedKey::from_base64(b64).unwrap();
        assert_eq!(psk.as_bytes(), &key);
        assert_eq!(psk.to_base64(), b64);

        let private = PrivateKey::from_base64(b64).unwrap();
        assert_eq!(hex::encode(private.as_bytes()), clamped);
        assert_eq!(hex::encode(PrivateKey::from_bytes(key).as_bytes()), clamped);
    }
}

/// The 43rd character of these carries non-zero spare bits; Python's lenient decoder maps each to
/// the same key as its canonical form, `wg` refuses them, and so must we.
const NONCANONICAL_BASE64: [&str; 9] = [
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAC=",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAD=",
    "//////////////////////////////////////////9=",
    "//////////////////////////////////////////+=",
    "///////////////////////////////////////////=",
    "KnkMVsAFmkcCGxdXwgN2XM62uq79XuGjslHUV0jPeBd=",
    "KnkMVsAFmkcCGxdXwgN2XM62uq79XuGjslHUV0jPeBe=",
    "KnkMVsAFmkcCGxdXwgN2XM62uq79XuGjslHUV0jPeBf=",
];

#[test]
fn base64_rejects_noncanonical_spare_bits() {
    for s in NONCANONICAL_BASE64 {
        assert_eq!(keys::from_base64(s), Err(KeyParseError::Encoding), "{s}");
        assert!(PublicKey::from_base64(s).is_err(), "{s}");
        assert!(PrivateKey::from_base64(s).is_err(), "{s}");
        assert!(PresharedKey::from_base64(s).is_err(), "{s}");
    }
}

#[test]
fn base64_rejects_malformed_input() {
    let good = "KnkMVsAFmkcCGxdXwgN2XM62uq79XuGjslHUV0jPeBc=";
    assert!(keys::from_base64(good).is_ok());
    let encoding = Err(KeyParseError::Encoding);
    // Lengths.
    assert_eq!(keys::from_base64(""), Err(KeyParseError::Length { expected: 44, got: 0 }));
    assert_eq!(keys::from_base64(&good[..43]), Err(KeyParseError::Length { expected: 44, got: 43 }));
    assert_eq!(keys::from_base64(&format!("{good}=")), Err(KeyParseError::Length { expected: 44, got: 45 }));
    assert_eq!(keys::from_base64(&format!("{good}\n")), Err(KeyParseError::Length { expected: 44, got: 45 }));
    // Padding: missing, or "==" (which would mean only 31 bytes).
    assert_eq!(keys::from_base64(&format!("{}c", &good[..43])), encoding);
    assert_eq!(keys::from_base64(&format!("{}==", &good[..42])), encoding);
    // The URL-safe alphabet, whitespace, other ASCII, and a NUL in place of one character.
    for bad in ['-', '_', ' ', '.', '\0', '=', '~'] {
        for pos in [0, 21, 41, 42] {
            let mut s: Vec<char> = good.chars().collect();
            s[pos] = bad;
            let s: String = s.into_iter().collect();
            assert_eq!(keys::from_base64(&s), encoding, "{bad:?} at {pos}");
        }
    }
    // A non-ASCII character (two bytes in UTF-8: the length is right, the alphabet is not).
    assert!(keys::from_base64(&format!("é{}", &good[2..])).is_err());
    // Hex: wrong length, and non-hex digits.
    assert_eq!(keys::from_hex(&"0".repeat(63)), Err(KeyParseError::Length { expected: 64, got: 63 }));
    assert_eq!(keys::from_hex(&format!("{}g", "0".repeat(63))), encoding);
    assert_eq!(keys::from_hex(&format!("+1{}", "0".repeat(62))), encoding);
}

#[test]
fn parse_errors_do_not_echo_the_input() {
    let secret = "KnkMVsAFmkcCGxdXwgN2XM62uq79XuGjslHUV0jPeBd=";
    let err = PrivateKey::from_base64(secret).unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("KnkMVsAF"), "{text}");
    }
    let err = keys::from_hex(&format!("{}zz", "ab".repeat(31))).unwrap_err();
    assert!(!err.to_string().contains("abab"));
}

/// Every way the bytes could leak through a formatter: hex in both cases, standard and URL-safe
/// base64, and the decimal form a derived Debug of an array would print.
fn leaked_forms(key: &[u8; 32]) -> Vec<String> {
    let b64 = keys::to_base64(key);
    vec![
        hex::encode(key),
        hex::encode_upper(key),
        hex::encode(&key[..8]),
        b64[..16].to_owned(),
        b64.replace('+', "-").replace('/', "_")[..16].to_owned(),
        format!("{:?}", &key[..4]).trim_end_matches(']').to_owned(),
        format!("{:?}", &key[..]),
    ]
}

#[test]
fn secret_debug_output_never_contains_the_key() {
    // Bytes whose clamped form equals the input (so the stored bytes are exactly these).
    let raw: [u8; 32] = arr("e807f03509282fbc9f5fd247c2abf44525387c55e85de56e9fbae01e07d18452");
    let private = PrivateKey::from_bytes(raw);
    assert_eq!(private.as_bytes(), &raw);
    let psk = PresharedKey::from_bytes(raw);
    for text in
        [format!("{private:?}"), format!("{private:#?}"), format!("{psk:?}"), format!("{psk:#?}"), format!("{:?}", AeadKey::new(&raw))]
    {
        for leak in leaked_forms(&raw) {
            assert!(!text.contains(&leak), "{text:?} contains {leak:?}");
        }
        assert!(text.contains("redacted"), "{text}");
    }
    // The public key is not secret and is shown in base64.
    let public = private.public_key();
    assert!(format!("{public:?}").contains(&public.to_base64()));
}

// ------------------------------------------------------------------------------------------------
// Properties of the WireGuard AEAD

fn config() -> ProptestConfig {
    // No regression files: a failure prints its minimal input, and this suite writes nothing.
    ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_seal_open_round_trip(
        key in any::<[u8; 32]>(),
        counter in any::<u64>(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut sealed = vec![0u8; plaintext.len() + TAG_LEN];
        aead::seal(&key, counter, &aad, &plaintext, &mut sealed);

        let mut out = vec![0u8; plaintext.len()];
        prop_assert_eq!(aead::open(&key, counter, &aad, &sealed, &mut out), Ok(()));
        prop_assert_eq!(&out, &plaintext);

        // The reusable key agrees with the one-shot functions.
        let k = AeadKey::new(&key);
        let mut buf = plaintext.clone();
        let tag = k.seal_in_place(counter, &aad, &mut buf);
        prop_assert_eq!(&buf[..], &sealed[..plaintext.len()]);
        prop_assert_eq!(&tag[..], &sealed[plaintext.len()..]);
        buf.extend_from_slice(&tag);
        prop_assert_eq!(k.open_in_place(counter, &aad, &mut buf).map(|p| p.to_vec()), Ok(plaintext));
    }

    #[test]
    fn prop_any_flipped_bit_fails(
        key in any::<[u8; 32]>(),
        counter in any::<u64>(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2000),
        which in any::<proptest::sample::Index>(),
    ) {
        let mut sealed = vec![0u8; plaintext.len() + TAG_LEN];
        aead::seal(&key, counter, &aad, &plaintext, &mut sealed);
        let mut out = vec![0u8; plaintext.len()];

        // One bit among those of the ciphertext, the tag and the associated data.
        let bits = (sealed.len() + aad.len()) * 8;
        let bit = which.index(bits);
        let (mut bad_sealed, mut bad_aad) = (sealed.clone(), aad.clone());
        if bit < sealed.len() * 8 {
            bad_sealed[bit / 8] ^= 1 << (bit % 8);
        } else {
            let b = bit - sealed.len() * 8;
            bad_aad[b / 8] ^= 1 << (b % 8);
        }
        prop_assert_eq!(aead::open(&key, counter, &bad_aad, &bad_sealed, &mut out), Err(AeadError));

        // A bit of the counter or of the key.
        let cbit = which.index(64);
        prop_assert_eq!(aead::open(&key, counter ^ (1 << cbit), &aad, &sealed, &mut out), Err(AeadError));
        let kbit = which.index(256);
        let mut bad_key = key;
        bad_key[kbit / 8] ^= 1 << (kbit % 8);
        prop_assert_eq!(aead::open(&bad_key, counter, &aad, &sealed, &mut out), Err(AeadError));
    }
}
