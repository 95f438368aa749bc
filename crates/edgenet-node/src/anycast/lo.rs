//! The anycast addresses on `lo`: added at start (unless present) so the node accepts traffic
//! for them, removed on exit (only those it added, or took over on an upgrade).

use std::net::IpAddr;
use std::process::Command;

/// Adds each address to `lo` unless it is there already; returns the ones added, and with
/// `claim_present` (an upgrade: the old node handed them over) those that were there too.
pub fn add_lo_addresses(
    addrs: &[(IpAddr, u8)],
    claim_present: bool,
) -> anyhow::Result<Vec<(IpAddr, u8)>> {
    let mut added = Vec::new();
    for (ip, len) in addrs {
        let family = if ip.is_ipv4() { "-4" } else { "-6" };
        let shown = format!("{ip}/{len}");
        let present = Command::new("ip")
            .args([family, "-o", "addr", "show", "dev", "lo", "to", &shown])
            .output()
            .map_err(|e| anyhow::anyhow!("anycast.lo_addresses: cannot run ip(8): {e}"))?;
        if String::from_utf8_lossy(&present.stdout).contains(&ip.to_string()) {
            if claim_present {
                added.push((*ip, *len));
            }
            continue;
        }
        let out = Command::new("ip")
            .args([family, "addr", "add", &shown, "dev", "lo"])
            .output()
            .map_err(|e| anyhow::anyhow!("anycast.lo_addresses: cannot run ip(8): {e}"))?;
        if !out.status.success() {
            remove_lo_addresses(&added);
            anyhow::bail!(
                "anycast.lo_addresses: cannot add {shown} to lo (needs CAP_NET_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        tracing::info!(address = %shown, "anycast address added to lo");
        added.push((*ip, *len));
    }
    Ok(added)
}

pub fn remove_lo_addresses(addrs: &[(IpAddr, u8)]) {
    for (ip, len) in addrs {
        let family = if ip.is_ipv4() { "-4" } else { "-6" };
        let _ = Command::new("ip")
            .args([family, "addr", "del", &format!("{ip}/{len}"), "dev", "lo"])
            .output();
    }
}
