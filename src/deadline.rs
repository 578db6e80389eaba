//! Closing client connections that send no request in time: clients that
//! trickle their headers in (slowloris) and keep-alive connections left
//! idle.
//!
//! hyper can do this itself (`header_read_timeout`), but it arms and
//! disarms a timer for every request, which cost the verify path about a
//! tenth of its throughput. Here a connection has one timer, firing every
//! half period, that looks at two counters the service bumps as requests
//! begin and end.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How many requests of one connection have begun and ended.
#[derive(Debug, Default)]
pub struct Activity {
    begun: AtomicU32,
    ended: AtomicU32,
}

impl Activity {
    /// Marks a request as begun; it counts as ended when the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.begun.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// A request being answered (see [`Activity::begin`]).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `conn` until it ends, or until it has had no request in flight
/// and begun none for `period` (closed between 1 and 1.5 periods after
/// its last request ended); then drops it, which closes the connection,
/// and returns `None`.
pub async fn serve_within<F: Future>(conn: F, activity: &Activity, period: Duration) -> Option<F::Output> {
    let half = period / 2;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(conn);
    let counts = || (activity.begun.load(Ordering::Relaxed), activity.ended.load(Ordering::Relaxed));
    let mut seen = counts();
    let mut quiet = 0;
    loop {
        tokio::select! {
            biased;
            out = &mut conn => return Some(out),
            _ = ticks.tick() => {
                // Quiet: nothing in flight, nothing begun or ended since
                // the last tick.
                let now = counts();
                if now.0 != now.1 || now != seen {
                    seen = now;
                    quiet = 0;
                } else {
                    quiet += 1;
                    if quiet == 2 {
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    // Real time, kept short. Lower bounds hold to the timer's granularity
    // (a request ending in the same millisecond as a tick may be seen by
    // it); upper ones leave room for a busy machine.
    const PERIOD: Duration = Duration::from_millis(400);
    const GRAIN: Duration = Duration::from_millis(5);

    #[tokio::test]
    async fn a_connection_without_requests_is_dropped_after_one_to_one_and_a_half_periods() {
        let activity = Arc::new(Activity::default());
        let started = Instant::now();
        let out = serve_within(std::future::pending::<()>(), &activity, PERIOD).await;
        assert!(out.is_none());
        let waited = started.elapsed();
        assert!(waited >= PERIOD - GRAIN && waited < PERIOD * 3, "{waited:?}");
    }

    #[tokio::test]
    async fn requests_keep_a_connection_and_a_long_one_is_not_cut() {
        let activity = Arc::new(Activity::default());
        let a = Arc::clone(&activity);
        let conn = async move {
            // A request every 0.16 s for 2.4 s, then one taking 1.2 s.
            for _ in 0..15 {
                drop(a.begin());
                tokio::time::sleep(PERIOD * 2 / 5).await;
            }
            let slow = a.begin();
            tokio::time::sleep(PERIOD * 3).await;
            drop(slow);
            "done"
        };
        assert_eq!(serve_within(conn, &activity, PERIOD).await, Some("done"));
    }

    #[tokio::test]
    async fn a_connection_gone_quiet_after_its_requests_is_dropped() {
        let activity = Arc::new(Activity::default());
        let a = Arc::clone(&activity);
        let ended = Arc::new(std::sync::Mutex::new(None));
        let e = Arc::clone(&ended);
        let conn = async move {
            let one = a.begin();
            tokio::time::sleep(PERIOD * 2).await;
            drop(one);
            *e.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            std::future::pending::<()>().await
        };
        assert!(serve_within(conn, &activity, PERIOD).await.is_none());
        let quiet = ended.lock().unwrap_or_else(|e| e.into_inner()).expect("the request ended").elapsed();
        assert!(quiet >= PERIOD - GRAIN && quiet < PERIOD * 3, "{quiet:?}");
    }
}
