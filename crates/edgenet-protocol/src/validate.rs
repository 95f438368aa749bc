//! Validation of the objects as the control plane's API receives them: a zone is checked by the
//! same code that checks a PoP's TOML (`edgenet_config::validate`), with the other zones beside
//! it so hostname clashes show, and its errors are reported with paths inside the zone body.
//! Files and names are looked up through the [`Environment`] given (the control plane's own
//! machine, or a fake).

use std::path::Path;

use edgenet_config::{Environment, RawConfig, ZoneSection};
use serde::Serialize;
use serde_json::Value;

use crate::PopRecord;

/// One problem with a body: the field path (inside the body) and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldProblem {
    /// `origins.servers[0].address`, or `None` for the body as a whole.
    pub field: Option<String>,
    /// The reason, with the value where there is one.
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: Some(field.into()),
        message: message.into(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, Vec<FieldProblem>> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        vec![FieldProblem {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }]
    })
}

fn check_name(body_name: &str, path_name: Option<&str>) -> Result<(), Vec<FieldProblem>> {
    match path_name {
        Some(p) if p != body_name => Err(vec![problem(
            "name",
            format!("{body_name:?} differs from the name in the URL ({p:?})"),
        )]),
        _ => Ok(()),
    }
}

/// Checks a zone body against the other stored zones (one of the same name is the zone being
/// replaced, and left out); returns its name and its canonical form (defaults filled in).
pub fn validate_zone(
    body: &Value,
    path_name: Option<&str>,
    others: &[ZoneSection],
    env: &dyn Environment,
) -> Result<(String, Value), Vec<FieldProblem>> {
    let zone: ZoneSection = parse(body)?;
    check_name(&zone.name, path_name)?;
    let mut raw = RawConfig {
        zones: others
            .iter()
            .filter(|z| z.name != zone.name)
            .cloned()
            .collect(),
        ..RawConfig::default()
    };
    let idx = raw.zones.len();
    raw.zones.push(zone.clone());
    let prefix = format!("zones[{idx}]");
    if let Err(errors) = edgenet_config::validate(&raw, Path::new("."), env) {
        let mine: Vec<FieldProblem> = errors
            .iter()
            .filter_map(|e| {
                let rest = e.path.strip_prefix(&prefix)?;
                let field = rest.trim_start_matches('.').to_string();
                let message = if e.value.is_empty() {
                    e.reason.clone()
                } else {
                    format!("{:?} {}", e.value, e.reason)
                };
                Some(FieldProblem {
                    field: (!field.is_empty()).then_some(field),
                    message,
                })
            })
            .collect();
        if !mine.is_empty() {
            return Err(mine);
        }
    }
    let canonical = serde_json::to_value(&zone).map_err(|e| vec![problem("", e.to_string())])?;
    Ok((zone.name, canonical))
}

/// Checks a PoP body; returns its name and canonical form.
pub fn validate_pop(
    body: &Value,
    path_name: Option<&str>,
) -> Result<(String, Value), Vec<FieldProblem>> {
    let pop: PopRecord = parse(body)?;
    check_name(&pop.name, path_name)?;
    let mut errors = Vec::new();
    if pop.name.is_empty()
        || pop.name.len() > 63
        || !pop
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errors.push(problem(
            "name",
            format!(
                "{:?} must be 1 to 63 letters, digits, '-', '_' or '.'",
                pop.name
            ),
        ));
    }
    if !(-90.0..=90.0).contains(&pop.latitude) {
        errors.push(problem(
            "latitude",
            format!("{} must be between -90 and 90", pop.latitude),
        ));
    }
    if !(-180.0..=180.0).contains(&pop.longitude) {
        errors.push(problem(
            "longitude",
            format!("{} must be between -180 and 180", pop.longitude),
        ));
    }
    for (i, a) in pop.addresses.iter().enumerate() {
        let ok = a
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            errors.push(problem(
                format!("addresses[{i}]"),
                format!("{a:?} is not host:port"),
            ));
        }
    }
    if !matches!(pop.role.as_str(), "edge" | "core") {
        errors.push(problem(
            "role",
            format!("{:?} must be \"edge\" or \"core\"", pop.role),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let canonical = serde_json::to_value(&pop).map_err(|e| vec![problem("", e.to_string())])?;
    Ok((pop.name, canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgenet_config::env::Offline;
    use serde_json::json;

    fn zone(name: &str, host: &str, origin: &str) -> Value {
        json!({"name": name, "hostnames": [host], "origins": {"servers": [{"address": origin}]}})
    }

    #[test]
    fn zone_errors_name_fields_inside_the_body() {
        let (name, canonical) =
            validate_zone(&zone("a", "a.test", "127.0.0.1:1"), None, &[], &Offline).unwrap();
        assert_eq!(name, "a");
        assert_eq!(canonical["cache"]["enabled"], true, "defaults filled in");

        let e =
            validate_zone(&zone("a", "a.test", "origin.test:80"), None, &[], &Offline).unwrap_err();
        assert_eq!(e[0].field.as_deref(), Some("origins.servers[0].address"));
        assert!(e[0].message.contains("cannot be resolved"), "{e:?}");

        let other: ZoneSection =
            serde_json::from_value(zone("b", "a.test", "127.0.0.1:1")).unwrap();
        let e = validate_zone(
            &zone("a", "a.test", "127.0.0.1:1"),
            None,
            &[other],
            &Offline,
        )
        .unwrap_err();
        assert_eq!(e[0].field.as_deref(), Some("hostnames[0]"));
        assert!(e[0].message.contains("zone \"b\""), "{e:?}");
        // Replacing a zone is not a clash with its own stored self.
        let same: ZoneSection = serde_json::from_value(zone("a", "a.test", "127.0.0.1:1")).unwrap();
        assert!(validate_zone(
            &zone("a", "a.test", "127.0.0.1:2"),
            Some("a"),
            &[same],
            &Offline
        )
        .is_ok());

        let e = validate_zone(
            &zone("a", "a.test", "127.0.0.1:1"),
            Some("z"),
            &[],
            &Offline,
        )
        .unwrap_err();
        assert_eq!(e[0].field.as_deref(), Some("name"));
        let e = validate_zone(&json!({"name": "a", "hostnames": "x"}), None, &[], &Offline)
            .unwrap_err();
        assert_eq!(e[0].field.as_deref(), Some("hostnames"));
    }

    #[test]
    fn pop_records_are_checked_field_by_field() {
        let ok = json!({"name": "p1", "latitude": 1.0, "longitude": 2.0, "addresses": ["h:1"]});
        let (name, canonical) = validate_pop(&ok, Some("p1")).unwrap();
        assert_eq!((name.as_str(), &canonical["role"]), ("p1", &json!("edge")));
        let bad = json!({"name": "p 1", "latitude": 91.0, "longitude": 2.0,
            "addresses": ["nope"], "role": "middle"});
        let fields: Vec<Option<String>> = validate_pop(&bad, None)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            ["name", "latitude", "addresses[0]", "role"].map(|f| Some(f.to_string()))
        );
    }
}
