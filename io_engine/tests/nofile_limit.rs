//! [`NofileLimit`] restores `RLIMIT_NOFILE` when a test panics. Its own test binary (one test, so its own
//! process): the limit is process-wide, and lowering it in the library's unit-test binary would change it
//! under every other test running there in parallel.

use io_engine::test_support::NofileLimit;

fn soft_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur
}

#[test]
fn restores_on_panic() {
    let before = soft_limit();
    let res = std::panic::catch_unwind(|| {
        let lim = NofileLimit::set(before - 1).unwrap();
        assert_eq!(lim.previous_soft(), before);
        assert_eq!(soft_limit(), before - 1);
        panic!("a failing assertion");
    });
    assert!(res.is_err());
    assert_eq!(soft_limit(), before, "restored by Drop");
}
