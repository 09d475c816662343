//! CIDR parsing and matching, and the allow/deny decision.

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

#[test]
fn cidrs_parse_and_print_back() {
    for text in [
        "10.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/0",
        "192.168.1.7/32",
        "fe80::/10",
        "::/0",
        "2001:db8::1/128",
    ] {
        assert_eq!(cidr(text).to_string(), text);
    }
    // A bare address is a block of one.
    assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
    assert_eq!(cidr("::1").to_string(), "::1/128");
}

#[test]
fn bad_cidrs_say_what_is_wrong() {
    let cases = [
        ("10.0.0/8", "the part before / is not an IP address"),
        ("10.0.0.0/", "the part after / is not a number"),
        ("10.0.0.0/-1", "the part after / is not a number"),
        ("10.0.0.0/33", "an IPv4 prefix length is at most 32"),
        ("fe80::/129", "an IPv6 prefix length is at most 128"),
        ("10.0.0.0/300", "an IPv4 prefix length is at most 32"),
        ("10.1.0.0/8", "did you mean 10.0.0.0/8?"),
        ("fe80::1/10", "did you mean fe80::/10?"),
    ];
    for (text, want) in cases {
        let err = text.parse::<Cidr>().unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
        assert!(err.contains(text), "{text}: {err}");
    }
}

#[test]
fn blocks_hold_their_addresses_and_no_others() {
    // (block, inside, outside)
    let cases = [
        ("169.254.0.0/16", "169.254.169.254", "169.255.0.1"),
        ("10.0.0.0/8", "10.255.255.255", "11.0.0.0"),
        ("192.168.1.7/32", "192.168.1.7", "192.168.1.8"),
        ("0.0.0.0/0", "203.0.113.9", "::1"),
        ("fe80::/10", "febf::1", "fec0::1"),
        ("::/0", "2001:db8::1", "127.0.0.1"),
        ("2001:db8::/32", "2001:db8:ffff::1", "2001:db9::"),
    ];
    for (block, inside, outside) in cases {
        assert!(cidr(block).contains(ip(inside)), "{inside} in {block}");
        assert!(
            !cidr(block).contains(ip(outside)),
            "{outside} not in {block}"
        );
    }
}

#[test]
fn lists_are_comma_separated_and_may_be_empty() {
    let list: CidrList = " 10.0.0.0/8, fe80::/10 ,".parse().unwrap();
    assert_eq!(list.0, [cidr("10.0.0.0/8"), cidr("fe80::/10")]);
    assert_eq!(list.to_string(), "10.0.0.0/8,fe80::/10");
    assert_eq!("".parse::<CidrList>().unwrap(), CidrList::default());
    assert!("10.0.0.0/8,nope".parse::<CidrList>().is_err());
}

#[test]
fn deny_wins_over_allow_and_names_the_rule() {
    let rules = EgressRules {
        allow: "10.0.0.0/8,169.254.0.0/16".parse().unwrap(),
        ..EgressRules::default()
    };
    assert_eq!(rules.check(ip("10.1.2.3")), Ok(()));
    let metadata = rules.check(ip("169.254.169.254")).unwrap_err();
    assert_eq!(metadata.rule, Rule::Denied(cidr("169.254.0.0/16")));
    assert_eq!(
        metadata.to_string(),
        "address 169.254.169.254 is in 169.254.0.0/16 of --lambda-deny-cidrs"
    );
    let outside = rules.check(ip("192.168.0.1")).unwrap_err();
    assert_eq!(
        outside.to_string(),
        "address 192.168.0.1 is in none of --lambda-allow-cidrs (10.0.0.0/8,169.254.0.0/16)"
    );
}

#[test]
fn the_default_denies_link_local_only() {
    let rules = EgressRules::default();
    for refused in ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254"] {
        let refusal = rules.check(ip(refused)).unwrap_err();
        assert!(matches!(refusal.rule, Rule::Denied(_)), "{refused}");
        assert_eq!(refusal.addr, ip(refused));
    }
    for allowed in ["127.0.0.1", "10.96.0.10", "::1", "2001:db8::1"] {
        assert_eq!(rules.check(ip(allowed)), Ok(()), "{allowed}");
    }
}

#[test]
fn mapped_ipv6_addresses_are_judged_as_their_ipv4_host() {
    let rules = EgressRules {
        allow: "10.0.0.0/8".parse().unwrap(),
        deny: CidrList::default(),
    };
    assert_eq!(rules.check(ip("::ffff:10.0.0.1")), Ok(()));
    assert!(rules.check(ip("::ffff:11.0.0.1")).is_err());
}
