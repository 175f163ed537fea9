//! grpc-bench: the tonic load client and echo member of bench/grpc.sh (issue 16).
//!
//! Layout: `codec` (raw-bytes gRPC codec, no protobuf), `load` (the load client),
//! `member` (the echo server).
//!
//!     grpc-bench load HOST:PORT unary|bidi CONNS SECONDS [SIZE=64] [STREAMS=1]
//!     grpc-bench member [PORT]        (default: $PORT)

mod codec;
mod load;
mod member;

use std::time::Duration;

use anyhow::Context as _;

const USAGE: &str = "usage: grpc-bench load HOST:PORT unary|bidi CONNS SECONDS [SIZE=64] [STREAMS=1]\n       grpc-bench member [PORT]   (default: $PORT)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") if (5..=7).contains(&args.len()) => {
            let num = |i: usize, what: &str, default: &str| -> anyhow::Result<f64> {
                let s = args.get(i).map(String::as_str).unwrap_or(default);
                s.parse().with_context(|| format!("{what} {s:?} is not a number"))
            };
            let cfg = load::LoadConfig {
                target: args[1].clone(),
                mode: load::Mode::parse(&args[2])?,
                conns: num(3, "CONNS", "")? as usize,
                duration: Duration::from_secs_f64(num(4, "SECONDS", "")?),
                size: num(5, "SIZE", "64")? as usize,
                streams: num(6, "STREAMS", "1")? as usize,
            };
            println!("{}", load::run(cfg).await?);
            Ok(())
        }
        Some("member") if args.len() <= 2 => {
            let port = match args.get(1) {
                Some(p) => p.clone(),
                None => std::env::var("PORT").context("no PORT argument and no $PORT")?,
            };
            let port: u16 = port.parse().with_context(|| format!("port {port:?}"))?;
            member::run(([127, 0, 0, 1], port).into()).await
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
