#!/usr/bin/env python3
"""Independent computation of the non-RFC expected values in crypto/tests/kat.rs.

Run: python3 crypto/tests/data/gen_vectors.py [--slow]   (--slow: also the 1,000,000-iteration X25519 check)
It prints Rust constants that were pasted into kat.rs, and writes chacha20poly1305_wg_nonce.txt
next to itself. Nothing here uses the vpn-crypto code.

Sources of truth:
  * BLAKE2s, keyed BLAKE2s-128, HMAC-BLAKE2s and the KDF chain: Python's hashlib/hmac.
  * base64 / hex forms of keys: Python's base64 / bytes.hex.
  * TAI64N labels: struct.pack of the definition (2^62 + 10 + s, ns rounded down to 2^24).
  * Extra ChaCha20-Poly1305 vectors and the X25519 low-order checks: the `cryptography` package
    (OpenSSL). It also re-checks the vectors transcribed from RFC 7748, RFC 8439 and RFC 7693, so
    a transcription slip in kat.rs would show up here too.
The script is deterministic: every "random" input comes from det(seed, n) below.
"""

import base64
import hashlib
import hmac
import os
import struct
import sys

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # only the hashlib/hmac/base64 parts can be regenerated then
    HAVE_CRYPTOGRAPHY = False


def det(seed: int, n: int) -> bytes:
    """n deterministic pseudo-random bytes: the low byte of successive xorshift32 states.

    kat.rs has the same three-line generator, so inputs need not be pasted, only outputs.
    """
    x = (seed * 0x9E3779B9 + 1) & 0xFFFFFFFF
    out = bytearray()
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(x & 0xFF)
    return bytes(out)


def H(data: bytes) -> bytes:
    return hashlib.blake2s(data).digest()


def MAC(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def HMAC(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def KDF(ck: bytes, inp: bytes):
    t = HMAC(ck, inp)
    o1 = HMAC(t, b"\x01")
    o2 = HMAC(t, o1 + b"\x02")
    o3 = HMAC(t, o2 + b"\x03")
    return o1, o2, o3


def rs_bytes(name: str, b: bytes) -> str:
    return f'const {name}: &str = "{b.hex()}";'


print("// ---- BLAKE2s")
# RFC 7693 Appendix B.
assert H(b"abc").hex() == "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
ci = H(CONSTRUCTION)
hi = H(ci + IDENTIFIER)
assert ci.hex() == "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36"
assert hi.hex() == "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3"
print(rs_bytes("HASH_EMPTY", H(b"")))
print(rs_bytes("HASH_1000", H(det(1, 1000))))

print("// ---- keyed BLAKE2s-128 (MAC): (key length, message length, expected)")
for klen, mlen in [(32, 0), (32, 1), (32, 64), (32, 65), (32, 148), (16, 0), (16, 64), (16, 200), (1, 3)]:
    key = det(100 + klen, klen)
    msg = det(200 + mlen, mlen)
    print(f'    ({klen}, {mlen}, "{MAC(key, msg).hex()}"),')

print("// ---- HMAC-BLAKE2s with a 32-byte key: (message length, expected)")
for mlen in [0, 1, 32, 63, 64, 65, 200]:
    key = det(2, 32)
    msg = det(300 + mlen, mlen)
    print(f'    ({mlen}, "{HMAC(key, msg).hex()}"),')

print("// ---- KDF chain: (input length, o1, o2, o3)")
for ilen in [0, 1, 32, 100]:
    ck = det(3, 32)
    inp = det(400 + ilen, ilen)
    o1, o2, o3 = KDF(ck, inp)
    print(f'    ({ilen}, "{o1.hex()}", "{o2.hex()}", "{o3.hex()}"),')
# The first two steps of a WireGuard initiation from Ci: C = KDF1(Ci, E_pub) with the RFC 7748 Alice key.
alice_pub = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
print(rs_bytes("KDF1_CI_ALICE", KDF(ci, alice_pub)[0]))

print("// ---- TAI64N: (unix secs, nanos, expected label)")
for secs, nanos in [(0, 0), (0, 16_777_215), (0, 16_777_216), (1_700_000_000, 999_999_999), (0x6553F100, 123_456_789), (2**40, 500_000_000)]:
    label = struct.pack(">QI", 2**62 + 10 + secs, nanos & ~(2**24 - 1))
    print(f'    ({secs}, {nanos}, "{label.hex()}"),')



def clamp(k: bytes) -> bytes:
    b = bytearray(k)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
print("// ---- base64 keys: (hex, base64, clamped hex as a private key)")
for k in [bytes(32), b"\xff" * 32, bytes(range(32)), det(11, 32), det(12, 32), det(13, 32)]:
    print(f'    ("{k.hex()}", "{base64.b64encode(k).decode()}", "{clamp(k).hex()}"),')

print("// ---- non-canonical base64: the 43rd character carries non-zero spare bits")
for k in [bytes(32), b"\xff" * 32, det(11, 32)]:
    good = base64.b64encode(k).decode()
    v = B64_ALPHABET.index(good[42])
    assert v & 3 == 0
    for spare in (1, 2, 3):
        bad = good[:42] + B64_ALPHABET[v | spare] + "="
        # A lenient decoder (Python's) maps it to the same key: this is the ambiguity `wg` refuses.
        assert base64.b64decode(bad) == k
        print(f'    "{bad}",')

if HAVE_CRYPTOGRAPHY:
    # Written to a data file (the 1420-byte case is too long to paste): one vector a line,
    # "counter key aad plaintext ciphertext||tag" in hex, "-" for an empty field.
    lines = ["# ChaCha20-Poly1305 with WireGuard's nonce (4 zero bytes, LE counter), computed with OpenSSL",
             "# by gen_vectors.py: counter(hex) key aad plaintext ciphertext||tag"]
    for i, (counter, alen, plen) in enumerate([(0, 0, 0), (1, 0, 1), (2**32, 16, 64), (0x0102030405060708, 0, 1420), (2**64 - 1, 32, 17)]):
        key = det(500 + i, 32)
        aad = det(600 + i, alen)
        pt = det(700 + i, plen)
        nonce = b"\x00" * 4 + struct.pack("<Q", counter)
        ct = ChaCha20Poly1305(key).encrypt(nonce, pt, aad)
        lines.append(" ".join([f"{counter:x}"] + [x.hex() or "-" for x in (key, aad, pt, ct)]))
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "chacha20poly1305_wg_nonce.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # Re-check the RFC 8439 A.5 vector as transcribed in kat.rs.
    a5_key = bytes.fromhex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
    a5_nonce = bytes.fromhex("000000000102030405060708")
    a5_aad = bytes.fromhex("f33388860000000000004e91")
    a5_pt = (
        b"Internet-Drafts are draft documents valid for a maximum of six months and may be updated, replaced, "
        b"or obsoleted by other documents at any time. It is inappropriate to use Internet-Drafts as reference "
        b"material or to cite them other than as /\xe2\x80\x9cwork in progress./\xe2\x80\x9d"
    )
    a5_ct = bytes.fromhex(
        "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb24c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b"
        "0100d4f03b7f355894cf332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c8559797a06ef4f0ef61c186324e"
        "2b3506383606907b6a7c02b0f9f6157b53c867e4b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523eaf45"
        "34d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a0bb2316053fa76991955ebd63159434ecebb4e466dae5a10"
        "73a6727627097a1049e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29a6ad5cb4022b02709b"
    )
    a5_tag = bytes.fromhex("eead9d67890cbb22392336fea1851f38")
    assert ChaCha20Poly1305(a5_key).encrypt(a5_nonce, a5_pt, a5_aad) == a5_ct + a5_tag
    assert struct.unpack("<Q", a5_nonce[4:])[0] == 0x0807060504030201

    # Re-check the RFC 7748 vectors as transcribed in kat.rs.
    def x25519(k: bytes, u: bytes) -> bytes:
        return X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(u))

    assert x25519(
        bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
        bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
    ).hex() == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    assert x25519(
        bytes.fromhex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
        bytes.fromhex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"),
    ).hex() == "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
    k = u = b"\x09" + bytes(31)
    for i in range(1000):
        k, u = x25519(k, u), k
        if i == 0:
            assert k.hex() == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"
    if "--slow" in sys.argv:  # about two minutes
        for _ in range(1000, 1_000_000):
            k, u = x25519(k, u), k
        assert k.hex() == "7c3911e0ab2586fd864497297e575e6f3bc601c0883c30df5f4dd2d24f665424"
    a = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    b = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert X25519PrivateKey.from_private_bytes(a).public_key().public_bytes_raw() == alice_pub
    assert X25519PrivateKey.from_private_bytes(b).public_key().public_bytes_raw().hex() == (
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    assert x25519(a, bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")).hex() == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )

    # Low-order u-coordinates (and their non-canonical forms): OpenSSL refuses the all-zero result.
    p = 2**255 - 19
    order8 = [
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ]
    lows = [0, 1, p - 1, p, p + 1] + [int.from_bytes(x, "little") for x in order8]
    # Non-canonical forms: v + p where that still fits in 255 bits, and every value with bit 255 set
    # (RFC 7748 §5: the top bit of a u-coordinate is ignored).
    lows += [v + p for v in lows if v + p < 2**255]
    lows += [v | (1 << 255) for v in lows]
    lows = list(dict.fromkeys(lows))
    print("// ---- low-order u-coordinates: X25519 gives all zeros (checked with OpenSSL)")
    scalar = det(4, 32)
    for v in lows:
        u = (v % 2**256).to_bytes(32, "little")
        try:
            x25519(scalar, u)
            raise AssertionError(f"OpenSSL accepted {u.hex()}")
        except ValueError:
            pass
        print(f'    "{u.hex()}",')
    print(rs_bytes("LOW_ORDER_SCALAR", scalar))

    # A public key with the top bit set is the same point with the bit cleared (RFC 7748 §5).
    hb = bytearray(alice_pub)
    hb[31] |= 0x80
    assert x25519(b, bytes(hb)) == x25519(b, alice_pub)

    # An InvalidTag check so that the import is used and the flipped-bit expectation is independent.
    bad = bytearray(a5_ct + a5_tag)
    bad[0] ^= 1
    try:
        ChaCha20Poly1305(a5_key).decrypt(a5_nonce, bytes(bad), a5_aad)
        raise AssertionError("flipped bit accepted")
    except InvalidTag:
        pass
