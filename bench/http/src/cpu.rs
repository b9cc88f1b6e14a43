//! Where a run's CPU went: the proxy's processes, the origin's, wrk's (a child this program waits
//! for) and the whole machine's busy time, read from /proc before and after the run. On two cores
//! the client, the origin and the proxy share the CPU, so a route's requests/s follow the CPU
//! each request costs all of them; these figures say whose share grew.

use std::fs;

/// CPU ticks (10 ms) at one moment.
#[derive(Clone, Copy)]
pub struct Ticks {
    proxy: Option<u64>,
    /// Context switches of the proxy's threads (voluntary and not).
    proxy_switches: Option<u64>,
    origin: u64,
    /// Of this program's children that have been waited for: wrk, once a run has finished.
    client: u64,
    machine_busy: u64,
    machine_idle: u64,
}

/// A run's CPU per request, µs.
#[derive(Clone, Copy, Debug)]
pub struct PerRequest {
    /// The proxy's processes (nginx's master and workers, or witness's threads); None directly.
    pub proxy: Option<f64>,
    /// The proxy's context switches per request (not µs): each is a thread going to sleep or
    /// being woken, which at one connection costs more than the work between them.
    pub proxy_switches: Option<f64>,
    pub origin: f64,
    pub client: f64,
    /// Busy time of all cores: the three above, the kernel's own work (loopback, softirqs) and
    /// whatever else ran meanwhile.
    pub machine: f64,
    /// The share of the machine's time left idle over the run.
    pub idle_share: f64,
}

impl Ticks {
    pub fn now(proxy: Option<&[u32]>, origin: &[u32]) -> Ticks {
        let (machine_busy, machine_idle) = machine_ticks().unwrap_or((0, 0));
        Ticks {
            proxy: proxy.map(ticks_of),
            proxy_switches: proxy.map(context_switches_of),
            origin: ticks_of(origin),
            client: witness_testkit::cpu_ticks("self", true).unwrap_or(0),
            machine_busy,
            machine_idle,
        }
    }

    /// The CPU per request from `self` (before a run) to `after`, over `requests` requests.
    pub fn per_request(&self, after: &Ticks, requests: u64) -> PerRequest {
        // A tick is 10 ms = 10,000 µs.
        let per_request = |before: u64, after: u64| after.saturating_sub(before) as f64 * 1e4 / requests.max(1) as f64;
        let (busy, idle) = (after.machine_busy.saturating_sub(self.machine_busy), after.machine_idle.saturating_sub(self.machine_idle));
        PerRequest {
            proxy: self.proxy.zip(after.proxy).map(|(before, after)| per_request(before, after)),
            proxy_switches: self.proxy_switches.zip(after.proxy_switches).map(|(b, a)| a.saturating_sub(b) as f64 / requests.max(1) as f64),
            origin: per_request(self.origin, after.origin),
            client: per_request(self.client, after.client),
            machine: per_request(self.machine_busy, after.machine_busy),
            idle_share: idle as f64 / (busy + idle).max(1) as f64,
        }
    }
}

/// User and system ticks of these processes (all their threads) together.
pub fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|pid| witness_testkit::cpu_ticks(&pid.to_string(), false)).sum()
}

/// Context switches of these processes' threads, voluntary and not, from /proc/PID/task/*/status
/// (a process's own status counts its first thread only).
fn context_switches_of(pids: &[u32]) -> u64 {
    let threads = pids.iter().flat_map(|pid| fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten());
    threads.filter_map(|task| fs::read_to_string(task.path().join("status")).ok()).map(|status| switches_in(&status)).sum()
}

/// The two `*ctxt_switches:` counts of a status file, added.
fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| line.strip_prefix("voluntary_ctxt_switches:").or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:")))
        .filter_map(|count| count.trim().parse::<u64>().ok())
        .sum()
}

/// The share of all cores' time that was busy over the next `interval` (the caller waits it out).
pub fn machine_busy_share(interval: std::time::Duration) -> Option<f64> {
    let (busy_before, idle_before) = machine_ticks()?;
    std::thread::sleep(interval);
    let (busy_after, idle_after) = machine_ticks()?;
    let (busy, idle) = (busy_after.saturating_sub(busy_before), idle_after.saturating_sub(idle_before));
    Some(busy as f64 / (busy + idle).max(1) as f64)
}

/// Busy and idle ticks of all cores together, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    busy_and_idle(&fs::read_to_string("/proc/stat").ok()?)
}

/// From the first line of /proc/stat (`cpu user nice system idle iowait irq softirq steal ...`):
/// busy is user, nice, system, irq and softirq; idle is idle and iowait. Steal (time the
/// hypervisor gave to others) is neither: it is no work done here.
fn busy_and_idle(stat: &str) -> Option<(u64, u64)> {
    let ticks: Vec<u64> = stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|t| t.parse().ok()).collect::<Option<_>>()?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    Some((field(0) + field(1) + field(2) + field(5) + field(6), field(3) + field(4)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn machine_ticks_split_busy_from_idle_and_leave_steal_out() {
        let stat = "cpu  100 2 30 500 7 4 6 900 0 0\ncpu0 50 1 15 250 3 2 3 450 0 0\n";
        assert_eq!(super::busy_and_idle(stat), Some((100 + 2 + 30 + 4 + 6, 500 + 7)));
        assert_eq!(super::busy_and_idle("intr 1 2 3\n"), None);
    }

    #[test]
    fn both_kinds_of_context_switch_count() {
        let status = "Name:\twitness\nThreads:\t6\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n";
        assert_eq!(super::switches_in(status), 1234);
    }
}
