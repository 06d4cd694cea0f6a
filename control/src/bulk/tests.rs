//! Every problem class of a bulk file, with its line; the plan against a store snapshot; export
//! and parse round trips.

use std::net::{Ipv4Addr, Ipv6Addr};

use vpn_crypto::PrivateKey;

use super::*;
use crate::store::Pools;

fn csv(text: &str) -> Parsed {
    parse(text, Format::Csv)
}

fn json(text: &str) -> Parsed {
    parse(text, Format::Json)
}

/// The problems as "line: message" for compact assertions.
fn lines(p: &[Problem]) -> Vec<usize> {
    p.iter().map(|p| p.line).collect()
}

fn has(p: &[Problem], line: usize, needle: &str) -> bool {
    p.iter().any(|p| p.line == line && p.message.contains(needle))
}

const JAN_2027: i64 = 1_798_761_600; // 2027-01-01

#[test]
fn csv_reads_users_devices_flags_dates_and_comments() {
    let p = csv("# staff\nuser,device,enabled,expires\n\nalice,phone,,2027-01-01\nalice,laptop,true,\n  # contractors\nbob,,false,\n\"carol\", tablet ,yes,2027-01-01T12:00:00Z\n");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.users.len(), 3);
    let alice = &p.users[0];
    assert_eq!((alice.name.as_str(), alice.enabled, alice.line), ("alice", true, 4));
    assert_eq!(alice.devices.len(), 2);
    assert_eq!(alice.devices[0], DeviceEntry { name: "phone".into(), enabled: true, expires_at: Some(JAN_2027), line: 4 });
    assert_eq!(alice.devices[1].expires_at, None);
    assert_eq!(alice.devices[1].line, 5);
    assert_eq!((p.users[1].name.as_str(), p.users[1].enabled, p.users[1].devices.len()), ("bob", false, 0));
    assert_eq!(p.users[2].devices[0].name, "tablet");
    assert_eq!(p.users[2].devices[0].expires_at, Some(JAN_2027 + 12 * 3600));
}

#[test]
fn csv_minimal_header_and_crlf() {
    let p = csv("user\r\nalice\r\nbob\r\n");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
    let p = csv("\u{feff}USER,Device\nalice,phone\n");
    assert!(p.problems.is_empty(), "BOM and header case: {:?}", p.problems);
    assert_eq!(p.users[0].devices[0].name, "phone");
}

#[test]
fn csv_problems_each_with_its_line() {
    let text = "\
user,device,enabled,device_enabled,expires
alice,phone,,,2027-02-30
bob,laptop,maybe,,
,orphan,,,
carol,my phone,,,
carol,tab,,,
carol,tab,,,
dave,,,,2027-01-01
erin,a,true,,
erin,b,false,,
-x,,,,
frank,x,,,,
gina,x,,perhaps,
";
    let p = csv(text);
    assert!(has(&p.problems, 2, "2027-02-30"), "{:?}", p.problems);
    assert!(has(&p.problems, 3, "maybe"));
    assert!(has(&p.problems, 4, "no user name"));
    assert!(has(&p.problems, 5, "my phone"));
    assert!(has(&p.problems, 7, "already listed at line 6"));
    assert!(has(&p.problems, 8, "without a device"));
    assert!(has(&p.problems, 10, "disabled here but enabled at line 9"));
    assert!(has(&p.problems, 11, "\"-x\""));
    assert!(has(&p.problems, 12, "6 fields, but the header has 5"));
    assert!(has(&p.problems, 13, "perhaps"));
    assert_eq!(lines(&p.problems), [2, 3, 4, 5, 7, 8, 10, 11, 12, 13], "{:#?}", p.problems);
    // The readable rows are still there (for the store check).
    assert!(p.users.iter().any(|u| u.name == "carol" && u.devices.len() == 1));
}

#[test]
fn csv_header_problems() {
    let p = csv("# only a comment\n");
    assert!(has(&p.problems, 0, "no header"), "{:?}", p.problems);
    let p = csv("# c\nname,device\nalice,phone\n");
    assert!(has(&p.problems, 2, "unknown column \"name\""), "{:?}", p.problems);
    assert!(has(&p.problems, 2, "no user column"));
    let p = csv("user,device,device\n");
    assert!(has(&p.problems, 1, "named twice"), "{:?}", p.problems);
    let p = csv("user,devices\nalice,phone\n");
    assert!(has(&p.problems, 1, "unknown column \"devices\""), "{:?}", p.problems);
}

#[test]
fn csv_quotes() {
    let p = csv("user,device\n\"alice\",\"ph\"\"one\"\n\"bob\",\"multi\nline\"\ncarol,x\n");
    assert!(has(&p.problems, 2, "ph\\\"one"), "quote inside: {:?}", p.problems);
    assert!(has(&p.problems, 3, "multi\\nline"), "a quoted line break, reported at the record's first line: {:?}", p.problems);
    assert!(p.users.iter().any(|u| u.name == "carol" && u.devices[0].line == 5));
    let p = csv("user,device\n\"alice\"x,phone\n");
    assert!(has(&p.problems, 2, "after a closing quote"), "{:?}", p.problems);
    let p = csv("user,device\nalice,phone\n\"bob,phone\n");
    assert!(has(&p.problems, 3, "never closed"), "{:?}", p.problems);
}

#[test]
fn json_reads_users_and_devices_with_their_lines() {
    let text = r#"[
  {"user": "alice", "enabled": true, "devices": [
    {"name": "phone", "expires": "2027-01-01"},
    {"name": "laptop", "enabled": false, "expires": null, "public_key": "x", "ipv4": "10.0.0.2", "ipv6": null}
  ]},
  {"user": "bob", "enabled": false},
  {
    "user": "carol",
    "devices": []
  }
]"#;
    let p = json(text);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let names: Vec<(&str, bool, usize)> = p.users.iter().map(|u| (u.name.as_str(), u.enabled, u.line)).collect();
    assert_eq!(names, [("alice", true, 2), ("bob", false, 6), ("carol", true, 7)]);
    assert_eq!(p.users[0].devices[0], DeviceEntry { name: "phone".into(), enabled: true, expires_at: Some(JAN_2027), line: 3 });
    assert_eq!(p.users[0].devices[1], DeviceEntry { name: "laptop".into(), enabled: false, expires_at: None, line: 4 });
}

#[test]
fn json_problems_each_with_its_line() {
    let text = r#"[
  {"user": "alice", "devices": [
    {"name": "phone", "expires": "next week"},
    {"name": "my phone"},
    {"name": "phone"},
    {"nmae": "tablet"},
    "watch"
  ]},
  {"user": "alice"},
  {"user": "bob", "enabeld": false},
  {"user": "carol", "enabled": "yes"},
  {"user": 7},
  {"devices": []},
  ["dave"],
  {"user": "erin", "devices": {"name": "x"}},
  {"user": "fred", "devices": [{"name": "x", "expires": 20270101}]},
  {"user": "gus",
   "enabled": true,
   "enabled": false}
]"#;
    let p = json(text);
    assert!(has(&p.problems, 3, "next week"), "{:#?}", p.problems);
    assert!(has(&p.problems, 4, "my phone"));
    assert!(has(&p.problems, 6, "unknown key \"nmae\""));
    assert!(has(&p.problems, 6, "without \"name\""));
    assert!(has(&p.problems, 7, "\"watch\""));
    assert!(has(&p.problems, 9, "already listed at line 2"));
    assert!(has(&p.problems, 10, "unknown key \"enabeld\""));
    assert!(has(&p.problems, 11, "enabled is \"yes\""));
    assert!(has(&p.problems, 12, "user is 7"));
    assert!(has(&p.problems, 13, "without \"user\""));
    assert!(has(&p.problems, 14, "[\"dave\"]"));
    assert!(has(&p.problems, 15, "devices is"));
    assert!(has(&p.problems, 16, "expires is 20270101"));
    assert!(has(&p.problems, 19, "given twice"));
    // The device "phone" appears twice: the first is bad (its date), so the second is the one
    // kept, and no duplicate is reported for a device that was never read.
    assert!(!p.problems.iter().any(|p| p.line == 5), "{:#?}", p.problems);
}

#[test]
fn json_syntax_and_shape() {
    let p = json("[\n  {\"user\": \"alice\"},\n  {\"user\": \"bob\",}\n]");
    assert_eq!(lines(&p.problems), [3], "{:?}", p.problems);
    assert!(p.problems[0].message.contains("not valid JSON"));
    assert!(p.users.is_empty());
    let p = json("\n{\"user\": \"alice\"}");
    assert!(has(&p.problems, 2, "array of users"), "{:?}", p.problems);
    let p = json("[]");
    assert!(p.problems.is_empty() && p.users.is_empty());
    // Strings with brackets, braces, escapes and a multi-line layout do not confuse the lines.
    let p = json("[{\"user\": \"a\", \"devices\": [{\"name\": \"x\", \"public_key\": \"]}[{\\\"\"},\n\n{\"name\": \"y\"}]}]");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.users[0].devices[1].line, 3);
}

#[test]
fn format_from_name_and_contents() {
    use std::path::Path;
    assert_eq!(Format::from_path(Path::new("a/users.CSV")), Some(Format::Csv));
    assert_eq!(Format::from_path(Path::new("users.json")), Some(Format::Json));
    assert_eq!(Format::from_path(Path::new("users.txt")), None);
    assert_eq!(Format::sniff("  \n[{}]"), Format::Json);
    assert_eq!(Format::sniff("user,device\n"), Format::Csv);
    assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
    assert!("xml".parse::<Format>().is_err());
}

fn user(name: &str, enabled: bool) -> User {
    User { name: name.into(), enabled, created_at: 0, devices: 0 }
}

fn device(user: &str, name: &str, ipv4: Option<[u8; 4]>, expires_at: Option<i64>) -> Device {
    let key = PrivateKey::from_bytes([user.len() as u8 + name.len() as u8 + ipv4.map_or(0, |a| a[3]); 32]);
    Device {
        user: user.into(),
        name: name.into(),
        public_key: key.public_key(),
        ipv4: ipv4.map(Ipv4Addr::from),
        ipv6: None,
        enabled: true,
        user_enabled: true,
        created_at: 0,
        expires_at,
        key_created_at: 0,
        has_private_key: true,
        rotation: None,
    }
}

fn pools(v4: &str) -> Pools {
    Pools { ipv4: Some(v4.parse().unwrap()), ipv6: None }
}

#[test]
fn plan_skips_identical_and_refuses_conflicts() {
    let text = "user,enabled,device,device_enabled,expires\nalice,true,phone,true,2027-01-01\nalice,true,laptop,true,\nbob,false,,,\ncarol,true,tab,,\ndave,true,x,false,\neve,true,y,,2027-01-01\nnew,true,d,,\nfay,true,z,true,\n";
    let parsed = csv(text);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let users = [user("alice", true), user("bob", true), user("carol", true), user("dave", true), user("eve", true), user("fay", true)];
    let mut z = device("fay", "z", Some([10, 0, 0, 6]), None);
    z.enabled = false;
    let devices = [
        device("alice", "phone", Some([10, 0, 0, 2]), Some(JAN_2027)),
        device("dave", "x", Some([10, 0, 0, 3]), None),
        device("eve", "y", Some([10, 0, 0, 4]), None),
        device("alice", "old", Some([10, 0, 0, 5]), None),
        z,
    ];
    let plan = plan(parsed.users, &users, &devices, &pools("10.0.0.0/24"), 0);
    assert!(has(&plan.problems, 4, "user bob exists already and is enabled, the file says disabled"), "{:#?}", plan.problems);
    assert!(has(&plan.problems, 7, "eve/y exists already and expires never (the file says 2027-01-01)"));
    // An import never enables what exists.
    assert!(has(&plan.problems, 9, "fay/z exists already and is disabled (the file says enabled)"));
    assert_eq!(lines(&plan.problems), [4, 7, 9]);
    // alice is present, her phone too (identical), her laptop is new; carol gets her first
    // device; dave's x is present and enabled, the file says disabled: it is disabled.
    let alice = &plan.users[0];
    assert!(alice.exists && alice.present_devices == 1);
    assert_eq!(alice.new_devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["laptop"]);
    assert_eq!(plan.users[3].disable_devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["x"]);
    assert_eq!((plan.new_users(), plan.new_devices(), plan.present_users(), plan.present_devices()), (1, 3, 6, 2));
    assert_eq!(plan.summary("to add"), "1 user and 3 devices to add; 6 users and 2 devices already present (1 of them to disable)");
    assert_eq!(plan.changes().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice", "carol", "dave", "new"]);
}

#[test]
fn plan_of_a_file_already_applied_changes_nothing() {
    let parsed = csv("user,device,expires\nalice,phone,2027-01-01\nbob,,\n");
    let users = [user("alice", true), user("bob", true)];
    let devices = [device("alice", "phone", Some([10, 0, 0, 2]), Some(JAN_2027))];
    let plan = plan(parsed.users, &users, &devices, &pools("10.0.0.0/30"), 0);
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    assert_eq!(plan.changes().count(), 0);
    assert_eq!(plan.summary("to add"), "0 users and 0 devices to add; 2 users and 1 device already present");
}

#[test]
fn plan_checks_pool_capacity_at_the_first_device_that_does_not_fit() {
    // 10.0.0.0/29: devices may take .2 to .6, five addresses; one is taken (.3), one is outside
    // the pool (an older pool's address, not counted).
    let mut text = String::from("user,device\n");
    for i in 0..4 {
        text.push_str(&format!("u{i},d\n"));
    }
    let existing = [device("old", "a", Some([10, 0, 0, 3]), None), device("old", "b", Some([10, 9, 0, 3]), None)];
    let plan = plan(csv(&text).users, &[user("old", true)], &existing, &pools("10.0.0.0/29"), 0);
    assert!(plan.problems.is_empty(), "four free addresses for four new devices: {:?}", plan.problems);
    text.push_str("u4,d\nu5,d\n");
    let plan = super::plan(csv(&text).users, &[user("old", true)], &existing, &pools("10.0.0.0/29"), 0);
    assert_eq!(lines(&plan.problems), [6], "{:?}", plan.problems);
    assert!(
        plan.problems[0].message.contains("u4/d") && plan.problems[0].message.contains("has 4 free and the file adds 6"),
        "{:?}",
        plan.problems
    );
    // No pool at all.
    let plan = super::plan(csv(&text).users, &[], &[], &Pools::default(), 0);
    assert!(has(&plan.problems, 2, "no address pool"), "{:?}", plan.problems);
    // Users without devices need no address.
    let plan = super::plan(csv("user\na\nb\n").users, &[], &[], &Pools::default(), 0);
    assert!(plan.problems.is_empty());
    // IPv6: a /126 has two device addresses (::2 and ::3).
    let v6 = Pools { ipv4: None, ipv6: Some("fd00::/126".parse().unwrap()) };
    let mut taken = device("old", "a", None, None);
    taken.ipv6 = Some("fd00::2".parse::<Ipv6Addr>().unwrap());
    let plan = super::plan(csv("user,device\na,x\nb,y\n").users, &[], &[taken], &v6, 0);
    assert!(has(&plan.problems, 3, "IPv6"), "{:?}", plan.problems);
    // A /64 is never the limit.
    let v6 = Pools { ipv4: None, ipv6: Some("fd00::/64".parse().unwrap()) };
    assert!(super::plan(csv(&text).users, &[], &[], &v6, 0).problems.is_empty());
    // The wrong family.
    let wrong = Pools { ipv4: Some("fd00::/64".parse().unwrap()), ipv6: None };
    assert!(has(&super::plan(csv(&text).users, &[], &[], &wrong, 0).problems, 0, "not an IPv4 prefix"));
}

#[test]
fn plan_notes_past_expiry_without_refusing() {
    let plan = plan(csv("user,device,expires\na,x,2001-01-01\n").users, &[], &[], &pools("10.0.0.0/24"), JAN_2027);
    assert!(plan.problems.is_empty());
    assert!(has(&plan.notes, 2, "expired on 2001-01-01"), "{:?}", plan.notes);
}

/// A user as read back: name, flag, devices (name, flag, expiry).
type UserRow = (String, bool, Vec<(String, bool, Option<i64>)>);

#[test]
fn export_round_trips_through_both_formats() {
    let users = [user("alice", true), user("bob", false), user("c,\"odd\"", true)];
    let mut phone = device("alice", "phone", Some([10, 0, 0, 2]), Some(JAN_2027));
    phone.ipv6 = Some("fd00::2".parse().unwrap());
    let mut laptop = device("alice", "laptop", Some([10, 0, 0, 3]), Some(JAN_2027 + 3600));
    laptop.enabled = false;
    let devices = [laptop.clone(), phone.clone()];
    for format in [Format::Csv, Format::Json] {
        let text = export(&users, &devices, format);
        assert!(text.contains(&phone.public_key.to_base64()) && text.contains("10.0.0.2") && text.contains("fd00::2"), "{text}");
        assert_eq!(Format::sniff(&text), format);
        let p = parse(&text, format);
        // The odd name is refused on import (it could never be in a store); everything else
        // reads back as it was.
        assert_eq!(p.problems.len(), 1, "{format}: {:?}\n{text}", p.problems);
        assert!(p.problems[0].message.contains("odd"));
        let got: Vec<UserRow> = p
            .users
            .iter()
            .map(|u| (u.name.clone(), u.enabled, u.devices.iter().map(|d| (d.name.clone(), d.enabled, d.expires_at)).collect()))
            .collect();
        assert_eq!(
            got,
            [
                ("alice".into(), true, vec![("laptop".into(), false, Some(JAN_2027 + 3600)), ("phone".into(), true, Some(JAN_2027))]),
                ("bob".into(), false, vec![]),
            ],
            "{format}"
        );
    }
    assert_eq!(export(&[], &[], Format::Json), "[]\n");
    assert_eq!(parse(&export(&[], &[], Format::Csv), Format::Csv).problems, []);
}

#[test]
fn digest_tells_files_apart() {
    assert_eq!(digest("user\nalice\n"), digest("user\nalice\n"));
    assert_ne!(digest("user\nalice\n"), digest("user\nbob\n"));
    assert!(digest("").starts_with("blake2s:") && digest("").len() == 8 + 64);
}

#[test]
fn problems_print_with_their_line() {
    assert_eq!(Problem::new(3, "bad").to_string(), "line 3: bad");
    assert_eq!(Problem::new(0, "bad").to_string(), "bad");
}

#[test]
fn free_addresses_lowest_first_around_the_taken_ones() {
    let mut a = device("old", "a", Some([10, 0, 0, 3]), None);
    a.ipv6 = Some("fd00::2".parse().unwrap());
    let b = device("old", "b", Some([10, 0, 0, 5]), None);
    let outside = device("old", "c", Some([10, 9, 0, 2]), None);
    let pools = Pools { ipv4: Some("10.0.0.0/29".parse().unwrap()), ipv6: Some("fd00::/64".parse().unwrap()) };
    let mut free = FreeAddresses::new(&pools, &[b, a, outside]);
    let got: Vec<(Option<Ipv4Addr>, Option<Ipv6Addr>)> = std::iter::from_fn(|| free.take()).collect();
    let v4 = |d: u8| Some(Ipv4Addr::new(10, 0, 0, d));
    let v6 = |s: &str| Some(s.parse::<Ipv6Addr>().unwrap());
    // .2 .4 .6 are free (.1 is the server's, .7 the broadcast address); ::2 is taken.
    assert_eq!(got, [(v4(2), v6("fd00::3")), (v4(4), v6("fd00::4")), (v4(6), v6("fd00::5"))]);
    // Only one pool, and none.
    let mut free = FreeAddresses::new(&Pools { ipv4: None, ipv6: Some("fd00::/126".parse().unwrap()) }, &[]);
    assert_eq!(free.take(), Some((None, v6("fd00::2"))));
    assert_eq!(free.take(), Some((None, v6("fd00::3"))));
    assert_eq!(free.take(), None);
    assert_eq!(FreeAddresses::new(&Pools::default(), &[]).take(), None);
}
