//! CPU lists as `taskset -c` writes them ("0-2,5"): `serve --cpus`, `load --cpus` and the
//! bench's plan read and write them here.

/// The biggest CPU number accepted (the size of a `cpu_set_t`).
pub const MAX_CPU: usize = 1023;

/// Parse a CPU list: "1", "2-5", "1,3", "0-1,4". Order is kept; duplicates are refused.
/// Used by `load --pin` and `serve --cpus` (the same syntax as `taskset -c`).
pub fn parse_cpu_list(s: &str) -> anyhow::Result<Vec<usize>> {
    let num = |t: &str| -> anyhow::Result<usize> {
        let t = t.trim();
        let v: usize = t.parse().map_err(|_| {
            anyhow::anyhow!("'{t}' is not a CPU number (expected e.g. \"1\", \"2-5\" or \"1,3\")")
        })?;
        if v > MAX_CPU {
            anyhow::bail!("CPU {v} is out of range (0 to {MAX_CPU})");
        }
        Ok(v)
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        if part.trim().is_empty() {
            anyhow::bail!("empty entry in the CPU list (expected e.g. \"1\", \"2-5\" or \"1,3\")");
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    anyhow::bail!("range {a}-{b} runs backwards");
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    let mut sorted = out.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!("CPU {} is listed twice", w[0]);
    }
    Ok(out)
}

/// Write CPUs the way [`parse_cpu_list`] reads them, runs folded: [0, 1, 2, 5] -> "0-2,5".
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("2-5").unwrap(), vec![2, 3, 4, 5]);
        assert_eq!(parse_cpu_list("1,3").unwrap(), vec![1, 3]);
        assert_eq!(parse_cpu_list("3,0-1").unwrap(), vec![3, 0, 1]);
        assert_eq!(parse_cpu_list(" 4 , 6-6 ").unwrap(), vec![4, 6]);
        for bad in [
            "", "abc", "1,", ",1", "5-2", "1-", "-1", "1,1", "0-2,2", "99999", "1.5", "1-x",
        ] {
            let e = parse_cpu_list(bad);
            assert!(e.is_err(), "{bad:?} accepted: {e:?}");
        }
        assert!(
            parse_cpu_list("abc")
                .unwrap_err()
                .to_string()
                .contains("not a CPU number")
        );
    }

    #[test]
    fn cpu_lists_format_round_trip() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_cpu_list(&[3, 0, 1]), "3,0-1");
        assert_eq!(format_cpu_list(&[7]), "7");
        assert_eq!(format_cpu_list(&[]), "");
        for l in ["0-3", "1,3", "2-5,7", "3,0-1"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(l).unwrap()), l);
        }
    }
}
