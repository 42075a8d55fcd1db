//! SHA-256 against the FIPS 180-4 examples, HMAC against RFC 4231, and the
//! hex and comparison helpers.

use super::*;

/// Shorthand: the digest of `data` as hex.
fn hex_digest(data: &[u8]) -> String {
    to_hex(&sha256(data))
}

/// The empty message hashes to the FIPS 180-4 value (padding alone fills one block).
#[test]
fn fips_empty_message() {
    assert_eq!(
        hex_digest(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

/// "abc" hashes to the FIPS 180-4 one-block example.
#[test]
fn fips_abc() {
    assert_eq!(
        hex_digest(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// The 448-bit (56-byte) FIPS example, whose padding has to spill into a second block.
#[test]
fn fips_two_block_message() {
    assert_eq!(
        hex_digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

/// One million 'a's hash to the FIPS value, both in one call and fed in uneven pieces.
#[test]
fn fips_one_million_a() {
    let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    let data = vec![b'a'; 1_000_000];
    assert_eq!(hex_digest(&data), expected);

    let mut hasher = Sha256::new();
    for piece in data.chunks(997) {
        hasher.update(piece);
    }
    assert_eq!(to_hex(&hasher.finish()), expected);
}

/// Feeding a message in chunks of any size (including empty updates) gives the same
/// digest as hashing it at once, for lengths around every block boundary.
#[test]
fn streaming_in_odd_chunks_equals_one_shot() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 + 7) as u8).collect();
    for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 500, 1000] {
        let message = &data[..len];
        let expected = sha256(message);
        for chunk in [1, 2, 3, 5, 7, 13, 63, 64, 65, 100, 1000] {
            let mut hasher = Sha256::new();
            hasher.update(&[]);
            for piece in message.chunks(chunk) {
                hasher.update(piece);
                hasher.update(&[]);
            }
            assert_eq!(hasher.finish(), expected, "length {len}, chunk {chunk}");
        }
    }
}

/// A cloned hasher continues independently of the original.
#[test]
fn clone_forks_the_stream() {
    let mut hasher = Sha256::default();
    hasher.update(b"common prefix, ");
    let mut other = hasher.clone();
    hasher.update(b"one");
    other.update(b"two");
    assert_eq!(hasher.finish(), sha256(b"common prefix, one"));
    assert_eq!(other.finish(), sha256(b"common prefix, two"));
}

/// Decodes hex written in an RFC, panicking on a typo in the test itself.
fn hex(text: &str) -> Vec<u8> {
    from_hex(text).expect("test vector is valid hex")
}

/// RFC 4231 test case 1: a 20-byte key.
#[test]
fn rfc4231_case_1() {
    let tag = hmac_sha256(&[0x0b; 20], b"Hi There");
    assert_eq!(
        to_hex(&tag),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
}

/// RFC 4231 test case 2: a key shorter than the output.
#[test]
fn rfc4231_case_2() {
    let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        to_hex(&tag),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// RFC 4231 test case 3: 50 bytes of 0xdd under a 20-byte key of 0xaa.
#[test]
fn rfc4231_case_3() {
    let tag = hmac_sha256(&[0xaa; 20], &[0xdd; 50]);
    assert_eq!(
        to_hex(&tag),
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
    );
}

/// RFC 4231 test case 4: a 25-byte key 0x01..0x19 and 50 bytes of 0xcd.
#[test]
fn rfc4231_case_4() {
    let key: Vec<u8> = (0x01..=0x19).collect();
    let tag = hmac_sha256(&key, &[0xcd; 50]);
    assert_eq!(
        to_hex(&tag),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
    );
}

/// RFC 4231 test case 5: the tag truncated to 128 bits matches.
#[test]
fn rfc4231_case_5_truncated() {
    let tag = hmac_sha256(&[0x0c; 20], b"Test With Truncation");
    assert_eq!(to_hex(&tag[..16]), "a3b6167473100ee06e0c796c2955552b");
}

/// RFC 4231 test case 6: a 131-byte key, longer than a block, is hashed first.
#[test]
fn rfc4231_case_6() {
    let tag = hmac_sha256(
        &[0xaa; 131],
        b"Test Using Larger Than Block-Size Key - Hash Key First",
    );
    assert_eq!(
        to_hex(&tag),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

/// RFC 4231 test case 7: both the key and the message are longer than a block.
#[test]
fn rfc4231_case_7() {
    let message = hex(concat!(
        "5468697320697320612074657374207573696e672061206c6172676572207468",
        "616e20626c6f636b2d73697a65206b657920616e642061206c61726765722074",
        "68616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565",
        "647320746f20626520686173686564206265666f7265206265696e6720757365",
        "642062792074686520484d414320616c676f726974686d2e",
    ));
    let tag = hmac_sha256(&[0xaa; 131], &message);
    assert_eq!(
        to_hex(&tag),
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
    );
}

/// Streaming HMAC in pieces equals the one-shot function, for short and long keys.
#[test]
fn streaming_hmac_equals_one_shot() {
    let message: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    for key_len in [0, 1, 32, 64, 65, 200] {
        let key = vec![0x5a; key_len];
        let mut mac = HmacSha256::new(&key);
        for piece in message.chunks(17) {
            mac.update(piece);
        }
        assert_eq!(mac.finish(), hmac_sha256(&key, &message), "key {key_len}");
    }
}

/// `to_hex` writes lowercase and `from_hex` reads it (and uppercase) back, for every
/// byte value.
#[test]
fn hex_round_trip() {
    let all: Vec<u8> = (0..=255).collect();
    let text = to_hex(&all);
    assert_eq!(text.len(), 512);
    assert!(!text.bytes().any(|b| b.is_ascii_uppercase()));
    assert_eq!(from_hex(&text), Some(all.clone()));
    assert_eq!(from_hex(&text.to_uppercase()), Some(all));
    assert_eq!(from_hex(""), Some(Vec::new()));
    assert_eq!(to_hex(&[]), "");
}

/// `from_hex` refuses odd lengths and anything that is not a hex digit.
#[test]
fn from_hex_rejects_bad_input() {
    for bad in [
        "0", "abc", "0g", "g0", "0x00", " 00", "00 ", "+1", "-1", "é0", "00\n", "１２",
    ] {
        assert_eq!(from_hex(bad), None, "{bad:?} should be rejected");
    }
}

/// `constant_time_eq` is true only for equal contents of equal length.
#[test]
fn constant_time_eq_cases() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(&[7; 32], &[7; 32]));
    let mut different = [7u8; 32];
    different[31] = 8;
    assert!(!constant_time_eq(&[7; 32], &different));
    different = [7; 32];
    different[0] = 0;
    assert!(!constant_time_eq(&[7; 32], &different));
    assert!(!constant_time_eq(&[7; 32], &[7; 31]));
    assert!(!constant_time_eq(b"", b"a"));
}
