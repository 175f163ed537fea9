//! The random walk: a seeded sequence of string, hash, set, list, sorted set and key
//! commands on a small key space, alone and inside MULTI/EXEC (with WATCH and writes
//! from a second connection), in RESP2 and RESP3. The generator's arguments are in
//! `differential.rs`, the set and sorted set commands' in `sets/walk.rs` and `zsets/walk.rs`.

use super::*;

impl Gen {
    /// One random command (its arguments). `in_tx`: only commands whose replies do not
    /// depend on the moment or on chance (they are compared inside EXEC's array).
    fn command(&mut self, in_tx: bool) -> Vec<Vec<u8>> {
        let s = |x: &str| x.as_bytes().to_vec();
        let k = self.key();
        loop {
            let c: Vec<Vec<u8>> = match self.below(76 + sets::WALK_KINDS + zsets::WALK_KINDS) {
                0 => vec![s("GET"), k.clone()],
                1 | 2 => {
                    let mut c = vec![s("SET"), k.clone(), self.value()];
                    for _ in 0..self.below(3) {
                        match self.below(7) {
                            0 => c.push(s("NX")),
                            1 => c.push(s("XX")),
                            2 => c.push(s("GET")),
                            3 => c.push(s("KEEPTTL")),
                            4 => {
                                let unit = self.pick(&["EX", "PX"]);
                                c.extend([s(unit), s(&self.ttl(unit == "PX"))]);
                            }
                            5 => {
                                // Far ahead: a deadline in the past would leave a dead key
                                // that DBSIZE counts until each server's own expiry cycle
                                // removes it (a matter of timing).
                                let unit = self.pick(&["EXAT", "PXAT"]);
                                let at = if unit == "PXAT" { "4102444800000" } else { "4102444800" };
                                c.extend([s(unit), s(at)]);
                            }
                            _ => c.push(s(self.pick(&["ex", "FOO", "persist"]))),
                        }
                    }
                    c
                }
                3 => vec![s("SETNX"), k.clone(), self.value()],
                4 => {
                    let cmd = self.pick(&["SETEX", "PSETEX"]);
                    vec![s(cmd), k.clone(), s(&self.ttl(cmd == "PSETEX")), self.value()]
                }
                5 => vec![s("GETSET"), k.clone(), self.value()],
                6 => vec![s("GETDEL"), k.clone()],
                7 => {
                    let mut c = vec![s("GETEX"), k.clone()];
                    match self.below(6) {
                        0 => {}
                        1 => c.push(s("PERSIST")),
                        2 => {
                            let unit = self.pick(&["EX", "PX"]);
                            c.extend([s(unit), s(&self.ttl(unit == "PX"))]);
                        }
                        3 => c.extend([s(self.pick(&["EXAT", "PXAT"])), s(&self.unix_seconds())]),
                        4 => c.extend([s("EX"), s("100"), s("PERSIST")]),
                        _ => c.push(s(self.pick(&["EX", "KEEPTTL", "NX"]))),
                    }
                    c
                }
                8 => {
                    let mut c = vec![s("MGET")];
                    for _ in 0..1 + self.below(4) {
                        c.push(self.key());
                    }
                    c
                }
                9 | 10 => {
                    let mut c = vec![s(self.pick(&["MSET", "MSETNX"]))];
                    for _ in 0..1 + self.below(3) {
                        c.push(self.key());
                        c.push(self.value());
                    }
                    if self.chance(5) {
                        c.pop();
                    }
                    c
                }
                11 => vec![s(self.pick(&["INCR", "DECR"])), k.clone()],
                12 => vec![s(self.pick(&["INCRBY", "DECRBY"])), k.clone(), s(&self.int())],
                13 | 14 => vec![s("INCRBYFLOAT"), k.clone(), s(&self.float())],
                15 => vec![s("APPEND"), k.clone(), self.value()],
                16 => vec![s("STRLEN"), k.clone()],
                17 => vec![
                    s(self.pick(&["GETRANGE", "SUBSTR"])),
                    k.clone(),
                    s(&self.int()),
                    s(&self.int()),
                ],
                18 => {
                    let offset = if self.chance(90) {
                        self.below(40).to_string()
                    } else {
                        self.int()
                    };
                    let offset = if offset.len() > 6 && !offset.starts_with('-') {
                        "33554432".to_string()
                    } else {
                        offset
                    };
                    vec![s("SETRANGE"), k.clone(), s(&offset), self.value()]
                }
                19 => {
                    let offset = if self.chance(90) {
                        self.below(300).to_string()
                    } else {
                        self.pick(&["268435456", "-1", "x", "9223372036854775807"]).to_string()
                    };
                    let bit = self.pick(&["0", "1", "1", "2", "x"]);
                    vec![s("SETBIT"), k.clone(), s(&offset), s(bit)]
                }
                20 => vec![s("GETBIT"), k.clone(), s(&self.below(300).to_string())],
                21 => {
                    let mut c = vec![s("BITCOUNT"), k.clone()];
                    match self.below(4) {
                        0 => {}
                        1 => c.extend([s(&self.int()), s(&self.int())]),
                        2 => c.extend([
                            s(&self.int()),
                            s(&self.int()),
                            s(self.pick(&["BIT", "BYTE", "bit", "BOT"])),
                        ]),
                        _ => c.push(s(&self.int())),
                    }
                    c
                }
                22 => {
                    let mut c = vec![s(self.pick(&["DEL", "UNLINK", "EXISTS"]))];
                    for _ in 0..1 + self.below(3) {
                        c.push(self.key());
                    }
                    c
                }
                23 | 24 => {
                    let cmd = self.pick(&["EXPIRE", "PEXPIRE"]);
                    let mut c = vec![s(cmd), k.clone(), s(&self.ttl(cmd == "PEXPIRE"))];
                    c.extend(self.expire_options(false));
                    c
                }
                25 | 26 => {
                    let cmd = self.pick(&["EXPIREAT", "PEXPIREAT"]);
                    let mut t = self.unix_seconds();
                    if cmd == "PEXPIREAT" && t.len() > 4 && t.len() < 12 {
                        t.push_str("000");
                    }
                    let mut c = vec![s(cmd), k.clone(), s(&t)];
                    c.extend(self.expire_options(true));
                    c
                }
                27 if !in_tx => vec![s(self.pick(&["TTL", "PTTL"])), k.clone()],
                28 if !in_tx => vec![s(self.pick(&["EXPIRETIME", "PEXPIRETIME"])), k.clone()],
                29 => vec![s("PERSIST"), k.clone()],
                30 => vec![s("TYPE"), k.clone()],
                31 if !in_tx => vec![s("KEYS"), self.pattern()],
                32 | 33 => vec![s(self.pick(&["RENAME", "RENAMENX"])), k.clone(), self.key()],
                34 => {
                    let mut c = vec![s("COPY"), k.clone(), self.key()];
                    match self.below(5) {
                        0 => c.push(s("REPLACE")),
                        1 => c.extend([s("DB"), s(self.pick(&["0", "1", "x"]))]),
                        2 => c.push(s("FOO")),
                        _ => {}
                    }
                    c
                }
                35 if !in_tx => vec![s("RANDOMKEY")],
                36 => vec![
                    s("OBJECT"),
                    s(self.pick(&["ENCODING", "encoding", "FREQ", "NOSUCH"])),
                    k.clone(),
                ],
                37 => vec![s("DBSIZE")],
                38 if self.chance(10) => vec![s(self.pick(&["FLUSHDB", "FLUSHALL"]))],
                39 => vec![s(self.pick(&[
                    "GET",
                    "SET",
                    "INCRBYFLOAT",
                    "GETRANGE",
                    "EXPIRE",
                    "COPY",
                ]))],
                40 => vec![s("NOSUCHCOMMAND"), k.clone()],
                41 if !in_tx => {
                    // A full SCAN, signalled to the caller by the pseudo-command name.
                    let mut c = vec![s("SCAN(full)")];
                    if self.chance(50) {
                        c.extend([s("MATCH"), self.pattern()]);
                    }
                    if self.chance(50) {
                        c.extend([s("COUNT"), s(self.pick(&["1", "2", "5", "100", "0", "x"]))]);
                    }
                    if self.chance(20) {
                        c.extend([
                            s("TYPE"),
                            s(self.pick(&["string", "list", "STRING", "hash", "set", "zset"])),
                        ]);
                    }
                    c
                }
                42..=45 => vec![s("GET"), k.clone()],
                46..=48 => {
                    let mut c = vec![s(self.pick(&["HSET", "HSET", "HMSET"])), k.clone()];
                    for _ in 0..1 + self.below(3) {
                        c.push(self.field());
                        c.push(self.hash_value());
                    }
                    if self.chance(5) {
                        c.pop();
                    }
                    c
                }
                49 => vec![s("HSETNX"), k.clone(), self.field(), self.hash_value()],
                50 | 51 => vec![s("HGET"), k.clone(), self.field()],
                52 => {
                    let mut c = vec![s(self.pick(&["HMGET", "HDEL", "HDEL"])), k.clone()];
                    for _ in 0..1 + self.below(3) {
                        c.push(self.field());
                    }
                    c
                }
                53 => vec![s(self.pick(&["HEXISTS", "HSTRLEN"])), k.clone(), self.field()],
                54 => vec![s(self.pick(&["HLEN", "HKEYS", "HVALS"])), k.clone()],
                55 => vec![s("HGETALL"), k.clone()],
                56 => vec![s("HINCRBY"), k.clone(), self.field(), s(&self.int())],
                57 => vec![s("HINCRBYFLOAT"), k.clone(), self.field(), s(&self.float())],
                58 => {
                    // Only what does not depend on chance inside transactions: no count,
                    // or one at least the hash's size.
                    let mut c = vec![s("HRANDFIELD"), k.clone()];
                    match self.below(4) {
                        _ if in_tx => c.push(s(self.pick(&["50", "0", "x"]))),
                        0 => {}
                        1 => c.push(s(&self.int())),
                        2 => c.extend([s(&self.int()), s(self.pick(&["WITHVALUES", "withvalues", "FOO"]))]),
                        _ => c.extend([s("100"), s("WITHVALUES")]),
                    }
                    c
                }
                59 if !in_tx => {
                    let mut c = vec![s("HSCAN"), k.clone(), s(self.pick(&["0", "0", "0", "1", "x"]))];
                    if self.chance(40) {
                        c.extend([s("MATCH"), self.pattern()]);
                    }
                    if self.chance(30) {
                        c.extend([s("COUNT"), s(self.pick(&["1", "100", "0", "x"]))]);
                    }
                    // A listpack comes whole; a hash table's steps are compared as a
                    // full scan instead.
                    if !in_tx && self.chance(30) {
                        c[0] = s("HSCAN(full)");
                        c.remove(2);
                    }
                    c
                }
                60 => vec![s(self.pick(&["TYPE", "OBJECT"])), k.clone()],
                61 => vec![s("OBJECT"), s("ENCODING"), k.clone()],
                62 | 63 => {
                    let mut c = vec![
                        s(self.pick(&["LPUSH", "RPUSH", "RPUSH", "LPUSHX", "RPUSHX"])),
                        k.clone(),
                    ];
                    for _ in 0..1 + self.below(3) {
                        c.push(self.element());
                    }
                    c
                }
                64 => {
                    let mut c = vec![s(self.pick(&["LPOP", "RPOP"])), k.clone()];
                    if self.chance(40) {
                        c.push(s(&self.index()));
                    }
                    c
                }
                65 => vec![s("LRANGE"), k.clone(), s(&self.index()), s(&self.index())],
                66 => vec![s(self.pick(&["LINDEX", "LLEN"])), k.clone(), s(&self.index())],
                67 => vec![s("LSET"), k.clone(), s(&self.index()), self.element()],
                68 => vec![s("LREM"), k.clone(), s(&self.index()), self.element()],
                69 => vec![s("LTRIM"), k.clone(), s(&self.index()), s(&self.index())],
                70 => vec![
                    s("LINSERT"),
                    k.clone(),
                    s(self.pick(&["BEFORE", "AFTER", "after", "MIDDLE"])),
                    self.element(),
                    self.element(),
                ],
                71 => {
                    let mut c = vec![s("LPOS"), k.clone(), self.element()];
                    for _ in 0..self.below(3) {
                        c.push(s(self.pick(&["RANK", "COUNT", "MAXLEN", "rank", "FOO"])));
                        c.push(s(&self.index()));
                    }
                    c
                }
                72 => {
                    if self.chance(30) {
                        vec![s("RPOPLPUSH"), k.clone(), self.key()]
                    } else {
                        let end = |g: &mut Gen| s(g.pick(&["LEFT", "RIGHT", "right", "UP"]));
                        vec![s("LMOVE"), k.clone(), self.key(), end(self), end(self)]
                    }
                }
                73 => {
                    let n = self.below(4);
                    let mut c = vec![s("LMPOP"), s(&n.to_string())];
                    for _ in 0..n {
                        c.push(self.key());
                    }
                    c.push(s(self.pick(&["LEFT", "RIGHT", "MIDDLE"])));
                    if self.chance(40) {
                        c.extend([s("COUNT"), s(&self.index())]);
                    }
                    c
                }
                // Blocking: inside a transaction as the non-blocking forms; alone, with a
                // short timeout (or a bad one).
                74 | 75 if in_tx || self.chance(30) => {
                    // Never 0: a command made for a transaction may also run alone (the
                    // other connection's write before EXEC).
                    let t = s(self.pick(&["0.01", "0.01", "x", "-1"]));
                    match self.below(5) {
                        0 => vec![s("BLPOP"), k.clone(), self.key(), t],
                        1 => vec![s("BRPOP"), k.clone(), t],
                        2 => vec![s("BRPOPLPUSH"), k.clone(), self.key(), t],
                        3 => vec![s("BLMOVE"), k.clone(), self.key(), s("LEFT"), s("RIGHT"), t],
                        _ => vec![
                            s("BLMPOP"),
                            t,
                            s("2"),
                            k.clone(),
                            self.key(),
                            s("RIGHT"),
                            s("COUNT"),
                            s("2"),
                        ],
                    }
                }
                n @ 76.. if n < 76 + sets::WALK_KINDS => match sets::command(self, in_tx, &k, n - 76) {
                    Some(c) => c,
                    None => continue,
                },
                n @ 76.. => match zsets::command(self, in_tx, &k, n - 76 - sets::WALK_KINDS) {
                    Some(c) => c,
                    None => continue,
                },
                _ => continue,
            };
            return c;
        }
    }
}

fn random_walk(test: &str, resp3: bool, default_seed: u64) {
    let Some((redis, strata)) = setup(test) else { return };
    let seed = std::env::var("STRATA_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seed);
    let steps: usize = std::env::var("STRATA_DIFF_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let mut g = Gen(seed | 1);
    let mut a = Both::connect(&redis, &strata);
    let mut other = Both::connect(&redis, &strata);
    a.seed = Some(seed);
    other.seed = Some(seed);
    if resp3 {
        a.both(&["HELLO", "3"]);
        other.both(&["HELLO", "3"]);
    }
    let mut step = 0;
    while step < steps {
        if g.chance(8) {
            // A transaction: maybe WATCH, maybe a write from the other connection, then
            // MULTI, a few commands (maybe one refused), EXEC or DISCARD.
            if g.chance(60) {
                let mut c = vec![b"WATCH".to_vec()];
                for _ in 0..1 + g.below(2) {
                    c.push(g.key());
                }
                a.same_args(&c);
            }
            if g.chance(50) {
                let c = g.command(true);
                other.same_args(&c);
            }
            a.same(&["MULTI"]);
            for _ in 0..g.below(6) {
                let c = g.command(true);
                a.same_args(&c);
                step += 1;
            }
            a.same(if g.chance(85) { &["EXEC"] } else { &["DISCARD"] });
        } else {
            let c = g.command(false);
            if c[0] == b"SCAN(full)" {
                a.full_scan(&c[1..]);
            } else if c[0] == b"HSCAN(full)" {
                a.full_scan_of(&[b"HSCAN".to_vec(), c[1].clone()], &c[2..]);
            } else if c[0] == b"SSCAN(full)" {
                a.full_scan_of(&[b"SSCAN".to_vec(), c[1].clone()], &c[2..]);
            } else if c[0] == b"ZSCAN(full)" {
                a.full_scan_of(&[b"ZSCAN".to_vec(), c[1].clone()], &c[2..]);
            } else {
                a.same_args(&c);
            }
            step += 1;
        }
    }
}

#[test]
fn random_commands_answer_as_redis_resp2() {
    random_walk("random_commands_answer_as_redis_resp2", false, 0x5EED_0001);
}

#[test]
fn random_commands_answer_as_redis_resp3() {
    random_walk("random_commands_answer_as_redis_resp3", true, 0x5EED_0003);
}
