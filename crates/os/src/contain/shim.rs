//! The subreaper shim: where no cgroup can be made, a small process between this one
//! and the program keeps the program's whole tree together.
//!
//! [`supervise_on_spawn`] hooks a `Command` so that the child it forks becomes the shim
//! instead of executing the program: it blocks every signal, makes itself a child
//! subreaper, asks for SIGHUP when its parent dies, checks that the parent is still the
//! process that spawned it, then forks the program (which gets the signal mask back and
//! goes on to exec). Every process the program's tree leaves without a parent (a
//! double fork, a `setsid`'d daemon) is re-parented to the shim, so walking `/proc`
//! for the shim's children finds all of them. The shim then waits for signals:
//! - SIGCHLD: reaps; once the program itself ended, ends the rest of the tree.
//! - SIGUSR1 from its parent ([`end`]): ends the tree, program included.
//! - any signal once its parent is no longer the process that spawned it (the
//!   parent-death signal, sent even after SIGKILL): ends the tree.
//! - anything else (SIGTERM sent to the instance's process group, which the shim leads)
//!   is for the program, not the shim, and is ignored.
//!
//! "Ends the tree" is: SIGKILL to every live child found in `/proc`, reap, again, until
//! no child is left (orphans of a killed child are re-parented to the shim and found
//! on the next round). Then the shim exits as the program did: the same code, or the
//! same signal, so its parent sees the program's end.
//!
//! The shim is a fork of this process that never executes anything: it makes system
//! calls only (no allocation, no lock; see `proc_scan`), closes every inherited
//! descriptor but 0, 1 and 2, and gives back its copy of this process's large anonymous
//! memory (`MADV_DONTNEED`), so that it does not keep pages this process later changes.
//! Its command name is `strata-shim`. Caveat: a SIGKILL sent to the shim itself (not
//! by the kernel for this process's death) leaves the tree to init.

use std::io;
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;

use libc::{c_int, pid_t, sigset_t};

use super::proc_scan;

/// The shim's command name, as `ps` and `/proc/PID/stat` show it.
pub const NAME: &str = "strata-shim";

/// The signal with which a parent asks its shim to end the tree.
const END: c_int = libc::SIGUSR1;
/// The signal the kernel sends the shim when its parent dies.
const PARENT_DIED: c_int = libc::SIGHUP;
/// Anonymous mappings at least this large are given back by the shim.
const RELEASE_AT_LEAST: usize = 1 << 20;

/// Makes the child that `cmd` spawns a shim that forks and supervises the program. The
/// pid of the spawned child is the shim's; the program is its only child at first,
/// in the same process group.
pub fn supervise_on_spawn(cmd: &mut std::process::Command) {
    let parent = std::process::id() as pid_t;
    // SAFETY: the hook runs in the child between fork and exec. `enter` and everything
    // it calls make only async-signal-safe system calls, on data on the stack, and
    // allocate nothing; the shim never returns from it.
    unsafe {
        cmd.pre_exec(move || enter(parent));
    }
}

/// Asks shim `pid`, a child of this process not yet reaped, to kill the program and
/// everything it started, and exit.
pub fn end(pid: u32) -> io::Result<()> {
    // SAFETY: kill(2) touches no memory.
    if unsafe { libc::kill(pid as pid_t, END) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The program shim `pid` started: the shim's first child, the one of its children that
/// started earliest (the others are orphans of the program's tree, started later);
/// None once it has none. Reads `/proc`; for the shim's parent, not the shim.
pub fn program_of(pid: u32) -> Option<u32> {
    let mut children = Vec::new();
    proc_scan::for_each_process(|child, _state, ppid| {
        if ppid == pid as pid_t {
            children.push(child as u32);
        }
    });
    children
        .into_iter()
        .filter_map(|child| Some((start_time(child)?, child)))
        .min()
        .map(|(_, child)| child)
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_command = &stat[stat.rfind(')')? + 2..];
    // Field 3 (the state) is the first here; field 22 is the 20th.
    after_command.split_whitespace().nth(19)?.parse().ok()
}

/// In the spawned child: becomes the shim and forks the program, which returns `Ok` here
/// and goes on to exec. The shim never returns.
fn enter(parent: pid_t) -> io::Result<()> {
    let mut all = empty_set();
    let mut saved = empty_set();
    // SAFETY (this block): system calls on valid pointers to sigsets and a NUL-terminated
    // name, all on this stack.
    unsafe {
        libc::sigfillset(&mut all);
        if libc::sigprocmask(libc::SIG_SETMASK, &all, &mut saved) != 0 {
            return Err(io::Error::last_os_error());
        }
        let ready = libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            && libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_DIED, 0, 0, 0) == 0
            && libc::prctl(libc::PR_SET_NAME, c"strata-shim".as_ptr(), 0, 0, 0) == 0;
        if !ready {
            let err = io::Error::last_os_error();
            libc::sigprocmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
            return Err(err);
        }
        // The parent may have died before the death signal was asked for.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // A plain fork by system call: no atfork handlers run in this child of a
        // multi-threaded process. With no new stack, clone returns in both like fork.
        let program = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
        match program {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // The program: the signal mask it was spawned with, then exec.
                libc::sigprocmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
                Ok(())
            }
            program => run(parent, program as pid_t, &all),
        }
    }
}

/// The shim's life, after the program was forked.
fn run(parent: pid_t, program: pid_t, all: &sigset_t) -> ! {
    close_inherited_descriptors();
    release_memory();
    let mut status: Option<c_int> = None;
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `all` is a valid set; `info` is writable.
        let sig = unsafe { libc::sigwaitinfo(all, info.as_mut_ptr()) };
        if sig < 0 {
            continue;
        }
        // SAFETY: sigwaitinfo filled `info` (zeroed before, so valid in any case).
        let info = unsafe { info.assume_init() };
        match sig {
            libc::SIGCHLD => {
                reap(program, &mut status, libc::WNOHANG);
                if status.is_some() {
                    break;
                }
            }
            // SAFETY: si_pid reads the sender's pid of a signal sent with kill(2).
            END if unsafe { info.si_pid() } == parent => break,
            _ => {
                // SAFETY: getppid has no preconditions.
                if unsafe { libc::getppid() } != parent {
                    break;
                }
            }
        }
    }
    end_tree(program, &mut status);
    exit_as(status)
}

/// Kills every child of the shim, reaps, and again until it has none: a killed child's
/// orphans are re-parented to the shim and killed in the next round.
fn end_tree(program: pid_t, status: &mut Option<c_int>) {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    loop {
        let mut live = 0;
        proc_scan::for_each_process(|pid, state, ppid| {
            if ppid == me && !matches!(state, b'Z' | b'X' | b'x') {
                // SAFETY: kill(2) touches no memory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                live += 1;
            }
        });
        // Block only when a child was just killed; otherwise a child may still be
        // joining the shim (re-parented after the scan): look again shortly.
        match reap(program, status, if live > 0 { 0 } else { libc::WNOHANG }) {
            Reaped::Some => {}
            Reaped::NoneYet => pause_briefly(),
            Reaped::NoChildren => return,
        }
    }
}

enum Reaped {
    Some,
    NoneYet,
    NoChildren,
}

/// Reaps ended children (the first wait with `flags`, the rest without blocking);
/// records the program's status.
fn reap(program: pid_t, status: &mut Option<c_int>, flags: c_int) -> Reaped {
    let mut flags = flags;
    let mut reaped = Reaped::NoneYet;
    loop {
        let mut st: c_int = 0;
        // SAFETY: `st` is writable.
        let pid = unsafe { libc::waitpid(-1, &mut st, flags) };
        if pid > 0 {
            if pid == program {
                *status = Some(st);
            }
            reaped = Reaped::Some;
            flags = libc::WNOHANG;
            continue;
        }
        if pid < 0 && matches!(reaped, Reaped::NoneYet) {
            reaped = Reaped::NoChildren;
        }
        return reaped;
    }
}

/// Exits as the program did: with its code, or by its signal (without a core dump).
fn exit_as(status: Option<c_int>) -> ! {
    let Some(st) = status else {
        // SAFETY: _exit ends the process.
        unsafe { libc::_exit(1) }
    };
    // SAFETY (this block): plain system calls on values on this stack.
    unsafe {
        if libc::WIFSIGNALED(st) {
            let sig = libc::WTERMSIG(st);
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
            let mut only = empty_set();
            libc::sigaddset(&mut only, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
            libc::_exit(128 + sig)
        }
        libc::_exit(libc::WEXITSTATUS(st))
    }
}

/// The shim needs none of its parent's descriptors; holding them would keep its
/// parent's sockets, pipes and lock files alive. 0, 1 and 2 (the program's log) stay.
fn close_inherited_descriptors() {
    // SAFETY: close_range takes plain integers.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) } == 0;
    if !closed {
        // Before Linux 5.9.
        for fd in 3..65536 {
            // SAFETY: closing a descriptor number, open or not.
            unsafe { libc::close(fd) };
        }
    }
}

/// Gives back the shim's copy of its parent's large anonymous private mappings (heaps,
/// other threads' stacks, big buffers): the shim touches none of them, and as the
/// parent writes to them, each page would otherwise be copied and kept here. The
/// mapping holding this thread's stack and the one holding its thread control block
/// (errno, TLS) are kept, and so is every small or file-backed mapping.
fn release_memory() {
    let marker = 0u8;
    let stack = &marker as *const u8 as usize;
    // SAFETY: pthread_self reads the thread pointer; on glibc and musl it is the
    // address of the thread control block.
    let tcb = unsafe { libc::pthread_self() } as usize;
    proc_scan::for_each_mapping(|from, to, perms, inode, path| {
        let private_writable = perms.len() == 4 && perms[0] == b'r' && perms[1] == b'w' && perms[3] == b'p';
        let anonymous = inode == 0 && (path.is_empty() || path == b"[heap]" || path.starts_with(b"[anon:"));
        let ours = (from..to).contains(&stack) || (from..to).contains(&tcb);
        if private_writable && anonymous && !ours && to - from >= RELEASE_AT_LEAST {
            // SAFETY: the range is a whole mapping of this process that nothing running
            // here uses (not this stack, not the thread's TLS).
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED) };
        }
    });
}

fn pause_briefly() {
    let one_ms = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    // SAFETY: a valid timespec; no remainder wanted.
    unsafe { libc::nanosleep(&one_ms, std::ptr::null_mut()) };
}

fn empty_set() -> sigset_t {
    let mut set = MaybeUninit::<sigset_t>::zeroed();
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}
