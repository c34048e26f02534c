use umem_vmem::*;

#[test]
fn smoke() {
    let a = Vmem::create("smoke", Some((0x1000, 0x100000)), 16, None, 0, CreateFlags::NONE).unwrap();
    a.verify().unwrap();
    let x = a.alloc(100, Policy::InstantFit).unwrap();
    a.verify().unwrap();
    let y = a.alloc(200, Policy::BestFit).unwrap();
    let z = a.alloc(64, Policy::NextFit).unwrap();
    let w = a.xalloc(&XAllocRequest::new(48).align(256).phase(32)).unwrap();
    assert_eq!(w % 256, 32);
    a.verify().unwrap();
    assert_eq!(a.free(x, 99), Err(VmemError::WrongSize { addr: x, size: 99, allocated: 100 }));
    a.free(x, 100).unwrap();
    a.free(y, 200).unwrap();
    a.free(z, 64).unwrap();
    a.xfree(w, 48).unwrap();
    a.verify().unwrap();
    let s = a.stats();
    assert_eq!(s.mem_inuse, 0);
    assert_eq!(s.mem_total, 0x100000);
    let mut v = Vec::new();
    for _ in 0..1000 {
        v.push(a.alloc(32, Policy::InstantFit).unwrap());
    }
    a.verify().unwrap();
    for x in v {
        a.free(x, 32).unwrap();
    }
    a.verify().unwrap();
    umem_vmem::verify().unwrap();
    let b = Vmem::create("child", None, 4096, Some(heap()), 0, CreateFlags::NONE).unwrap();
    let p = b.alloc(8192, Policy::InstantFit).unwrap();
    b.verify().unwrap();
    b.free(p, 8192).unwrap();
    b.verify().unwrap();
    assert_eq!(b.stats().mem_total, 0);
    unsafe {
        assert_eq!(b.destroy(), 0);
        assert_eq!(a.destroy(), 0);
    }
    umem_vmem::verify().unwrap();
}
