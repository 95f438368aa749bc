//! Interconnects on the PoP: what the node does for each CNI the control plane streams to it
//! (`edgenet_protocol::CniProvision` for the sites this PoP runs): the kernel side of a port
//! through netlink ([`netlink`]: the CNI's /31 and /127 and the MTU on the interface the site
//! maps the port to, the interface's link state, peering routes in a table of their own); the
//! port's receive level ([`optics`]); the provisioner that keeps the kernel in step with the
//! streamed CNIs ([`provision`]); each CNI's BGP session and the installer of its routes
//! ([`sessions`]); and the driver that runs them and reports what it sees ([`driver`]).

pub mod driver;
pub mod netlink;
pub mod optics;
pub mod provision;
pub mod sessions;
pub mod tagger;

pub use driver::Interconnects;

/// Network namespaces for the tests of this module (root only).
#[cfg(test)]
pub(crate) mod testing {
    use std::os::fd::AsFd;
    use std::process::Command;

    use super::netlink::Netlink;

    /// A network namespace with a veth pair (`cnia` at MTU 9000 holding 192.0.2.9/24, `cnib`),
    /// deleted on drop.
    pub(crate) struct Namespace(String);

    impl Namespace {
        pub(crate) fn new() -> Namespace {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("ennl{}-{n}", std::process::id());
            let ns = Namespace(name.clone());
            for args in [
                vec!["netns", "add", &name],
                vec![
                    "-n", &name, "link", "add", "cnia", "mtu", "9000", "type", "veth", "peer",
                    "name", "cnib",
                ],
                vec!["-n", &name, "addr", "add", "192.0.2.9/24", "dev", "cnia"],
            ] {
                let ok = Command::new("ip")
                    .args(&args)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "ip {args:?}");
            }
            ns
        }

        /// Runs `f` with a netlink socket inside the namespace (on a thread of its own, which
        /// enters it).
        pub(crate) fn run<T: Send + 'static>(
            &self,
            f: impl FnOnce(Netlink) -> futures_util::future::BoxFuture<'static, T> + Send + 'static,
        ) -> T {
            let path = format!("/run/netns/{}", self.0);
            std::thread::spawn(move || {
                let file = std::fs::File::open(path).unwrap();
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move { f(Netlink::open().unwrap()).await })
            })
            .join()
            .unwrap()
        }

        pub(crate) fn ip(&self, args: &[&str]) -> String {
            let out = Command::new("ip")
                .args(["-n", &self.0])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    pub(crate) fn root() -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            assert!(
                std::env::var_os("CI").is_none(),
                "netlink tests need root (network namespaces), and CI runs as root"
            );
            eprintln!("skipping: network namespaces need root");
        }
        root
    }
}
