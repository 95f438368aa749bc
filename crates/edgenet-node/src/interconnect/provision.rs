//! From the CNIs the control plane streams for this PoP's sites to what the kernel holds:
//! [`setup`] is what one CNI needs on its port (our half of its /31 and /127, the dataplane's
//! port MTU), [`plan`] the steps from what is configured to what is wanted (removals first,
//! then what is new or changed; nothing for what is already right), and [`Provisioner`]
//! carries them out through netlink, keeping what each CNI holds so that removing a CNI
//! removes what it configured and nothing else.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edgenet_interconnect::addressing::{halves_v4, halves_v6};
use edgenet_protocol::CniProvision;

use super::netlink::{Netlink, NetlinkError};

/// What one CNI holds on its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSetup {
    /// The interface the site maps the port to.
    pub interface: String,
    /// Our addresses, with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// The port's MTU.
    pub mtu: u32,
}

/// What `cni` needs on its port; none when it rides no port of this PoP (a partner's or a
/// cloud's circuit without an interface).
pub fn setup(cni: &CniProvision) -> Option<PortSetup> {
    let interface = cni.interface.clone()?;
    let mut addresses = Vec::new();
    if let Some(pair) = cni.spec.p2p_v4 {
        addresses.push((IpAddr::V4(halves_v4(pair).0), 31));
    }
    if let Some(pair) = cni.spec.p2p_v6 {
        addresses.push((IpAddr::V6(halves_v6(pair).0), 127));
    }
    Some(PortSetup {
        interface,
        addresses,
        mtu: u32::from(cni.dataplane.port_mtu()),
    })
}

/// One step of a plan, for a CNI (by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Take what the CNI held off its port.
    Remove(String, PortSetup),
    /// Put what the CNI needs on its port.
    Configure(String, PortSetup),
}

/// The steps from `have` to `want`: every setup that is gone or changed is removed first, then
/// every new or changed one configured.
pub fn plan(have: &BTreeMap<String, PortSetup>, want: &BTreeMap<String, PortSetup>) -> Vec<Step> {
    let mut steps: Vec<Step> = have
        .iter()
        .filter(|(id, s)| want.get(*id) != Some(*s))
        .map(|(id, s)| Step::Remove(id.clone(), s.clone()))
        .collect();
    steps.extend(
        want.iter()
            .filter(|(id, s)| have.get(*id) != Some(*s))
            .map(|(id, s)| Step::Configure(id.clone(), s.clone())),
    );
    steps
}

/// Keeps the kernel in step with this PoP's CNIs.
pub struct Provisioner {
    netlink: Netlink,
    have: BTreeMap<String, PortSetup>,
}

impl Provisioner {
    /// A provisioner that has configured nothing yet.
    pub fn new(netlink: Netlink) -> Provisioner {
        Provisioner {
            netlink,
            have: BTreeMap::new(),
        }
    }

    /// What each CNI holds now.
    pub fn configured(&self) -> &BTreeMap<String, PortSetup> {
        &self.have
    }

    /// Brings the kernel to `cnis` (this PoP's, by id); each CNI whose step failed, with why
    /// (the others are done, and a failed one is tried again at the next call).
    pub async fn apply<'a>(
        &mut self,
        cnis: impl IntoIterator<Item = (&'a str, &'a CniProvision)>,
    ) -> Vec<(String, NetlinkError)> {
        let want: BTreeMap<String, PortSetup> = cnis
            .into_iter()
            .filter_map(|(id, c)| setup(c).map(|s| (id.to_string(), s)))
            .collect();
        let mut failed = Vec::new();
        for step in plan(&self.have, &want) {
            match step {
                Step::Remove(id, s) => {
                    match self.netlink.remove(&s.interface, &s.addresses).await {
                        Ok(()) => {
                            self.have.remove(&id);
                            tracing::info!(cni = %id, interface = %s.interface, "CNI addresses removed");
                        }
                        Err(e) => failed.push((id, e)),
                    }
                }
                Step::Configure(id, s) => {
                    match self
                        .netlink
                        .configure(&s.interface, &s.addresses, s.mtu)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(cni = %id, interface = %s.interface, addresses = ?s.addresses, mtu = s.mtu, "CNI configured");
                            self.have.insert(id, s);
                        }
                        Err(e) => failed.push((id, e)),
                    }
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cni(interface: Option<&str>, v4: &str) -> CniProvision {
        serde_json::from_value(json!({"pop": "p", "site": "gru-b", "device": "edge01",
            "dataplane": "v1", "interface": interface, "account": "a", "interconnect": "i",
            "spec": {"interconnect": "i", "customer_asn": 64700, "use_case": "wan",
                "p2p_v4": v4, "p2p_v6": "2001:db8:ff::/127"}}))
        .unwrap()
    }

    #[test]
    fn a_cni_needs_our_halves_and_the_port_mtu_and_the_plan_touches_only_what_changed() {
        let s = setup(&cni(Some("cni0"), "100.64.0.2/31")).unwrap();
        assert_eq!(
            s.addresses,
            [
                ("100.64.0.2".parse().unwrap(), 31),
                ("2001:db8:ff::".parse().unwrap(), 127)
            ]
        );
        assert_eq!((s.interface.as_str(), s.mtu), ("cni0", 1500));
        assert_eq!(
            setup(&cni(None, "100.64.0.2/31")),
            None,
            "rides no port of ours"
        );

        let have = BTreeMap::from([("a".to_string(), s.clone())]);
        assert!(plan(&have, &have).is_empty());
        let moved = setup(&cni(Some("cni1"), "100.64.0.2/31")).unwrap();
        let want = BTreeMap::from([
            ("a".to_string(), moved.clone()),
            (
                "b".to_string(),
                setup(&cni(Some("cni0"), "100.64.0.4/31")).unwrap(),
            ),
        ]);
        let steps = plan(&have, &want);
        assert_eq!(steps[0], Step::Remove("a".into(), s));
        assert_eq!(steps[1], Step::Configure("a".into(), moved));
        assert!(matches!(&steps[2], Step::Configure(id, _) if id == "b"));
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn the_kernel_follows_the_cnis_and_a_removed_one_takes_only_its_addresses() {
        use super::super::testing::{root, Namespace};
        if !root() {
            return;
        }
        let ns = Namespace::new();
        let (first, second, last) = ns.run(|nl| {
            Box::pin(async move {
                let mut p = Provisioner::new(nl.clone());
                let a = cni(Some("cnia"), "100.64.0.2/31");
                assert!(p.apply([("a", &a)]).await.is_empty());
                let first = nl.link("cnia").await.unwrap();
                // Its pair changes (a replace in the API): the old address goes, the new comes.
                let a2 = cni(Some("cnia"), "100.64.0.6/31");
                let missing = cni(Some("nope"), "100.64.0.8/31");
                let failed = p.apply([("a", &a2), ("m", &missing)]).await;
                assert_eq!(failed.len(), 1, "{failed:?}");
                assert_eq!(failed[0].0, "m");
                assert!(failed[0].1.to_string().contains("\"nope\""));
                let second = nl.link("cnia").await.unwrap();
                assert!(!p.configured().contains_key("m"), "tried again next time");
                assert!(p.apply([]).await.is_empty());
                assert!(p.configured().is_empty());
                (first, second, nl.link("cnia").await.unwrap())
            })
        });
        let v4 = |l: &super::super::netlink::Link| {
            let mut a: Vec<String> = l
                .addresses
                .iter()
                .filter(|(ip, _)| ip.is_ipv4())
                .map(|(ip, len)| format!("{ip}/{len}"))
                .collect();
            a.sort();
            a
        };
        assert_eq!(v4(&first), ["100.64.0.2/31", "192.0.2.9/24"]);
        assert_eq!(first.mtu, 1500);
        assert_eq!(v4(&second), ["100.64.0.6/31", "192.0.2.9/24"]);
        assert_eq!(
            v4(&last),
            ["192.0.2.9/24"],
            "the interface's own address stays"
        );
        assert!(!ns.ip(&["addr", "show", "cnia"]).contains("2001:db8:ff::"));
    }
}
