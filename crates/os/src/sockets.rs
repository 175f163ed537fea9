//! Who listens where, read from `/proc`: the listening TCP sockets of this host
//! (`/proc/net/tcp` and `/proc/net/tcp6`, state `LISTEN`) and the processes holding
//! them (`/proc/PID/fd/*` links to `socket:[INODE]`).
//!
//! Used to say who holds an address a node cannot have ([`listening_on`]), and on
//! which address an instance listens when it is not its `$PORT`
//! ([`listening_in_group`]). Everything here is best effort: a process of another user
//! hides its descriptors, and on a system without `/proc` nothing is found.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// A process, as far as `/proc` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line: the program's file name, then its arguments (shortened).
    pub command: String,
    /// Its working directory, when readable.
    pub cwd: Option<PathBuf>,
}

impl fmt::Display for Holder {
    /// `pid 4242 (strata up, in /home/me/shop)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        match (&self.command, &self.cwd) {
            (c, Some(cwd)) if !c.is_empty() => write!(f, " ({c}, in {})", cwd.display()),
            (c, None) if !c.is_empty() => write!(f, " ({c})"),
            (_, Some(cwd)) => write!(f, " (in {})", cwd.display()),
            _ => Ok(()),
        }
    }
}

/// The processes with a listening TCP socket that takes connections meant for `addr`:
/// same port, and the same address or a wildcard on either side. Processes this user
/// may not look into are left out.
pub fn listening_on(addr: SocketAddr) -> Vec<Holder> {
    let inodes: BTreeSet<u64> = listening_sockets()
        .into_iter()
        .filter(|(local, _)| overlaps(*local, addr))
        .map(|(_, inode)| inode)
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    pids()
        .filter(|&pid| socket_inodes(pid).iter().any(|i| inodes.contains(i)))
        .filter_map(holder)
        .collect()
}

/// The addresses on which processes of process group `pgid` listen.
pub fn listening_in_group(pgid: u32) -> Vec<SocketAddr> {
    let inodes: BTreeSet<u64> = pids()
        .filter(|&pid| process_group(pid) == Some(pgid))
        .flat_map(socket_inodes)
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut addrs: Vec<SocketAddr> = listening_sockets()
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(addr, _)| addr)
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// What `/proc` says of process `pid`; None when it is gone.
pub fn holder(pid: u32) -> Option<Holder> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let program = args.next().unwrap_or_default();
    let program = program.rsplit('/').next().unwrap_or(&program).to_string();
    let mut command = std::iter::once(program).chain(args).collect::<Vec<_>>().join(" ");
    if command.chars().count() > 100 {
        command = command.chars().take(99).collect::<String>() + "…";
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    Some(Holder { pid, command, cwd })
}

/// Whether a socket listening on `listener` takes connections to `addr`.
fn overlaps(listener: SocketAddr, addr: SocketAddr) -> bool {
    if listener.port() != addr.port() {
        return false;
    }
    let (l, a) = (canonical(listener.ip()), canonical(addr.ip()));
    l == a || l.is_unspecified() || a.is_unspecified()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every listening TCP socket of the host: its address and inode.
fn listening_sockets() -> Vec<(SocketAddr, u64)> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            found.extend(parse_listening(&text));
        }
    }
    found
}

/// The `LISTEN` (state `0A`) lines of a `/proc/net/tcp` or `/proc/net/tcp6` table.
fn parse_listening(table: &str) -> Vec<(SocketAddr, u64)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                return None;
            }
            let local = parse_address(fields[1])?;
            let inode = fields[9].parse().ok()?;
            Some((local, inode))
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints each
/// 32-bit word of the address as a number in the host's byte order, the port as a
/// number.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The pids under `/proc`.
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

/// The inodes of the sockets process `pid` has open (none if its descriptors are hidden).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// The process group of `pid`, from `/proc/PID/stat` (the field after state and ppid,
/// read after the command name, which may hold spaces and parentheses).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_lines_of_both_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0 100 0 0 10 0\n";
        let listening = parse_listening(v4);
        if cfg!(target_endian = "little") {
            assert_eq!(listening, vec![("127.0.0.1:8080".parse().unwrap(), 4242)]);
        }
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:18EC 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 77 1 0 100 0 0 10 0\n   1: 00000000000000000000000000000000:18EC 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 78 1 0 100 0 0 10 0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_listening(v6),
                vec![("[::1]:6380".parse().unwrap(), 77), ("[::]:6380".parse().unwrap(), 78)]
            );
        }
        assert!(parse_listening("header\n   0: nonsense\n").is_empty());
    }

    #[test]
    fn a_wildcard_overlaps_every_address_of_its_port() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(overlaps(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(overlaps(a("[::]:80"), a("127.0.0.1:80")));
        assert!(overlaps(a("127.0.0.1:80"), a("0.0.0.0:80")));
        assert!(overlaps(a("[::ffff:127.0.0.1]:80"), a("127.0.0.1:80")));
        assert!(!overlaps(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!overlaps(a("127.0.0.1:80"), a("127.0.0.1:81")));
    }

    #[test]
    fn finds_this_process_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let me = std::process::id();
        let holders = listening_on(addr);
        assert!(holders.iter().any(|h| h.pid == me), "{holders:?}");
        let shown = holders.iter().find(|h| h.pid == me).unwrap().to_string();
        assert!(shown.starts_with(&format!("pid {me} (")), "{shown}");
        let group = process_group(me).unwrap();
        assert!(listening_in_group(group).contains(&addr));
        drop(listener);
        assert!(listening_on(addr).iter().all(|h| h.pid != me));
    }
}
