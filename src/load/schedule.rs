//! Open-loop schedule (wrk2's method): each connection sends at `rate / conns`, the
//! connections' start times spread evenly over one period, so the total stream is
//! smooth rather than bursty. Times are nanoseconds since the start of the run
//! (warm-up included).

/// Intended send times of every connection in an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Nanoseconds between two messages of one connection.
    period_ns: f64,
    conns: u32,
}

impl Schedule {
    /// `rate`: messages per second over all `conns` connections (> 0, finite).
    pub fn new(rate: f64, conns: u32) -> Schedule {
        assert!(rate > 0.0 && rate.is_finite() && conns > 0);
        Schedule {
            period_ns: 1e9 * f64::from(conns) / rate,
            conns,
        }
    }

    /// Nanoseconds between two messages of one connection (`conns` / rate seconds).
    pub fn period_ns(&self) -> f64 {
        self.period_ns
    }

    /// Intended send time of message `seq` of connection `conn`: offset `conn/conns` of a
    /// period, then one period per message.
    #[inline]
    pub fn intended(&self, conn: u32, seq: u64) -> u64 {
        let phase = f64::from(conn) / f64::from(self.conns);
        ((phase + seq as f64) * self.period_ns).round() as u64
    }

    /// The number of messages of `conn` intended strictly before `t_ns`, i.e. the first
    /// sequence number whose intended time is `>= t_ns`.
    pub fn count_before(&self, conn: u32, t_ns: u64) -> u64 {
        let phase = f64::from(conn) / f64::from(self.conns);
        // Estimate, then correct against `intended` so both always agree despite rounding.
        let mut k = ((t_ns as f64 / self.period_ns) - phase).ceil().max(0.0) as u64;
        while k > 0 && self.intended(conn, k - 1) >= t_ns {
            k -= 1;
        }
        while self.intended(conn, k) < t_ns {
            k += 1;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_and_phase() {
        // 2000 msgs/s over 10 connections: each sends every 5 ms, starts 0.5 ms apart.
        let s = Schedule::new(2000.0, 10);
        assert_eq!(s.period_ns(), 5_000_000.0);
        assert_eq!(s.intended(0, 0), 0);
        assert_eq!(s.intended(1, 0), 500_000);
        assert_eq!(s.intended(9, 0), 4_500_000);
        assert_eq!(s.intended(0, 1), 5_000_000);
        assert_eq!(s.intended(3, 7), 36_500_000);
    }

    #[test]
    fn total_stream_is_even() {
        // Merged over connections, consecutive intended times are one rate-period apart.
        let s = Schedule::new(1000.0, 4);
        let mut all: Vec<u64> = (0..4)
            .flat_map(|c| (0..50).map(move |k| s.intended(c, k)))
            .collect();
        all.sort_unstable();
        for w in all.windows(2) {
            assert_eq!(w[1] - w[0], 1_000_000);
        }
    }

    #[test]
    fn count_before_agrees_with_intended() {
        for (rate, conns) in [(2000.0, 10), (3.0, 7), (123_456.7, 50), (1e6, 1), (0.5, 3)] {
            let s = Schedule::new(rate, conns);
            for c in [0, conns / 2, conns - 1] {
                for t in [
                    0u64,
                    1,
                    999_999,
                    1_000_000_000,
                    4_000_000_001,
                    123_456_789_012,
                ] {
                    let k = s.count_before(c, t);
                    assert!(
                        k == 0 || s.intended(c, k - 1) < t,
                        "rate {rate} conn {c} t {t} k {k}"
                    );
                    assert!(s.intended(c, k) >= t, "rate {rate} conn {c} t {t} k {k}");
                }
            }
        }
    }

    #[test]
    fn window_holds_rate_times_duration() {
        // Messages intended in [1 s, 5 s) at 2000/s over 10 connections: exactly 8000.
        let s = Schedule::new(2000.0, 10);
        let n: u64 = (0..10)
            .map(|c| s.count_before(c, 5_000_000_000) - s.count_before(c, 1_000_000_000))
            .sum();
        assert_eq!(n, 8000);
        let s = Schedule::new(777.0, 13);
        let n: u64 = (0..13)
            .map(|c| s.count_before(c, 3_500_000_000) - s.count_before(c, 500_000_000))
            .sum();
        assert!((n as f64 - 777.0 * 3.0).abs() <= 13.0, "{n}");
    }
}
