//! Chapter 9's exercises: your own echo server, across hosts. Check yours with
//! `sudo env "PATH=$PATH" "HOME=$HOME" NETLESSONS_01_ECHO_SERVER="python3 my_echo.py" cargo test --test two_hosts exercise_`.

use super::*;

/// Exercise 1: one listener on `[::]` serves IPv6 clients and IPv4 clients
/// (as IPv4-mapped addresses) on other hosts.
#[test]
fn exercise_1_one_listener_for_ipv4_and_ipv6() {
    let Some(lab) = lab("exercise_1_one_listener_for_ipv4_and_ipv6") else {
        return;
    };
    let server = echo_on(&lab, "[::]:0");
    let port = server.addr().port();
    assert_admitted(&lab, &INSIDE, v6(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    assert_admitted(&lab, &INSIDE2, v6(&INSIDE2), port, Hello::Echo);
}

/// Exercise 2: by default, a server bound to every address still serves
/// only the local networks: 192.168.77.2, 10.77.0.2 and fd00:77::2 get their
/// echo, 203.0.113.2 and 2001:db8::2 are closed without a byte.
#[test]
fn exercise_2_refuse_the_world_by_default() {
    let Some(lab) = lab("exercise_2_refuse_the_world_by_default") else {
        return;
    };
    for any in ["0.0.0.0:0", "[::]:0"] {
        let server = echo_on(&lab, any);
        let (addr, port) = (server.addr(), server.addr().port());
        assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
        assert_admitted(&lab, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
        assert_closed_without_a_byte(&lab, addr, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);
        if addr.is_ipv6() {
            assert_admitted(&lab, &INSIDE, v6(&INSIDE), port, Hello::Echo);
            assert_closed_without_a_byte(&lab, addr, &OUTSIDE, v6(&OUTSIDE), port, Hello::Echo);
        }
    }
}

/// Exercise 3: `--allow 192.168.77.0/28,2001:db8::/64` on a `[::]` listener
/// serves exactly those: 192.168.77.2 (arriving as `::ffff:192.168.77.2`)
/// and 2001:db8::2, not 192.168.77.20, fd00:77::2 nor 10.77.0.2.
#[test]
fn exercise_3_allow_matches_ipv4_mapped_peers() {
    let Some(lab) = lab("exercise_3_allow_matches_ipv4_mapped_peers") else {
        return;
    };
    let server = echo_allowing(&lab, "[::]:0", "192.168.77.0/28,2001:db8::/64");
    let (addr, port) = (server.addr(), server.addr().port());
    let extra = IpAddr::V4(INSIDE.extra_v4.unwrap());
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &OUTSIDE, v6(&OUTSIDE), port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &INSIDE, extra, port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &INSIDE, v6(&INSIDE), port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);
}
