//! Where a port's receive level comes from: the per-port file `DIR/INTERFACE` when there is
//! one (for interfaces without transceiver diagnostics, such as a veth, or an operator's own
//! poller; its format is `edgenet_interconnect::optics::parse_level_file`'s), else the
//! transceiver's diagnostics through `ethtool -m INTERFACE`; none when neither says.

use std::path::Path;
use std::process::Command;

use edgenet_interconnect::optics::{parse_ethtool_module, parse_level_file};

/// The receive level of `interface` in dBm, or none; an unreadable or malformed file is an
/// error naming it.
pub fn rx_dbm(dir: &Path, interface: &str) -> Result<Option<f64>, String> {
    match from_file(dir, interface)? {
        Some(level) => Ok(Some(level)),
        None => Ok(from_module(interface)),
    }
}

/// The level in the per-port file, if there is one.
pub fn from_file(dir: &Path, interface: &str) -> Result<Option<f64>, String> {
    let file = dir.join(interface);
    match std::fs::read_to_string(&file) {
        Ok(text) => parse_level_file(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// The transceiver's level through `ethtool -m` (a slow read of the module's EEPROM: callers
/// keep it a while), where ethtool is installed and the NIC has diagnostics.
pub fn from_module(interface: &str) -> Option<f64> {
    let out = Command::new("ethtool")
        .args(["-m", interface])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse_ethtool_module(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_wins_and_a_bad_one_is_named() {
        let dir = std::env::temp_dir().join(format!("edgenet-optics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cni0"), "rx_dbm = -21.5\n").unwrap();
        std::fs::write(dir.join("cni1"), "bright\n").unwrap();
        assert_eq!(rx_dbm(&dir, "cni0"), Ok(Some(-21.5)));
        let e = rx_dbm(&dir, "cni1").unwrap_err();
        assert!(e.contains("cni1") && e.contains("\"bright\""), "{e}");
        // Neither a file nor diagnostics (no such interface): no level.
        assert_eq!(rx_dbm(&dir, "no-such-port"), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
