//! Which addresses the controller may connect to when it asks a lambda: CIDR allow and deny
//! lists (`--lambda-allow-cidrs`, `--lambda-deny-cidrs`). The rules judge the address a
//! connection would go to, after name resolution, so a name that resolves to a cloud metadata
//! service is refused like the literal address would be. Pure; the lambda client applies it.

use std::net::IpAddr;
use std::str::FromStr;

/// The deny list when none is given: link-local addresses, where cloud metadata services
/// (and their credentials) live.
pub const DEFAULT_DENY: &str = "169.254.0.0/16,fe80::/10";

/// An address block like `10.0.0.0/8` or `fe80::/10`; a bare address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR did not parse; the message quotes it and says what a valid one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{text:?} is not a CIDR like 10.0.0.0/8 or fe80::/10: {problem}")]
    Malformed { text: String, problem: &'static str },
    #[error("{text:?}: an {family} prefix length is at most {max}")]
    PrefixTooLong {
        text: String,
        family: &'static str,
        max: u8,
    },
    #[error("{text:?} has bits set after the prefix; did you mean {suggestion}?")]
    HostBitsSet { text: String, suggestion: Cidr },
}

impl Cidr {
    /// Whether `ip` lies in the block. An IPv4 block never holds an IPv6 address and the
    /// reverse; [`EgressRules::check`] looks at IPv4-mapped IPv6 addresses both ways.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = |problem| CidrError::Malformed {
            text: text.to_owned(),
            problem,
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| malformed("the part before / is not an IP address"))?;
        let (family, max) = match network {
            IpAddr::V4(_) => ("IPv4", 32),
            IpAddr::V6(_) => ("IPv6", 128),
        };
        let prefix = match prefix {
            None => max,
            Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(malformed("the part after / is not a number"));
            }
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                CidrError::PrefixTooLong {
                    text: text.to_owned(),
                    family,
                    max,
                }
            })?,
        };
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::V4((u32::from(ip) & mask_u32(prefix)).into()),
            IpAddr::V6(ip) => IpAddr::V6((u128::from(ip) & mask_u128(prefix)).into()),
        };
        let cidr = Cidr {
            network: masked,
            prefix,
        };
        // A block written with host bits is most likely a typo for another block; refusing it
        // beats silently guarding a different range than the operator thinks.
        if masked != network {
            return Err(CidrError::HostBitsSet {
                text: text.to_owned(),
                suggestion: cidr,
            });
        }
        Ok(cidr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A comma-separated list of CIDRs, as the controller's flags take them; `""` is no CIDR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(CidrList)
    }
}

impl std::fmt::Display for CidrList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Cidr::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// The addresses a lambda may be reached at: in `allow` (when it is not empty) and in no
/// block of `deny`. Deny wins, so allowing `0.0.0.0/0` still keeps metadata services out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRules {
    pub allow: CidrList,
    pub deny: CidrList,
}

impl Default for EgressRules {
    /// Any address but the link-local ones ([`DEFAULT_DENY`]).
    fn default() -> Self {
        EgressRules {
            allow: CidrList::default(),
            deny: DEFAULT_DENY.parse().expect("the default deny list parses"),
        }
    }
}

/// The rule that refused an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The address is in this block of the deny list.
    Denied(Cidr),
    /// The allow list is not empty and no block of it holds the address.
    NotAllowed(CidrList),
}

/// An address the rules refuse, and the rule that refused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub addr: IpAddr,
    pub rule: Rule,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule {
            Rule::Denied(cidr) => write!(
                f,
                "address {} is in {cidr} of --lambda-deny-cidrs",
                self.addr
            ),
            Rule::NotAllowed(allow) => write!(
                f,
                "address {} is in none of --lambda-allow-cidrs ({allow})",
                self.addr
            ),
        }
    }
}

impl std::error::Error for Refusal {}

impl EgressRules {
    /// `Ok` when a connection to `ip` is allowed, else the rule that refuses it. An
    /// IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) reaches the IPv4 host, so it is
    /// judged as both.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let forms = [ip, ip.to_canonical()];
        if let Some(cidr) = self
            .deny
            .0
            .iter()
            .find(|c| forms.iter().any(|f| c.contains(*f)))
        {
            return Err(Refusal {
                addr: ip,
                rule: Rule::Denied(*cidr),
            });
        }
        let allowed = self.allow.0.is_empty()
            || self
                .allow
                .0
                .iter()
                .any(|c| forms.iter().any(|f| c.contains(*f)));
        if allowed {
            Ok(())
        } else {
            Err(Refusal {
                addr: ip,
                rule: Rule::NotAllowed(self.allow.clone()),
            })
        }
    }
}

#[cfg(test)]
mod tests;
