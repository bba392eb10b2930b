//! Capped exponential backoff with full jitter, and the small random number generator it uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reconnect delays: attempt `n` (from 0) waits a random time between zero and
/// `min(cap, initial * factor^n)`, so that many clients cut off at once do not return at once.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    cap: Duration,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    /// Creates a backoff; `seed` makes the jitter reproducible when set.
    pub fn new(initial: Duration, factor: f64, cap: Duration, seed: Option<u64>) -> Backoff {
        Backoff {
            initial,
            factor: factor.max(1.0),
            cap: cap.max(initial),
            attempt: 0,
            rng: Rng::new(seed),
        }
    }

    /// Returns the delay before the next attempt and counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(self.rng.next_f64())
    }

    /// Returns the upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let exponent = self.attempt.min(64) as i32;
        let scaled = self.initial.as_secs_f64() * self.factor.powi(exponent);
        Duration::from_secs_f64(scaled.min(self.cap.as_secs_f64()))
    }

    /// Returns how many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over from the initial delay, after a connection has proven healthy.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A splitmix64 generator. Jitter needs no cryptographic quality, only a spread.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: Option<u64>) -> Rng {
        let seed = seed.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_and_caps() {
        let mut backoff = Backoff::new(
            Duration::from_secs(1),
            2.0,
            Duration::from_secs(60),
            Some(1),
        );
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(backoff.ceiling().as_secs());
            let delay = backoff.next_delay();
            assert!(delay <= Duration::from_secs(60));
        }
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn delays_stay_under_ceiling_and_spread() {
        let mut backoff =
            Backoff::new(Duration::from_secs(8), 1.0, Duration::from_secs(8), Some(7));
        let delays: Vec<Duration> = (0..200).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().all(|d| *d < Duration::from_secs(8)));
        let below_half = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(4))
            .count();
        assert!(
            (60..140).contains(&below_half),
            "{below_half} of 200 below half"
        );
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(60), None);
        backoff.next_delay();
        backoff.next_delay();
        assert_eq!(backoff.ceiling(), Duration::from_secs(4));
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
    }
}
