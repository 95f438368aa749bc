//! 802.1Q for a v1 port's VLAN without the kernel's `8021q`: a TAP device is the VLAN's
//! untagged side (the CNI's addresses go on it, as on a kernel VLAN device, and it carries the
//! port's hardware address), and a packet socket on the port carries its frames. Each frame
//! the kernel sends into the TAP goes out of the port with the VLAN's tag; each frame the port
//! receives for the VLAN (the kernel reports the tag it took off beside the frame, or leaves
//! it in) goes into the TAP untagged. One thread per VLAN; it ends, and the TAP device with
//! it, when the [`Tagger`] is dropped.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use edgenet_dataplane::vlan::{self, Tci};

use crate::tunnels::device::{readable, timed_out, Packet, Tun};

/// The name of VLAN `vid`'s untagged side on port `port` (of index `index`), a TAP device or a
/// kernel VLAN device: `PORT.VID` as Linux names VLAN devices, or `vlINDEX.VID` (the index in
/// hex) when that is longer than an interface name may be.
pub fn vlan_name(port: &str, index: u32, vid: u16) -> String {
    let name = format!("{port}.{vid}");
    if name.len() <= 15 {
        name
    } else {
        format!("vl{index:x}.{vid}")
    }
}

/// One VLAN of a port, tagged in userspace.
pub struct Tagger {
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tagger {
    /// Starts tagging VLAN `vid` on the port of index `index`: makes the TAP device `name`
    /// and the port's packet socket, and the thread between them.
    pub fn start(name: &str, index: u32, vid: u16) -> io::Result<Tagger> {
        let tci = Tci {
            pcp: 0,
            dei: false,
            vid,
        };
        // Checked before the thread starts, which then never meets a tag it cannot put on.
        if !(1..=4094).contains(&vid) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("VLAN id {vid} is outside 1-4094"),
            ));
        }
        let tap = Tun::tap(name)?;
        let port = Packet::open(index)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("vlan-{vid}"))
            .spawn(move || carry(&label, &tap, &port, tci, &flag))?;
        Ok(Tagger {
            name: name.to_string(),
            stop,
            thread: Some(thread),
        })
    }

    /// The TAP device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Tagger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Carries frames between the TAP device and the port until `stop`.
fn carry(name: &str, tap: &Tun, port: &Packet, tci: Tci, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    let mut errors = 0u64;
    let mut warn = |what: &str, e: &io::Error| {
        errors += 1;
        // The first, then one in a thousand: a port without carrier fails every send.
        if errors % 1000 == 1 {
            tracing::warn!(vlan = tci.vid, tap = %name, error = %e, errors, "{what}");
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let ready = match readable(&[tap.fd(), port.fd()]) {
            Ok(r) => r,
            Err(e) => {
                warn("poll", &e);
                std::thread::sleep(crate::tunnels::device::WAIT);
                continue;
            }
        };
        if ready.contains(&0) {
            loop {
                match tap.read(&mut buf) {
                    // A runt or a frame the kernel tagged itself is not for the wire.
                    Ok(n) => {
                        if let Ok(frame) = vlan::tag(&buf[..n], tci) {
                            if let Err(e) = port.send(&frame) {
                                warn("a tagged frame was not sent", &e);
                            }
                        }
                    }
                    Err(e) if timed_out(&e) => break,
                    Err(e) => {
                        warn("TAP read", &e);
                        break;
                    }
                }
            }
        }
        if ready.contains(&1) {
            loop {
                match port.recv(&mut buf) {
                    Ok(r) if r.outgoing || r.len > buf.len() => {}
                    Ok(r) => {
                        if let Some(frame) = vlan::for_vid(&buf[..r.len], r.tci, tci.vid) {
                            if let Err(e) = tap.write(&frame) {
                                warn("an untagged frame was not delivered", &e);
                            }
                        }
                    }
                    Err(e) if timed_out(&e) => break,
                    Err(e) => {
                        warn("port read", &e);
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vlan_side_is_named_as_linux_names_it_when_that_fits() {
        assert_eq!(vlan_name("cni0", 7, 100), "cni0.100");
        assert_eq!(vlan_name("enp65s0f1np1", 12, 4094), "vlc.4094");
        assert!(vlan_name("a-port-name-15c", 4_000_000_000, 4094).len() <= 15);
    }
}
