//! redb alone on the fault-injecting disk: the reproduction of the limit named in
//! `tests/power_cut.rs` (store). Each seed opens a database, commits (mostly
//! `Durability::None`, some `Immediate`), and cuts the power (whole cuts only: every write
//! not yet synced is lost), sometimes while redb is opening and recovering the file. A
//! durable commit must survive, and the file must open again. With redb 2.6.4 some seeds
//! end in a panic or a refusal to open.
//!
//! `cargo run -p strata-store --example redb_power_cut [SEEDS]`

use std::io;
use std::path::PathBuf;

use redb::{Database, Durability, StorageBackend, TableDefinition};
use strata_os::disk::{Disk, DiskFile, FaultDisk, FaultFile, Open};

const T: TableDefinition<u64, u64> = TableDefinition::new("t");

struct B(FaultFile);
impl std::fmt::Debug for B {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("B")
    }
}
impl StorageBackend for B {
    fn len(&self) -> io::Result<u64> {
        self.0.size()
    }
    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.0.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self, _: bool) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }
}

fn open(disk: &FaultDisk) -> Result<Database, String> {
    let f = disk
        .open(&PathBuf::from("/r/db"), Open::Create)
        .map_err(|e| e.to_string())?;
    disk.sync_dir(&PathBuf::from("/r")).map_err(|e| e.to_string())?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        redb::Builder::new().create_with_backend(B(f))
    }))
    .map_err(|_| "panic".to_string())?
    .map_err(|e| e.to_string())
}

fn main() {
    let seeds: u64 = std::env::args().nth(1).map_or(200, |s| s.parse().expect("SEEDS"));
    for seed in 1..=seeds {
        let mut disk = FaultDisk::new(&PathBuf::from("/r"), seed);
        let mut x = seed;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut durable_counter = 0u64;
        let mut counter;
        for round in 0..8 {
            // Sometimes the power goes while opening; then open again.
            let db = loop {
                let cut_in_open = rnd(3) == 0 && round > 0;
                if cut_in_open {
                    disk.power_cut_after(rnd(15));
                }
                match open(&disk) {
                    Ok(db) if !disk.is_cut() => {
                        disk.disarm();
                        break db;
                    }
                    Ok(db) => drop(db),
                    Err(e) if disk.is_cut() => {
                        let _ = e;
                    }
                    Err(e) => {
                        println!("seed {seed} round {round}: the database does not open again: {e}");
                        std::process::exit(1);
                    }
                }
                disk.disarm();
                disk = disk.restart();
            };
            let got = {
                let r = db.begin_read().unwrap();
                match r.open_table(T) {
                    Ok(t) => t.get(0).unwrap().map_or(0, |g| g.value()),
                    Err(_) => 0,
                }
            };
            if got < durable_counter {
                println!("seed {seed} round {round}: durable commit {durable_counter} lost (found {got})");
                std::process::exit(1);
            }
            counter = got;
            durable_counter = got;
            let clean = rnd(2) == 0;
            if !clean {
                disk.power_cut_after(rnd(400));
            }
            for _ in 0..100 {
                let mut w = match db.begin_write() {
                    Ok(w) => w,
                    Err(_) => break,
                };
                let durable = rnd(8) == 0;
                w.set_durability(if durable {
                    Durability::Immediate
                } else {
                    Durability::None
                });
                let ok = (|| -> Result<(), String> {
                    let mut t = w.open_table(T).map_err(|e| e.to_string())?;
                    counter += 1;
                    t.insert(0, counter).map_err(|e| e.to_string())?;
                    for _ in 0..rnd(20) {
                        t.insert(1 + rnd(500), rnd(1 << 30)).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })();
                if ok.is_err() {
                    break;
                }
                if w.commit().is_err() {
                    break;
                }
                if durable {
                    durable_counter = counter;
                }
                if disk.is_cut() {
                    break;
                }
            }
            if clean {
                disk.disarm();
                drop(db);
            } else {
                if !disk.is_cut() {
                    disk.power_cut();
                }
                drop(db);
            }
            if !clean {
                disk = disk.restart();
            } else {
                durable_counter = counter;
            }
        }
    }
    println!("{seeds} seeds: every durable commit survived, every reopen worked");
}
