//! The client's reconnect policy: exponential delays with full jitter, reset
//! after a healthy session. Adapters only sleep.

use std::time::Duration;

/// Reconnect delays: exponential from `initial` to `max`, with full jitter;
/// back to `initial` after a session that lasted `healthy_after`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A session that lasted this long resets the delay.
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delays of one run of reconnects.
    pub fn schedule(self) -> BackoffSchedule {
        BackoffSchedule {
            delay: self.initial,
            backoff: self,
        }
    }
}

/// Where a run of reconnects is in its [`Backoff`].
#[derive(Debug, Clone)]
pub struct BackoffSchedule {
    backoff: Backoff,
    delay: Duration,
}

impl BackoffSchedule {
    /// How long to wait before the next attempt, given how long the last
    /// attempt (handshake plus session) lasted. Jittered uniformly between
    /// 10% and 100% of the current delay, so agents cut off together do not
    /// come back together.
    pub fn next_delay(&mut self, lasted: Duration) -> Duration {
        self.next_delay_with(lasted, rand::random::<f64>())
    }

    fn next_delay_with(&mut self, lasted: Duration, random: f64) -> Duration {
        if lasted >= self.backoff.healthy_after {
            self.delay = self.backoff.initial;
        }
        let factor = random.clamp(0.1, 1.0);
        let jittered =
            Duration::try_from_secs_f64(self.delay.as_secs_f64() * factor).unwrap_or(self.delay);
        self.delay = self
            .delay
            .checked_mul(2)
            .unwrap_or(self.backoff.max)
            .min(self.backoff.max);
        jittered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_max_and_resets_after_healthy_session() {
        let ms = Duration::from_millis;
        let mut s = Backoff {
            initial: ms(100),
            max: ms(350),
            healthy_after: Duration::from_secs(10),
        }
        .schedule();
        let short = ms(1);
        assert_eq!(s.next_delay_with(short, 1.0), ms(100));
        assert_eq!(s.next_delay_with(short, 1.0), ms(200));
        assert_eq!(s.next_delay_with(short, 1.0), ms(350));
        assert_eq!(s.next_delay_with(short, 0.5), ms(175));
        let least = s.next_delay_with(short, 0.0);
        assert!(
            least.abs_diff(ms(35)) < Duration::from_micros(1),
            "{least:?}"
        );
        assert_eq!(s.next_delay_with(Duration::from_secs(10), 1.0), ms(100));
    }

    #[test]
    fn huge_delays_do_not_overflow() {
        let mut s = Backoff {
            initial: Duration::MAX / 2 + Duration::from_secs(1),
            max: Duration::MAX,
            healthy_after: Duration::MAX,
        }
        .schedule();
        let _ = s.next_delay_with(Duration::ZERO, 0.5);
        assert_eq!(s.next_delay_with(Duration::ZERO, 1.0), Duration::MAX);
    }
}
