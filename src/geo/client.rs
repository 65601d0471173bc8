//! Which address a request came from: the peer, unless the peer is a trusted proxy, in which
//! case the address it names in `Forwarded` (RFC 7239) or `X-Forwarded-For`, hop by hop from the
//! nearest, for as long as each hop is trusted. A client cannot choose its own location by
//! sending these headers through an untrusted hop.
//!
//! Pure: no I/O.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The client's address, walking the forwarding chain from `peer` through `trusted` proxies.
/// `forwarded` and `x_forwarded_for` are the header values (several headers joined by `,`);
/// `Forwarded` is read when present, else `X-Forwarded-For`. A hop that cannot be read
/// (`unknown`, an obfuscated name) ends the walk at the last address known.
#[must_use]
pub fn address(
    peer: IpAddr,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let hops: Vec<&str> = match (forwarded, x_forwarded_for) {
        (Some(f), _) => f
            .split(',')
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
                    })
                    .unwrap_or("")
            })
            .collect(),
        (None, Some(x)) => x.split(',').map(str::trim).collect(),
        (None, None) => Vec::new(),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        if !trusted.iter().any(|net| net.contains(&client)) {
            break;
        }
        match parse_hop(hop) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// An address as the control APIs take it (the xvid `ip` parameter, `uplink geoip lookup`): an
/// integer as PHP's `ip2long` gives (negative on 32-bit PHP too), dotted IPv4 or IPv6.
#[must_use]
pub fn parse_address(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<i64>() {
        let n = if n < 0 { n + (1 << 32) } else { n };
        return u32::try_from(n)
            .ok()
            .map(|v| IpAddr::from(std::net::Ipv4Addr::from(v)));
    }
    raw.parse().ok()
}

/// One hop: `1.2.3.4`, `1.2.3.4:5678`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_forms() {
        assert_eq!(
            parse_address("3232235777"),
            Some("192.168.1.1".parse().unwrap())
        );
        assert_eq!(
            parse_address("-1062731519"),
            Some("192.168.1.1".parse().unwrap())
        );
        assert_eq!(
            parse_address("81.2.69.142"),
            Some("81.2.69.142".parse().unwrap())
        );
        assert_eq!(
            parse_address("2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_address("4294967296"), None);
        assert_eq!(parse_address("nope"), None);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = address(ip("203.0.113.9"), None, Some("81.2.69.142"), &trusted);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_hops_are_walked_from_the_nearest() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // client → LB (10.0.0.2) → edge (127.0.0.1) → origin
        let got = address(
            ip("127.0.0.1"),
            None,
            Some("6.6.6.6, 81.2.69.142, 10.0.0.2"),
            &trusted,
        );
        // 6.6.6.6 was written by the client itself; 81.2.69.142 is the first untrusted hop.
        assert_eq!(got, ip("81.2.69.142"));
    }

    #[test]
    fn forwarded_wins_and_its_forms_are_read() {
        let trusted = nets(&["10.0.0.0/8"]);
        let forwarded = r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711";by=10.0.0.1"#;
        let got = address(ip("10.0.0.1"), Some(forwarded), Some("9.9.9.9"), &trusted);
        assert_eq!(got, ip("2001:db8:cafe::17"));
        let got = address(ip("10.0.0.1"), Some("for=81.2.69.142:1234"), None, &trusted);
        assert_eq!(got, ip("81.2.69.142"));
    }

    #[test]
    fn an_unreadable_hop_ends_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = address(ip("10.0.0.1"), Some("for=unknown"), None, &trusted);
        assert_eq!(got, ip("10.0.0.1"));
        let got = address(ip("10.0.0.1"), None, Some("garbage"), &trusted);
        assert_eq!(got, ip("10.0.0.1"));
        assert_eq!(
            address(ip("10.0.0.1"), None, None, &trusted),
            ip("10.0.0.1")
        );
    }
}
