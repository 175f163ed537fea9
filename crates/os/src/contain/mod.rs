//! Containing a child process and every process it ever starts, so that none of them
//! outlives its container: not a `setsid`'d daemon, not a double fork, not after a
//! SIGKILL of this process.
//!
//! Two mechanisms, each put in place in the child between `fork` and `exec`, so that
//! the program's first instruction already runs contained (no window in which it could
//! start a process that escapes):
//! - [`cgroup`]: a cgroup v2 per child, below this process's own cgroup. The kernel keeps
//!   every descendant in it, whatever it does, and `cgroup.kill` ends all of them in one
//!   write. Needs a writable cgroup2 hierarchy (root, or a delegated subtree) and Linux
//!   5.14 or later. [`cgroup::Cgroup::own`] says whether this process has one, or why not.
//! - [`shim`]: a small process forked in place of the program: it makes itself a child
//!   subreaper (so that orphans of the program's tree are re-parented to it, not to
//!   init), asks for a signal when this process dies, forks the program, and stays its
//!   parent. When the program exits, when this process asks, or when this process dies,
//!   it kills every descendant it finds in `/proc` and exits as the program did.
//!   Works on any Linux since 3.4, as any user; it relies on the shim itself not being
//!   killed with SIGKILL.
//!
//! Which one a node uses is the App Service's decision (`crates/appservice/src/guard.rs`).

pub mod cgroup;
mod proc_scan;
pub mod shim;
