//! `read_packed` (one buffer per read, for hosts that hand the answer on
//! whole: the Erlang binding's sub-binaries, an HTTP body) answers exactly
//! what the owned `read` does, through a flush and a terminate, with and
//! without a limit.

use shapebuf::{Config, LogOffset, ShapeHandle, Store};

#[test]
fn packed_matches_owned_read_through_flush_and_terminate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        retain_bytes: 0,
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), cfg).unwrap();
    let mut w = store.writer("s").unwrap();
    for tx in 1..=6u64 {
        for op in 0..3 {
            w.append(LogOffset::new(tx, op), vec![tx as u8; (tx * op) as usize])
                .unwrap();
        }
        w.commit().unwrap();
        if tx == 3 {
            w.flush().unwrap(); // txs 1-3 on disk, 4-6 in memory
        }
    }
    let h = store.handle("s").unwrap();
    let check = |h: &ShapeHandle, dead: bool| {
        let owned = h.read(LogOffset::ZERO, LogOffset::MAX).unwrap();
        for max in [0, 1, 5, 9, 17, 18, 100] {
            let p = h.read_packed(LogOffset::ZERO, LogOffset::MAX, max).unwrap();
            let n = max.min(18);
            assert_eq!(p.len(), n);
            assert_eq!(p.more, max < 18, "max {max}");
            assert_eq!(p.dead, dead);
            for (i, (o, payload)) in p.iter().enumerate() {
                assert_eq!(o, owned.entries[i].offset);
                assert_eq!(payload, &owned.entries[i].payload[..]);
                assert_eq!(p.get(i), Some((o, payload)));
                assert_eq!(p.payload(i).unwrap(), owned.entries[i].payload);
            }
            assert_eq!(p.from_disk, owned.from_disk.min(n));
        }
    };
    check(&h, false);
    w.terminate().unwrap();
    check(&h, true);
    let mid = h
        .read_packed(LogOffset::new(2, 2), LogOffset::new(4, 1), 100)
        .unwrap();
    let got: Vec<_> = mid.iter().map(|(o, _)| (o.tx, o.op)).collect();
    assert_eq!(got, vec![(3, 0), (3, 1), (3, 2), (4, 0), (4, 1)]);
    assert!(store
        .read_packed("nope", LogOffset::ZERO, LogOffset::MAX, 1)
        .is_err());
}
