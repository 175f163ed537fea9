//! Placing an instance's files and starting its program (moved out of `instance.rs`,
//! unchanged).

use super::*;

/// Places the instance's files and starts it with its service's driver.
pub(super) async fn launch(
    shared: &AppContext,
    ctx: &ServiceCtx,
    id: &str,
    launch_no: u64,
    scratch: &Path,
) -> Result<(Launched, SocketAddr, process::RunLog, strata_os::claim::Claim)> {
    std::fs::create_dir_all(scratch).with_context(|| format!("create scratch dir {}", scratch.display()))?;
    let claim = claim_free_port()?;
    let addr = claim.addr;
    let port = addr.port();
    let container = ctx.spec.driver == Driver::Oci;
    // A container sees its scratch as a tmpfs of its own; the files are written beside
    // its bundle on the host and bound into it.
    let seen_scratch = if container { Path::new(oci::SCRATCH) } else { scratch };
    let files_dir = if container {
        scratch.join("files")
    } else {
        scratch.to_path_buf()
    };
    let env = instance_env(shared, ctx, id, port, seen_scratch, container);
    let mut files = Vec::new();
    for (rel, file) in &ctx.spec.files {
        let target = files_dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create dir for file {rel}"))?;
        }
        match file {
            FileSpec::Content { content } => {
                std::fs::write(&target, process::expand(content, &env)).with_context(|| format!("write file {rel}"))?;
            }
            FileSpec::Source { source } => {
                let from = shared.app_dir.join(source);
                std::fs::copy(&from, &target)
                    .with_context(|| format!("copy files.{rel:?}.source {} to {rel}", from.display()))?;
            }
        }
        files.push((rel.clone(), target));
    }
    let argv: Vec<String> = ctx.spec.run.iter().map(|a| process::expand(a, &env)).collect();
    let log = shared.log_path(&ctx.name, id);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).context("create log dir")?;
    }
    let name = format!("{id}.{launch_no}");
    if container {
        let oci = shared.oci().await?;
        let image = shared.image(&ctx.spec).await?;
        let mut env = env;
        if let Some(image) = &image {
            // The image's environment, under the instance contract's and the manifest's
            // (its PATH over the default one, unless the manifest sets PATH).
            for pair in &image.image.env {
                if let Some((k, v)) = pair.split_once('=') {
                    let default_path = k == "PATH" && !ctx.spec.env.contains_key("PATH");
                    let ours = env.contains_key(k) && !default_path;
                    if !ours {
                        env.insert(k.to_string(), v.to_string());
                    }
                }
            }
        }
        // What the image's config says, where the manifest does not (`image::config`).
        let (argv, user, cwd, init) = match &image {
            Some(image) => (
                crate::image::config::command(&ctx.name, ctx.spec.image(), &image.image, &argv)?,
                match &ctx.spec.user {
                    Some(text) => {
                        crate::image::config::manifest_user(&ctx.name, text, &image.rootfs, ctx.spec.image())?
                    }
                    None => crate::image::config::user(&ctx.name, ctx.spec.image(), &image.image, &image.rootfs)?,
                },
                match (&ctx.spec.workdir, image.cwd()) {
                    (None, Some(dir)) => PathBuf::from(dir),
                    _ => ctx.workdir.clone(),
                },
                image.shell,
            ),
            // The host image: names are the host's own.
            None => {
                let user = match &ctx.spec.user {
                    Some(text) => crate::image::config::manifest_user(&ctx.name, text, Path::new("/"), "host")?,
                    None => strata_manifest::NOBODY,
                };
                (argv, user, ctx.workdir.clone(), true)
            }
        };
        let resources = &ctx.spec.resources;
        let (running, run_log) = oci
            .launch(ContainerLaunch {
                name: &name,
                hostname: id,
                argv: &argv,
                init,
                env: &env,
                workdir: &ctx.workdir,
                cwd: &cwd,
                state_dir: &shared.state_dir,
                log: &log,
                bundle: scratch,
                root: image.as_ref().map(|i| i.rootfs.as_path()),
                files: &files,
                user,
                memory_mb: resources.memory_mb,
                cpus: resources.cpus,
                pids: resources.pids.unwrap_or(strata_manifest::DEFAULT_PIDS),
                seccomp: ctx.spec.seccomp == strata_manifest::Seccomp::Default,
                private: (ctx.spec.network == Network::Private)
                    .then(|| (shared.app.as_str(), api_addr(&shared.api_url))),
            })
            .await?;
        // On a private network the instance is reached at its own address.
        let addr = running.address().map_or(addr, |ip| SocketAddr::from((ip, port)));
        return Ok((Launched::Container(running), addr, run_log, claim));
    }
    let (proc, run_log) = process::launch(
        &shared.guard,
        Launch {
            name: &name,
            argv: &argv,
            workdir: &ctx.workdir,
            env: &env,
            log: &log,
        },
    )?;
    Ok((Launched::Process(proc), addr, run_log, claim))
}

/// The instance contract's environment, then the manifest's `env` (which may use it).
/// `scratch` is the scratch dir as the program sees it. A container gets this and
/// nothing else (a process inherits the node's environment besides), so it is also
/// given a `PATH` and, in its scratch, a `HOME`.
fn instance_env(
    shared: &AppContext,
    ctx: &ServiceCtx,
    id: &str,
    port: u16,
    scratch: &Path,
    container: bool,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("PORT".to_string(), port.to_string()),
        ("STRATA_URL".to_string(), shared.api_url.clone()),
        ("STRATA_APP".to_string(), shared.app.clone()),
        ("STRATA_SERVICE".to_string(), ctx.name.clone()),
        ("TMPDIR".to_string(), scratch.display().to_string()),
    ]);
    match &shared.cluster_node {
        Some(node) => {
            env.insert("STRATA_INSTANCE".to_string(), format!("{id}@{node}"));
            env.insert("STRATA_NODE".to_string(), node.clone());
        }
        None => {
            env.insert("STRATA_INSTANCE".to_string(), id.to_string());
        }
    }
    if container {
        env.insert("PATH".to_string(), oci::PATH.to_string());
        env.insert("HOME".to_string(), scratch.display().to_string());
    }
    if let Some(token) = shared.tokens.get(&ctx.name) {
        env.insert("STRATA_TOKEN".to_string(), token.clone());
    }
    // The node's own control token, when it came from its environment, is not passed on.
    if !container && std::env::var_os("STRATA_CONTROL_TOKEN").is_some() {
        env.insert("STRATA_CONTROL_TOKEN".to_string(), String::new());
    }
    for (key, value) in &ctx.spec.env {
        let value = process::expand(value, &env);
        env.insert(key.clone(), value);
    }
    env
}

/// The node API's address in a `http://ADDR` URL; None for a name.
fn api_addr(url: &str) -> Option<SocketAddr> {
    url.strip_prefix("http://")?.trim_end_matches('/').parse().ok()
}

/// A port the kernel says is free now, claimed ([`strata_os::claim`]) for as long as
/// the instance runs: between the probe and the instance's bind the port is free, and
/// without the claim another instance or server of this user launched in that moment
/// could be given it too. With `SO_REUSEPORT`, which grpcio sets by default, both would
/// then bind it and share each other's connections, health checks included.
fn claim_free_port() -> Result<strata_os::claim::Claim> {
    strata_os::claim::claim(SocketAddr::from(([127, 0, 0, 1], 0))).context("find a free port")
}
