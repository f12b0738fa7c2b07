//! What the benchmark reads from the process and the OS: CPU time, resident
//! memory, the open-file limit, plus a watchdog that bounds every workload.

use std::io;
use std::sync::mpsc;
use std::time::Duration;

/// User plus system CPU time of this process so far (all threads).
///
/// From `getrusage` rather than `/proc/self/stat`: the latter counts in
/// 10 ms clock ticks, too coarse for the transfers of `--quick`.
pub fn cpu_time() -> io::Result<Duration> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// Resident set size of this process in bytes (`VmRSS` of
/// `/proc/self/status`).
pub fn rss_bytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/self/status"))
}

/// Hands freed heap pages back to the OS, so the RSS measured before B4 is
/// not inflated by what earlier workloads left in the allocator (and the
/// connections' memory shows up as new pages).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Raises the soft open-file limit towards `want` (never past the hard
/// limit); returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = want.min(lim.rlim_max);
    if lim.rlim_cur >= target {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = target;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

/// The 1, 5 and 15 minute load averages, to note how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Ends the process if a workload runs past its limit: a hung tunnel must
/// not hang CI. Disarmed when dropped.
#[derive(Debug)]
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    /// Arms a watchdog for `what`.
    pub fn arm(what: &str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let what = what.to_owned();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("tunnel-bench: {what} did not finish within {limit:?}; giving up");
                std::process::exit(2);
            }
        });
        Watchdog { _disarm: tx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_figures() {
        assert!(rss_bytes().is_ok_and(|b| b > 0));
        assert!(cpu_time().is_ok());
    }
}
