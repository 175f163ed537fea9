//! Claiming a listening address for one server, so that `SO_REUSEPORT` shares it only
//! among that server's own workers.
//!
//! `SO_REUSEPORT` lets every socket of the same user with the option set bind a busy
//! address, and the kernel then splits connections between them: a second node started
//! on the same gateway or cache address would silently take half the traffic of the
//! first. So before its workers bind, a server claims the address:
//!
//! 1. An advisory lock (`flock`) on a file named by the address in a runtime dir of
//!    this user (`$XDG_RUNTIME_DIR/strata/`, else `/tmp/strata-UID/`), held until the
//!    server stops, so that two servers started at the same moment cannot both pass
//!    step 2. It holds the holder's pid, for the message.
//! 2. A probe socket without `SO_REUSEPORT` binds the address (with `SO_REUSEADDR`, so
//!    connections of a stopped server in TIME_WAIT do not count): the kernel refuses it
//!    when any socket listens there, of any process and any user, `SO_REUSEPORT` or
//!    not, on that address or a wildcard. The probe is closed before the workers bind.
//!
//! With port 0 the probe comes first and picks the port, and then the port is locked:
//! between the probe's close and the workers' bind the port is free, and a second
//! server's probe may be given the same one (two tests starting side by side were, and
//! then shared each other's connections). The second to lock it picks again.
//!
//! A refusal is an [`io::ErrorKind::AddrInUse`] error naming the holder when `/proc`
//! shows it ([`crate::sockets`]).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use tokio::net::TcpSocket;

use crate::sockets;

/// An address claimed for one server; dropping it gives the address up.
#[derive(Debug)]
pub struct Claim {
    /// The claimed address (with port 0 asked for, the port the kernel gave).
    pub addr: SocketAddr,
    lock: Option<LockFile>,
}

/// Claims `addr` for the caller, or says who has it.
pub fn claim(addr: SocketAddr) -> io::Result<Claim> {
    if addr.port() == 0 {
        return claim_fresh(|| probe(addr));
    }
    let lock = match LockFile::acquire(addr)? {
        Acquired::Held(lock) => lock,
        Acquired::Busy(pid) => {
            let holder = pid
                .and_then(sockets::holder)
                .map_or_else(|| "another strata node".to_string(), |h| h.to_string());
            return Err(in_use(addr, &holder));
        }
    };
    let addr = probe(addr)?;
    Ok(Claim { addr, lock })
}

/// How many ports a claim of port 0 picks before it gives up: each one picked was locked
/// by another server in the moment since the kernel gave it out.
const FRESH_TRIES: usize = 64;

/// A claim of port 0: a port `pick`ed (the probe), then locked; one locked already (by
/// a server whose probe got it a moment before) is given back and another picked.
fn claim_fresh(mut pick: impl FnMut() -> io::Result<SocketAddr>) -> io::Result<Claim> {
    for _ in 0..FRESH_TRIES {
        let addr = pick()?;
        match LockFile::acquire(addr)? {
            Acquired::Held(lock) => return Ok(Claim { addr, lock }),
            Acquired::Busy(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port: {FRESH_TRIES} ports in a row were taken by other servers as they were picked"),
    ))
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release();
        }
    }
}

fn in_use(addr: SocketAddr, holder: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{addr} is already in use by {holder}"),
    )
}

/// Binds `addr` without `SO_REUSEPORT` and closes it again; returns the bound address.
fn probe(addr: SocketAddr) -> io::Result<SocketAddr> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    match socket.bind(addr) {
        Ok(()) => socket.local_addr(),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let holders = sockets::listening_on(addr);
            let holder = if holders.is_empty() {
                "another process (not one this user can see)".to_string()
            } else {
                holders.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
            };
            Err(in_use(addr, &holder))
        }
        Err(e) => Err(e),
    }
}

/// A held `flock` on the address's lock file.
#[derive(Debug)]
struct LockFile {
    path: PathBuf,
    file: File,
}

enum Acquired {
    /// The lock, or None where no lock file can be made (no writable runtime dir): the
    /// probe alone decides then.
    Held(Option<LockFile>),
    /// Another holder, with its pid when the file says it.
    Busy(Option<u32>),
}

impl LockFile {
    fn acquire(addr: SocketAddr) -> io::Result<Acquired> {
        let Some(dir) = runtime_dir() else {
            return Ok(Acquired::Held(None));
        };
        let path = dir.join(format!("tcp-{}-{}.lock", addr.ip(), addr.port()));
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            // SAFETY: flock(2) on a descriptor this function owns; no memory is touched.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Ok(Acquired::Busy(text.trim().parse().ok()));
                }
                return Err(err);
            }
            // A holder removes the file as it gives the lock up; if that happened
            // between our open and our lock, we hold a lock on a file no one else will
            // open: start again on the file now at the path.
            let ours = file.metadata()?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {}
                _ => continue,
            }
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            return Ok(Acquired::Held(Some(LockFile { path, file })));
        }
    }

    /// Removes the file while still holding the lock, then unlocks by closing it.
    fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// This user's runtime dir for strata's lock files, made if missing; None when it cannot
/// be made or is not this user's alone.
fn runtime_dir() -> Option<PathBuf> {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() && runtime.is_dir() => runtime.join("strata"),
        _ => std::env::temp_dir().join(format!("strata-{uid}")),
    };
    if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
        tracing::debug!(dir = %dir.display(), error = %e, "no runtime dir for address locks");
        return None;
    }
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        tracing::warn!(dir = %dir.display(), "not using address locks: the dir is not this user's alone");
        return None;
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reuseport_listener(addr: SocketAddr) -> tokio::net::TcpSocket {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.set_reuseport(true).unwrap();
        socket.bind(addr).unwrap();
        socket
    }

    #[test]
    fn port_0_gets_a_free_port_and_locks_it() {
        let claim = claim("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(claim.addr.port(), 0);
        assert!(claim.lock.is_some(), "a runtime dir for locks exists here");
    }

    #[test]
    fn a_fresh_port_another_server_locked_as_it_was_picked_is_not_shared() {
        // What two servers starting side by side can meet: the kernel gives the second
        // one's probe the port the first one's probe has just closed.
        let first = claim("127.0.0.1:0".parse().unwrap()).unwrap();
        let other = claim("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut picks = vec![Ok(other.addr), Ok(first.addr)].into_iter();
        let err = claim_fresh(|| picks.next().unwrap_or(Ok(first.addr))).expect_err("every pick was locked");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("no free port"), "{err}");
        // A pick already locked is passed over for the next one.
        let free = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut picks = vec![first.addr, other.addr, free].into_iter();
        let second = claim_fresh(|| Ok(picks.next().unwrap())).unwrap();
        assert_eq!(second.addr, free);
        assert!(second.lock.is_some());
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn an_address_another_socket_listens_on_is_refused_naming_the_holder() {
        // What a worker of another node looks like: SO_REUSEPORT, listening.
        let other = reuseport_listener("127.0.0.1:0".parse().unwrap());
        let addr = other.local_addr().unwrap();
        let _listening = other.listen(16).unwrap();
        let err = claim(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{addr} is already in use by pid {} (", std::process::id())),
            "{message}"
        );
    }

    #[test]
    fn a_claimed_address_is_refused_until_given_up() {
        let port = claim("127.0.0.1:0".parse().unwrap()).unwrap().addr.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let first = claim(addr).unwrap();
        assert!(first.lock.is_some(), "a runtime dir for locks exists here");
        let err = claim(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string()
                .contains(&format!("in use by pid {}", std::process::id())),
            "{err}"
        );
        let path = first.lock.as_ref().unwrap().path.clone();
        drop(first);
        assert!(!path.exists(), "the lock file goes with the claim");
        let again = claim(addr).unwrap();
        assert_eq!(again.addr, addr);
    }
}
