//! A pause after each failed authentication (PostgreSQL's `auth_delay` idea), per source
//! address: failures from one address are answered one per `auth_failure_delay`, however
//! many connections it opens at once, so guessing passwords (client or PCP) is slow while
//! everyone else logs in at full speed.
//!
//! This is only the bookkeeping: when each failure may be answered. The failing session
//! sleeps until then itself (asynchronously, holding nothing shared). The state is
//! bounded: at most [`MAX_SOURCES`] addresses are tracked (entries whose pause is over are
//! dropped first; past that, new addresses share one entry), and no address is made to
//! wait more than [`MAX_BACKLOG`] ahead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once.
pub const MAX_SOURCES: usize = 4096;

/// The longest a failure is made to wait, however many came before it.
pub const MAX_BACKLOG: Duration = Duration::from_secs(60);

/// Where a failed login came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Addr(IpAddr),
    /// The Unix socket.
    Local,
    /// Every address beyond [`MAX_SOURCES`], together.
    Overflow,
}

/// When the next failure of each source may be answered.
#[derive(Default)]
pub struct AuthDelay {
    next_free: Mutex<HashMap<Source, Instant>>,
}

impl AuthDelay {
    /// Books the answer to a failure from `addr` (`None`: the Unix socket) at `now`: returns
    /// the instant it may be sent, `delay` after the previous failure of that source was
    /// answered (or after `now`).
    pub fn book(&self, addr: Option<IpAddr>, delay: Duration, now: Instant) -> Instant {
        if delay.is_zero() {
            return now;
        }
        let mut map = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let mut source = addr.map_or(Source::Local, |a| Source::Addr(a.to_canonical()));
        if !map.contains_key(&source) && map.len() >= MAX_SOURCES {
            map.retain(|_, t| *t > now);
            if map.len() >= MAX_SOURCES {
                source = Source::Overflow;
            }
        }
        let free = map.entry(source).or_insert(now);
        let at = (*free).max(now) + delay;
        let at = at.min(now + MAX_BACKLOG.max(delay));
        *free = at;
        at
    }

    /// Sources tracked now (for tests and the bound).
    pub fn tracked(&self) -> usize {
        self.next_free.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(500);

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(n.to_be_bytes()))
    }

    #[test]
    fn failures_from_one_address_are_answered_one_per_delay() {
        let d = AuthDelay::default();
        let t0 = Instant::now();
        assert_eq!(d.book(ip(1), D, t0), t0 + D);
        assert_eq!(d.book(ip(1), D, t0), t0 + 2 * D);
        assert_eq!(d.book(ip(1), D, t0), t0 + 3 * D);
        // Another address is not queued behind them; the Unix socket is one source.
        assert_eq!(d.book(ip(2), D, t0), t0 + D);
        assert_eq!(d.book(None, D, t0), t0 + D);
        // Once the pause is over, the next failure waits one delay again.
        let later = t0 + 10 * D;
        assert_eq!(d.book(ip(1), D, later), later + D);
        assert_eq!(d.book(ip(1), Duration::ZERO, later), later);
    }

    #[test]
    fn the_state_and_the_wait_are_bounded() {
        let d = AuthDelay::default();
        let t0 = Instant::now();
        for n in 0..(MAX_SOURCES as u32 + 100) {
            d.book(ip(n), D, t0);
        }
        assert_eq!(d.tracked(), MAX_SOURCES + 1, "the rest share one entry");
        // Once their pauses are over, old entries make room for new addresses (the shared
        // entry is still paused: 100 failures booked on it).
        let later = t0 + 2 * D;
        d.book(ip(u32::MAX), D, later);
        assert_eq!(d.tracked(), 2);
        let mut last = later;
        for _ in 0..1000 {
            last = d.book(ip(7), D, later);
        }
        assert_eq!(last, later + MAX_BACKLOG);
    }
}
