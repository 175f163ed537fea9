//! Fuzzes the RESP server's input path without a socket: the bytes go to a connection
//! (parser, commands, replies) in pieces whose size the first byte picks, and to the
//! parser alone. Nothing may panic, and a closed connection must have said why.
//!
//!     cd crates/cache && cargo +nightly fuzz run resp -- -dict=fuzz/resp.dict
//!
//! Seed corpus: `tests/corpus/` (`cargo fuzz run resp tests/corpus`).

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use strata_cache::resp::{Connection, Limits, Parser, Progress};
use strata_cache::{Cache, CacheConfig, RespConfig};

fn cache() -> Arc<Cache> {
    static CACHE: OnceLock<Arc<Cache>> = OnceLock::new();
    CACHE
        .get_or_init(|| Arc::new(Cache::new(CacheConfig { shards: 2, max_bytes: 8 << 20, ..CacheConfig::default() })))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else { return };
    let chunk = (first as usize % 32) + 1;

    let config = RespConfig { limits: Limits { max_bulk: 1 << 20, ..Limits::default() }, ..RespConfig::default() };
    let mut conn = Connection::detached(cache(), &config);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    'feed: for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match conn.process(&mut buf, &mut out) {
                Progress::NeedInput => break,
                Progress::Flush => out.clear(),
                Progress::Close => {
                    assert!(out.starts_with(b"-") || out.ends_with(b"+OK\r\n") || out.windows(6).any(|w| w == b"-ERR P"));
                    break 'feed;
                }
            }
        }
    }

    let mut parser = Parser::new(Limits::default());
    let mut at = 0;
    while let Ok(Some(n)) = parser.parse(&input[at..]) {
        assert!(n > 0 && at + n <= input.len());
        let _ = parser.args(&input[at..]).iter().count();
        at += n;
    }
});
