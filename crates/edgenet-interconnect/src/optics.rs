//! A port's optical receive level, from the two sources a PoP reads: the transceiver's
//! diagnostics as `ethtool -m IFACE` prints them ([`parse_ethtool_module`]), and, where an
//! interface has none (a veth, a copper port, a NIC without DOM), a per-port file an operator
//! or a monitoring agent writes ([`parse_level_file`]): one line holding the level in dBm
//! (`-3.4`), or `rx_dbm = -3.4`; a `#` starts a comment.

/// The lowest level a file may say (an optic reads nothing below about -40 dBm).
pub const MIN_DBM: f64 = -60.0;
/// The highest (no optic receives more than a few dBm without damage).
pub const MAX_DBM: f64 = 20.0;

fn level(value: &str) -> Result<f64, String> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a level in dBm (-3.4)", value.trim()))?;
    if !(MIN_DBM..=MAX_DBM).contains(&v) {
        return Err(format!("{v} dBm is outside {MIN_DBM} to {MAX_DBM}"));
    }
    Ok(v)
}

/// The level a per-port file says.
pub fn parse_level_file(text: &str) -> Result<f64, String> {
    let mut found = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let value = match line.split_once('=') {
            Some((key, value)) if key.trim() == "rx_dbm" => value,
            Some((key, _)) => {
                return Err(format!("line {}: {:?} is not rx_dbm", i + 1, key.trim()))
            }
            None => line,
        };
        if found.is_some() {
            return Err(format!("line {}: a second level", i + 1));
        }
        found = Some(level(value).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    found.ok_or_else(|| "no level: write the receive level in dBm (-3.4)".to_string())
}

/// The receive level in `ethtool -m` output: `Receiver signal average optical power`, or
/// the lowest lane of `Rx power` lines (a four-lane 100G optic reports each); none when the
/// module reports no receive power.
pub fn parse_ethtool_module(text: &str) -> Option<f64> {
    let mut lanes = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let wanted = key.starts_with("receiver signal average optical power")
            || (key.starts_with("rx power") || key.starts_with("laser rx power"))
                && !key.contains("alarm")
                && !key.contains("warning");
        if !wanted {
            continue;
        }
        // `0.5012 mW / -3.00 dBm`
        let dbm = value
            .split('/')
            .map(str::trim)
            .find_map(|part| part.strip_suffix("dBm"))
            .and_then(|v| level(v).ok());
        lanes.extend(dbm);
    }
    lanes.into_iter().reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_file_holds_one_level() {
        assert_eq!(parse_level_file("-3.4\n"), Ok(-3.4));
        assert_eq!(
            parse_level_file("# from the DOM poller\nrx_dbm = -24.5 # low\n"),
            Ok(-24.5)
        );
        for (text, why) in [
            ("", "no level"),
            ("nope", "\"nope\" is not a level"),
            ("tx_dbm = -2", "\"tx_dbm\" is not rx_dbm"),
            ("-3\n-4", "line 2: a second level"),
            ("-300", "outside"),
            ("NaN", "outside"),
        ] {
            let e = parse_level_file(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn ethtool_reports_one_level_or_the_weakest_lane() {
        let sfp = "\tIdentifier                                : 0x03 (SFP)\n\
                   \tLaser output power                        : 0.5610 mW / -2.51 dBm\n\
                   \tReceiver signal average optical power     : 0.4070 mW / -3.90 dBm\n\
                   \tLaser rx power high alarm threshold       : 1.0000 mW / 0.00 dBm\n";
        assert_eq!(parse_ethtool_module(sfp), Some(-3.9));
        let qsfp = "\tRx power channel 1                        : 0.8000 mW / -0.97 dBm\n\
                    \tRx power channel 2                        : 0.0050 mW / -23.01 dBm\n\
                    \tRx power channel 3                        : 0.7000 mW / -1.55 dBm\n\
                    \tRx power high alarm threshold             : 2.0000 mW / 3.01 dBm\n";
        assert_eq!(parse_ethtool_module(qsfp), Some(-23.01));
        assert_eq!(
            parse_ethtool_module("Cannot get module EEPROM information: Operation not supported"),
            None
        );
    }
}
