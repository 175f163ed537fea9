//! What an image's config makes of a container launch, beside the manifest:
//!
//! - the command ([`command`]): the manifest's `run` when it has one, which replaces
//!   the image's `Entrypoint` and `Cmd` both (as Kubernetes' `command` does: `run` is
//!   the whole argv for every driver and image, and there is no other field to replace
//!   an `Entrypoint` with); without one, `Entrypoint` then `Cmd`, as `docker run IMAGE`
//!   runs them; an image with neither and no `run` is an error naming both;
//! - the user ([`user`]): the manifest's `user` when it has one ([`manifest_user`],
//!   names looked up in the image as the config's are); else the config's
//!   `User` (`NAME` or `UID`, and optionally `:GROUP` or `:GID`), names looked up in
//!   the image's own `/etc/passwd` and `/etc/group`; root there, or no `User`, means
//!   the non-root default ([`NOBODY`]): only the manifest can ask for root;
//! - the working directory ([`Resolved::cwd`]): the config's `WorkingDir` unless the
//!   manifest names a `workdir`;
//! - whether the image has a shell for strata's init ([`has_shell`]).
//!
//! The environment (the config's `Env` under the instance contract's and the
//! manifest's) is layered where the instance's environment is made.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};
use strata_manifest::NOBODY;

use super::{Image, Resolved};

/// The most symbolic links followed resolving one path inside an image, as the kernel's
/// own limit.
const MAX_LINKS: usize = 40;

/// The argv a container of `image` (named `name` in the manifest) runs for the service
/// `service`: `run` (already expanded) if not empty, else the image's `Entrypoint` and
/// `Cmd`.
pub fn command(service: &str, name: &str, image: &Image, run: &[String]) -> Result<Vec<String>> {
    if !run.is_empty() {
        return Ok(run.to_vec());
    }
    let argv: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();
    if argv.first().is_none_or(|p| p.is_empty()) {
        bail!(
            "services.{service}: image {name} ({}) says nothing to run: its config has neither Entrypoint nor Cmd; give the service a \"run\"",
            short(&image.digest)
        );
    }
    Ok(argv)
}

/// Who a container of `image` (named `name` in the manifest) runs as when the manifest
/// names no `user`: the config's `User`, names resolved in the image's root filesystem
/// `rootfs`.
pub fn user(service: &str, name: &str, image: &Image, rootfs: &Path) -> Result<(u32, u32)> {
    let Some(text) = image.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(NOBODY);
    };
    let (uid, gid) = ids(text, rootfs).map_err(|what| {
        anyhow::anyhow!(
            "services.{service}: image {name} ({}): its config's User {text:?}: {what}; give the service a numeric \"user\"",
            short(&image.digest)
        )
    })?;
    if uid == 0 {
        // Root in an image is the common case of an image that never thought about it;
        // a container runs as root only where the manifest says so.
        return Ok(NOBODY);
    }
    Ok((uid, gid))
}

/// Who a container runs as when the manifest names a `user` (`UID`, `NAME`, and
/// optionally `:GID` or `:GROUP`): numbers as they are, names looked up in `rootfs`
/// (the image's root filesystem, or `/` for the host image). Root is whatever the
/// manifest asks for.
pub fn manifest_user(service: &str, text: &str, rootfs: &Path, image: &str) -> Result<(u32, u32)> {
    ids(text, rootfs).map_err(|what| {
        anyhow::anyhow!("services.{service}.user {text:?}: {what} (image {image}); give a name it has, or numbers")
    })
}

/// `USER[:GROUP]`, each a number or a name in `rootfs`'s `/etc/passwd` and
/// `/etc/group`; without a group, the user's primary group, else the uid as its own.
fn ids(text: &str, rootfs: &Path) -> std::result::Result<(u32, u32), String> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let passwd = read_inside(rootfs, "/etc/passwd");
    let entries = |file: &Option<String>| -> Vec<(String, u32, Option<u32>)> {
        file.as_deref()
            .unwrap_or("")
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                let id = fields.get(2)?.parse().ok()?;
                Some((fields[0].to_string(), id, fields.get(3).and_then(|g| g.parse().ok())))
            })
            .collect()
    };
    let users = entries(&passwd);
    let (uid, primary) = match number(user) {
        Some(uid) => (uid, users.iter().find(|u| u.1 == uid).and_then(|u| u.2)),
        None => match users.iter().find(|u| u.0 == user) {
            Some(u) => (u.1, u.2),
            None if passwd.is_none() => return Err("the image has no /etc/passwd to find the name in".into()),
            None => return Err(format!("no user {user:?} in the image's /etc/passwd")),
        },
    };
    let gid = match group.filter(|g| !g.is_empty()) {
        None => primary.unwrap_or(uid),
        Some(g) => match number(g) {
            Some(gid) => gid,
            None => {
                let file = read_inside(rootfs, "/etc/group");
                match entries(&file).iter().find(|e| e.0 == g) {
                    Some(e) => e.1,
                    None if file.is_none() => return Err("the image has no /etc/group to find the group in".into()),
                    None => return Err(format!("no group {g:?} in the image's /etc/group")),
                }
            }
        },
    };
    Ok((uid, gid))
}

/// Whether the image has `/bin/sh`, which strata's init is run with; without it the
/// program is the container's first process itself.
pub fn has_shell(rootfs: &Path) -> bool {
    resolve_inside(rootfs, "/bin/sh").is_some_and(|p| p.is_file())
}

impl Resolved {
    /// Where the program starts when the manifest names no `workdir`: the config's
    /// `WorkingDir`, if absolute.
    pub fn cwd(&self) -> Option<&str> {
        self.image.working_dir.as_deref().filter(|d| d.starts_with('/'))
    }
}

/// Makes the config's `WorkingDir` in the image's root filesystem if a layer did not,
/// so that the runtime never writes into a root filesystem containers share; and gives
/// its `/tmp` the mode 1777, since runc gives a tmpfs the mode of the directory it is
/// mounted on (a `/tmp` of 0755 would leave the scratch writable by root only).
pub(super) fn prepare(rootfs: &Path, image: &Image) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = rootfs.join("tmp");
    if let Ok(meta) = std::fs::symlink_metadata(&tmp) {
        if meta.is_dir() && meta.permissions().mode() & 0o7777 != 0o1777 {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
        }
    }
    if let Some(dir) = image.working_dir.as_deref().filter(|d| d.starts_with('/')) {
        let inside = rootfs.join(dir.trim_start_matches('/'));
        if std::fs::symlink_metadata(&inside).is_err() && resolve_inside(rootfs, dir).is_none() {
            std::fs::create_dir_all(&inside)?;
        }
    }
    Ok(())
}

/// A file of the image, read with its symbolic links resolved inside the image (an
/// absolute link names a path of the image, never of the host).
fn read_inside(rootfs: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(resolve_inside(rootfs, path)?).ok()
}

/// `path` of the image as a host path below `rootfs`, links followed inside the image;
/// None if it is not there.
fn resolve_inside(rootfs: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = components(path).into_iter().rev().collect();
    let mut at: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            at.pop();
            continue;
        }
        let here = at.iter().fold(rootfs.to_path_buf(), |p, c| p.join(c)).join(&part);
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = std::fs::read_link(&here).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                at.clear();
            }
            pending.extend(components(target).into_iter().rev());
        } else {
            at.push(part);
        }
    }
    Some(at.iter().fold(rootfs.to_path_buf(), |p, c| p.join(c)))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&n| n != u32::MAX)
}

/// The first 12 hex digits of a digest, as `strata image ls` shows it.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str], user: Option<&str>) -> Image {
        Image {
            digest: "sha256:0123456789abcdef".into(),
            source: "/srv/busybox.tar".into(),
            tags: vec![],
            layers: vec![],
            size: 0,
            env: vec![],
            working_dir: None,
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            user: user.map(str::to_string),
            imported_ms: 0,
        }
    }

    fn rootfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join("data")).unwrap();
        std::fs::write(
            root.path().join("data/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n",
        )
        .unwrap();
        // An absolute link: resolved inside the image, not on the host.
        std::os::unix::fs::symlink("/data/passwd", root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        root
    }

    #[test]
    fn run_replaces_entrypoint_and_cmd_and_without_it_they_run() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let img = image(&["/bin/busybox"], &["httpd", "-f"], None);
        assert_eq!(
            command("web", "./busybox.tar", &img, &[]).unwrap(),
            s(&["/bin/busybox", "httpd", "-f"])
        );
        assert_eq!(
            command("web", "./busybox.tar", &img, &s(&["/bin/app"])).unwrap(),
            s(&["/bin/app"])
        );
        assert_eq!(
            command("web", "./busybox.tar", &image(&[], &["/bin/app", "x"], None), &[]).unwrap(),
            s(&["/bin/app", "x"])
        );
        let err = command("web", "./busybox.tar", &image(&[], &[], None), &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "services.web: image ./busybox.tar (0123456789ab) says nothing to run: its config has neither Entrypoint nor Cmd; give the service a \"run\""
        );
    }

    #[test]
    fn the_config_user_is_resolved_in_the_image_and_root_means_nobody() {
        let root = rootfs();
        let user_of = |u: Option<&str>| user("web", "./busybox.tar", &image(&[], &["x"], u), root.path());
        assert_eq!(user_of(None).unwrap(), NOBODY);
        assert_eq!(user_of(Some("")).unwrap(), NOBODY);
        assert_eq!(user_of(Some("app")).unwrap(), (1234, 2345));
        assert_eq!(user_of(Some("app:staff")).unwrap(), (1234, 50));
        assert_eq!(user_of(Some("1234")).unwrap(), (1234, 2345), "the passwd entry's group");
        assert_eq!(user_of(Some("777")).unwrap(), (777, 777), "no entry: its own group");
        assert_eq!(user_of(Some("777:5")).unwrap(), (777, 5));
        assert_eq!(user_of(Some("root")).unwrap(), NOBODY);
        assert_eq!(user_of(Some("0:0")).unwrap(), NOBODY);
        let err = user_of(Some("nobody-here")).unwrap_err().to_string();
        assert!(
            err.contains("services.web: image ./busybox.tar (0123456789ab)")
                && err.contains("no user \"nobody-here\" in the image's /etc/passwd"),
            "{err}"
        );
        let err = user_of(Some("app:wheel")).unwrap_err().to_string();
        assert!(err.contains("no group \"wheel\""), "{err}");
        let bare = tempfile::tempdir().unwrap();
        let err = user("web", "./busybox.tar", &image(&[], &["x"], Some("app")), bare.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no /etc/passwd"), "{err}");
    }

    #[test]
    fn links_resolve_inside_the_image() {
        let root = rootfs();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::fs::write(root.path().join("bin/busybox"), "").unwrap();
        assert!(!has_shell(root.path()));
        std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).unwrap();
        assert!(has_shell(root.path()));
        // A link out of the image ends at the image's root.
        std::os::unix::fs::symlink("../../../../etc/hostname", root.path().join("etc/escape")).unwrap();
        assert_eq!(
            resolve_inside(root.path(), "/etc/escape"),
            None,
            "no /etc/hostname in the image"
        );
    }
}
