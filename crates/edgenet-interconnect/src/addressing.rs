//! Point-to-point addressing: a /31 (and optionally a /127) per CNI from the operator's
//! pools, never overlapping another; the two halves are ours (the lower address) and the
//! customer's (the upper). The store calls [`next_free_v4`] inside the transaction that takes
//! the allocation, so concurrent creates cannot pick the same pair.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// The lowest /31 of `pool` that overlaps nothing in `taken`.
pub fn next_free_v4(pool: Ipv4Net, taken: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
    pool.subnets(31).ok()?.find(|n| {
        !taken
            .iter()
            .any(|t| t.contains(&n.network()) || n.contains(&t.network()))
    })
}

/// The lowest /127 of `pool` that overlaps nothing in `taken`.
pub fn next_free_v6(pool: Ipv6Net, taken: &BTreeSet<Ipv6Net>) -> Option<Ipv6Net> {
    pool.subnets(127).ok()?.find(|n| {
        !taken
            .iter()
            .any(|t| t.contains(&n.network()) || n.contains(&t.network()))
    })
}

/// Our address and the customer's in a /31.
pub fn halves_v4(pair: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let ours = pair.network();
    (ours, Ipv4Addr::from(u32::from(ours) + 1))
}

/// Our address and the customer's in a /127.
pub fn halves_v6(pair: Ipv6Net) -> (Ipv6Addr, Ipv6Addr) {
    let ours = pair.network();
    (ours, Ipv6Addr::from(u128::from(ours) + 1))
}

/// Why `net` is not a point-to-point pair: not a /31, or not on its boundary.
pub fn check_pair_v4(net: &Ipv4Net) -> Result<(), String> {
    if net.prefix_len() != 31 {
        return Err(format!("{net} is not a /31"));
    }
    if net.addr() != net.network() {
        return Err(format!(
            "{net} is not a pair: a /31 starts at an even address ({})",
            net.trunc()
        ));
    }
    Ok(())
}

/// Why `net` is not a /127 pair.
pub fn check_pair_v6(net: &Ipv6Net) -> Result<(), String> {
    if net.prefix_len() != 127 {
        return Err(format!("{net} is not a /127"));
    }
    if net.addr() != net.network() {
        return Err(format!(
            "{net} is not a pair: a /127 starts at an even address ({})",
            net.trunc()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_allocated_lowest_first_and_never_overlap() {
        let pool: Ipv4Net = "100.64.0.0/29".parse().unwrap();
        let mut taken = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(n) = next_free_v4(pool, &taken) {
            taken.insert(n);
            got.push(n.to_string());
        }
        assert_eq!(
            got,
            [
                "100.64.0.0/31",
                "100.64.0.2/31",
                "100.64.0.4/31",
                "100.64.0.6/31"
            ]
        );
        // A wider block taken by hand (a /30) covers two pairs.
        let mut taken: BTreeSet<Ipv4Net> = ["100.64.0.0/30".parse().unwrap()].into();
        assert_eq!(
            next_free_v4(pool, &taken).unwrap().to_string(),
            "100.64.0.4/31"
        );
        taken.insert("100.64.0.4/31".parse().unwrap());
        taken.insert("100.64.0.6/31".parse().unwrap());
        assert_eq!(next_free_v4(pool, &taken), None, "the pool is full");
        let v6: Ipv6Net = "2001:db8::/126".parse().unwrap();
        let first = next_free_v6(v6, &BTreeSet::new()).unwrap();
        assert_eq!(first.to_string(), "2001:db8::/127");
        assert_eq!(halves_v6(first).1.to_string(), "2001:db8::1");
    }

    #[test]
    fn the_halves_are_ours_then_the_customers_and_pairs_are_checked() {
        let (ours, theirs) = halves_v4("192.0.2.10/31".parse().unwrap());
        assert_eq!(
            (ours.to_string(), theirs.to_string()),
            ("192.0.2.10".into(), "192.0.2.11".into())
        );
        assert_eq!(check_pair_v4(&"192.0.2.10/31".parse().unwrap()), Ok(()));
        assert_eq!(
            check_pair_v4(&"192.0.2.11/31".parse().unwrap()).unwrap_err(),
            "192.0.2.11/31 is not a pair: a /31 starts at an even address (192.0.2.10/31)"
        );
        assert!(check_pair_v4(&"192.0.2.8/30".parse().unwrap()).is_err());
        assert!(check_pair_v6(&"2001:db8::1/127".parse().unwrap()).is_err());
    }
}
