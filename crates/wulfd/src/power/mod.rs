//! Power through the node's BMC: `power_uri` (templated from the node, parsed, masked), the
//! BMC drivers behind one trait (IPMI through `ipmitool`, Redfish over HTTPS), and
//! `POST /api/v1/node/power`, which also carries out reboot and shutdown soft first (through
//! the agent, see `crate::exec::soft_power`) and hard when that does not do.

pub mod ipmi;
pub mod redfish;
pub mod routes;
pub mod uri;

pub use routes::routes;

use std::time::Duration;

use uri::PowerUri;

/// What is asked of a BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmcOp {
    Status,
    On,
    Off,
    /// Off, then on.
    Cycle,
    /// Hard reset without removing power.
    Reset,
}

impl BmcOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BmcOp::Status => "status",
            BmcOp::On => "on",
            BmcOp::Off => "off",
            BmcOp::Cycle => "cycle",
            BmcOp::Reset => "reset",
        }
    }

    /// The state the node is in once the BMC has carried out the operation.
    fn target(self) -> Option<PowerState> {
        match self {
            BmcOp::Status => None,
            BmcOp::Off => Some(PowerState::Off),
            BmcOp::On | BmcOp::Cycle | BmcOp::Reset => Some(PowerState::On),
        }
    }
}

/// Whether the node has power, as its BMC says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        }
    }
}

/// Why a power operation did not happen. Each has a short class, the same for every node it
/// happens to (results are grouped by it), and a detail for this node. No variant ever holds
/// a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    #[error("BMC timeout: {0}")]
    Timeout(String),
    #[error("BMC refused login: {0}")]
    Login(String),
    #[error("BMC unreachable: {0}")]
    Unreachable(String),
    #[error("BMC refused the command: {0}")]
    Refused(String),
    #[error("BMC certificate not trusted: {0}")]
    Certificate(String),
    #[error("BMC error: {0}")]
    Bmc(String),
    #[error("bad power_uri: {0}")]
    BadUri(String),
    #[error(
        "no power_uri: the node has no power_uri and no _power_uri attribute (set one on the \
         node or on one of its groups)"
    )]
    NoUri,
    #[error("no BMC: the node's power_uri is none")]
    NoBmc,
    #[error("ipmitool missing: {0}")]
    Tool(String),
}

impl PowerError {
    /// The short class results are grouped by.
    pub fn class(&self) -> &'static str {
        match self {
            PowerError::Timeout(_) => "BMC timeout",
            PowerError::Login(_) => "BMC refused login",
            PowerError::Unreachable(_) => "BMC unreachable",
            PowerError::Refused(_) => "BMC refused the command",
            PowerError::Certificate(_) => "BMC certificate not trusted",
            PowerError::Bmc(_) => "BMC error",
            PowerError::BadUri(_) => "bad power_uri",
            PowerError::NoUri => "no power_uri",
            PowerError::NoBmc => "no BMC",
            PowerError::Tool(_) => "ipmitool missing",
        }
    }

    /// The longer text for this node.
    pub fn detail(&self) -> String {
        match self {
            PowerError::Timeout(d)
            | PowerError::Login(d)
            | PowerError::Unreachable(d)
            | PowerError::Refused(d)
            | PowerError::Certificate(d)
            | PowerError::Bmc(d)
            | PowerError::BadUri(d)
            | PowerError::Tool(d) => d.clone(),
            PowerError::NoUri | PowerError::NoBmc => {
                let full = self.to_string();
                match full.split_once(": ") {
                    Some((_, d)) => d.to_string(),
                    None => full,
                }
            }
        }
    }
}

/// A node's BMC.
#[async_trait::async_trait]
pub trait Bmc: Send + Sync {
    /// Carry out `op` within `timeout`; the power state after it (for status: now).
    async fn power(&self, op: BmcOp, timeout: Duration) -> Result<PowerState, PowerError>;
}

/// The driver for a parsed `power_uri`.
pub fn driver(uri: &PowerUri) -> Result<Box<dyn Bmc>, PowerError> {
    match uri {
        PowerUri::None => Err(PowerError::NoBmc),
        PowerUri::Ipmi(t) => Ok(Box::new(ipmi::Ipmitool::new(t.clone()))),
        PowerUri::Redfish(t) => Ok(Box::new(redfish::Redfish::new(t.clone()))),
    }
}

/// Carry out `op` on the BMC `uri` names, never longer than `timeout`.
pub async fn bmc(uri: &PowerUri, op: BmcOp, timeout: Duration) -> Result<PowerState, PowerError> {
    let drv = driver(uri)?;
    match tokio::time::timeout(timeout, drv.power(op, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(PowerError::Timeout(format!(
            "{} did not finish '{}' within {} s",
            uri,
            op.as_str(),
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_details() {
        let e = PowerError::Timeout("no answer from 10.0.0.5:623 within 5 s".into());
        assert_eq!(e.class(), "BMC timeout");
        assert_eq!(e.detail(), "no answer from 10.0.0.5:623 within 5 s");
        assert_eq!(PowerError::NoUri.class(), "no power_uri");
        assert!(PowerError::NoUri
            .detail()
            .starts_with("the node has no power_uri"));
        assert_eq!(PowerError::NoBmc.detail(), "the node's power_uri is none");
    }

    #[tokio::test]
    async fn none_has_no_bmc() {
        let r = bmc(&PowerUri::None, BmcOp::Status, Duration::from_secs(1)).await;
        assert_eq!(r, Err(PowerError::NoBmc));
    }
}
