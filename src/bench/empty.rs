//! A run whose load measured nothing: 0 messages and 0 errors. It happens when the
//! machine is so loaded that the measured window closes before the first reply (seen
//! once at 100 connections in a 0.5 s `--quick` run). Its figures are not a 0 msgs/s
//! throughput, nor a 0 ns latency: the run is done once more, and if that one is empty
//! too, the run has no data and says so (the matrix: `cells[].empty_runs`, a note, a
//! warning and exit 1; the lab: "no data" in the claims that rest on it).

/// Whether a load that counted `messages` and `errors` measured nothing. A run with
/// errors measured something (its errors are reported as such).
pub fn measured_nothing(messages: u64, errors: u64) -> bool {
    messages == 0 && errors == 0
}

/// What [`retry_empty`] kept: the run, and how many tries measured nothing (0: the
/// first try was good, 1: the retry was, 2: both were empty and `run` is the empty
/// retry).
#[derive(Debug, PartialEq)]
pub struct Tried<T> {
    pub run: T,
    pub empty_tries: u32,
}

impl<T> Tried<T> {
    /// Both tries measured nothing: the run has no data.
    pub fn no_data(&self) -> bool {
        self.empty_tries >= 2
    }
}

/// Run `attempt` (given its try, 0 or 1); when its run measured nothing (`empty`), run
/// it once more. `on_retry` is told before the second try. An error of either try is
/// returned as is.
pub fn retry_empty<T>(
    mut attempt: impl FnMut(u32) -> anyhow::Result<T>,
    empty: impl Fn(&T) -> bool,
    mut on_retry: impl FnMut(),
) -> anyhow::Result<Tried<T>> {
    let first = attempt(0)?;
    if !empty(&first) {
        return Ok(Tried {
            run: first,
            empty_tries: 0,
        });
    }
    on_retry();
    let second = attempt(1)?;
    let empty_tries = if empty(&second) { 2 } else { 1 };
    Ok(Tried {
        run: second,
        empty_tries,
    })
}

/// [`retry_empty`] for run `rep` (from 0) of `id`, told: a warning line before the
/// retry, and a note in `notes` when a try measured nothing.
pub fn retry_noted<T>(
    id: &str,
    rep: u32,
    notes: &mut Vec<String>,
    attempt: impl FnMut(u32) -> anyhow::Result<T>,
    empty: impl Fn(&T) -> bool,
) -> anyhow::Result<Tried<T>> {
    let t = retry_empty(attempt, empty, || {
        eprintln!(
            "ringmux: warning: {id} run {}: the load measured 0 messages and 0 errors; running it again",
            rep + 1
        )
    })?;
    if t.empty_tries > 0 {
        notes.push(format!(
            "{id} run {}: the load measured 0 messages and 0 errors{}",
            rep + 1,
            if t.no_data() {
                ", twice: no figure kept (no data)"
            } else {
                "; run again, the second try kept"
            }
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs that yield the given message counts in turn (0 errors).
    fn runs(msgs: &[u64]) -> anyhow::Result<(Tried<u64>, Vec<u32>, u32)> {
        let mut tries = Vec::new();
        let mut retries = 0;
        let t = retry_empty(
            |i| {
                tries.push(i);
                Ok(msgs[i as usize])
            },
            |&m| measured_nothing(m, 0),
            || retries += 1,
        )?;
        Ok((t, tries, retries))
    }

    #[test]
    fn nothing_measured_is_no_messages_and_no_errors() {
        assert!(measured_nothing(0, 0));
        assert!(!measured_nothing(0, 3), "errors are reported as errors");
        assert!(!measured_nothing(1, 0));
    }

    #[test]
    fn a_good_run_is_kept_at_once() {
        let (t, tries, retries) = runs(&[500]).unwrap();
        assert_eq!((t.run, t.empty_tries, t.no_data()), (500, 0, false));
        assert_eq!((tries, retries), (vec![0], 0));
    }

    #[test]
    fn an_empty_run_is_run_once_more() {
        let (t, tries, retries) = runs(&[0, 700]).unwrap();
        assert_eq!((t.run, t.empty_tries, t.no_data()), (700, 1, false));
        assert_eq!((tries, retries), (vec![0, 1], 1));
    }

    #[test]
    fn empty_twice_is_no_data_and_never_a_third_try() {
        let (t, tries, _) = runs(&[0, 0, 900]).unwrap();
        assert_eq!((t.run, t.empty_tries, t.no_data()), (0, 2, true));
        assert_eq!(tries, vec![0, 1]);
    }

    #[test]
    fn the_notes_say_what_happened() {
        let mut notes = Vec::new();
        let t = retry_noted("epoll/c100", 1, &mut notes, |_| Ok(0u64), |&m| m == 0).unwrap();
        assert!(t.no_data());
        let t = retry_noted("uring/c1", 0, &mut notes, |i| Ok(u64::from(i)), |&m| m == 0).unwrap();
        assert_eq!(t.run, 1);
        let t = retry_noted("poll/c1", 0, &mut notes, |_| Ok(5u64), |&m| m == 0).unwrap();
        assert_eq!(t.empty_tries, 0);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("epoll/c100 run 2:") && notes[0].contains("no figure kept"));
        assert!(notes[1].starts_with("uring/c1 run 1:") && notes[1].contains("second try kept"));
    }

    #[test]
    fn an_error_is_returned() {
        let r = retry_empty(
            |i| {
                if i == 0 {
                    Ok(0u64)
                } else {
                    anyhow::bail!("server died")
                }
            },
            |&m| m == 0,
            || {},
        );
        assert!(r.unwrap_err().to_string().contains("server died"));
    }
}
