//! Library-level behaviour of `netlessons::subnet`: parsing CIDR blocks and address lists,
//! the messages a learner sees for mistakes, and which peers an [`Allowlist`] lets in.

use std::net::IpAddr;

use netlessons::subnet::*;

/// Well-formed blocks survive a parse → display → parse round trip unchanged.
#[test]
fn parse_display_round_trip() {
    for text in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.77.0/24",
        "0.0.0.0/0",
        "203.0.113.7/32",
        "fc00::/7",
        "fe80::/10",
        "::/0",
        "::1/128",
        "2001:db8::/32",
        "::ffff:0.0.0.0/96",
    ] {
        let parsed = cidr(text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(cidr(&parsed.to_string()), parsed);
    }
}

/// The accessors return the parts, and the address family decides the prefix range.
#[test]
fn accessors_return_the_parts() {
    let net = cidr("172.16.0.0/12");
    assert_eq!(net.addr(), ip("172.16.0.0"));
    assert_eq!(net.prefix(), 12);

    let net = cidr("fc00::/7");
    assert_eq!(net.addr(), ip("fc00::"));
    assert_eq!(net.prefix(), 7);
}

/// A bare address means that one address: /32 for IPv4, /128 for IPv6.
#[test]
fn bare_address_is_a_single_host() {
    let v4 = cidr("192.168.1.5");
    assert_eq!(v4.prefix(), 32);
    assert_eq!(v4.to_string(), "192.168.1.5/32");
    assert!(v4.contains(ip("192.168.1.5")));
    assert!(!v4.contains(ip("192.168.1.6")));

    let v6 = cidr("::1");
    assert_eq!(v6.prefix(), 128);
    assert_eq!(v6.to_string(), "::1/128");
    assert!(v6.contains(ip("::1")));
    assert!(!v6.contains(ip("::2")));
}

/// `Cidr::new` accepts valid blocks and applies the same checks as parsing.
#[test]
fn new_checks_like_parsing() {
    let net = Cidr::new(ip("10.0.0.0"), 8).expect("valid block");
    assert_eq!(net, cidr("10.0.0.0/8"));
    assert_eq!(Cidr::new(ip("::"), 0).expect("valid"), cidr("::/0"));

    let err = Cidr::new(ip("10.1.2.3"), 8).unwrap_err().to_string();
    assert!(err.contains("did you mean 10.0.0.0/8?"), "{err}");
    let err = Cidr::new(ip("10.0.0.0"), 33).unwrap_err().to_string();
    assert!(
        err.contains("prefix /33 is too long for an IPv4 address (max /32)"),
        "{err}"
    );
    let err = Cidr::new(ip("::"), 129).unwrap_err().to_string();
    assert!(
        err.contains("prefix /129 is too long for an IPv6 address (max /128)"),
        "{err}"
    );
}

/// A prefix longer than the address is rejected with the maximum named, including
/// numbers too big for any prefix.
#[test]
fn prefix_too_long_is_an_error() {
    assert_eq!(
        cidr_error("10.0.0.0/33"),
        "prefix /33 is too long for an IPv4 address (max /32)"
    );
    assert_eq!(
        cidr_error("::/129"),
        "prefix /129 is too long for an IPv6 address (max /128)"
    );
    let err = cidr_error("10.0.0.0/99999999999999999999");
    assert!(
        err.contains("too long for an IPv4 address (max /32)"),
        "{err}"
    );
    let err = cidr_error("::/256");
    assert!(
        err.contains("too long for an IPv6 address (max /128)"),
        "{err}"
    );
}

/// Host bits set after the prefix are an error that names the masked block to use.
#[test]
fn host_bits_set_is_an_error_naming_the_fix() {
    assert_eq!(
        cidr_error("10.1.2.3/8"),
        "host bits are set in 10.1.2.3/8; did you mean 10.0.0.0/8?"
    );
    let err = cidr_error("192.168.1.1/24");
    assert!(err.contains("did you mean 192.168.1.0/24?"), "{err}");
    let err = cidr_error("172.31.0.0/12");
    assert!(err.contains("did you mean 172.16.0.0/12?"), "{err}");
    let err = cidr_error("1.2.3.4/0");
    assert!(err.contains("did you mean 0.0.0.0/0?"), "{err}");
    let err = cidr_error("fe80::1/10");
    assert!(err.contains("host bits are set in fe80::1/10"), "{err}");
    assert!(err.contains("did you mean fe80::/10?"), "{err}");
    let err = cidr_error("::1/0");
    assert!(err.contains("did you mean ::/0?"), "{err}");
}

/// An empty prefix after the slash is rejected and the message says what is missing.
#[test]
fn empty_prefix_is_an_error() {
    let err = cidr_error("10.0.0.0/");
    assert!(err.contains("missing prefix length"), "{err}");
    assert!(err.contains("10.0.0.0/32"), "suggests a form: {err}");
    let err = cidr_error("::/");
    assert!(err.contains("missing prefix length"), "{err}");
}

/// Signs, spaces, letters and other non-digits in the prefix are rejected.
#[test]
fn non_digit_prefix_is_an_error() {
    for text in [
        "10.0.0.0/+8",
        "10.0.0.0/-8",
        "10.0.0.0/ 8",
        "10.0.0.0/8 ",
        "10.0.0.0/8a",
        "10.0.0.0/0x8",
        "10.0.0.0/eight",
        "10.0.0.0/８",
        "::/+64",
    ] {
        let err = cidr_error(text);
        assert!(
            err.contains("must be plain decimal digits"),
            "{text:?}: {err}"
        );
    }
    let err = cidr_error("10.0.0.0/+8");
    assert!(err.contains("\"+8\""), "names the bad prefix: {err}");
    assert!(err.contains("from 0 to 32"), "names the range: {err}");
}

/// Things that are not IP addresses are rejected, and the message shows the bad part.
#[test]
fn junk_addresses_are_errors() {
    for text in [
        "localhost",
        "10.0.0/8",
        "10.0.0.256/32",
        "10.0.0.0.0/8",
        "010.0.0.0/8",
        "+10.0.0.0/8",
        " 10.0.0.0/8",
        "[::1]/128",
        "fe80::1%eth0/128",
        "::g/128",
        "10.0.0.0//8",
        "/8",
        "10.0.0.0/8/8",
    ] {
        let err = cidr_error(text);
        assert!(err.contains("is not an IP address"), "{text:?}: {err}");
    }
    let err = cidr_error("localhost/8");
    assert!(
        err.contains("\"localhost\""),
        "names the bad address: {err}"
    );
}

/// An empty string is not a CIDR.
#[test]
fn empty_cidr_is_an_error() {
    let err = cidr_error("");
    assert!(err.contains("empty"), "{err}");
}

/// The error type works as a standard error (so `?` into `Box<dyn Error>` works).
#[test]
fn cidr_error_is_a_std_error() {
    let err: Box<dyn std::error::Error> = Box::new("10.1.2.3/8".parse::<Cidr>().unwrap_err());
    assert!(err.to_string().contains("10.0.0.0/8"));
}

/// /0 contains every address of its family and none of the other family.
#[test]
fn slash_zero_contains_the_whole_family() {
    let all_v4 = cidr("0.0.0.0/0");
    for addr in ["0.0.0.0", "8.8.8.8", "255.255.255.255"] {
        assert!(all_v4.contains(ip(addr)), "{addr}");
    }
    assert!(!all_v4.contains(ip("::1")));
    assert!(!all_v4.contains(ip("::ffff:8.8.8.8")), "exact family only");

    let all_v6 = cidr("::/0");
    for addr in [
        "::",
        "::1",
        "2001:db8::2",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert!(all_v6.contains(ip(addr)), "{addr}");
    }
    assert!(!all_v6.contains(ip("127.0.0.1")));
}

/// /32 and /128 contain exactly one address.
#[test]
fn full_length_prefix_is_one_address() {
    let one = cidr("203.0.113.9/32");
    assert!(one.contains(ip("203.0.113.9")));
    assert!(!one.contains(ip("203.0.113.8")));
    assert!(!one.contains(ip("203.0.113.10")));

    let one = cidr("2001:db8::9/128");
    assert!(one.contains(ip("2001:db8::9")));
    assert!(!one.contains(ip("2001:db8::8")));
    assert!(!one.contains(ip("2001:db8::a")));
}

/// `contains` is exact at both ends of a range: first and last address in, neighbours out.
#[test]
fn contains_at_range_boundaries() {
    let net = cidr("172.16.0.0/12");
    assert!(!net.contains(ip("172.15.255.255")));
    assert!(net.contains(ip("172.16.0.0")));
    assert!(net.contains(ip("172.31.255.255")));
    assert!(!net.contains(ip("172.32.0.0")));

    let net = cidr("10.0.0.0/8");
    assert!(!net.contains(ip("9.255.255.255")));
    assert!(net.contains(ip("10.0.0.0")));
    assert!(net.contains(ip("10.255.255.255")));
    assert!(!net.contains(ip("11.0.0.0")));

    let net = cidr("192.168.77.128/25");
    assert!(!net.contains(ip("192.168.77.127")));
    assert!(net.contains(ip("192.168.77.128")));
    assert!(net.contains(ip("192.168.77.255")));
    assert!(!net.contains(ip("192.168.78.0")));

    let net = cidr("fc00::/7");
    assert!(!net.contains(ip("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(net.contains(ip("fc00::")));
    assert!(net.contains(ip("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!net.contains(ip("fe00::")));

    let net = cidr("fe80::/10");
    assert!(net.contains(ip("fe80::1")));
    assert!(net.contains(ip("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!net.contains(ip("fec0::")));
}

/// A block never contains an address of the other family, as given.
#[test]
fn families_do_not_mix_in_a_cidr() {
    assert!(!cidr("127.0.0.0/8").contains(ip("::1")));
    assert!(!cidr("0.0.0.0/8").contains(ip("::1")), "::1 is not 0.0.0.1");
    assert!(!cidr("::1/128").contains(ip("0.0.0.1")));
    assert!(!cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
    assert!(cidr("::ffff:0.0.0.0/96").contains(ip("::ffff:127.0.0.1")));
}

/// The default list lets in local peers and refuses public ones.
#[test]
fn default_list_allows_local_and_refuses_public() {
    let list = Allowlist::default();
    for addr in [
        "127.0.0.1",
        "127.255.255.254",
        "192.168.77.2",
        "10.0.0.1",
        "10.200.3.4",
        "172.16.0.1",
        "172.31.255.255",
        "169.254.10.20",
        "::1",
        "fd12:3456::1",
        "fe80::1",
    ] {
        assert!(list.contains(ip(addr)), "{addr} should be allowed");
    }
    for addr in [
        "203.0.113.2",
        "8.8.8.8",
        "172.32.0.1",
        "192.169.0.1",
        "2001:db8::2",
        "::2",
        "::",
        "0.0.0.1",
        "0.0.0.0",
    ] {
        assert!(!list.contains(ip(addr)), "{addr} should be refused");
    }
}

/// The default list is exactly the documented local networks, in the documented order.
#[test]
fn default_list_is_the_local_networks() {
    assert_eq!(Allowlist::default(), Allowlist::local_networks());
    assert_eq!(
        Allowlist::default().to_string(),
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,fc00::/7,fe80::/10"
    );
}

/// The built-in lists are made of valid blocks (host bits clear), as `Cidr::new` demands.
#[test]
fn built_in_lists_hold_valid_blocks() {
    for list in [
        Allowlist::local_networks(),
        Allowlist::loopback(),
        Allowlist::any(),
    ] {
        for net in list.cidrs() {
            assert_eq!(Cidr::new(net.addr(), net.prefix()), Ok(*net), "{net}");
        }
    }
}

/// IPv4-mapped IPv6 peers (as a dual-stack listener reports them) are matched as IPv4.
#[test]
fn mapped_ipv6_peers_match_as_ipv4() {
    let list = Allowlist::default();
    assert!(list.contains(ip("::ffff:127.0.0.1")));
    assert!(list.contains(ip("::ffff:192.168.1.5")));
    assert!(list.contains(ip("::ffff:10.1.2.3")));
    assert!(!list.contains(ip("::ffff:203.0.113.2")));
    assert!(!list.contains(ip("::ffff:8.8.8.8")));
}

/// The old IPv4-compatible form is not IPv4: a list holding only ::1/128 does not allow
/// 0.0.0.1, and one holding only 0.0.0.0/8 does not allow ::1 (the `to_ipv4` trap).
#[test]
fn ipv4_compatible_addresses_are_not_converted() {
    let only_v6_loopback: Allowlist = "::1/128".parse().expect("valid list");
    assert!(only_v6_loopback.contains(ip("::1")));
    assert!(!only_v6_loopback.contains(ip("0.0.0.1")));

    let zero_net: Allowlist = "0.0.0.0/8".parse().expect("valid list");
    assert!(zero_net.contains(ip("0.0.0.1")));
    assert!(!zero_net.contains(ip("::1")));
    assert!(!zero_net.contains(ip("::")));
    assert!(!zero_net.contains(ip("::0.0.0.1")));
}

/// An IPv4 list never matches plain IPv6 peers, and an IPv6 list never matches IPv4 peers.
#[test]
fn families_do_not_mix_in_a_list() {
    let v4_only: Allowlist = "0.0.0.0/0".parse().expect("valid list");
    assert!(v4_only.contains(ip("198.51.100.1")));
    assert!(
        v4_only.contains(ip("::ffff:198.51.100.1")),
        "mapped counts as IPv4"
    );
    assert!(!v4_only.contains(ip("2001:db8::1")));
    assert!(!v4_only.contains(ip("::1")));

    let v6_only: Allowlist = "::/0".parse().expect("valid list");
    assert!(v6_only.contains(ip("2001:db8::1")));
    assert!(!v6_only.contains(ip("198.51.100.1")));
}

/// An entry written in IPv4-mapped form is stored as the IPv4 block it names, so it
/// matches the plain IPv4 peers an IPv4 listener reports (and mapped ones still).
#[test]
fn mapped_entries_are_stored_as_their_ipv4_block() {
    let one: Allowlist = "::ffff:192.0.2.2".parse().expect("valid list");
    assert_eq!(one.to_string(), "192.0.2.2/32");
    assert_eq!(one.cidrs(), &[cidr("192.0.2.2/32")]);
    assert!(one.contains(ip("192.0.2.2")), "an IPv4 listener's peer");
    assert!(
        one.contains(ip("::ffff:192.0.2.2")),
        "a dual-stack listener's peer"
    );
    assert!(!one.contains(ip("192.0.2.3")));
    assert!(
        !one.contains(ip("::192.0.2.2")),
        "the old compatible form is not mapped"
    );

    let block: Allowlist = "::ffff:192.0.2.0/120".parse().expect("valid list");
    assert_eq!(block.to_string(), "192.0.2.0/24");
    assert!(block.contains(ip("192.0.2.200")));
    assert!(!block.contains(ip("192.0.3.1")));

    let every_v4: Allowlist = "::ffff:0:0/96".parse().expect("valid list");
    assert_eq!(every_v4.to_string(), "0.0.0.0/0");
    assert!(every_v4.contains(ip("203.0.113.9")));
    assert!(!every_v4.contains(ip("::1")), "still IPv4 only");
    assert!(!every_v4.contains(ip("2001:db8::1")));

    // Built in code rather than parsed: the same rule.
    let built = Allowlist::new(vec![cidr("::ffff:10.0.0.0/104"), cidr("::1/128")]);
    assert_eq!(built.to_string(), "10.0.0.0/8,::1/128");
    assert!(built.contains(ip("10.9.8.7")));

    // A Cidr on its own is still taken exactly as written.
    assert_eq!(cidr("::ffff:0.0.0.0/96").to_string(), "::ffff:0.0.0.0/96");
}

/// `loopback` holds 127.0.0.0/8 and ::1/128 only; `any` lets everyone in.
#[test]
fn loopback_and_any_lists() {
    let loopback = Allowlist::loopback();
    assert_eq!(loopback.to_string(), "127.0.0.0/8,::1/128");
    assert!(loopback.contains(ip("127.0.0.1")));
    assert!(loopback.contains(ip("::1")));
    assert!(loopback.contains(ip("::ffff:127.0.0.1")));
    assert!(!loopback.contains(ip("192.168.1.1")));
    assert!(!loopback.contains(ip("10.0.0.1")));

    let any = Allowlist::any();
    assert_eq!(any.to_string(), "0.0.0.0/0,::/0");
    for addr in ["8.8.8.8", "2001:db8::2", "::", "0.0.0.0", "::ffff:1.2.3.4"] {
        assert!(any.contains(ip(addr)), "{addr}");
    }
}

/// An empty list, built in code, allows nobody and displays as nothing.
#[test]
fn empty_list_allows_nobody() {
    let nobody = Allowlist::new(Vec::new());
    assert!(nobody.cidrs().is_empty());
    assert!(!nobody.contains(ip("127.0.0.1")));
    assert!(!nobody.contains(ip("::1")));
    assert_eq!(nobody.to_string(), "");
}

/// A list parses with or without spaces around commas, keeps its order, and displays
/// comma-joined in the form it parses back from.
#[test]
fn list_parsing_tolerates_spaces_around_commas() {
    let list: Allowlist = " 10.0.0.0/8 , ::1,192.168.0.0/16 "
        .parse()
        .expect("valid list");
    assert_eq!(
        list.cidrs(),
        &[cidr("10.0.0.0/8"), cidr("::1/128"), cidr("192.168.0.0/16")]
    );
    assert_eq!(list.to_string(), "10.0.0.0/8,::1/128,192.168.0.0/16");
    let again: Allowlist = list.to_string().parse().expect("display parses back");
    assert_eq!(again, list);

    let single: Allowlist = "203.0.113.0/24".parse().expect("valid list");
    assert!(single.contains(ip("203.0.113.200")));
    assert!(!single.contains(ip("203.0.114.1")));
}

/// Empty entries (empty text, doubled, leading or trailing commas, only spaces) are errors.
#[test]
fn list_with_empty_entries_is_an_error() {
    for text in [
        "",
        " ",
        ",",
        "10.0.0.0/8,",
        ",10.0.0.0/8",
        "10.0.0.0/8,,::1",
        "10.0.0.0/8, ,::1",
    ] {
        let err = list_error(text);
        assert!(err.contains("empty entry"), "{text:?}: {err}");
        assert!(
            err.contains("127.0.0.0/8,::1/128"),
            "shows an example: {err}"
        );
    }
}

/// A bad entry in a list fails the whole list with that entry's message.
#[test]
fn list_with_a_bad_entry_is_an_error() {
    let err = list_error("127.0.0.0/8, 10.1.2.3/8");
    assert_eq!(
        err,
        "host bits are set in 10.1.2.3/8; did you mean 10.0.0.0/8?"
    );
    let err = list_error("::1/128,10.0.0.0/33");
    assert!(err.contains("prefix /33 is too long"), "{err}");
    let err = list_error("10.0.0.0/8;192.168.0.0/16");
    assert!(err.contains("is not an IP address"), "{err}");
}

/// `Cidr` is `Copy` and usable as a map key; `Allowlist` is `Clone` and `Debug`.
#[test]
fn trait_implementations() {
    let net = cidr("10.0.0.0/8");
    let copy = net;
    assert_eq!(net, copy);
    let set: std::collections::HashSet<Cidr> = [net, copy, cidr("::1")].into_iter().collect();
    assert_eq!(set.len(), 2);

    let list = Allowlist::loopback();
    let cloned = list.clone();
    assert_eq!(list, cloned);
    assert!(format!("{list:?}").contains("Allowlist"));
    assert!(format!("{net:?}").contains("Cidr"));
}

/// Parses an address written in a test.
fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|err| panic!("bad test address {text:?}: {err}"))
}

/// Parses a CIDR written in a test, panicking with the parse error if it is rejected.
fn cidr(text: &str) -> Cidr {
    text.parse()
        .unwrap_or_else(|err| panic!("{text:?} should parse: {err}"))
}

/// Parses `text` expecting an error, and returns the error message.
fn cidr_error(text: &str) -> String {
    match text.parse::<Cidr>() {
        Ok(parsed) => panic!("{text:?} should be rejected, got {parsed}"),
        Err(err) => err.to_string(),
    }
}

/// Parses an address list expecting an error, and returns the error message.
fn list_error(text: &str) -> String {
    match text.parse::<Allowlist>() {
        Ok(parsed) => panic!("{text:?} should be rejected, got {parsed}"),
        Err(err) => err.to_string(),
    }
}
