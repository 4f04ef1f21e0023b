//! A grouped bar chart of the median throughput (log scale, min–max whiskers) as
//! self-contained SVG.

use std::fmt::Write as _;

use super::report::{Report, fmt_mbps, system_order, throughput_tests};

const COLORS: &[&str] = &[
    "#7f7f7f", "#d62728", "#ff7f0e", "#bcbd22", "#1f77b4", "#17becf", "#2ca02c", "#9467bd",
    "#8c564b", "#e377c2", "#aec7e8", "#98df8a",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart: one group per test, one bar per system, y = Mbit/s on a log scale.
pub fn bar_chart(report: &Report) -> String {
    let systems = system_order(&report.samples);
    let tests = throughput_tests(&report.samples);
    let max = systems
        .iter()
        .flat_map(|(id, _, _)| tests.iter().filter_map(move |t| report.mbps(id, t)))
        .map(|s| s.max)
        .fold(1.0f64, f64::max);
    let min = systems
        .iter()
        .flat_map(|(id, _, _)| tests.iter().filter_map(move |t| report.mbps(id, t)))
        .map(|s| s.min)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let lo_exp = if min.is_finite() {
        min.log10().floor().min(1.0)
    } else {
        1.0
    };
    let hi_exp = max.log10().ceil().max(lo_exp + 1.0);

    let bar_w = 16.0;
    let group_gap = 28.0;
    let n = systems.len().max(1) as f64;
    let group_w = n * bar_w + group_gap;
    let (left, top, plot_h) = (70.0, 64.0, 340.0);
    let plot_w = (tests.len().max(1) as f64 * group_w).max(560.0);
    let legend_h = 20.0 * systems.len() as f64 + 20.0;
    let width = left + plot_w + 20.0;
    let height = top + plot_h + 40.0 + legend_h;
    let y_of = |v: f64| {
        let f = (v.max(10f64.powf(lo_exp)).log10() - lo_exp) / (hi_exp - lo_exp);
        top + plot_h * (1.0 - f)
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = "iperf3 throughput: median Mbit/s received (log scale; whiskers: min–max)";
    let sub = format!(
        "{} cores, {}, Linux {}, {}",
        report.machine.cores,
        report.machine.cpu_model,
        report.machine.kernel,
        report.machine.started
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="13" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="40" font-size="10">{}</text>"#,
        esc(&sub)
    );
    // Grid and axis labels at every power of ten.
    let mut e = lo_exp;
    while e <= hi_exp + 1e-9 {
        let v = 10f64.powf(e);
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            left + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 4.0,
            fmt_mbps(v)
        );
        e += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">Mbit/s</text>"#,
        top + plot_h / 2.0
    );
    for (gi, t) in tests.iter().enumerate() {
        let gx = left + gi as f64 * group_w + group_gap / 2.0;
        for (si, (id, label, _)) in systems.iter().enumerate() {
            let Some(st) = report.mbps(id, t) else {
                continue;
            };
            let x = gx + si as f64 * bar_w;
            let y = y_of(st.median);
            let color = COLORS[si % COLORS.len()];
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {} Mbit/s ({}–{}, n={})</title></rect>"#,
                bar_w - 2.0,
                (top + plot_h - y).max(0.0),
                esc(label),
                fmt_mbps(st.median),
                fmt_mbps(st.min),
                fmt_mbps(st.max),
                st.n
            );
            let cx = x + (bar_w - 2.0) / 2.0;
            let _ = writeln!(
                s,
                r#"<line x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}" stroke="black" stroke-width="1"/>"#,
                y_of(st.min),
                y_of(st.max)
            );
            let _ = writeln!(
                s,
                r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="9">{}</text>"#,
                cx + 3.0,
                y_of(st.max) - 3.0,
                fmt_mbps(st.median)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            gx + n * bar_w / 2.0,
            top + plot_h + 18.0,
            esc(t)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="black"/>"#,
        left + plot_w,
        top + plot_h,
        top + plot_h
    );
    for (si, (_, label, _)) in systems.iter().enumerate() {
        let y = top + plot_h + 40.0 + si as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="12" height="12" fill="{}"/>"#,
            y - 10.0,
            COLORS[si % COLORS.len()]
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{y:.1}">{}</text>"#,
            left + 18.0,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::machine::Machine;
    use super::super::report::Sample;
    use super::*;

    #[test]
    fn chart_has_a_bar_per_system_and_test() {
        let mk = |sys: &str, test: &str, v: f64| Sample {
            system: sys.into(),
            label: format!("{sys} <x>"),
            test: test.into(),
            ok: true,
            mbps: Some(v),
            ..Default::default()
        };
        let report = Report {
            machine: Machine::describe(),
            command: String::new(),
            settings: String::new(),
            samples: vec![
                mk("a", "tcp1-up", 12000.0),
                mk("b", "tcp1-up", 450.0),
                mk("a", "udp-up", 500.0),
                mk("b", "udp-up", 300.0),
            ],
            unavailable: vec![],
        };
        let svg = bar_chart(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(svg.contains("a &lt;x&gt;"));
    }
}
