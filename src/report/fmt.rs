//! Human-friendly numbers for tables (durations from nanoseconds, rates, counts,
//! sizes), and text made safe for HTML.

/// A duration given in nanoseconds, with three significant digits and a unit chosen
/// so the number stays between 1 and 1000: "850 ns", "12.3 µs", "1.23 ms", "2.50 s".
pub fn ns(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let (x, unit) = if v.abs() < 1e3 {
        (v, "ns")
    } else if v.abs() < 1e6 {
        (v / 1e3, "µs")
    } else if v.abs() < 1e9 {
        (v / 1e6, "ms")
    } else {
        (v / 1e9, "s")
    };
    format!("{} {unit}", sig3(x))
}

/// An optional duration in nanoseconds; "–" when absent.
pub fn ns_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), ns)
}

/// A rate or count with a k/M/G suffix and three significant digits: "950", "12.3k", "1.20M".
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a < 1e3 {
        sig3(v)
    } else if a < 1e6 {
        format!("{}k", sig3(v / 1e3))
    } else if a < 1e9 {
        format!("{}M", sig3(v / 1e6))
    } else {
        format!("{}G", sig3(v / 1e9))
    }
}

/// A small ratio or per-message figure with up to 3 significant digits: "0.52", "12.4", "3".
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    sig3(v)
}

/// [`num`], or a dash for a figure that was not measured.
pub fn num_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), num)
}

/// Three significant digits without needless trailing zeros for integers below 1000
/// ("850", "12.3", "1.20", "0.0123").
fn sig3(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        // 0.0123 -> 3 significant digits
        let decimals = (-a.log10().floor()) as usize + 2;
        format!("{x:.decimals$}")
    }
}

/// A size in bytes with a binary unit and three significant digits: "101 B",
/// "15.4 KiB", "3.70 MiB".
pub fn bytes(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a < 1024.0 {
        format!("{} B", sig3(v))
    } else if a < 1024.0 * 1024.0 {
        format!("{} KiB", sig3(v / 1024.0))
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{} MiB", sig3(v / (1024.0 * 1024.0)))
    } else {
        format!("{} GiB", sig3(v / (1024.0 * 1024.0 * 1024.0)))
    }
}

/// A signed percent change, e.g. "+4.2%", "-12%".
pub fn pct(change: f64) -> String {
    if !change.is_finite() {
        return "–".into();
    }
    let p = change * 100.0;
    if p.abs() >= 10.0 {
        format!("{p:+.0}%")
    } else {
        format!("{p:+.1}%")
    }
}

pub use crate::results::time::{java_date, utc};

/// Text made safe inside HTML and SVG, in an element or a quoted attribute.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(ns(0.0), "0 ns");
        assert_eq!(ns(850.0), "850 ns");
        assert_eq!(ns(12_345.0), "12.3 µs");
        assert_eq!(ns(123_456.0), "123 µs");
        assert_eq!(ns(1_234_567.0), "1.23 ms");
        assert_eq!(ns(2.5e9), "2.50 s");
        assert_eq!(ns_opt(None), "–");
        assert_eq!(ns(f64::NAN), "–");
    }

    #[test]
    fn numbers() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(123_456.0), "123k");
        assert_eq!(si(1_204_000.0), "1.20M");
        assert_eq!(num(0.0123), "0.0123");
        assert_eq!(num(0.5), "0.500");
        assert_eq!(num(3.0), "3.00");
        assert_eq!(pct(0.042), "+4.2%");
        assert_eq!(pct(-0.12), "-12%");
        assert_eq!(bytes(101.2), "101 B");
        assert_eq!(bytes(15_770.0), "15.4 KiB");
        assert_eq!(bytes(3_788.0 * 1024.0), "3.70 MiB");
        assert_eq!(bytes(-40.0), "-40.0 B");
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            esc(r#"<a href="x">&</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
