//! CPUs and affinity for the per-CPU magazine tests: which CPUs this process may run
//! on, and moving a thread between them (`sched_setaffinity`).

/// The CPUs the calling thread may run on now.
pub fn online_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: reading a filled set below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Restricts thread `tid` (0: the calling thread) to `cpus`; errors are ignored (the
/// thread may have exited meanwhile).
pub fn pin(tid: i32, cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET on numbers below CPU_SETSIZE; a plain
    // syscall.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The calling thread's kernel id (for [`pin`] from another thread).
pub fn gettid() -> i32 {
    // SAFETY: no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, highest plus one).
pub fn possible_cpus() -> usize {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").expect("possible");
    s.trim()
        .split([',', '-'])
        .filter_map(|x| x.parse::<usize>().ok())
        .max()
        .expect("a CPU number")
        + 1
}
