//! The fault disk's own tests.
use super::*;

fn root() -> PathBuf {
    PathBuf::from("/sim")
}

fn read_all(disk: &FaultDisk, path: &Path) -> Vec<u8> {
    disk.read(path).unwrap()
}

#[test]
fn a_power_cut_keeps_what_was_synced_only() {
    let disk = FaultDisk::new(&root(), 1);
    let dir = root().join("q");
    disk.create_dir_all(&dir).unwrap();
    disk.sync_dir(&root()).unwrap();
    let path = dir.join("a.log");
    let f = disk.open(&path, Open::Create).unwrap();
    disk.sync_dir(&dir).unwrap();
    f.write_all_at(b"synced", 0).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b"-lost", 6).unwrap();
    assert_eq!(read_all(&disk, &path), b"synced-lost");
    assert_eq!(disk.unsynced_bytes(&path).unwrap(), 5);
    // A name created and not synced, and a rename not synced.
    disk.open(&dir.join("new"), Open::Create).unwrap();
    disk.rename(&path, &dir.join("b.log")).unwrap();

    disk.power_cut();
    assert!(disk.is_cut());
    assert_eq!(f.write_at(b"x", 0).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(disk.list(&dir).unwrap_err().raw_os_error(), Some(libc::EIO));
    let disk = disk.restart();
    assert!(!disk.is_cut());
    assert_eq!(disk.list(&dir).unwrap(), [OsString::from("a.log")]);
    assert_eq!(read_all(&disk, &path), b"synced");
    assert_eq!(disk.counts().power_cuts, 1);
}

#[test]
fn a_directory_not_synced_in_its_parent_is_lost_with_its_files() {
    let disk = FaultDisk::new(&root(), 1);
    let dir = root().join("q");
    disk.create_dir_all(&dir).unwrap();
    let f = disk.open(&dir.join("a"), Open::Create).unwrap();
    f.write_all_at(b"data", 0).unwrap();
    f.sync_data().unwrap();
    disk.sync_dir(&dir).unwrap();
    disk.power_cut();
    let disk = disk.restart();
    assert!(disk.list(&root()).unwrap().is_empty());
    assert_eq!(
        disk.open(&dir.join("a"), Open::Existing).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn a_failed_sync_loses_its_writes_even_if_the_next_sync_succeeds() {
    let disk = FaultDisk::new(&root(), 1);
    let path = root().join("wal");
    let f = disk.open(&path, Open::Create).unwrap();
    disk.sync_dir(&root()).unwrap();
    f.write_all_at(b"one", 0).unwrap();
    f.sync_data().unwrap();
    disk.fail_sync(0, "wal");
    let two: Vec<u8> = (1..=32).collect();
    for (i, b) in two.iter().enumerate() {
        f.write_all_at(&[*b], 3 + i as u64).unwrap();
    }
    assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(!disk.sync_failure_armed());
    // Still readable, and a retry "succeeds"...
    assert_eq!(read_all(&disk, &path)[3..], two[..]);
    f.sync_data().unwrap();
    // ...and what the disk has is not what was read: forgetting the cache shows it.
    let cached = read_all(&disk, &path);
    f.forget_cached().unwrap();
    let on_disk = read_all(&disk, &path);
    assert_ne!(cached, on_disk);
    // ...but the power cut shows that only some of it was made durable.
    disk.power_cut();
    let disk = disk.restart();
    let after = read_all(&disk, &path);
    assert_eq!(after, on_disk);
    assert_eq!(&after[..3], b"one");
    let kept = after[3..].iter().zip(&two).filter(|(a, b)| a == b).count();
    assert!(after[3..].iter().zip(&two).all(|(a, b)| a == b || *a == 0));
    assert!(kept < two.len(), "some of the writes were lost");
    assert_eq!(disk.counts().failed_syncs, 1);
}

#[test]
fn an_armed_power_cut_lands_on_the_nth_change() {
    let disk = FaultDisk::new(&root(), 1);
    let f = disk.open(&root().join("f"), Open::Create).unwrap();
    disk.sync_dir(&root()).unwrap();
    disk.power_cut_after(2);
    f.write_all_at(b"a", 0).unwrap();
    f.sync_data().unwrap();
    assert!(f.write_all_at(b"b", 1).is_err());
    assert!(disk.is_cut());
    let disk = disk.restart();
    assert_eq!(read_all(&disk, &root().join("f")), b"a");
}

#[test]
fn a_torn_cut_keeps_some_unsynced_writes() {
    let disk = FaultDisk::new(&root(), 7);
    let f = disk.open(&root().join("f"), Open::Create).unwrap();
    disk.sync_dir(&root()).unwrap();
    for i in 0..64u8 {
        f.write_all_at(&[i + 1], u64::from(i)).unwrap();
    }
    disk.power_cut_torn();
    let disk = disk.restart();
    let data = read_all(&disk, &root().join("f"));
    let kept = data.iter().filter(|&&b| b != 0).count();
    assert!(kept > 0 && kept < 64, "kept {kept} of 64");
    for (i, &b) in data.iter().enumerate() {
        assert!(b == 0 || b == i as u8 + 1);
    }
}

#[test]
fn short_reads_and_flipped_bits() {
    let disk = FaultDisk::new(&root(), 3);
    let path = root().join("f");
    let f = disk.open(&path, Open::Create).unwrap();
    let data: Vec<u8> = (0..=255).collect();
    f.write_all_at(&data, 0).unwrap();
    disk.short_reads(1);
    let mut buf = vec![0; 256];
    let n = f.read_at(&mut buf, 0).unwrap();
    assert!(n < 256 && buf[..n] == data[..n]);
    // The provided loop reads all the same.
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, data);
    disk.short_reads(0);
    disk.flip_on_read(1);
    f.read_exact_at(&mut buf, 0).unwrap();
    let flipped: u32 = buf.iter().zip(&data).map(|(a, b)| (a ^ b).count_ones()).sum();
    assert_eq!(flipped, 1);
    disk.flip_on_read(0);
    assert_eq!(read_all(&disk, &path), data, "the stored bytes are intact");
    disk.flip_bit(&path, 8 * 10 + 3).unwrap();
    assert_eq!(read_all(&disk, &path)[10], 10 ^ 8);
}

#[test]
fn locks_are_held_per_handle_until_dropped() {
    let disk = FaultDisk::new(&root(), 1);
    let a = disk.open(&root().join("db"), Open::Create).unwrap();
    let b = disk.open(&root().join("db"), Open::Existing).unwrap();
    a.try_lock_exclusive().unwrap();
    assert_eq!(b.try_lock_exclusive().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    drop(a);
    b.try_lock_exclusive().unwrap();
}

#[test]
fn paths_outside_the_root_are_refused() {
    let disk = FaultDisk::new(&root(), 1);
    assert!(disk.open(Path::new("/elsewhere/f"), Open::Create).is_err());
    disk.create_dir_all(&root()).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
}

#[test]
fn an_armed_open_fails_with_its_error_and_changes_nothing() {
    let disk = FaultDisk::new(&root(), 1);
    let dir = root().join("q");
    disk.create_dir_all(&dir).unwrap();
    disk.fail_opens(2, "next.tmp", libc::EMFILE);
    // Other paths open as usual.
    disk.open(&dir.join("a"), Open::Create).unwrap();
    for _ in 0..2 {
        let e = disk.open(&dir.join("next.tmp"), Open::Truncate).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
    }
    assert_eq!(disk.list(&dir).unwrap(), [OsString::from("a")]);
    disk.open(&dir.join("next.tmp"), Open::Truncate).unwrap();
}

#[test]
fn a_directory_renamed_keeps_its_files_and_is_durable_once_its_parent_is_synced() {
    let disk = FaultDisk::new(&root(), 1);
    let dir = root().join("q");
    disk.create_dir_all(&dir).unwrap();
    disk.sync_dir(&root()).unwrap();
    let f = disk.open(&dir.join("a"), Open::Create).unwrap();
    f.write_all_at(b"data", 0).unwrap();
    f.sync_data().unwrap();
    disk.sync_dir(&dir).unwrap();
    let moved = root().join(".gone");
    disk.rename(&dir, &moved).unwrap();
    assert_eq!(read_all(&disk, &moved.join("a")), b"data");
    assert!(disk.list(&dir).is_err());
    // Not synced: the cut finds it under its old name, files and all.
    disk.power_cut();
    let disk = disk.restart();
    assert_eq!(read_all(&disk, &dir.join("a")), b"data");
    disk.rename(&dir, &moved).unwrap();
    disk.sync_dir(&root()).unwrap();
    disk.power_cut();
    let disk = disk.restart();
    assert_eq!(disk.list(&root()).unwrap(), [OsString::from(".gone")]);
    assert_eq!(read_all(&disk, &moved.join("a")), b"data");
    // Removed: only once empty, and for good once the parent is synced.
    assert_eq!(
        disk.remove_dir(&moved).unwrap_err().kind(),
        io::ErrorKind::DirectoryNotEmpty
    );
    disk.remove_file(&moved.join("a")).unwrap();
    disk.remove_dir(&moved).unwrap();
    disk.sync_dir(&root()).unwrap();
    disk.power_cut();
    let disk = disk.restart();
    assert!(disk.list(&root()).unwrap().is_empty());
}
