//! The head's own network interfaces and their IPv4 addresses.

use std::net::Ipv4Addr;

/// One IPv4 address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub name: String,
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// Every IPv4 address on every interface that is up (loopback excluded).
pub fn ipv4_addrs() -> std::io::Result<Vec<IfAddr>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
        let lo = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
        // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it names.
        if !up || lo || unsafe { (*ifa.ifa_addr).sa_family } != libc::AF_INET as u16 {
            continue;
        }
        // SAFETY: the family is AF_INET, so both point to sockaddr_in.
        let (addr, mask) = unsafe {
            let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
            (
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u32::from_be(m.sin_addr.s_addr),
            )
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .to_string();
        let cname = std::ffi::CString::new(name.clone()).unwrap_or_default();
        // SAFETY: cname is a valid C string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        out.push(IfAddr {
            name,
            index,
            addr,
            prefix: mask.count_ones() as u8,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_without_error() {
        let addrs = super::ipv4_addrs().unwrap();
        assert!(addrs.iter().all(|a| a.prefix <= 32 && !a.name.is_empty()));
    }
}
