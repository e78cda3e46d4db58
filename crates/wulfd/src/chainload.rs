//! `_ipxe_chain`: a BIOS node whose network card already runs iPXE (an old or buggy ROM, say)
//! is first sent the head's own iPXE, `undionly.kpxe`, over TFTP, and that one boots the node.
//!
//! The DHCP requests of the card's iPXE and of the loaded `undionly.kpxe` look the same (both
//! say user class "iPXE", and both may be the same build), so the loop is broken in the
//! script, as an embedded script would (iPXE's chainloading documentation): the loaded iPXE
//! drives the card through the ROM's UNDI interface, so its `${netX/chip}` is `undionly`.
//! Only then does the script chain on to the node's real script (`&loader=own`).

use wulf_model::{parse_bool, Kind, MacAddr};

use crate::app::App;
use crate::dhcp::logic::BIOS_LOADER;

/// The query parameter of the script URL the chain guard hands on to.
pub const OWN: &str = "own";

/// The guard script for a node with `_ipxe_chain` true, or None.
pub fn guard(app: &App, mac: MacAddr, base: &str) -> Option<String> {
    let st = app.cache.read();
    let Some((Kind::Node, uid)) = st.macs.get(&mac).cloned() else {
        return None;
    };
    let node = st.get(Kind::Node, &uid).and_then(|e| e.obj.as_node())?;
    let attrs = st.effective_attributes(node);
    let on = attrs
        .get("_ipxe_chain")
        .and_then(|a| parse_bool(&a.value))
        .unwrap_or(false);
    if !on {
        return None;
    }
    let host = tftp_host(base);
    Some(format!(
        "#!ipxe\n\
         iseq ${{platform}} pcbios || goto wulf_own\n\
         iseq ${{netX/chip}} undionly && goto wulf_own ||\n\
         echo wulf: {name}: loading the head's iPXE ({BIOS_LOADER}) over TFTP (_ipxe_chain)\n\
         chain tftp://{host}/{BIOS_LOADER} || goto wulf_own\n\
         :wulf_own\n\
         chain --autofree {base}/boot/ipxe?mac={mac}&loader={OWN}\n",
        name = node.name
    ))
}

/// The host part of an `http://HOST[:PORT][/…]` base URL: where the TFTP server is.
fn tftp_host(base: &str) -> &str {
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .unwrap_or(base);
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::tftp_host;

    #[test]
    fn hosts() {
        assert_eq!(tftp_host("http://10.0.0.1:8740"), "10.0.0.1");
        assert_eq!(tftp_host("http://head.cluster:8740/x"), "head.cluster");
        assert_eq!(tftp_host("http://head"), "head");
        assert_eq!(tftp_host("http://[fd00::1]:8740"), "[fd00::1]");
    }
}
