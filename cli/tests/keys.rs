//! The key commands behave like `wg genkey`, `wg pubkey` and `wg genpsk`.

use std::io::Write;
use std::process::{Command, Stdio};

fn vpn(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpn"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vpn");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn pubkey_of_the_rfc7748_alice_key() {
    // RFC 7748 §6.1: Alice's private key and public key, in base64.
    let (ok, out, _) = vpn(&["pubkey"], "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n");
    assert!(ok);
    assert_eq!(out, "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n");
}

#[test]
fn genkey_and_genpsk_give_fresh_valid_keys() {
    let (ok, a, _) = vpn(&["genkey"], "");
    assert!(ok);
    let (_, b, _) = vpn(&["genkey"], "");
    assert_ne!(a, b);
    assert_eq!(a.len(), 45);
    let (ok, public, _) = vpn(&["pubkey"], &a);
    assert!(ok && public.len() == 45 && public != a);
    let (ok, psk, _) = vpn(&["genpsk"], "");
    assert!(ok && psk.len() == 45 && psk.ends_with("=\n"));
}

#[test]
fn pubkey_refuses_bad_input_without_echoing_it() {
    for bad in ["", "short\n", "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo= extra\n", "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LC!=\n"] {
        let (ok, out, err) = vpn(&["pubkey"], bad);
        assert!(!ok, "{bad:?} accepted");
        assert!(out.is_empty());
        assert!(!err.is_empty());
        if bad.len() > 10 {
            assert!(!err.contains(&bad[..20]), "the input was echoed: {err}");
        }
    }
}

#[test]
fn help_lists_the_commands() {
    let (ok, out, _) = vpn(&["--help"], "");
    assert!(ok);
    for c in ["genkey", "pubkey", "genpsk"] {
        assert!(out.contains(c), "{out}");
    }
}
