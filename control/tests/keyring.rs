//! The keyring (keys at rest) and secret-file reading: round trips, every way a sealed record or a
//! wrapped key can be damaged, passphrase sources and their order, file modes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use vpn_control::keyfile::{read_secret_file, KeyFileError};
use vpn_control::keyring::{
    create_passphrase_file, find_passphrase_with_env, is_sealed, DataKey, KdfParams, KeyringError, Passphrase, PassphraseSource, WrappedKey,
};

const AD_A: &str = "device AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= private-key";
const AD_B: &str = "device BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB= private-key";
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.as_bytes().to_vec())
}

/// `s` with the base64 character at `i` changed by flipping `bit` (0..6) of its 6-bit value.
fn flip_sextet(s: &str, i: usize, bit: u32) -> String {
    let mut b = s.as_bytes().to_vec();
    let v = ALPHABET.iter().position(|&c| c == b[i]).expect("a base64 character");
    b[i] = ALPHABET[v ^ (1 << bit)];
    String::from_utf8(b).unwrap()
}

/// `s` with bit `bit` (0..7) of the ASCII character at `i` flipped.
fn flip_ascii(s: &str, i: usize, bit: u32) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] ^= 1 << bit;
    String::from_utf8(b).unwrap()
}

// --- sealed records --------------------------------------------------------------------------

#[test]
fn seal_open_round_trip() {
    let key = DataKey::generate(&mut OsRng);
    let secret = [0x42u8; 32];
    let sealed = key.seal(&secret, AD_A, &mut OsRng);
    assert!(is_sealed(&sealed));
    assert!(!is_sealed(&vpn_crypto::keys::to_base64(&secret)));
    assert_eq!(*key.open(&sealed, AD_A).unwrap(), secret);
}

#[test]
fn every_flipped_bit_of_a_sealed_record_is_detected() {
    let key = DataKey::generate(&mut OsRng);
    let sealed = key.seal(&[7; 32], AD_A, &mut OsRng);
    // Every bit of nonce, ciphertext and tag: 96 characters of 6 bits each.
    for i in 3..sealed.len() {
        for bit in 0..6 {
            let bad = flip_sextet(&sealed, i, bit);
            assert!(matches!(key.open(&bad, AD_A), Err(KeyringError::Tampered { .. })), "char {i} bit {bit}");
        }
    }
    // The version prefix.
    for i in 0..3 {
        for bit in 0..7 {
            let bad = flip_ascii(&sealed, i, bit);
            let err = key.open(&bad, AD_A).unwrap_err();
            assert!(matches!(err, KeyringError::Malformed { .. } | KeyringError::UnsupportedVersion { .. }), "char {i} bit {bit}: {err:?}");
        }
    }
}

#[test]
fn a_sealed_record_cut_at_any_length_is_truncated() {
    let key = DataKey::generate(&mut OsRng);
    let sealed = key.seal(&[7; 32], AD_A, &mut OsRng);
    for n in 0..sealed.len() {
        assert!(matches!(key.open(&sealed[..n], AD_A), Err(KeyringError::Truncated { len, .. }) if len == n), "length {n}");
    }
    let longer = format!("{sealed}AAAA");
    assert!(matches!(key.open(&longer, AD_A), Err(KeyringError::Malformed { .. })));
}

#[test]
fn malformed_sealed_records() {
    let key = DataKey::generate(&mut OsRng);
    let sealed = key.seal(&[7; 32], AD_A, &mut OsRng);
    let legacy = vpn_crypto::keys::to_base64(&[7; 32]);
    assert!(matches!(key.open(&legacy, AD_A), Err(KeyringError::Malformed { .. })));
    let bad_char = format!("v1:!{}", &sealed[4..]);
    assert!(matches!(key.open(&bad_char, AD_A), Err(KeyringError::Malformed { .. })));
    let later = sealed.replacen("v1:", "v7:", 1);
    assert!(matches!(key.open(&later, AD_A), Err(KeyringError::UnsupportedVersion { .. })));
}

#[test]
fn swapped_records_do_not_open() {
    let key = DataKey::generate(&mut OsRng);
    let a = key.seal(&[1; 32], AD_A, &mut OsRng);
    let b = key.seal(&[2; 32], AD_B, &mut OsRng);
    assert!(matches!(key.open(&a, AD_B), Err(KeyringError::Tampered { .. })));
    assert!(matches!(key.open(&b, AD_A), Err(KeyringError::Tampered { .. })));
    // The same device's private key and pre-shared key are different records too.
    let psk_ad = AD_A.replace("private-key", "preshared-key");
    assert!(matches!(key.open(&a, &psk_ad), Err(KeyringError::Tampered { .. })));
}

#[test]
fn another_data_key_does_not_open() {
    let key = DataKey::generate(&mut OsRng);
    let other = DataKey::generate(&mut OsRng);
    let sealed = key.seal(&[1; 32], AD_A, &mut OsRng);
    assert!(matches!(other.open(&sealed, AD_A), Err(KeyringError::Tampered { .. })));
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let key = DataKey::generate(&mut OsRng);
    let texts: Vec<String> = (0..200).map(|_| key.seal(&[9; 32], AD_A, &mut OsRng)).collect();
    let nonces: std::collections::HashSet<&str> = texts.iter().map(|t| &t[3..35]).collect();
    assert_eq!(nonces.len(), texts.len());
    for t in &texts {
        assert_eq!(*key.open(t, AD_A).unwrap(), [9; 32]);
    }
}

// --- wrapped data key ------------------------------------------------------------------------

#[test]
fn wrap_unwrap_round_trip_with_default_params() {
    let key = DataKey::generate(&mut OsRng);
    let p = pass("correct horse battery staple");
    let wrapped = key.wrap(&p, KdfParams::DEFAULT, &mut OsRng).unwrap();
    let text = wrapped.to_string();
    assert!(text.starts_with("vpnkey1$argon2id$m=19456,t=2,p=1$"), "{text}");
    assert!(!text.contains('\n') && !text.contains(' '));
    let parsed: WrappedKey = text.parse().unwrap();
    assert_eq!(parsed.params(), KdfParams::DEFAULT);
    let unwrapped = DataKey::unwrap(&parsed, &p).unwrap();
    // Same key: what one seals, the other opens.
    let sealed = key.seal(&[3; 32], AD_A, &mut OsRng);
    assert_eq!(*unwrapped.open(&sealed, AD_A).unwrap(), [3; 32]);
}

#[test]
fn wrong_passphrase() {
    let key = DataKey::generate(&mut OsRng);
    let wrapped = key.wrap(&pass("right"), KdfParams::TEST, &mut OsRng).unwrap();
    let err = DataKey::unwrap(&wrapped, &pass("wrong")).unwrap_err();
    assert!(matches!(err, KeyringError::WrongPassphrase));
    assert!(!err.to_string().contains("wrong\""));
    assert!(matches!(DataKey::unwrap(&wrapped, &pass("")), Err(KeyringError::WrongPassphrase)));
}

#[test]
fn wrapping_refuses_an_empty_passphrase_and_bad_params() {
    let key = DataKey::generate(&mut OsRng);
    assert!(matches!(key.wrap(&pass(""), KdfParams::TEST, &mut OsRng), Err(KeyringError::EmptyPassphrase { .. })));
    let bad = KdfParams { m_cost_kib: 4, t_cost: 1, p_cost: 1 };
    assert!(matches!(key.wrap(&pass("x"), bad, &mut OsRng), Err(KeyringError::UnsupportedKdfParams { .. })));
}

#[test]
fn every_flipped_bit_of_a_wrapped_key_is_detected() {
    let key = DataKey::generate(&mut OsRng);
    let p = pass("pw");
    let text = key.wrap(&p, KdfParams::TEST, &mut OsRng).unwrap().to_string();
    let fields: Vec<&str> = text.split('$').collect();
    assert_eq!(fields.len(), 6);
    let start = |f: usize| fields[..f].iter().map(|s| s.len() + 1).sum::<usize>();
    let try_unwrap = |t: &str| t.parse::<WrappedKey>().and_then(|w| DataKey::unwrap(&w, &p));

    // Any flipped bit anywhere: never unwraps.
    for i in 0..text.len() {
        for bit in 0..7 {
            assert!(try_unwrap(&flip_ascii(&text, i, bit)).is_err(), "char {i} bit {bit}");
        }
    }
    // The sealed key (nonce, ciphertext, tag): the passphrase is right, the key is damaged.
    for i in start(5)..text.len() {
        for bit in 0..6 {
            assert!(matches!(try_unwrap(&flip_sextet(&text, i, bit)), Err(KeyringError::Damaged)), "char {i} bit {bit}");
        }
    }
    // Salt and check value (their last data character and padding aside, which give non-canonical
    // base64): reported as a wrong passphrase, since the two cannot be told apart.
    for f in [3, 4] {
        for i in start(f)..start(f) + 21 {
            for bit in 0..6 {
                assert!(
                    matches!(try_unwrap(&flip_sextet(&text, i, bit)), Err(KeyringError::WrongPassphrase)),
                    "field {f} char {i} bit {bit}"
                );
            }
        }
    }
    // Version, algorithm and separators: the text is not a wrapped key.
    for i in (0..start(2)).chain(
        fields
            .iter()
            .scan(0, |at, f| {
                *at += f.len() + 1;
                Some(*at - 1)
            })
            .take(5),
    ) {
        for bit in 0..7 {
            let err = try_unwrap(&flip_ascii(&text, i, bit)).unwrap_err();
            assert!(
                matches!(err, KeyringError::Malformed { .. } | KeyringError::UnsupportedVersion { .. } | KeyringError::Truncated { .. }),
                "char {i} bit {bit}: {err:?}"
            );
        }
    }
}

#[test]
fn changed_params_do_not_unwrap() {
    let key = DataKey::generate(&mut OsRng);
    let p = pass("pw");
    let text = key.wrap(&p, KdfParams::TEST, &mut OsRng).unwrap().to_string();
    let changed = text.replacen("t=1", "t=2", 1).parse::<WrappedKey>().unwrap();
    assert!(matches!(DataKey::unwrap(&changed, &p), Err(KeyringError::WrongPassphrase)));
    let huge = text.replacen("m=8", "m=4294967295", 1);
    assert!(matches!(huge.parse::<WrappedKey>(), Err(KeyringError::UnsupportedKdfParams { .. })));
    let non_canonical = text.replacen("m=8", "m=08", 1);
    assert!(matches!(non_canonical.parse::<WrappedKey>(), Err(KeyringError::Malformed { .. })));
}

#[test]
fn a_wrapped_key_cut_at_any_length_is_truncated() {
    let key = DataKey::generate(&mut OsRng);
    let text = key.wrap(&pass("pw"), KdfParams::TEST, &mut OsRng).unwrap().to_string();
    for n in 0..text.len() {
        assert!(matches!(text[..n].parse::<WrappedKey>(), Err(KeyringError::Truncated { .. })), "length {n}");
    }
    assert!(matches!(format!("{text}A").parse::<WrappedKey>(), Err(KeyringError::Malformed { .. })));
    assert!(matches!(format!("{text}$").parse::<WrappedKey>(), Err(KeyringError::Malformed { .. })));
    assert!(matches!(text.replacen("vpnkey1", "vpnkey2", 1).parse::<WrappedKey>(), Err(KeyringError::UnsupportedVersion { .. })));
    assert!(matches!("hello".parse::<WrappedKey>(), Err(KeyringError::Malformed { .. })));
}

#[test]
fn debug_and_errors_show_no_secret() {
    let p = pass("s3cret-passphrase");
    assert!(!format!("{p:?}").contains("s3cret"));
    assert!(format!("{p:?}").contains("[redacted]"));
    let generated = Passphrase::generate(&mut OsRng);
    assert!(!format!("{generated:?}").contains(std::str::from_utf8(generated.as_bytes()).unwrap()));
    let key = DataKey::generate(&mut OsRng);
    assert_eq!(format!("{key:?}"), "DataKey([redacted])");
    let wrapped = key.wrap(&p, KdfParams::TEST, &mut OsRng).unwrap();
    let text = wrapped.to_string();
    let debug = format!("{wrapped:?}");
    assert!(!debug.contains(text.rsplit('$').next().unwrap()), "{debug}");

    let sealed = key.seal(&[5; 32], AD_A, &mut OsRng);
    let body = &sealed[3..];
    for err in [
        key.open(&flip_sextet(&sealed, 10, 0), AD_A).unwrap_err(),
        key.open(&sealed[..50], AD_A).unwrap_err(),
        key.open(&format!("v1:{}!", &body[..95]), AD_A).unwrap_err(),
        DataKey::unwrap(&wrapped, &pass("other")).unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(!msg.contains(&body[..20]) && !msg.contains("s3cret"), "{msg}");
    }
}

// --- passphrase sources ----------------------------------------------------------------------

fn write_mode(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn env(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), v.as_os_str().to_owned())).collect();
    move |name| map.get(name).cloned()
}

fn found(r: Result<Option<(Passphrase, PassphraseSource)>, KeyringError>) -> (Vec<u8>, PassphraseSource) {
    let (p, s) = r.unwrap().expect("a passphrase");
    (p.as_bytes().to_vec(), s)
}

struct Sources {
    _dir: tempfile::TempDir,
    env_file: PathBuf,
    cred_dir: PathBuf,
    default: PathBuf,
}

fn sources() -> Sources {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env-file");
    write_mode(&env_file, b"from-env-file\n", 0o600);
    let cred_dir = dir.path().join("credentials");
    fs::create_dir(&cred_dir).unwrap();
    // systemd's own mode for a credential given to another user through an ACL.
    write_mode(&cred_dir.join("vpn-passphrase"), b"from-credential\r\n", 0o440);
    let default = dir.path().join("passphrase");
    write_mode(&default, b"from-default", 0o600);
    Sources { _dir: dir, env_file, cred_dir, default }
}

#[test]
fn sources_are_tried_in_order() {
    let s = sources();
    let all = [
        ("VPN_PASSPHRASE", Path::new("from-env")),
        ("VPN_PASSPHRASE_FILE", s.env_file.as_path()),
        ("CREDENTIALS_DIRECTORY", s.cred_dir.as_path()),
    ];
    assert_eq!(found(find_passphrase_with_env(&s.default, env(&all))), (b"from-env".to_vec(), PassphraseSource::Env));
    assert_eq!(
        found(find_passphrase_with_env(&s.default, env(&all[1..]))),
        (b"from-env-file".to_vec(), PassphraseSource::EnvFile(s.env_file.clone()))
    );
    assert_eq!(
        found(find_passphrase_with_env(&s.default, env(&all[2..]))),
        (b"from-credential".to_vec(), PassphraseSource::Credential(s.cred_dir.join("vpn-passphrase")))
    );
    assert_eq!(
        found(find_passphrase_with_env(&s.default, env(&[]))),
        (b"from-default".to_vec(), PassphraseSource::File(s.default.clone()))
    );
    fs::remove_file(&s.default).unwrap();
    assert!(find_passphrase_with_env(&s.default, env(&[])).unwrap().is_none());
}

#[test]
fn empty_variables_are_unset_and_a_credential_directory_without_ours_is_skipped() {
    let s = sources();
    let empty = Path::new("");
    let vars = [("VPN_PASSPHRASE", empty), ("VPN_PASSPHRASE_FILE", empty), ("CREDENTIALS_DIRECTORY", empty)];
    assert_eq!(found(find_passphrase_with_env(&s.default, env(&vars))).1, PassphraseSource::File(s.default.clone()));
    fs::remove_file(s.cred_dir.join("vpn-passphrase")).unwrap();
    let vars = [("CREDENTIALS_DIRECTORY", s.cred_dir.as_path())];
    assert_eq!(found(find_passphrase_with_env(&s.default, env(&vars))).1, PassphraseSource::File(s.default.clone()));
}

#[test]
fn a_named_passphrase_file_must_exist() {
    let s = sources();
    let missing = s.cred_dir.join("missing");
    let err = find_passphrase_with_env(&s.default, env(&[("VPN_PASSPHRASE_FILE", missing.as_path())])).unwrap_err();
    assert!(matches!(err, KeyringError::PassphraseFile(KeyFileError::NotFound { .. })), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
}

#[test]
fn one_trailing_newline_is_stripped_and_empty_is_refused() {
    let s = sources();
    for (content, expect) in [(&b"pw\n"[..], &b"pw"[..]), (b"pw\r\n", b"pw"), (b"pw\n\n", b"pw\n"), (b"pw", b"pw"), (b" pw ", b" pw ")] {
        write_mode(&s.default, content, 0o600);
        assert_eq!(found(find_passphrase_with_env(&s.default, env(&[]))).0, expect);
    }
    for content in [&b""[..], b"\n", b"\r\n"] {
        write_mode(&s.default, content, 0o600);
        let err = find_passphrase_with_env(&s.default, env(&[])).unwrap_err();
        assert!(matches!(err, KeyringError::EmptyPassphrase { .. }), "{err:?}");
        assert!(err.to_string().contains(&s.default.display().to_string()), "{err}");
    }
}

#[test]
fn a_passphrase_file_readable_by_others_is_refused() {
    let s = sources();
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(&s.default, fs::Permissions::from_mode(mode)).unwrap();
        let err = find_passphrase_with_env(&s.default, env(&[])).unwrap_err();
        assert!(matches!(err, KeyringError::PassphraseFile(KeyFileError::ReadableByOthers { .. })), "{mode:o}: {err:?}");
    }
    // A credential may be group-readable (systemd's ACL mask), not world-readable.
    fs::set_permissions(s.cred_dir.join("vpn-passphrase"), fs::Permissions::from_mode(0o444)).unwrap();
    let err = find_passphrase_with_env(&s.default, env(&[("CREDENTIALS_DIRECTORY", s.cred_dir.as_path())])).unwrap_err();
    assert!(matches!(err, KeyringError::PassphraseFile(KeyFileError::ReadableByOthers { .. })), "{err:?}");
}

// --- secret files ----------------------------------------------------------------------------

#[test]
fn read_secret_file_checks_the_mode_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    for mode in [0o600, 0o400, 0o700, 0o200 | 0o400] {
        write_mode(&path, b"key", mode);
        assert_eq!(&read_secret_file(&path).unwrap()[..], b"key", "{mode:o}");
    }
    for mode in [0o644, 0o640, 0o604, 0o440, 0o404] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let err = read_secret_file(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::ReadableByOthers { mode: m, .. } if m == mode), "{mode:o}: {err:?}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let msg = read_secret_file(&path).unwrap_err().to_string();
    let shown = path.display().to_string();
    assert_eq!(
        msg,
        format!("refusing to read {shown}: it holds a secret and is readable by other users (mode 0644); run `chmod 600 {shown}`")
    );
    assert!(!msg.contains("key\""));
}

#[test]
fn read_secret_file_follows_symlinks_and_checks_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let link = dir.path().join("link");
    write_mode(&target, b"key", 0o600);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(&read_secret_file(&link).unwrap()[..], b"key");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(read_secret_file(&link), Err(KeyFileError::ReadableByOthers { .. })));
    fs::remove_file(&target).unwrap();
    let err = read_secret_file(&link).unwrap_err();
    assert!(matches!(err, KeyFileError::NotFound { .. }));
    assert_eq!(err.to_string(), format!("cannot read {}: no such file", link.display()));
}

// --- creating a passphrase file --------------------------------------------------------------

#[test]
fn create_passphrase_file_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("etc-vpn");
    let path = parent.join("passphrase");
    let p = create_passphrase_file(&path, &mut OsRng).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(&parent).unwrap().permissions().mode() & 0o7777, 0o700);
    let content = fs::read(&path).unwrap();
    assert_eq!(content, [p.as_bytes(), b"\n"].concat());
    assert_eq!(p.as_bytes().len(), 44);
    // Exactly one file: no temporary left behind.
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 1);
    // What find_passphrase reads back is the passphrase returned.
    let (read, source) = find_passphrase_with_env(&path, env(&[])).unwrap().unwrap();
    assert_eq!(read.as_bytes(), p.as_bytes());
    assert_eq!(source, PassphraseSource::File(path.clone()));

    let err = create_passphrase_file(&path, &mut OsRng).unwrap_err();
    assert!(matches!(err, KeyringError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), content);
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 1);

    // A dangling symbolic link is not replaced either.
    let link = parent.join("dangling");
    std::os::unix::fs::symlink(parent.join("nowhere"), &link).unwrap();
    assert!(matches!(create_passphrase_file(&link, &mut OsRng), Err(KeyringError::AlreadyExists { .. })));
    assert!(!parent.join("nowhere").exists());
}

#[test]
fn a_created_passphrase_wraps_and_unwraps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passphrase");
    let p = create_passphrase_file(&path, &mut OsRng).unwrap();
    let key = DataKey::generate(&mut OsRng);
    let wrapped = key.wrap(&p, KdfParams::TEST, &mut OsRng).unwrap().to_string();
    let (read, _) = find_passphrase_with_env(&path, env(&[])).unwrap().unwrap();
    let unwrapped = DataKey::unwrap(&wrapped.parse().unwrap(), &read).unwrap();
    let sealed = key.seal(&[8; 32], AD_A, &mut OsRng);
    assert_eq!(*unwrapped.open(&sealed, AD_A).unwrap(), [8; 32]);
}
