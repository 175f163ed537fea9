//! The checks of the cache's settings (`cache`: its Redis port, bounds and password).

use super::*;

pub(super) fn check_cache(m: &Manifest, root: &FieldPath, p: &mut Problems) {
    if let Some(listen) = &m.cache.listen {
        match listen.parse::<SocketAddr>() {
            Err(_) => p.add(invalid(
                root.key("cache").key("listen"),
                "a socket address such as 127.0.0.1:6380",
                quoted(listen),
            )),
            // Both are claimed by the node: the second would be refused at start.
            Ok(addr) if addr.port() != 0 && m.gateway.listen.parse::<SocketAddr>().ok() == Some(addr) => {
                p.add(invalid(
                    root.key("cache").key("listen"),
                    "an address other than gateway.listen",
                    quoted(listen),
                ));
            }
            Ok(_) => {}
        }
    }
    p.check(positive(
        root.key("cache").key("max_memory_mb"),
        m.cache.max_memory_mb,
        "megabytes",
    ));
    let cache = root.key("cache");
    p.check(within(
        cache.key("max_clients"),
        u64::from(m.cache.max_clients),
        1,
        1_000_000,
        "connections",
    ));
    p.check(positive(
        cache.key("max_query_buffer_mb"),
        m.cache.max_query_buffer_mb,
        "megabytes",
    ));
    p.check(positive(
        cache.key("max_query_buffers_total_mb"),
        m.cache.max_query_buffers_total_mb,
        "megabytes",
    ));
    if let Some(password) = &m.cache.password {
        let chars = password.chars().count();
        if chars < crate::cache::MIN_CACHE_PASSWORD_CHARS {
            p.add(invalid(
                cache.key("password"),
                "a password of at least 16 characters (such as `openssl rand -hex 16` prints)",
                format!("one of {chars} characters"),
            ));
        }
    }
    for (name, spec) in &m.caches {
        let path = root.key("caches").key(name);
        if !is_queue_name(name) {
            p.add(invalid(
                path.clone(),
                EXPECT_QUEUE_NAME,
                format!("the name {}", quoted(name)),
            ));
        }
        if !is_queue_name(&spec.namespace) {
            p.add(invalid(
                path.key("namespace"),
                EXPECT_QUEUE_NAME,
                quoted(&spec.namespace),
            ));
        }
        p.check(positive(path.key("ttl_ms"), spec.ttl_ms, "milliseconds"));
    }
}
