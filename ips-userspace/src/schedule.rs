//! One periodic scheduler for the daemon's pull and push jobs: blocklist sources, CrowdSec LAPI
//! pulls and the hub pusher are each a [`Task`] run on a thread of their own group, each when
//! it is due, until the daemon stops.
use std::{
    thread,
    time::{Duration, Instant},
};

use crate::acquisition::Stop;

/// A job run on an interval.
pub trait Task: Send {
    /// How long after a run the next one is due.
    fn interval(&self) -> Duration;
    /// One run. A run that fails logs why and is tried again at the next interval.
    fn run(&mut self);
}

/// How often a waiting scheduler looks at `stop`.
const POLL: Duration = Duration::from_millis(200);

/// Runs `tasks` on a thread named `name`: each at once, then every `interval`, until `stop`.
pub fn spawn(
    name: &str,
    mut tasks: Vec<Box<dyn Task>>,
    stop: Stop,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name.into()).spawn(move || {
        let mut due: Vec<Instant> = tasks.iter().map(|_| Instant::now()).collect();
        while !stop.stopped() {
            for (task, due) in tasks.iter_mut().zip(due.iter_mut()) {
                if Instant::now() >= *due && !stop.stopped() {
                    *due = Instant::now() + task.interval();
                    task.run();
                }
            }
            let next = due.iter().min().copied().unwrap_or_else(Instant::now);
            thread::sleep(next.saturating_duration_since(Instant::now()).min(POLL));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Count(Duration, Arc<Mutex<u32>>);

    impl Task for Count {
        fn interval(&self) -> Duration {
            self.0
        }

        fn run(&mut self) {
            *self.1.lock().unwrap() += 1;
        }
    }

    #[test]
    fn tasks_run_at_once_then_on_their_interval_until_stopped() {
        let (fast, slow) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let stop = Stop::default();
        let t = spawn(
            "test-schedule",
            vec![
                Box::new(Count(Duration::from_millis(50), fast.clone())),
                Box::new(Count(Duration::from_secs(3600), slow.clone())),
            ],
            stop.clone(),
        )
        .unwrap();
        thread::sleep(Duration::from_millis(500));
        stop.stop();
        t.join().unwrap();
        assert_eq!(*slow.lock().unwrap(), 1);
        assert!(*fast.lock().unwrap() >= 3, "{}", fast.lock().unwrap());
    }
}
