//! Every PoP defends itself (DESIGN.md section 1, stages 3 and 5). Pure decisions from counts
//! and the time passed in: `window` is Cloudflare's sliding-window rate estimate over a
//! count-min sketch (fixed memory whatever the number of keys); `limiter` turns it into
//! rate-limit decisions with mitigation timeouts; `ddos` finds floods and their fingerprints;
//! `ja4` fingerprints TLS clients from their ClientHello.
//!
//! pingora-limits has the same estimator but reads the clock itself; this one takes `now` so
//! tests (and the simulator) drive time.

pub mod ddos;
pub mod ja4;
pub mod limiter;
pub mod window;
