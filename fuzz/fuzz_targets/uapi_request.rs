//! The UAPI request stream (framing, `set` parsing) and `apply` on arbitrary bytes: never a
//! panic; a refused `set` leaves the configuration exactly as it was; an accepted one yields a
//! configuration that the `wg` semantics allow (no duplicate peers, host bits masked).

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use vpn_control::uapi::{apply, Limits, Next, Request, RequestReader};
use vpn_dataplane::InterfaceConfig;

fuzz_target!(|data: &[u8]| {
    let mut reader = RequestReader::new(data, Limits { max_line: 512, max_request: 64 * 1024 });
    let mut config = InterfaceConfig::default();
    for _ in 0..32 {
        match reader.next_request() {
            Ok(Next::Request(Request::Set(req))) => {
                let before = config.clone();
                match apply(&config, &req) {
                    Ok(new) => {
                        let keys: HashSet<_> = new.peers.iter().map(|p| p.public_key).collect();
                        assert_eq!(keys.len(), new.peers.len(), "duplicate peer");
                        for p in &new.peers {
                            for a in &p.allowed_ips {
                                assert_eq!(Ok(*a), vpn_dataplane::IpPrefix::new(a.addr(), a.len()), "host bits not masked");
                            }
                        }
                        config = new;
                    }
                    Err(_) => assert_eq!(config, before),
                }
            }
            Ok(Next::Request(_)) | Ok(Next::Rejected(_)) => {}
            Ok(Next::End) | Err(_) => break,
        }
    }
});
