mod common;
use std::sync::Arc;
#[test]
#[ignore]
fn manual_serve() {
    let secs: u64 = std::env::var("VPN_MANUAL_SECS").unwrap().parse().unwrap();
    let backend = Arc::new(common::MemBackend::default());
    let server = vpn_control::uapi::UapiServer::bind("vpncmp0").unwrap();
    let h = server.serve(backend, vpn_control::uapi::Shutdown::new()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(secs));
    drop(h);
}
