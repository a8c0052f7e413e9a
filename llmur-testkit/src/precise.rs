//! Sleeps that end when they should, not on the next millisecond tick.
//!
//! Owns: [`sleep`]. Tokio's timer wheel has a 1 ms resolution, so a 20 ms upstream delay
//! really lasts 20–21 ms, and at a fixed arrival rate every request of a run lands at
//! nearly the same phase of the tick: a bias of up to 1 ms that differs from run to run,
//! larger than the latency a proxy adds. Here the last 2 ms of a delay are timed by one
//! thread that waits on the OS clock (a futex with a timeout), so the mock's latency is
//! accurate to tens of microseconds.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The part of a delay left to the timer thread.
const FINE: Duration = Duration::from_millis(2);

/// Waits `delay`, accurately.
pub(crate) async fn sleep(delay: Duration) {
    let deadline = Instant::now() + delay;
    if delay > FINE {
        tokio::time::sleep_until((deadline - FINE).into()).await;
    }
    let (tx, rx) = oneshot::channel();
    if timer().send(Entry { deadline, wake: tx }).is_err() {
        // No timer thread (cannot happen once started): fall back to the coarse timer.
        tokio::time::sleep_until(deadline.into()).await;
        return;
    }
    let _ = rx.await;
}

struct Entry {
    deadline: Instant,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.deadline.cmp(&other.deadline)
    }
}

fn timer() -> &'static mpsc::Sender<Entry> {
    static TIMER: OnceLock<mpsc::Sender<Entry>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Entry>();
        let spawned = std::thread::Builder::new()
            .name("mock-timer".to_owned())
            .spawn(move || run(&rx));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no precise timer thread; delays fall back to tokio's");
        }
        tx
    })
}

fn run(rx: &mpsc::Receiver<Entry>) {
    let mut due: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
            if let Some(Reverse(entry)) = due.pop() {
                let _ = entry.wake.send(());
            }
        }
        let next = match due.peek() {
            Some(Reverse(e)) => rx.recv_timeout(e.deadline.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(entry) => due.push(Reverse(entry)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_end_close_to_their_deadline() {
        for ms in [0_u64, 1, 3, 7] {
            let delay = Duration::from_millis(ms) + Duration::from_micros(300);
            let started = Instant::now();
            sleep(delay).await;
            let took = started.elapsed();
            assert!(took >= delay, "{took:?} < {delay:?}");
            // Generous: a loaded CI machine may be slow to wake anyone.
            assert!(
                took < delay + Duration::from_millis(50),
                "{took:?} for {delay:?}"
            );
        }
    }
}
