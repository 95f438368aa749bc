//! Origin pools (stage 9 of the request path): which origin server gets the next request.
//!
//! Pure decisions with the clock passed in: weighted selection, the active health-check state
//! machine and passive ejection. The health checker's IO lives in `edgenet-proxy`.

pub mod health;
pub mod pool;

pub use health::{OriginHealth, Tracker, Transition};
pub use pool::{smooth_schedule, HealthRegistry, Member, Pool};
