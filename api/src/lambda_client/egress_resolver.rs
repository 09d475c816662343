//! Name resolution for a guarded lambda client: the system resolver's addresses, less those
//! the egress rules refuse. The connection goes only to an address checked here, in the same
//! step, so there is no second lookup for a DNS rebinding answer to slip into. A name whose
//! every address is refused fails with the rule, and no connection is attempted.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::egress::{EgressRules, Refusal};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) struct GuardedResolver {
    rules: Arc<EgressRules>,
}

impl GuardedResolver {
    pub(super) fn new(rules: Arc<EgressRules>) -> Self {
        GuardedResolver { rules }
    }
}

/// Every address a name resolved to was refused. It travels up reqwest's error chain, where
/// the client finds it and reports [`super::CallError::Denied`].
#[derive(Debug)]
pub(super) struct Refused(pub Refusal);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.rules.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = allowed(&rules, resolved).map_err(Refused)?;
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            Ok::<Addrs, BoxError>(Box::new(allowed.into_iter()))
        })
    }
}

/// The addresses the rules allow, in resolver order; when there were some and none is
/// allowed, the refusal of the lowest address, so the message is the same on every retry
/// whatever order the resolver answers in.
fn allowed(rules: &EgressRules, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
    let mut refusals = Vec::new();
    let mut allowed = Vec::new();
    for addr in addrs {
        match rules.check(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(refusal) => refusals.push(refusal),
        }
    }
    match refusals.into_iter().min_by_key(|r| r.addr) {
        Some(refusal) if allowed.is_empty() => Err(refusal),
        _ => Ok(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::Rule;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 0))
            .collect()
    }

    #[test]
    fn refused_addresses_are_dropped_and_the_rest_kept_in_order() {
        let rules = EgressRules::default();
        let got = allowed(&rules, addrs(&["10.0.0.2", "169.254.169.254", "10.0.0.1"])).unwrap();
        assert_eq!(got, addrs(&["10.0.0.2", "10.0.0.1"]));
    }

    #[test]
    fn a_name_with_only_refused_addresses_names_the_lowest() {
        let rules = EgressRules::default();
        for order in [
            ["169.254.2.2", "169.254.1.1"],
            ["169.254.1.1", "169.254.2.2"],
        ] {
            let refusal = allowed(&rules, addrs(&order)).unwrap_err();
            assert_eq!(
                refusal.addr,
                "169.254.1.1".parse::<std::net::IpAddr>().unwrap()
            );
            assert!(matches!(refusal.rule, Rule::Denied(_)));
        }
        assert_eq!(allowed(&rules, Vec::new()), Ok(Vec::new()));
    }
}
