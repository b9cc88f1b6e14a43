//! How quiet the machine was: on two cores a concurrent build halves any figure, and a quiet
//! start says nothing of a build that begins a minute later. So the 1-minute load average is
//! waited for once, before anything starts, and before each run the machine's busy share is
//! sampled for a second while every server of ours is idle; with a wait asked
//! (`BENCH_QUIET_MINUTES`), a run waits too until that share is low, within the same budget.

use std::time::{Duration, Instant};

/// Busy share of the machine, while nothing of ours runs, above which another process is taken
/// to be using it: witness's and nginx's timers use well under 1%.
const BUSY_FROM_OTHERS: f64 = 0.15;

pub struct Quiet {
    started: Instant,
    /// The 1-minute load average when the servers started.
    load: Option<f64>,
    waited_for_load: Duration,
    /// How long waiting may take in all; zero when no wait was asked.
    allowed: Duration,
    below: f64,
    /// The busy share of the last sample before each run: the highest, and the runs that waited.
    busiest_before_run: Option<f64>,
    runs_that_waited: usize,
}

impl Quiet {
    /// Waits up to `minutes` for the 1-minute load average to fall below `below`, polling every
    /// 10 s. Other processes' load is what counts here: none of ours runs yet.
    pub fn wait(minutes: f64, below: f64) -> Quiet {
        let (started, allowed) = (Instant::now(), Duration::from_secs_f64(minutes * 60.0));
        let mut load = load_average();
        while load.is_some_and(|l| l >= below) && started.elapsed() < allowed {
            eprintln!("waiting for a quiet machine: 1-minute load {:.2}, waiting for it below {below}", load.unwrap_or(0.0));
            std::thread::sleep(Duration::from_secs(10));
            load = load_average();
        }
        let waited_for_load = started.elapsed();
        Quiet { started, load, waited_for_load, allowed, below, busiest_before_run: None, runs_that_waited: 0 }
    }

    /// Samples the machine's busy share for a second (every server of ours idle) and, with a
    /// wait asked and time left, waits until it is under [`BUSY_FROM_OTHERS`].
    pub fn before_run(&mut self) {
        let mut waited = false;
        loop {
            let Some(busy) = crate::cpu::machine_busy_share(Duration::from_secs(1)) else { return };
            let time_left = self.started.elapsed() < self.allowed;
            if busy < BUSY_FROM_OTHERS || !time_left {
                self.busiest_before_run = Some(self.busiest_before_run.map_or(busy, |b| b.max(busy)));
                self.runs_that_waited += usize::from(waited);
                return;
            }
            eprintln!("  waiting: the machine is {:.0}% busy with other work", busy * 100.0);
            waited = true;
            std::thread::sleep(Duration::from_secs(5));
        }
    }

    /// "1-minute load 0.31 at the start (after 4 min waiting for it below 0.6); at most 3% of the
    /// machine busy in the second before each run (2 runs waited for it)".
    pub fn describe(&self) -> String {
        let load = self.load.map_or("unknown".into(), |l| format!("{l:.2}"));
        let minutes = |d: Duration| format!("{:.0} min", d.as_secs_f64() / 60.0);
        let wait = if self.allowed.is_zero() {
            "no wait for a quiet machine asked".to_string()
        } else if self.load.is_some_and(|l| l < self.below) {
            format!("after {} waiting for it below {}", minutes(self.waited_for_load), self.below)
        } else {
            format!("it did not fall below {} in {}: measured anyway", self.below, minutes(self.allowed))
        };
        let before_runs = self.busiest_before_run.map_or(String::new(), |busy| {
            let waits = if self.allowed.is_zero() { String::new() } else { format!(" ({} runs waited for it)", self.runs_that_waited) };
            format!("; at most {:.0}% of the machine busy in the second before each run{waits}", busy * 100.0)
        });
        format!("1-minute load {load} at the start ({wait}){before_runs}")
    }
}

/// The 1-minute load average, from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
