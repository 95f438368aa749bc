//! The backbone (DESIGN.md section 3): PoPs measure each other and the origins, share what
//! they measured, and pick per origin the fastest path, direct or through relay PoPs.
//!
//! `paths` is the pure core: smoothed link estimates, shortest paths on latency with a loss
//! penalty, and hysteresis so a route does not flap. Probing, sharing and relaying are the IO
//! around it (work in progress, see the issue notes).

pub mod paths;
