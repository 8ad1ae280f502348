//! Addresses: the one a node advertises when bound to every interface, and
//! join targets given as DNS names.
//!
//! A node bound to `0.0.0.0` (or `[::]`) advertises its machine's private
//! address, as memberlist does: the one address of the bound family on an
//! up, non-loopback interface that is private (IPv4: 10/8, 172.16/12,
//! 192.168/16, 100.64/10 shared address space; IPv6: unique local fc00::/7).
//! None, or several, is an error naming the candidates and `--advertise`.
//!
//! A join target is `host:port`; the host may be a DNS name, and every
//! address it resolves to (A and AAAA) is tried. Names are resolved again
//! on each retry while the node has not joined anyone (see
//! [`super::Roster`]), so a name whose records appear later (a Kubernetes
//! headless service while its pods start) still works.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Longest wait for one name to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `ip` is a private address in the sense above.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xFE00) == 0xFC00,
    }
}

/// The one private address among `candidates` (interface name, address)
/// of the family `v6` says; an error naming them when there is none or
/// more than one.
pub fn choose_private(candidates: &[(String, IpAddr)], v6: bool) -> Result<IpAddr, String> {
    let family: Vec<&(String, IpAddr)> = candidates
        .iter()
        .filter(|(_, ip)| ip.is_ipv6() == v6 && !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    let private: Vec<&(String, IpAddr)> = family
        .iter()
        .copied()
        .filter(|(_, ip)| is_private(*ip))
        .collect();
    let list = |l: &[&(String, IpAddr)]| {
        l.iter()
            .map(|(n, ip)| format!("{ip} on {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = if v6 {
        "unique-local IPv6"
    } else {
        "private IPv4"
    };
    match private.as_slice() {
        [one] => Ok(one.1),
        [] if family.is_empty() => Err(format!(
            "no {kind} address to advertise: this machine has no address of that family besides loopback; give --advertise IP:PORT"
        )),
        [] => Err(format!(
            "no {kind} address to advertise (found {}); give --advertise IP:PORT",
            list(&family)
        )),
        several => Err(format!(
            "several {kind} addresses could be advertised ({}); choose one with --advertise IP:PORT",
            list(several)
        )),
    }
}

/// The address to advertise for a node bound to the unspecified address of
/// `bind`'s family: this machine's one private address of that family.
pub fn private_advertise(bind: SocketAddr) -> Result<SocketAddr, String> {
    let ifs = if_addrs::get_if_addrs()
        .map_err(|e| format!("cannot list network interfaces: {e}; give --advertise IP:PORT"))?;
    let candidates: Vec<(String, IpAddr)> =
        ifs.into_iter().map(|i| (i.name.clone(), i.ip())).collect();
    let ip = choose_private(&candidates, bind.is_ipv6())?;
    Ok(SocketAddr::new(ip, bind.port()))
}

/// Resolves join targets: `ip:port` as is, `host:port` through DNS (every
/// address). Returns the addresses (deduplicated, in order) and, for each
/// target that gave none, why.
pub async fn resolve(targets: &[String]) -> (Vec<SocketAddr>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for t in targets {
        if let Ok(a) = t.parse::<SocketAddr>() {
            if !out.contains(&a) {
                out.push(a);
            }
            continue;
        }
        if !has_port(t) {
            errors.push(format!("{t}: expected HOST:PORT"));
            continue;
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(t.as_str())).await {
            Ok(Ok(addrs)) => {
                let before = out.len();
                for a in addrs {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                if out.len() == before {
                    errors.push(format!("{t}: the name resolved to no address"));
                }
            }
            Ok(Err(e)) => errors.push(format!("{t}: {e}")),
            Err(_) => errors.push(format!(
                "{t}: no answer from DNS within {} s",
                RESOLVE_TIMEOUT.as_secs()
            )),
        }
    }
    (out, errors)
}

/// Whether `t` ends in `:PORT` (a bracketed IPv6 literal or a name).
fn has_port(t: &str) -> bool {
    t.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// Checks a join target's shape without resolving it (for configuration
/// errors at start).
pub fn check_target(t: &str) -> Result<(), String> {
    if t.parse::<SocketAddr>().is_ok() || has_port(t) {
        Ok(())
    } else {
        Err(format!(
            "{t:?}: expected HOST:PORT (an IP address or a DNS name, and a port)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(list: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        list.iter()
            .map(|(n, ip)| ((*n).to_owned(), ip.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_one_private_address_is_chosen() {
        let ifs = c(&[
            ("lo", "127.0.0.1"),
            ("eth0", "10.1.2.3"),
            ("eth1", "8.8.8.8"),
            ("lo", "::1"),
            ("eth0", "fd00::2"),
            ("eth0", "fe80::1"),
        ]);
        assert_eq!(
            choose_private(&ifs, false).unwrap(),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            choose_private(&ifs, true).unwrap(),
            "fd00::2".parse::<IpAddr>().unwrap()
        );
        assert!(is_private("100.64.0.1".parse().unwrap()));
        assert!(is_private("172.31.255.1".parse().unwrap()));
        assert!(!is_private("172.32.0.1".parse().unwrap()));
        assert!(!is_private("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn none_or_several_is_a_clear_error() {
        let e =
            choose_private(&c(&[("lo", "127.0.0.1"), ("eth0", "192.0.2.2")]), false).unwrap_err();
        assert!(
            e.contains("192.0.2.2 on eth0") && e.contains("--advertise"),
            "{e}"
        );
        let e = choose_private(&c(&[("eth0", "10.0.0.1"), ("eth1", "192.168.1.9")]), false)
            .unwrap_err();
        assert!(
            e.contains("several")
                && e.contains("10.0.0.1 on eth0")
                && e.contains("192.168.1.9 on eth1"),
            "{e}"
        );
        let e = choose_private(&c(&[("lo", "127.0.0.1")]), false).unwrap_err();
        assert!(e.contains("besides loopback"), "{e}");
    }

    #[test]
    fn targets_need_a_port() {
        assert!(check_target("localhost:7946").is_ok());
        assert!(check_target("[::1]:7946").is_ok());
        assert!(check_target("10.0.0.1:1").is_ok());
        assert!(check_target("localhost").is_err());
        assert!(check_target(":7946").is_err());
        assert!(check_target("host:port").is_err());
    }

    #[tokio::test]
    async fn names_resolve_to_every_address() {
        let (addrs, errors) = resolve(&[
            "localhost:7946".to_owned(),
            "127.0.0.1:7946".to_owned(),
            "no-such-host.invalid:1".to_owned(),
        ])
        .await;
        assert!(
            addrs.contains(&"127.0.0.1:7946".parse().unwrap()),
            "{addrs:?}"
        );
        assert_eq!(
            addrs
                .iter()
                .filter(|a| **a == "127.0.0.1:7946".parse().unwrap())
                .count(),
            1
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("no-such-host.invalid:1"),
            "{errors:?}"
        );
    }
}
