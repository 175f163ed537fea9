//! `strata image`: the node's image store (docs/containers.md), without a node.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use strata_appservice::image::ImageStore;

use crate::out;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an image: an OCI image layout directory, an OCI archive, or a `docker save`
    /// archive (plain or gzipped). Every blob is checked against its digest; the layers
    /// are unpacked into the image's root filesystem. Prints the image's digest, which
    /// `"image"` in a manifest may name.
    Import {
        /// The layout directory or the archive.
        path: PathBuf,
    },
    /// The images in the store.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: ImageCommand) -> Result<()> {
    let store = ImageStore::open_default()?;
    match command {
        ImageCommand::Import { path } => {
            let image = tokio::task::spawn_blocking(move || store.import(&path)).await??;
            out::line(format!(
                "{}  {} layer(s), {}  {}",
                image.digest,
                image.layers.len(),
                size(image.size),
                image.tags.join(" ")
            ))?;
            Ok(())
        }
        ImageCommand::Ls { json } => {
            let images = store.list()?;
            if json {
                return Ok(out::line(serde_json::to_string_pretty(
                    &serde_json::json!({ "store": store.root(), "images": images }),
                )?)?);
            }
            Ok(out::stdout(|o| {
                writeln!(
                    o,
                    "{:<19} {:>6} {:>10}  {:<24} SOURCE",
                    "DIGEST", "LAYERS", "SIZE", "TAGS"
                )?;
                for i in &images {
                    let short: String = i.digest.chars().take(19).collect();
                    writeln!(
                        o,
                        "{short:<19} {:>6} {:>10}  {:<24} {}",
                        i.layers.len(),
                        size(i.size),
                        i.tags.join(","),
                        i.source
                    )?;
                }
                Ok(())
            })?)
        }
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} kB", bytes as f64 / 1024.0)
    }
}
