//! The OCI runtime bundle of one container launch: `config.json`, built with the
//! `oci-spec` crate's types, and `rootfs/`, an empty directory that becomes the
//! container's read-only root with everything in it mounted.
//!
//! What the container sees (the `host` image):
//! - `/usr` and `/etc` of the host, and each of `/bin`, `/sbin`, `/lib`, `/lib32`,
//!   `/lib64`, `/libx32` the host has (a symbolic link where the host's is one, as on a
//!   merged-/usr system, else a bind mount), all read-only; the password hashes
//!   (`/etc/shadow`, `/etc/gshadow`), `/etc/sudoers` and `/etc/ssh` masked;
//! - the service's workdir, read-only, at the same path as on the host (so absolute
//!   paths a setup step wrote, such as a virtualenv's, still hold), with the node's
//!   state dir masked where it lies inside;
//! - `/tmp`, a tmpfs of its own (the scratch: `$HOME` and `$TMPDIR`), thrown away with
//!   the container, and the manifest's `files` bound read-only into it;
//! - `/proc` of its own pid namespace, a `/dev` tmpfs with the standard devices,
//!   `/dev/shm`, `/dev/mqueue`, and `/sys` and its cgroups read-only, with `/proc` and
//!   `/sys` paths masked or read-only as Docker does.
//!
//! Isolation: own pid, mount, ipc and uts namespaces (the network namespace is the
//! host's, as a process instance shares the node's loopback, or, on a private
//! network, the one `network` made for the launch); no capabilities in any
//! set; `noNewPrivileges`; the seccomp profile of `seccomp`; a non-root user unless the
//! service names one. Limits: memory (with no swap beyond it), CPU quota, pids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::seccomp;

/// The directories of the host the `host` image shows, besides `/usr` and `/etc`,
/// where the host has them.
const HOST_TOP: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Where the scratch tmpfs is mounted in the container (`$HOME`, `$TMPDIR`).
pub(crate) const SCRATCH: &str = "/tmp";

/// The PATH a container's program starts with unless the service's env sets one.
pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The scratch tmpfs's size where the service sets no memory limit (with one, the limit
/// bounds it: its pages are charged to the container's memory).
const SCRATCH_DEFAULT_MB: u64 = 512;

/// A CPU quota's period: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

/// The pid-1 of a container: passes TERM, INT and HUP to the program (a program that is
/// pid 1 of its namespace is sent no signal it has no handler for, so a program that
/// relies on the default action of SIGTERM would never stop), waits for it, and exits
/// with its status. It is `/bin/sh` of the image, as Docker's `--init` is tini; an
/// image without one runs its program as the first process (as `docker run` without
/// `--init` does), which then must handle SIGTERM itself or be killed after the grace
/// period.
pub(crate) const INIT: &str = r#"trap 'kill -TERM "$c" 2>/dev/null' TERM
trap 'kill -INT "$c" 2>/dev/null' INT
trap 'kill -HUP "$c" 2>/dev/null' HUP
"$@" &
c=$!
while :; do
  wait "$c"
  s=$?
  kill -0 "$c" 2>/dev/null || exit "$s"
done
"#;

/// Docker's masked paths (a file gets /dev/null over it, a directory an empty
/// read-only tmpfs), and the host's password hashes and ssh keys.
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/sudoers",
];

/// Docker's read-only paths.
const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// What the host's root shows of [`HOST_TOP`]: links to recreate and directories to
/// bind. Read once per node.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostImage {
    links: Vec<(String, PathBuf)>,
    binds: Vec<PathBuf>,
}

impl HostImage {
    pub fn detect() -> HostImage {
        HostImage::of(Path::new("/"))
    }

    fn of(root: &Path) -> HostImage {
        let mut image = HostImage::default();
        for name in HOST_TOP {
            let path = root.join(name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&path) {
                    image.links.push((name.to_string(), target));
                }
            } else if meta.is_dir() {
                image.binds.push(Path::new("/").join(name));
            }
        }
        image.binds.push(PathBuf::from("/usr"));
        image.binds.push(PathBuf::from("/etc"));
        image
    }
}

/// One launch's container, as `config.json` says it.
pub(crate) struct BundleSpec<'a> {
    pub hostname: &'a str,
    /// The program's argv (run under [`INIT`] where `init`).
    pub argv: &'a [String],
    /// Whether [`INIT`] is the first process, with the image's `/bin/sh`; false for an
    /// image without one, whose program is then the first process itself.
    pub init: bool,
    pub env: &'a BTreeMap<String, String>,
    /// Bound read-only at its own path.
    pub workdir: &'a Path,
    /// Where the program starts: the workdir, or the image's `WorkingDir`.
    pub cwd: &'a Path,
    /// An image's root filesystem (read-only, shared by every container of the image);
    /// None: the `host` image (an empty root with the host's directories bound in).
    pub root: Option<&'a Path>,
    /// Paths hidden besides [`MASKED`] (the state dir inside the workdir).
    pub masked: &'a [PathBuf],
    /// Files bound read-only into the scratch: (path below the scratch, host file).
    pub files: &'a [(String, PathBuf)],
    pub user: (u32, u32),
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: u64,
    /// Whether the default seccomp profile applies; false: no filter.
    pub seccomp: bool,
    /// The container's cgroup, relative to the runtime's own.
    pub cgroup: &'a str,
    /// A network namespace of its own (`/run/netns/...`) on its app's private network;
    /// None: the host's.
    pub netns: Option<&'a Path>,
    /// A file bound read-only over `/etc/resolv.conf` where the root has that file as a
    /// regular file (on a private network, which reaches no name server).
    pub resolv_conf: Option<&'a Path>,
}

/// Makes `bundle/rootfs` (with the image's links) and writes `bundle/config.json`.
pub(crate) fn write(bundle: &Path, image: &HostImage, spec: &BundleSpec<'_>) -> Result<()> {
    let config = config(image, spec)?;
    let path = bundle.join("config.json");
    if spec.root.is_some() {
        config
            .save(&path)
            .with_context(|| format!("write {}", path.display()))?;
        return Ok(());
    }
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).with_context(|| format!("create {}", rootfs.display()))?;
    for (name, target) in &image.links {
        let link = rootfs.join(name);
        if let Err(e) = std::os::unix::fs::symlink(target, &link) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e).with_context(|| format!("link {}", link.display()));
            }
        }
    }
    config
        .save(&path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// The container's `config.json`.
pub(crate) fn config(image: &HostImage, spec: &BundleSpec<'_>) -> Result<Spec> {
    let mut env: Vec<String> = Vec::new();
    if !spec.env.contains_key("PATH") {
        env.push(format!("PATH={PATH}"));
    }
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut args = Vec::new();
    if spec.init {
        args.extend(["/bin/sh", "-c", INIT, "strata-init"].map(str::to_string));
    }
    args.extend(spec.argv.iter().cloned());
    let no_capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(Capabilities::new())
        .effective(Capabilities::new())
        .inheritable(Capabilities::new())
        .permitted(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;
    let (soft, hard) = open_files_limit();
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(spec.user.0).gid(spec.user.1).build()?)
        .args(args)
        .env(env)
        .cwd(spec.cwd)
        .capabilities(no_capabilities)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(soft)
            .hard(hard)
            .build()?])
        .no_new_privileges(true)
        .build()?;

    let mut resources = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?])
        .pids(LinuxPidsBuilder::default().limit(spec.pids as i64).build()?);
    if let Some(mb) = spec.memory_mb {
        let bytes = (mb as i64).saturating_mul(1 << 20);
        // memory + swap = memory: no swapping past the limit.
        resources = resources.memory(LinuxMemoryBuilder::default().limit(bytes).swap(bytes).build()?);
    }
    if let Some(cpus) = spec.cpus {
        let quota = ((cpus * CPU_PERIOD_US as f64).round() as i64).max(1_000);
        resources = resources.cpu(LinuxCpuBuilder::default().quota(quota).period(CPU_PERIOD_US).build()?);
    }
    let mut namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .collect::<Result<Vec<_>, _>>()?;
    if let Some(netns) = spec.netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(netns)
                .build()?,
        );
    }
    let mut masked: Vec<String> = MASKED.iter().map(|p| p.to_string()).collect();
    masked.extend(spec.masked.iter().map(|p| p.display().to_string()));
    let linux = LinuxBuilder::default()
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(spec.cgroup))
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(READ_ONLY.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    let linux = match spec.seccomp {
        true => linux.seccomp(seccomp::default_profile()?),
        false => linux,
    }
    .build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(spec.root.unwrap_or(Path::new("rootfs")))
                .readonly(true)
                .build()?,
        )
        .hostname(spec.hostname)
        .mounts(mounts(image, spec)?)
        .process(process)
        .linux(linux)
        .build()?)
}

fn mounts(image: &HostImage, spec: &BundleSpec<'_>) -> Result<Vec<Mount>> {
    let mount = |dest: &str, typ: &str, source: &str, options: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
    };
    let bind_ro = |dest: &Path, source: &Path| {
        MountBuilder::default()
            .destination(dest)
            .typ("bind")
            .source(source)
            .options(
                ["rbind", "ro", "nosuid", "nodev"]
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>(),
            )
            .build()
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ];
    if spec.root.is_none() {
        for dir in &image.binds {
            mounts.push(bind_ro(dir, dir)?);
        }
    }
    let scratch_mb = spec.memory_mb.unwrap_or(SCRATCH_DEFAULT_MB);
    mounts.push(mount(
        SCRATCH,
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "mode=1777", &format!("size={scratch_mb}m")],
    )?);
    // After the scratch: a workdir below /tmp on the host is mounted over it.
    mounts.push(bind_ro(spec.workdir, spec.workdir)?);
    for (rel, source) in spec.files {
        mounts.push(bind_ro(&Path::new(SCRATCH).join(rel), source)?);
    }
    if let Some(source) = spec.resolv_conf {
        let target = spec.root.unwrap_or(Path::new("/")).join("etc/resolv.conf");
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
            mounts.push(bind_ro(Path::new("/etc/resolv.conf"), source)?);
        }
    }
    Ok(mounts)
}

/// The node's own open-files limit, which a process instance would inherit.
fn open_files_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given; nothing else is touched.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok && limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_max != libc::RLIM_INFINITY {
        (limit.rlim_cur, limit.rlim_max)
    } else {
        (1024, 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(
        env: &'a BTreeMap<String, String>,
        argv: &'a [String],
        files: &'a [(String, PathBuf)],
        masked: &'a [PathBuf],
    ) -> BundleSpec<'a> {
        BundleSpec {
            hostname: "web-1",
            argv,
            init: true,
            env,
            workdir: Path::new("/srv/app"),
            cwd: Path::new("/srv/app"),
            root: None,
            masked,
            files,
            user: (65534, 65534),
            memory_mb: Some(64),
            cpus: Some(0.5),
            pids: 1024,
            seccomp: true,
            cgroup: "strata-0a1b2c3d-web-1.1",
            netns: None,
            resolv_conf: None,
        }
    }

    #[test]
    fn the_config_isolates_and_limits_as_documented() {
        let env = BTreeMap::from([("PORT".to_string(), "8081".to_string())]);
        let argv = vec!["python3".to_string(), "app.py".to_string()];
        let files = vec![(
            "conf/a.toml".to_string(),
            PathBuf::from("/state/run/1/web-1.1/files/conf/a.toml"),
        )];
        let masked = vec![PathBuf::from("/srv/app/.strata")];
        let image = HostImage {
            links: vec![("bin".into(), "usr/bin".into())],
            binds: vec!["/usr".into(), "/etc".into()],
        };
        let config = config(&image, &spec(&env, &argv, &files, &masked)).unwrap();
        let json = serde_json::to_value(&config).unwrap();
        // `"seccomp": "unconfined"`: no filter at all, everything else as it was.
        let unconfined = BundleSpec {
            seccomp: false,
            ..spec(&env, &argv, &files, &masked)
        };
        let unconfined = serde_json::to_value(super::config(&image, &unconfined).unwrap()).unwrap();
        assert!(
            unconfined["linux"].get("seccomp").is_none(),
            "{:#}",
            unconfined["linux"]
        );
        assert_eq!(unconfined["linux"]["maskedPaths"], json["linux"]["maskedPaths"]);
        assert_eq!(unconfined["process"]["noNewPrivileges"], true);

        let process = &json["process"];
        assert_eq!(process["user"]["uid"], 65534);
        assert_eq!(process["noNewPrivileges"], true);
        for set in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
            assert_eq!(process["capabilities"][set], serde_json::json!([]), "{set}");
        }
        assert_eq!(process["args"][0], "/bin/sh");
        assert_eq!(process["args"][4], "python3");
        assert_eq!(process["cwd"], "/srv/app");
        // An image without a shell: the program is the first process.
        let no_init = BundleSpec {
            init: false,
            cwd: Path::new("/www"),
            ..spec(&env, &argv, &files, &masked)
        };
        let bare = serde_json::to_value(super::config(&image, &no_init).unwrap()).unwrap();
        assert_eq!(bare["process"]["args"], serde_json::json!(["python3", "app.py"]));
        assert_eq!(bare["process"]["cwd"], "/www");
        // On a private network: the namespace made for the launch, by its path.
        let private = BundleSpec {
            netns: Some(Path::new("/run/netns/strata-0a1b2c3d-web-1.1")),
            ..spec(&env, &argv, &files, &masked)
        };
        let private = serde_json::to_value(super::config(&image, &private).unwrap()).unwrap();
        assert_eq!(
            private["linux"]["namespaces"][4],
            serde_json::json!({"type": "network", "path": "/run/netns/strata-0a1b2c3d-web-1.1"})
        );
        let env: Vec<&str> = process["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(env.contains(&"PORT=8081") && env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin")));

        assert_eq!(json["root"]["readonly"], true);
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            namespaces,
            ["pid", "ipc", "uts", "mount"],
            "no network namespace: the host's"
        );
        let resources = &json["linux"]["resources"];
        assert_eq!(resources["memory"]["limit"], 64 << 20);
        assert_eq!(resources["memory"]["swap"], 64 << 20);
        assert_eq!(
            (resources["cpu"]["quota"].as_i64(), resources["cpu"]["period"].as_u64()),
            (Some(50_000), Some(100_000))
        );
        assert_eq!(resources["pids"]["limit"], 1024);
        assert_eq!(json["linux"]["cgroupsPath"], "strata-0a1b2c3d-web-1.1");
        let masked = json["linux"]["maskedPaths"].as_array().unwrap();
        for path in ["/proc/kcore", "/sys/firmware", "/etc/shadow", "/srv/app/.strata"] {
            assert!(masked.iter().any(|m| m == path), "{path} is not masked");
        }
        assert!(json["linux"]["readonlyPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/sys"));
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");

        let mounts = json["mounts"].as_array().unwrap();
        let at = |dest: &str| {
            mounts
                .iter()
                .position(|m| m["destination"] == dest)
                .unwrap_or_else(|| panic!("no mount at {dest}"))
        };
        for dir in ["/usr", "/etc", "/srv/app", "/tmp/conf/a.toml"] {
            let options = &mounts[at(dir)]["options"];
            assert!(
                options.as_array().unwrap().iter().any(|o| o == "ro"),
                "{dir} is writable"
            );
        }
        let scratch = &mounts[at("/tmp")];
        assert_eq!(scratch["type"], "tmpfs");
        assert!(scratch["options"].as_array().unwrap().iter().any(|o| o == "size=64m"));
        // The workdir and the files go over the scratch, not under it.
        assert!(at("/tmp") < at("/srv/app") && at("/tmp") < at("/tmp/conf/a.toml"));
    }

    #[test]
    fn the_host_image_links_what_the_host_links_and_binds_the_rest() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).unwrap();
        std::fs::create_dir(root.path().join("lib64")).unwrap();
        let image = HostImage::of(root.path());
        assert_eq!(image.links, [("bin".to_string(), PathBuf::from("usr/bin"))]);
        assert_eq!(
            image.binds,
            [PathBuf::from("/lib64"), PathBuf::from("/usr"), PathBuf::from("/etc")]
        );

        let bundle = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let argv = vec!["true".to_string()];
        write(bundle.path(), &image, &spec(&env, &argv, &[], &[])).unwrap();
        assert_eq!(
            std::fs::read_link(bundle.path().join("rootfs/bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
        let written: Spec = Spec::load(bundle.path().join("config.json")).unwrap();
        assert_eq!(written.hostname().as_deref(), Some("web-1"));
    }
}
