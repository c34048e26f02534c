//! The SVG chart of the results: per section, grouped bars of each allocator's time and peak
//! RSS over glibc's, with whiskers from the fastest to the slowest run.

use crate::report::{allocs_of, geo_ratio, sections, Cell, Outcome, Row, BASELINE};

/// How a cell is measured: its median time or its median peak RSS.
type Metric = fn(&Cell) -> Option<f64>;
/// The fastest and slowest (smallest and largest) of a cell's runs.
type Range = fn(&Cell) -> Option<(f64, f64)>;
/// One bar of the chart: allocator, median's ratio to glibc (None: no result), the min and
/// max runs' ratios to glibc's median (the whisker), whether it failed.
type Bar<'a> = (&'a str, Option<f64>, Option<(f64, f64)>, bool);

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(alloc: &str) -> &'static str {
    match alloc {
        "glibc" => "#8c8c8c",
        "umem" => "#d62728",
        "mimalloc" => "#1f77b4",
        "jemalloc" => "#2ca02c",
        "tcmalloc" => "#ff7f0e",
        _ => "#9467bd",
    }
}

/// Grouped bar charts: per section, time and peak RSS as ratios to glibc (1.0 = glibc), one
/// group of bars per workload (plus the geometric mean), one bar per allocator; each bar is
/// the median run and carries a whisker from its fastest to its slowest run (both over
/// glibc's median), so a reader sees how far the runs spread. `warnings` (the load average,
/// `--quick`) are printed under the title.
pub fn svg(rows: &[Row], title: &str, warnings: &[String]) -> String {
    const BAR: f64 = 11.0;
    const GAP: f64 = 14.0;
    const LEFT: f64 = 60.0;
    const PLOT_H: f64 = 200.0;
    const PANEL_H: f64 = PLOT_H + 110.0;
    let secs = sections(rows);
    let mut panels: Vec<(String, Vec<&Row>, Metric, Range)> = Vec::new();
    for (s, rs) in &secs {
        panels.push((
            format!(
                "{}: wall time vs glibc (lower is better; whiskers: fastest–slowest run)",
                s.title()
            ),
            rs.clone(),
            Cell::time,
            Cell::time_range,
        ));
        panels.push((
            format!(
                "{}: peak RSS vs glibc (lower is better; whiskers: smallest–largest run)",
                s.title()
            ),
            rs.clone(),
            Cell::rss,
            Cell::rss_range,
        ));
    }
    let head = 40.0 + 16.0 * warnings.len() as f64;
    let width = panels
        .iter()
        .map(|(_, rs, _, _)| {
            let n = allocs_of(rs).len() as f64;
            LEFT + (rs.len() as f64 + 1.0) * (n * BAR + GAP) + 150.0
        })
        .fold(600.0, f64::max);
    let height = head + panels.len() as f64 * PANEL_H;
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    for (i, w) in warnings.iter().enumerate() {
        o.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\" font-size=\"12\" fill=\"#b00\">{}</text>\n",
            40.0 + 16.0 * i as f64,
            esc(w)
        ));
    }
    for (pi, (ptitle, rs, metric, range)) in panels.iter().enumerate() {
        let top = head + pi as f64 * PANEL_H;
        let base = top + 25.0 + PLOT_H;
        let allocs = allocs_of(rs);
        let mut groups: Vec<(String, Vec<Bar>)> = rs
            .iter()
            .map(|r| {
                let bars = allocs
                    .iter()
                    .map(|a| {
                        let failed = r
                            .cell(a)
                            .is_some_and(|c| matches!(c.outcome, Outcome::Failed(_)));
                        let whisker = match (
                            r.cell(a).and_then(range),
                            r.cell(BASELINE).and_then(*metric),
                        ) {
                            (Some((lo, hi)), Some(g)) if g > 0.0 => Some((lo / g, hi / g)),
                            _ => None,
                        };
                        (*a, r.ratio_glibc(a, *metric), whisker, failed)
                    })
                    .collect();
                (r.name.clone(), bars)
            })
            .collect();
        groups.push((
            "geomean".into(),
            allocs
                .iter()
                .map(|a| {
                    (
                        *a,
                        if *a == "glibc" {
                            Some(1.0)
                        } else {
                            geo_ratio(rs, a, *metric)
                        },
                        None,
                        false,
                    )
                })
                .collect(),
        ));
        let maxv = groups
            .iter()
            .flat_map(|g| g.1.iter().flat_map(|b| [b.1, b.2.map(|w| w.1)]).flatten())
            .fold(1.0f64, f64::max)
            .min(4.0);
        let ymax = (maxv * 2.0).ceil() / 2.0 + 0.25;
        let y = |v: f64| base - (v.min(ymax) / ymax) * PLOT_H;
        o.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\" font-size=\"13\" font-weight=\"bold\">{}</text>\n",
            top + 15.0,
            esc(ptitle)
        ));
        let right = LEFT + groups.len() as f64 * (allocs.len() as f64 * BAR + GAP);
        let mut t = 0.0;
        while t <= ymax + 1e-9 {
            let yy = y(t);
            let strong = (t - 1.0).abs() < 1e-9;
            o.push_str(&format!(
                "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{right:.1}\" y2=\"{yy:.1}\" stroke=\"{}\" stroke-width=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{t:.1}x</text>\n",
                if strong { "#444" } else { "#ddd" },
                if strong { 1.5 } else { 1.0 },
                LEFT - 4.0,
                yy + 4.0
            ));
            t += 0.5;
        }
        for (gi, (name, bars)) in groups.iter().enumerate() {
            let gx = LEFT + GAP / 2.0 + gi as f64 * (allocs.len() as f64 * BAR + GAP);
            for (bi, (a, v, whisker, failed)) in bars.iter().enumerate() {
                let x = gx + bi as f64 * BAR;
                match v {
                    Some(v) => {
                        let yy = y(*v);
                        o.push_str(&format!(
                            "<rect x=\"{x:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {v:.3}x glibc</title></rect>\n",
                            BAR - 1.0,
                            base - yy,
                            color(a),
                            esc(name),
                            a
                        ));
                        if let Some((lo, hi)) = whisker {
                            let (ylo, yhi) = (y(*lo), y(*hi));
                            let cx = x + (BAR - 1.0) / 2.0;
                            o.push_str(&format!(
                                "<path d=\"M{cx:.1} {ylo:.1}V{yhi:.1}M{:.1} {ylo:.1}h{:.1}M{:.1} {yhi:.1}h{:.1}\" stroke=\"#000\" stroke-width=\"1\" fill=\"none\"><title>{} {}: runs {lo:.3}x–{hi:.3}x glibc</title></path>\n",
                                cx - 2.5,
                                5.0,
                                cx - 2.5,
                                5.0,
                                esc(name),
                                a
                            ));
                        }
                        if *v > ymax {
                            o.push_str(&format!(
                                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"8\" text-anchor=\"middle\">{v:.1}</text>\n",
                                x + BAR / 2.0,
                                yy - 2.0
                            ));
                        }
                    }
                    None => {
                        o.push_str(&format!(
                            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
                            x + BAR / 2.0,
                            base - 3.0,
                            color(a),
                            if *failed { "✗" } else { "·" }
                        ));
                    }
                }
            }
            let cx = gx + allocs.len() as f64 * BAR / 2.0;
            o.push_str(&format!(
                "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"end\" transform=\"rotate(-35 {cx:.1} {:.1})\">{}</text>\n",
                base + 14.0,
                base + 14.0,
                esc(name)
            ));
        }
        for (i, a) in allocs.iter().enumerate() {
            let ly = top + 35.0 + i as f64 * 16.0;
            o.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{a}</text>\n",
                right + 15.0,
                ly - 9.0,
                color(a),
                right + 30.0,
                ly
            ));
        }
        o.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#666\">bar: median run; ✗ failed · skipped</text>\n",
            right + 15.0,
            top + 35.0 + allocs.len() as f64 * 16.0 + 6.0
        ));
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::two_rows_one_failed;

    #[test]
    fn svg_is_a_document() {
        let rows = two_rows_one_failed();
        let svg = svg(&rows, "t <&>", &["WARNING: busy".to_string()]);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(svg.contains("WARNING: busy"));
        // Every panel (time and RSS of the one section) says which way is better, and each
        // bar with runs has a whisker.
        assert_eq!(svg.matches("lower is better").count(), 2, "{svg}");
        assert!(svg.matches("<path d=\"M").count() >= 4, "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1);
    }
}
