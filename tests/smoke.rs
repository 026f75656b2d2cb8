use spillq::Queue;
#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    for cache in [0usize, 3, 1000] {
        let d = dir.path().join(format!("c{cache}"));
        {
            let q = Queue::<u64>::builder(&d).cache_size(cache).segment_size(512).open().unwrap();
            for i in 0..100 { q.put(i).unwrap(); }
            for i in 0..50 { assert_eq!(q.get().unwrap(), i); }
            assert_eq!(q.len(), 50);
            q.sync().unwrap();
        }
        let q = Queue::<u64>::builder(&d).cache_size(cache).segment_size(512).open().unwrap();
        assert_eq!(q.len(), 50, "cache {cache}");
        for i in 50..100 { assert_eq!(q.get().unwrap(), i); }
        assert!(q.is_empty());
        println!("{:?}", q.stats());
    }
}
