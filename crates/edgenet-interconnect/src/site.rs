//! Sites (PoPs) with their facility and devices. A device has a dataplane and ports (slots),
//! each with a speed, an optic that fits the speed and dataplane (10GBASE-LR for 10G;
//! 100GBASE-LR on v1, 100GBASE-LR4 on v2), and the Linux interface that carries it on the
//! PoP's node. A site lists the dataplanes it offers and whether it has device diversity.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::dataplane::Dataplane;
use crate::Problem;

/// A port's speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Speed {
    /// 10 Gbit/s.
    #[serde(rename = "10G")]
    G10,
    /// 100 Gbit/s.
    #[serde(rename = "100G")]
    G100,
}

impl Speed {
    /// Its name (`10G`).
    pub fn name(self) -> &'static str {
        match self {
            Speed::G10 => "10G",
            Speed::G100 => "100G",
        }
    }
}

/// A port's optic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Optic {
    /// 10 Gbit/s single-mode, 10 km.
    #[serde(rename = "10GBASE-LR")]
    TenGLr,
    /// 100 Gbit/s single-mode, one lambda (v1 devices).
    #[serde(rename = "100GBASE-LR")]
    HundredGLr,
    /// 100 Gbit/s single-mode, four lambdas (v2 devices).
    #[serde(rename = "100GBASE-LR4")]
    HundredGLr4,
}

impl Optic {
    /// The optic a port of `speed` on a `dataplane` device takes.
    pub fn required(speed: Speed, dataplane: Dataplane) -> Optic {
        match (speed, dataplane) {
            (Speed::G10, _) => Optic::TenGLr,
            (Speed::G100, Dataplane::V1) => Optic::HundredGLr,
            (Speed::G100, Dataplane::V2) => Optic::HundredGLr4,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Optic::TenGLr => "10GBASE-LR",
            Optic::HundredGLr => "100GBASE-LR",
            Optic::HundredGLr4 => "100GBASE-LR4",
        }
    }
}

/// Where a site is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facility {
    /// `Equinix SP4`.
    pub name: String,
    /// The street address, as a Letter of Authorization prints it.
    pub address: String,
}

/// A port (slot) on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Its slot name on the device (`et-0/0/1`).
    pub slot: String,
    /// Its speed.
    pub speed: Speed,
    /// Its optic.
    pub optic: Optic,
    /// The Linux interface that carries it on the PoP's node.
    pub interface: String,
}

/// A device at a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Its name, unique at the site (`edge01.gru-b`).
    pub name: String,
    /// Its dataplane.
    pub dataplane: Dataplane,
    /// Its ports.
    #[serde(default)]
    pub ports: Vec<Port>,
}

/// A site (a PoP) where customers interconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The data center code (`gru-b`): three letters, then `-` and more letters or digits.
    pub code: String,
    /// The edgenet PoP (node) whose ports these are, which reports their links (default: the
    /// code).
    #[serde(default)]
    pub pop: Option<String>,
    /// The facility.
    pub facility: Facility,
    /// The IANA time zone business days are counted in (`America/Sao_Paulo`).
    pub timezone: String,
    /// Dates (`YYYY-MM-DD`) that are not business days at the site.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// The dataplanes the site offers.
    pub dataplanes: Vec<Dataplane>,
    /// Whether the site has more than one device for a customer's circuits to land on.
    #[serde(default)]
    pub device_diversity: bool,
    /// Its devices.
    #[serde(default)]
    pub devices: Vec<Device>,
}

impl Site {
    /// The name of the PoP that runs the site.
    pub fn pop_name(&self) -> &str {
        self.pop.as_deref().unwrap_or(&self.code)
    }

    /// The port `slot` of device `device`, with the device.
    pub fn port(&self, device: &str, slot: &str) -> Option<(&Device, &Port)> {
        let d = self.devices.iter().find(|d| d.name == device)?;
        Some((d, d.ports.iter().find(|p| p.slot == slot)?))
    }

    /// The PoP code: the three letters of the data center code (`gru` for `gru-b`).
    pub fn pop_code(&self) -> &str {
        self.code.split('-').next().unwrap_or(&self.code)
    }

    /// Every problem with the site, each with its field path.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let (letters, rest) = self
            .code
            .split_at(self.code.find('-').unwrap_or(self.code.len()));
        if letters.len() != 3
            || !letters.bytes().all(|b| b.is_ascii_lowercase())
            || !rest
                .bytes()
                .skip(1)
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            || rest == "-"
        {
            out.push(Problem::new(
                "code",
                format!(
                    "{:?} is not a data center code: three lower-case letters, then optionally - and letters or digits (gru-b)",
                    self.code
                ),
            ));
        }
        for (field, value) in [
            ("facility.name", &self.facility.name),
            ("facility.address", &self.facility.address),
        ] {
            if value.trim().is_empty() {
                out.push(Problem::new(field, "must not be empty"));
            }
        }
        if jiff::tz::TimeZoneDatabase::bundled()
            .get(&self.timezone)
            .is_err()
        {
            out.push(Problem::new(
                "timezone",
                format!(
                    "{:?} is not a time zone of the tz database (America/Sao_Paulo, UTC)",
                    self.timezone
                ),
            ));
        }
        for (i, h) in self.holidays.iter().enumerate() {
            if !is_date(h) {
                out.push(Problem::new(
                    format!("holidays[{i}]"),
                    format!("{h:?} is not a date (YYYY-MM-DD)"),
                ));
            }
        }
        if self.dataplanes.is_empty() {
            out.push(Problem::new(
                "dataplanes",
                "a site offers at least one dataplane",
            ));
        }
        if self.device_diversity && self.devices.len() < 2 {
            out.push(Problem::new(
                "device_diversity",
                format!(
                    "true needs at least two devices; the site has {}",
                    self.devices.len()
                ),
            ));
        }
        let mut names = HashSet::new();
        let mut interfaces = HashSet::new();
        for (d, device) in self.devices.iter().enumerate() {
            let p = format!("devices[{d}]");
            if device.name.trim().is_empty() {
                out.push(Problem::new(format!("{p}.name"), "must not be empty"));
            } else if !names.insert(device.name.as_str()) {
                out.push(Problem::new(
                    format!("{p}.name"),
                    format!("{:?} is used by another device of the site", device.name),
                ));
            }
            if !self.dataplanes.contains(&device.dataplane) {
                out.push(Problem::new(
                    format!("{p}.dataplane"),
                    format!(
                        "{} is not a dataplane the site offers ({})",
                        device.dataplane.name(),
                        self.dataplanes
                            .iter()
                            .map(|d| d.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let mut slots = HashSet::new();
            for (i, port) in device.ports.iter().enumerate() {
                let pp = format!("{p}.ports[{i}]");
                if port.slot.trim().is_empty() {
                    out.push(Problem::new(format!("{pp}.slot"), "must not be empty"));
                } else if !slots.insert(port.slot.as_str()) {
                    out.push(Problem::new(
                        format!("{pp}.slot"),
                        format!("{:?} is used by another port of the device", port.slot),
                    ));
                }
                let want = Optic::required(port.speed, device.dataplane);
                if port.optic != want {
                    out.push(Problem::new(
                        format!("{pp}.optic"),
                        format!(
                            "{} does not fit a {} port on a {} device: it takes {}",
                            port.optic.name(),
                            port.speed.name(),
                            device.dataplane.name(),
                            want.name()
                        ),
                    ));
                }
                if !is_interface(&port.interface) {
                    out.push(Problem::new(
                        format!("{pp}.interface"),
                        format!(
                            "{:?} is not a Linux interface name (1 to 15 characters, no /, no space)",
                            port.interface
                        ),
                    ));
                } else if !interfaces.insert(port.interface.as_str()) {
                    out.push(Problem::new(
                        format!("{pp}.interface"),
                        format!("{:?} carries another port of the site", port.interface),
                    ));
                }
            }
        }
        out
    }
}

/// A Linux interface name: 1 to 15 bytes, printable, no `/`, no white space.
fn is_interface(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// A calendar date, `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site() -> Site {
        serde_json::from_value(json!({
            "code": "gru-b",
            "facility": {"name": "Equinix SP4", "address": "Rua Ricardo Prudente de Aquino 85, Santana de Parnaíba"},
            "timezone": "America/Sao_Paulo",
            "holidays": ["2026-12-25"],
            "dataplanes": ["v1", "v2"],
            "device_diversity": true,
            "devices": [
                {"name": "edge01", "dataplane": "v1", "ports": [
                    {"slot": "et-0/0/1", "speed": "10G", "optic": "10GBASE-LR", "interface": "veth-cni1"},
                    {"slot": "et-0/0/2", "speed": "100G", "optic": "100GBASE-LR", "interface": "veth-cni2"}]},
                {"name": "edge02", "dataplane": "v2", "ports": [
                    {"slot": "et-0/0/1", "speed": "100G", "optic": "100GBASE-LR4", "interface": "veth-cni3"}]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_site_has_no_problem_and_a_pop_code() {
        let s = site();
        assert_eq!(s.validate(), []);
        assert_eq!(s.pop_code(), "gru");
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let mut s = site();
        s.code = "GRU_b".into();
        s.timezone = "Sao Paulo".into();
        s.holidays.push("2026-13-01".into());
        s.facility.address = " ".into();
        s.devices[1].dataplane = Dataplane::V1;
        s.devices[1].name = "edge01".into();
        s.devices[0].ports[1].optic = Optic::HundredGLr4;
        s.devices[0].ports[1].slot = "et-0/0/1".into();
        s.devices[1].ports[0].interface = "veth-cni1".into();
        s.dataplanes = vec![Dataplane::V2];
        let problems: Vec<String> = s.validate().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "code: \"GRU_b\" is not a data center code: three lower-case letters, then optionally - and letters or digits (gru-b)",
                "facility.address: must not be empty",
                "timezone: \"Sao Paulo\" is not a time zone of the tz database (America/Sao_Paulo, UTC)",
                "holidays[1]: \"2026-13-01\" is not a date (YYYY-MM-DD)",
                "devices[0].dataplane: v1 is not a dataplane the site offers (v2)",
                "devices[0].ports[1].slot: \"et-0/0/1\" is used by another port of the device",
                "devices[0].ports[1].optic: 100GBASE-LR4 does not fit a 100G port on a v1 device: it takes 100GBASE-LR",
                "devices[1].name: \"edge01\" is used by another device of the site",
                "devices[1].dataplane: v1 is not a dataplane the site offers (v2)",
                "devices[1].ports[0].optic: 100GBASE-LR4 does not fit a 100G port on a v1 device: it takes 100GBASE-LR",
                "devices[1].ports[0].interface: \"veth-cni1\" carries another port of the site",
            ]
        );
    }

    #[test]
    fn diversity_needs_two_devices_and_names_are_checked() {
        let mut s = site();
        s.devices.truncate(1);
        s.devices[0].ports[0].interface = "a/b".into();
        let problems: Vec<String> = s.validate().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "device_diversity: true needs at least two devices; the site has 1",
                "devices[0].ports[0].interface: \"a/b\" is not a Linux interface name (1 to 15 characters, no /, no space)",
            ]
        );
        assert!(serde_json::from_value::<Site>(json!({"code": "x"})).is_err());
    }
}
