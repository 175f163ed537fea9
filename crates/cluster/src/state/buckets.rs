//! Creating or opening the store's buckets: as `create_key_value` and
//! `create_object_store` make them, but with direct gets off, so that every read is
//! answered by the stream leader (see the parent module).

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, stream};

use crate::settle::settled;

/// Creates the stream of `config` unless it exists; one that exists with direct gets on
/// is switched to reads from the leader. Another node creating it at the same moment is
/// fine: the calls are retried until the stream answers (`settle`).
pub(crate) async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> anyhow::Result<stream::Stream> {
    let name = config.name.clone();
    settled(js, &name, |bounded| {
        let (js, config, name) = (js.clone(), config.clone(), name.clone());
        async move {
            make_stream(bounded, config).await?;
            // Answered: opened again on the caller's own context (its timeouts).
            js.get_stream(&name)
                .await
                .with_context(|| format!("open stream {name}"))
        }
    })
    .await
}

/// One attempt of [`ensure_stream`].
async fn make_stream(js: jetstream::Context, config: stream::Config) -> anyhow::Result<()> {
    let name = config.name.clone();
    if let Ok(stream) = js.get_stream(&name).await {
        let existing = stream.cached_info().config.clone();
        if !existing.allow_direct {
            return Ok(());
        }
        js.update_stream(stream::Config {
            allow_direct: false,
            ..existing
        })
        .await
        .with_context(|| format!("turn direct gets off on stream {name}"))?;
        return Ok(());
    }
    match js.create_stream(config).await {
        Ok(_) => Ok(()),
        Err(e) => js
            .get_stream(&name)
            .await
            .map(drop)
            .map_err(|_| anyhow::anyhow!("create stream {name}: {e}")),
    }
}

/// A KV bucket as `create_key_value` makes it (history 1, file storage), but with
/// direct gets off (see the module docs).
pub(crate) async fn ensure_kv(js: &jetstream::Context, bucket: &str, replicas: usize) -> anyhow::Result<kv::Store> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("strata store".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: false,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    settled(js, bucket, |bounded| {
        let (js, config) = (js.clone(), config.clone());
        async move {
            make_stream(bounded, config).await?;
            js.get_key_value(bucket)
                .await
                .with_context(|| format!("open key-value bucket {bucket}"))
        }
    })
    .await
}
