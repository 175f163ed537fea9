//! What a node keeps from other users: its state dir (the owner's alone), its control
//! token (configured, or random and local), and the Redis port's password (required off
//! loopback).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The state dir (logs, scratch dirs, queues, store, the control token), made if
/// missing, the owner's alone (0700): nothing under it is reachable by other users,
/// whatever the modes of the files the subsystems create in it.
pub(crate) fn state_dir(app_dir: &Path, configured: Option<PathBuf>) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = match configured {
        Some(dir) => std::path::absolute(dir).context("resolve the state dir")?,
        None => app_dir.join(".strata"),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("create state dir {}", dir.display()))?;
    // One made by an older strata, or by hand, is narrowed.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("make state dir {} the owner's alone", dir.display()))?;
    Ok(dir)
}

/// The control token: the configured one, else 32 random bytes. A node API on an
/// address other than loopback needs one configured: a token made here is in a local
/// file only, and an API open to the network must not be one setting away from open.
pub(crate) fn control_token(configured: Option<String>, api_listen: SocketAddr) -> Result<String> {
    match configured {
        Some(token) => {
            if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
                anyhow::bail!(
                    "STRATA_CONTROL_TOKEN must be at least 32 visible characters without spaces \
                     (make one with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
                );
            }
            Ok(token)
        }
        None if !api_listen.ip().is_loopback() => anyhow::bail!(
            "the node API would listen on {api_listen}, beyond this machine, without a control token \
             configured; set STRATA_CONTROL_TOKEN (32 random bytes in hex) for the node and for the CLI \
             that calls it, or keep the API on loopback (--api-listen 127.0.0.1:PORT)"
        ),
        None => random_token(),
    }
}

/// 32 bytes from the kernel's random source, in hex.
pub(crate) fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read /dev/urandom for a token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The Redis port's password: `$STRATA_CACHE_PASSWORD` (`from_env`) over the manifest's
/// `cache.password`. Refused: one shorter than 16 characters, and none at all on an
/// address other than loopback (anyone who can reach the port could read and write the
/// cache).
pub(crate) fn cache_password(
    manifest: Option<&str>,
    from_env: Option<String>,
    listen: SocketAddr,
) -> Result<Option<String>> {
    let min = strata_manifest::MIN_CACHE_PASSWORD_CHARS;
    let password = from_env.or_else(|| manifest.map(str::to_string));
    match &password {
        Some(p) if p.chars().count() < min => anyhow::bail!(
            "the cache password (cache.password, or $STRATA_CACHE_PASSWORD) has {} characters: use at least {min}, such as `openssl rand -hex 16` prints",
            p.chars().count()
        ),
        None if !listen.ip().is_loopback() => anyhow::bail!(
            "cache.listen is {listen}, not a loopback address, and the Redis port has no password: set cache.password (or $STRATA_CACHE_PASSWORD) to one of at least {min} characters, or set cache.listen to a loopback address such as 127.0.0.1:6380"
        ),
        _ => Ok(password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_port_off_loopback_needs_a_password() {
        let loopback: SocketAddr = "127.0.0.1:6380".parse().unwrap();
        let anywhere: SocketAddr = "0.0.0.0:6380".parse().unwrap();
        let good = "0123456789abcdef";
        assert_eq!(cache_password(None, None, loopback).unwrap(), None);
        let refused = cache_password(None, None, anywhere).unwrap_err().to_string();
        assert!(
            refused.contains("cache.listen") && refused.contains("cache.password") && refused.contains("0.0.0.0:6380"),
            "{refused}"
        );
        assert!(cache_password(None, None, "[::]:6380".parse().unwrap()).is_err());
        assert!(cache_password(None, None, "[::1]:6380".parse().unwrap()).is_ok());
        assert_eq!(
            cache_password(Some(good), None, anywhere).unwrap().as_deref(),
            Some(good)
        );
        // The environment's wins over the manifest's.
        let from_env = cache_password(Some(good), Some("fedcba9876543210".into()), anywhere).unwrap();
        assert_eq!(from_env.as_deref(), Some("fedcba9876543210"));
        let short = cache_password(Some("short"), None, loopback).unwrap_err().to_string();
        assert!(
            short.contains("at least 16") && short.contains("5 characters"),
            "{short}"
        );
        assert!(cache_password(Some(good), Some("too short".into()), loopback).is_err());
    }
}
