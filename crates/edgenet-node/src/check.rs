//! `edgenet check`: a configuration file validated as a node would load it, and its workers'
//! components compiled into the node's artifact cache, so a component the node would refuse is
//! named now and one it accepts deploys without compiling.

use std::path::Path;

/// What a configuration that passed holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Client listeners.
    pub listeners: usize,
    /// Zones.
    pub zones: usize,
    /// Workers, all compiled.
    pub workers: usize,
}

/// Checks the configuration at `path`: every error with its field path, value and reason,
/// then every worker component deploying would refuse, with the reason.
pub fn check(path: &Path) -> Result<Summary, Vec<String>> {
    let config = edgenet_config::load(path).map_err(|e| e.lines())?;
    let refused = edgenet_proxy::stages::worker::check_components(&config);
    if !refused.is_empty() {
        let origin = path.display();
        return Err(refused
            .into_iter()
            .map(|r| format!("{origin}: {r}"))
            .collect());
    }
    Ok(Summary {
        listeners: config.listeners.len(),
        zones: config.zones.len(),
        workers: config.zones.iter().map(|z| z.workers.len()).sum(),
    })
}
