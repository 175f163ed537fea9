//! The checks of what runs an instance: the driver, and what only a container has (an
//! image, a user, a private network, CPU and pids limits).

use super::*;

/// The fewest and most CPUs a quota names (a hundredth of a CPU is 1 ms per 100 ms
/// period, the least a CPU quota takes).
const MIN_CPUS: f64 = 0.01;
const MAX_CPUS: f64 = 1024.0;
/// The most processes a pids limit names: the kernel's own ceiling on `pid_max`.
const MAX_PIDS: u64 = 1 << 22;

/// What `image` may name: the host image, a path to a layout or archive, or the digest
/// of an imported image (checked for being there when the service starts).
fn is_image_name(image: &str) -> bool {
    if image == HOST_IMAGE {
        return true;
    }
    if let Some(hex) = image.strip_prefix("sha256:") {
        return (12..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    image.starts_with("./") || image.starts_with("../") || image.starts_with('/')
}

/// The driver and what only a container has: an image, a user, a private network, CPU
/// and pids limits.
pub(super) fn check_driver(spec: &ServiceSpec, path: &FieldPath, p: &mut Problems) {
    let resources = path.key("resources");
    if let Some(cpus) = spec.resources.cpus {
        if !(MIN_CPUS..=MAX_CPUS).contains(&cpus) {
            p.add(invalid(
                resources.key("cpus"),
                format!("between {MIN_CPUS} and {MAX_CPUS} CPUs"),
                format!("the number {cpus}"),
            ));
        }
    }
    if let Some(pids) = spec.resources.pids {
        p.check(within(resources.key("pids"), pids, 1, MAX_PIDS, "processes"));
    }
    match spec.driver {
        Driver::Oci => {
            if let Some(image) = spec.image.as_deref().filter(|i| !is_image_name(i)) {
                p.add(invalid(
                    path.key("image"),
                    format!(
                        "{HOST_IMAGE:?} (the host's own /usr, /lib, /bin, /sbin and /etc, read-only), a path starting with ./ ../ or / to an OCI image layout or an OCI or docker save archive, or the sha256: digest of an image imported with `strata image import` (images are not pulled from registries)"
                    ),
                    quoted(image),
                ));
            }
            if let Some(user) = spec.user.as_deref().filter(|u| !is_user(u)) {
                p.add(invalid(
                    path.key("user"),
                    "a user, or a user and a group, each a number below 4294967295 or a name in the image (lowercase letters, digits, _ - .): 1000, 1000:1000, www-data or app:staff",
                    quoted(user),
                ));
            }
        }
        Driver::Process => {
            // What only a container has, asked of a process.
            let oci_only = [
                (path.key("image"), "no image", spec.image.as_deref().map(quoted)),
                (path.key("user"), "no user", spec.user.as_deref().map(quoted)),
                (
                    path.key("network"),
                    "no private network",
                    (spec.network == Network::Private).then(|| quoted("private")),
                ),
                (
                    path.key("seccomp"),
                    "no seccomp filter to leave out",
                    (spec.seccomp == Seccomp::Unconfined).then(|| quoted("unconfined")),
                ),
                (
                    resources.key("cpus"),
                    "no CPU limit",
                    spec.resources.cpus.map(|c| format!("the number {c}")),
                ),
                (
                    resources.key("pids"),
                    "no pids limit",
                    spec.resources.pids.map(|n| format!("the number {n}")),
                ),
            ];
            for (field, what, found) in oci_only {
                if let Some(found) = found {
                    p.add(invalid(
                        field,
                        format!("{what} with the process driver (only a container has one: set \"driver\": \"oci\")"),
                        found,
                    ));
                }
            }
        }
    }
}
