//! Statistics over per-run figures, written once: the median that `bench` reports for
//! each cell and lab point and that `compare` resamples, and the upper median the
//! lab's claims use.

/// The median of `v` (the mean of the two middle values for an even count; 0 when
/// empty). Sorts `v` in place.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The upper of the two middle values for an even count (the middle one for an odd
/// count; 0 when empty): the lab's claims take their median ratios this way. Sorts `v`
/// in place.
pub fn median_high(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median_high(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median_high(&mut [3.0, 1.0, 2.0]), 2.0);
    }
}
