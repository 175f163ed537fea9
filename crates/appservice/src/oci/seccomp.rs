//! The default seccomp profile of a container, modelled on Docker's default
//! (`profiles/seccomp/default.json` in moby): every system call that profile refuses
//! to a container without added capabilities is refused here with `EPERM`, and
//! `clone3` with `ENOSYS` (so that the C library falls back to `clone`, whose flags a
//! filter can see).
//!
//! Docker's profile is an allow-list; this one is the deny-list of the same refusals
//! over an allow-by-default action, so a system call newer than the list is allowed
//! where Docker would refuse it. What it does not copy: Docker's argument filter on
//! `personality` (only a few personalities allowed), which a deny-list cannot express
//! in one rule per argument, and the exceptions Docker makes for added capabilities,
//! since a strata container has none.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscall, LinuxSyscallBuilder,
};

/// Refused with `EPERM`: kernel modules, kexec, reboot, swap, mounts and the new mount
/// API, namespaces (`unshare`, `setns`), keyrings, tracing and other processes' memory
/// (`ptrace`, `process_vm_*`, `kcmp`), BPF and perf, clocks, quotas, accounting, NUMA
/// policy, raw I/O ports, file handles, `userfaultfd`, io_uring, and obsolete calls.
pub(crate) const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_settime",
    "clock_settime64",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// The `clone` flags that make new namespaces; `clone` with any of them is refused, as
/// Docker's profile does (a container without `CAP_SYS_ADMIN` makes no namespace).
pub(crate) const NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// The profile: allow by default, refuse [`DENIED`], `clone` with a namespace flag, and
/// `clone3`.
pub(crate) fn default_profile() -> anyhow::Result<LinuxSeccomp> {
    let mut syscalls: Vec<LinuxSyscall> = vec![refuse(DENIED, EPERM)?, refuse(&["clone3"], ENOSYS)?];
    for flag in NAMESPACE_FLAGS {
        // (flags & flag) == flag: one rule per flag, since the rules of one entry are
        // all required at once and a rule cannot say "any of these bits".
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(flag)
            .value_two(flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(EPERM)
                .args(vec![arg])
                .build()?,
        );
    }
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()?)
}

fn refuse(names: &[&str], errno: u32) -> anyhow::Result<LinuxSyscall> {
    Ok(LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno)
        .build()?)
}

/// The native architecture and the ones its kernel also runs (a 32-bit program on a
/// 64-bit kernel is filtered too, as Docker's profile does).
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_refuses_what_dockers_default_refuses() {
        let profile = default_profile().unwrap();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        let json = serde_json::to_value(&profile).unwrap();
        let denied: Vec<&str> = json["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        // The ones the issue names, at least.
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "ptrace",
            "kexec_load",
            "bpf",
            "perf_event_open",
            "init_module",
            "finit_module",
            "delete_module",
            "swapon",
            "swapoff",
            "reboot",
            "pivot_root",
            "open_by_handle_at",
        ] {
            assert!(denied.contains(&name), "{name} is not refused");
        }
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(json["syscalls"][0]["errnoRet"], 1);
        assert_eq!(json["syscalls"][1]["names"][0], "clone3");
        assert_eq!(json["syscalls"][1]["errnoRet"], 38);
        // One masked rule per namespace flag on clone's first argument.
        let clone_rules: Vec<&serde_json::Value> = json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["names"][0] == "clone")
            .collect();
        assert_eq!(clone_rules.len(), NAMESPACE_FLAGS.len());
        let user = &clone_rules[4]["args"][0];
        assert_eq!(
            (
                user["index"].as_u64(),
                user["value"].as_u64(),
                user["valueTwo"].as_u64()
            ),
            (Some(0), Some(0x1000_0000), Some(0x1000_0000))
        );
        assert_eq!(user["op"], "SCMP_CMP_MASKED_EQ");
    }
}
