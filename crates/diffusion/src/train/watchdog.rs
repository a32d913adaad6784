//! A deadline around blocking operations: a collective waits for every rank, so one rank that died or hangs would
//! stall the others forever. [`Watchdog::guard`] arms a deadline before such a call and disarms it when the call
//! returns; a thread watches the deadline and, when it passes, hands the operation's name to the expiry action (which
//! reports and ends the process, see `MpiCollective`).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

type Expiry = Box<dyn Fn(&str) + Send>;

struct Watch {
    /// The armed deadline and what is waited for.
    armed: Option<(Instant, String)>,
    /// The watchdog was dropped: the thread ends.
    stopped: bool,
}

/// A thread that runs an action when an armed deadline passes before it is disarmed.
pub struct Watchdog {
    timeout: Duration,
    shared: Arc<(Mutex<Watch>, Condvar)>,
}

/// Disarms the watchdog's deadline when dropped.
pub struct Guard<'a> {
    watchdog: &'a Watchdog,
}

impl Watchdog {
    /// Starts the thread; `on_expiry` receives the name of the operation that did not return within `timeout`
    /// (once per expired deadline).
    pub fn start(timeout: Duration, on_expiry: impl Fn(&str) + Send + 'static) -> Watchdog {
        let shared = Arc::new((
            Mutex::new(Watch {
                armed: None,
                stopped: false,
            }),
            Condvar::new(),
        ));
        let watched = Arc::clone(&shared);
        let on_expiry: Expiry = Box::new(on_expiry);
        thread::spawn(move || watch(&watched, &on_expiry));
        Watchdog { timeout, shared }
    }

    /// The time an armed operation may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Arms the deadline `now + timeout` for `what` until the guard is dropped.
    pub fn guard(&self, what: &str) -> Guard<'_> {
        let (lock, wake) = &*self.shared;
        let mut watch = lock.lock().unwrap_or_else(PoisonError::into_inner);
        watch.armed = Some((Instant::now() + self.timeout, what.to_string()));
        wake.notify_one();
        Guard { watchdog: self }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let (lock, wake) = &*self.watchdog.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).armed = None;
        wake.notify_one();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stopped = true;
        wake.notify_one();
    }
}

/// The thread: sleeps until woken or until the armed deadline, and runs the action once per expired deadline.
fn watch(shared: &(Mutex<Watch>, Condvar), on_expiry: &Expiry) {
    let (lock, wake) = shared;
    let mut watch = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if watch.stopped {
            return;
        }
        watch = match &watch.armed {
            None => wake.wait(watch).unwrap_or_else(PoisonError::into_inner),
            Some((deadline, what)) => {
                let now = Instant::now();
                if now >= *deadline {
                    let what = what.clone();
                    watch.armed = None;
                    drop(watch);
                    on_expiry(&what);
                    lock.lock().unwrap_or_else(PoisonError::into_inner)
                } else {
                    let left = *deadline - now;
                    wake.wait_timeout(watch, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn an_operation_past_its_deadline_is_reported_by_name() {
        let (tx, rx) = mpsc::channel();
        let watchdog = Watchdog::start(Duration::from_millis(50), move |what| {
            tx.send(what.to_string()).unwrap();
        });
        let _guard = watchdog.guard("all-reduce of bucket 3");
        let reported = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reported, "all-reduce of bucket 3");
        // Once per expired deadline.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn operations_that_return_in_time_are_not_reported() {
        let (tx, rx) = mpsc::channel();
        let watchdog = Watchdog::start(Duration::from_millis(300), move |what| {
            tx.send(what.to_string()).unwrap();
        });
        for _ in 0..20 {
            let _guard = watchdog.guard("quick");
            thread::sleep(Duration::from_millis(20));
        }
        // 20 × 20 ms = 400 ms in all, longer than the timeout, but each deadline was disarmed in time.
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err());
    }
}
