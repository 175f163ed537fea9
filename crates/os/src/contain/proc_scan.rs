//! Reading `/proc` with system calls only: no allocation, no lock, no buffered I/O. For
//! the shim, which runs in a child forked from a multi-threaded process, where only
//! async-signal-safe calls are allowed. Everything is read into buffers on the stack.

use libc::{c_int, pid_t};

/// Calls `each(pid, state, ppid)` for every process in `/proc` whose `stat` could be
/// read (one that ends meanwhile is left out).
pub(super) fn for_each_process(mut each: impl FnMut(pid_t, u8, pid_t)) {
    let Some(dir) = open(b"/proc\0", libc::O_RDONLY | libc::O_DIRECTORY) else {
        return;
    };
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is writable for its whole length; the kernel writes at most
        // that many bytes of directory entries.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let n = n as usize;
        // struct linux_dirent64: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1),
        // d_name (NUL-terminated).
        let mut off = 0;
        while off + 19 < n {
            let reclen = usize::from(u16::from_ne_bytes([buf[off + 16], buf[off + 17]]));
            if reclen == 0 || off + reclen > n {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(pid) = parse_decimal(name) {
                if let Some((state, ppid)) = stat(pid) {
                    each(pid, state, ppid);
                }
            }
            off += reclen;
        }
    }
    close(dir);
}

/// Calls `each(start, end, perms, inode, path)` for every mapping of this process in
/// `/proc/self/maps`. A line longer than the buffer (a mapping of a file with a very
/// long path) is left out.
pub(super) fn for_each_mapping(mut each: impl FnMut(usize, usize, &[u8], u64, &[u8])) {
    let Some(fd) = open(b"/proc/self/maps\0", libc::O_RDONLY) else {
        return;
    };
    let mut buf = [0u8; 4096];
    let mut len = 0;
    // Inside a line that did not fit: skip to its end.
    let mut skipping = false;
    loop {
        // SAFETY: the range written is the unused tail of `buf`.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
        let mut start = 0;
        while let Some(nl) = buf[start..len].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + nl];
            if !skipping {
                if let Some((from, to, perms, inode, path)) = parse_mapping(line) {
                    each(from, to, perms, inode, path);
                }
            }
            skipping = false;
            start += nl + 1;
        }
        if start == 0 && len == buf.len() {
            // No line end in a full buffer: drop it and skip the rest of this line.
            skipping = true;
            len = 0;
        } else {
            buf.copy_within(start..len, 0);
            len -= start;
        }
    }
    close(fd);
}

/// One line of `/proc/self/maps`: (start, end, permissions, inode, path).
type Mapping<'a> = (usize, usize, &'a [u8], u64, &'a [u8]);

/// `7f12a000-7f12c000 rw-p 00000000 00:00 0    [heap]`.
fn parse_mapping(line: &[u8]) -> Option<Mapping<'_>> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let range = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let from = parse_hex(&range[..dash])?;
    let to = parse_hex(&range[dash + 1..])?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _device = fields.next()?;
    let inode = parse_decimal_u64(fields.next()?)?;
    let path = fields.next().unwrap_or(&[]);
    Some((from, to, perms, inode, path))
}

/// (state, parent pid) of process `pid`, from `/proc/PID/stat`.
fn stat(pid: pid_t) -> Option<(u8, pid_t)> {
    // "/proc/" + at most 10 digits + "/stat" + NUL.
    let mut path = [0u8; 32];
    let mut at = 0;
    for &b in b"/proc/" {
        path[at] = b;
        at += 1;
    }
    at += write_decimal(pid as u32, &mut path[at..]);
    for &b in b"/stat\0" {
        path[at] = b;
        at += 1;
    }
    let fd = open(&path[..at], libc::O_RDONLY)?;
    // "PID (COMM) S PPID ...": the command is at most 15 bytes, so this holds the parent.
    let mut buf = [0u8; 128];
    // SAFETY: `buf` is writable for its whole length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    close(fd);
    if n <= 0 {
        return None;
    }
    let text = &buf[..n as usize];
    let close_paren = text.iter().rposition(|&b| b == b')')?;
    let rest = text.get(close_paren + 2..)?;
    let state = *rest.first()?;
    let ppid = rest.get(2..)?;
    let end = ppid.iter().position(|&b| b == b' ').unwrap_or(ppid.len());
    Some((state, parse_decimal(&ppid[..end])?))
}

/// Opens a NUL-terminated `path` (close-on-exec).
fn open(path: &[u8], flags: c_int) -> Option<c_int> {
    if path.last() != Some(&0) {
        return None;
    }
    // SAFETY: `path` is NUL-terminated (checked above).
    let fd = unsafe { libc::open(path.as_ptr().cast(), flags | libc::O_CLOEXEC) };
    (fd >= 0).then_some(fd)
}

fn close(fd: c_int) {
    // SAFETY: `fd` was opened by this module and is closed once.
    unsafe {
        libc::close(fd);
    }
}

fn parse_decimal(digits: &[u8]) -> Option<pid_t> {
    let value = parse_decimal_u64(digits)?;
    pid_t::try_from(value).ok()
}

fn parse_decimal_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |v, &b| b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0')))
}

fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0usize, |v, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(v * 16 + usize::from(d))
    })
}

/// Writes `value` in decimal at the start of `out`; returns the number of bytes.
fn write_decimal(mut value: u32, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_parent_are_found() {
        let me = std::process::id() as pid_t;
        let mut found = None;
        for_each_process(|pid, _state, ppid| {
            if pid == me {
                found = Some(ppid);
            }
        });
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        assert_eq!(found, Some(parent));
    }

    #[test]
    fn the_stack_is_among_the_mappings() {
        let local = 0u8;
        let at = &local as *const u8 as usize;
        let mut holding = Vec::new();
        for_each_mapping(|from, to, perms, inode, _path| {
            if (from..to).contains(&at) {
                holding.push((perms.to_vec(), inode));
            }
        });
        assert_eq!(holding, vec![(b"rw-p".to_vec(), 0)]);
    }

    #[test]
    fn lines_of_maps_and_numbers_parse() {
        let (from, to, perms, inode, path) =
            parse_mapping(b"7f12a000-7f12c000 rw-p 00000000 00:00 0                          [heap]").unwrap();
        assert_eq!(
            (from, to, perms, inode, path),
            (0x7f12a000, 0x7f12c000, &b"rw-p"[..], 0, &b"[heap]"[..])
        );
        let (.., inode, path) = parse_mapping(b"55d0-55e0 r-xp 00001000 fd:01 1234 /usr/bin/x").unwrap();
        assert_eq!((inode, path), (1234, &b"/usr/bin/x"[..]));
        assert_eq!(parse_mapping(b"garbage"), None);
        let mut out = [0u8; 10];
        assert_eq!(write_decimal(4194304, &mut out), 7);
        assert_eq!(&out[..7], b"4194304");
        assert_eq!(write_decimal(0, &mut out), 1);
        assert_eq!(parse_decimal(b"12a"), None);
    }
}
