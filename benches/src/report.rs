//! Results: medians, ratios, geometric means, and the table and CSV that show them (the SVG
//! chart is in `svg.rs`).

use crate::runner::Measure;

/// The baseline every ratio is taken against (no preload / `std::alloc::System`). It has its
/// own column and is never the "best other allocator" of anyone.
pub const BASELINE: &str = "glibc";
/// The allocator this harness is about: the tables' last two columns are its ratios.
pub const SUBJECT: &str = "umem";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Rust,
    C,
    Programs,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Rust => "rust",
            Section::C => "c",
            Section::Programs => "programs",
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Section::Rust => "Rust workloads, #[global_allocator]",
            Section::C => "C workloads, LD_PRELOAD",
            Section::Programs => "Real programs, LD_PRELOAD",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Pending,
    Ok,
    Failed(String),
    Skipped(String),
}

/// One allocator's runs of one workload.
pub struct Cell {
    pub alloc: &'static str,
    pub times: Vec<f64>,
    pub rss: Vec<u64>,
    pub checksum: Option<u64>,
    pub outcome: Outcome,
}

impl Cell {
    pub fn new(alloc: &'static str, skip: Option<String>) -> Cell {
        Cell {
            alloc,
            times: Vec::new(),
            rss: Vec::new(),
            checksum: None,
            outcome: skip.map_or(Outcome::Pending, Outcome::Skipped),
        }
    }
    pub fn add(&mut self, m: Measure) {
        match self.checksum {
            Some(c) if c != m.checksum => {
                self.outcome = Outcome::Failed(format!(
                    "checksum {:#x} differs from its earlier run's {c:#x}",
                    m.checksum
                ));
            }
            _ => {
                self.checksum = Some(m.checksum);
                self.times.push(m.secs);
                self.rss.push(m.rss_kib);
            }
        }
    }
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok) && !self.times.is_empty()
    }
    pub fn time(&self) -> Option<f64> {
        self.ok().then(|| median_f(&self.times))
    }
    pub fn rss(&self) -> Option<f64> {
        self.ok()
            .then(|| median_f(&self.rss.iter().map(|&k| k as f64).collect::<Vec<_>>()))
    }
    /// The fastest and the slowest of the runs (the SVG's whiskers).
    pub fn time_range(&self) -> Option<(f64, f64)> {
        self.ok().then(|| min_max(self.times.iter().copied()))
    }
    /// The smallest and the largest peak RSS of the runs.
    pub fn rss_range(&self) -> Option<(f64, f64)> {
        self.ok()
            .then(|| min_max(self.rss.iter().map(|&k| k as f64)))
    }
}

fn min_max(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

pub fn median_f(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub struct Row {
    pub section: Section,
    pub name: String,
    pub threads: usize,
    pub about: String,
    pub cells: Vec<Cell>,
}

impl Row {
    /// The cell of `alloc`, if it ran in this row.
    pub fn cell(&self, alloc: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.alloc == alloc)
    }
    /// `metric` of `alloc` over glibc's.
    pub fn ratio_glibc(&self, alloc: &str, metric: fn(&Cell) -> Option<f64>) -> Option<f64> {
        let a = metric(self.cell(alloc)?)?;
        let g = metric(self.cell("glibc")?)?;
        (g > 0.0).then(|| a / g)
    }
    /// The best (lowest) `metric` among the *other* allocators, and who: every allocator
    /// except `alloc` itself and the baseline (glibc has its own column, so it is never
    /// named here). For umem that is the best of mimalloc, jemalloc and tcmalloc.
    pub fn best_other(
        &self,
        alloc: &str,
        metric: fn(&Cell) -> Option<f64>,
    ) -> Option<(f64, &'static str)> {
        self.cells
            .iter()
            .filter(|c| c.alloc != alloc && c.alloc != BASELINE)
            .filter_map(|c| metric(c).map(|v| (v, c.alloc)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }
    /// `metric` of `alloc` over the best other allocator's ([`Row::best_other`]).
    pub fn ratio_best_other(&self, alloc: &str, metric: fn(&Cell) -> Option<f64>) -> Option<f64> {
        let a = metric(self.cell(alloc)?)?;
        let (b, _) = self.best_other(alloc, metric)?;
        (b > 0.0).then(|| a / b)
    }
}

/// A checksum that differs from glibc's means the workload computed something else: a failure.
pub fn cross_check(cells: &mut [Cell]) {
    let want = cells
        .iter()
        .find(|c| c.alloc == "glibc" && c.ok())
        .and_then(|c| c.checksum);
    if let Some(w) = want {
        for c in cells.iter_mut() {
            if c.ok() && c.checksum != Some(w) {
                c.outcome = Outcome::Failed(format!(
                    "result checksum {:#x} differs from glibc's {w:#x}",
                    c.checksum.unwrap_or(0)
                ));
            }
        }
    }
}

fn fmt_time(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1}s")
    } else if s >= 1.0 {
        format!("{s:.2}s")
    } else {
        format!("{:.0}ms", s * 1000.0)
    }
}

fn fmt_rss(kib: f64) -> String {
    let m = kib / 1024.0;
    if m >= 100.0 {
        format!("{m:.0}M")
    } else {
        format!("{m:.1}M")
    }
}

fn status_word(c: &Cell) -> &'static str {
    match c.outcome {
        Outcome::Failed(_) => "FAIL",
        Outcome::Skipped(_) => "skip",
        _ => "-",
    }
}

pub fn progress_line(r: &Row) -> String {
    let mut s = format!(
        "{:<26} {:>2}t ",
        format!("{}/{}", r.section.key(), r.name),
        r.threads
    );
    for c in &r.cells {
        let v = match c.time() {
            Some(t) => format!("{} {}", fmt_time(t), fmt_rss(c.rss().unwrap_or(0.0))),
            None => status_word(c).to_string(),
        };
        s.push_str(&format!(" {}={v}", c.alloc));
    }
    s
}

pub fn geomean(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        None
    } else {
        Some((v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
    }
}

pub fn sections(rows: &[Row]) -> Vec<(Section, Vec<&Row>)> {
    let mut out: Vec<(Section, Vec<&Row>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(s, _)| *s == r.section) {
            Some((_, v)) => v.push(r),
            None => out.push((r.section, vec![r])),
        }
    }
    out
}

pub fn allocs_of(rows: &[&Row]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for r in rows {
        for c in &r.cells {
            if !v.contains(&c.alloc) {
                v.push(c.alloc);
            }
        }
    }
    v
}

/// Geometric mean over the rows where both `alloc` and glibc succeeded.
pub fn geo_ratio(rows: &[&Row], alloc: &str, metric: fn(&Cell) -> Option<f64>) -> Option<f64> {
    geomean(
        &rows
            .iter()
            .filter_map(|r| r.ratio_glibc(alloc, metric))
            .collect::<Vec<_>>(),
    )
}

fn geo_best_other(rows: &[&Row], alloc: &str, metric: fn(&Cell) -> Option<f64>) -> Option<f64> {
    geomean(
        &rows
            .iter()
            .filter_map(|r| r.ratio_best_other(alloc, metric))
            .collect::<Vec<_>>(),
    )
}

fn table(
    out: &mut String,
    title: &str,
    rows: &[&Row],
    metric: fn(&Cell) -> Option<f64>,
    fmt: fn(f64) -> String,
) {
    let allocs = allocs_of(rows);
    let w0 = rows.iter().map(|r| r.name.len()).max().unwrap_or(8).max(8);
    out.push_str(&format!("{title}\n"));
    let mut h = format!("| {:<w0$} | thr |", "workload");
    for a in &allocs {
        h.push_str(&format!(" {a:>15} |"));
    }
    h.push_str(" umem/glibc | umem/best other |\n");
    out.push_str(&h);
    let mut sep = format!("|{}|----:|", "-".repeat(w0 + 2));
    for _ in &allocs {
        sep.push_str(&format!("{}:|", "-".repeat(16)));
    }
    sep.push_str("-----------:|----------------:|\n");
    out.push_str(&sep);
    for r in rows {
        let mut l = format!("| {:<w0$} | {:>3} |", r.name, r.threads);
        for a in &allocs {
            let c = r.cell(a);
            let v = match c.and_then(metric) {
                Some(v) => {
                    let ratio = r.ratio_glibc(a, metric);
                    match ratio {
                        Some(x) if *a != "glibc" => format!("{} {:>5}", fmt(v), format!("{x:.2}x")),
                        _ => fmt(v),
                    }
                }
                None => c.map_or("-", status_word).to_string(),
            };
            l.push_str(&format!(" {v:>15} |"));
        }
        let rg = r
            .ratio_glibc(SUBJECT, metric)
            .map_or("-".into(), |x| format!("{x:.2}x"));
        let rb = match (
            r.ratio_best_other(SUBJECT, metric),
            r.best_other(SUBJECT, metric),
        ) {
            (Some(x), Some((_, who))) => format!("{x:.2}x {who}"),
            _ => "-".into(),
        };
        l.push_str(&format!(" {rg:>10} | {rb:>15} |\n"));
        out.push_str(&l);
    }
    let mut g = format!("| {:<w0$} |     |", "geomean");
    for a in &allocs {
        let v = if *a == "glibc" {
            "1.00x".to_string()
        } else {
            geo_ratio(rows, a, metric).map_or("-".into(), |x| format!("{x:.2}x"))
        };
        g.push_str(&format!(" {v:>15} |"));
    }
    let rg = geo_ratio(rows, SUBJECT, metric).map_or("-".into(), |x| format!("{x:.2}x"));
    let rb = geo_best_other(rows, SUBJECT, metric).map_or("-".into(), |x| format!("{x:.2}x"));
    g.push_str(&format!(" {rg:>10} | {rb:>15} |\n"));
    out.push_str(&g);
    out.push('\n');
}

/// The terminal / docs/benchmarks.md tables: per section, time then peak RSS.
pub fn text_tables(rows: &[Row]) -> String {
    let mut out = String::new();
    for (s, rs) in sections(rows) {
        table(
            &mut out,
            &format!(
                "{}: median wall time (ratio to glibc; lower is better)",
                s.title()
            ),
            &rs,
            Cell::time,
            fmt_time,
        );
        table(
            &mut out,
            &format!(
                "{}: median peak RSS (ratio to glibc; lower is better)",
                s.title()
            ),
            &rs,
            Cell::rss,
            fmt_rss,
        );
    }
    out
}

pub fn failures(rows: &[Row]) -> Vec<String> {
    let mut v = Vec::new();
    for r in rows {
        for c in &r.cells {
            match &c.outcome {
                Outcome::Failed(e) => v.push(format!(
                    "{}/{} {}: FAILED: {e}",
                    r.section.key(),
                    r.name,
                    c.alloc
                )),
                Outcome::Skipped(e) => {
                    let line = format!("{} {}: skipped: {e}", r.section.key(), c.alloc);
                    if !v.contains(&line) {
                        v.push(line);
                    }
                }
                _ => {}
            }
        }
    }
    v
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or(String::new(), |x| format!("{x:.prec$}"))
}

pub const CSV_HEADER: &str = "section,workload,threads,allocator,status,runs,median_s,min_s,max_s,median_peak_rss_kib,time_vs_glibc,time_vs_best_other,best_other,rss_vs_glibc,rss_vs_best_other,note";

/// One line per (section, workload, allocator), then one `geomean` line per (section, allocator).
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        for c in &r.cells {
            let (status, note) = match &c.outcome {
                Outcome::Ok | Outcome::Pending => ("ok", String::new()),
                Outcome::Failed(e) => ("failed", e.clone()),
                Outcome::Skipped(e) => ("skipped", e.clone()),
            };
            let ok = c.ok();
            let min = c.times.iter().copied().fold(f64::INFINITY, f64::min);
            let max = c.times.iter().copied().fold(0.0, f64::max);
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                r.section.key(),
                csv_field(&r.name),
                r.threads,
                c.alloc,
                status,
                c.times.len(),
                opt(c.time(), 6),
                opt(ok.then_some(min), 6),
                opt(ok.then_some(max), 6),
                opt(c.rss(), 0),
                opt(r.ratio_glibc(c.alloc, Cell::time), 4),
                opt(r.ratio_best_other(c.alloc, Cell::time), 4),
                r.best_other(c.alloc, Cell::time).map_or("", |b| b.1),
                opt(r.ratio_glibc(c.alloc, Cell::rss), 4),
                opt(r.ratio_best_other(c.alloc, Cell::rss), 4),
                csv_field(&note)
            ));
        }
    }
    for (s, rs) in sections(rows) {
        for a in allocs_of(&rs) {
            out.push_str(&format!(
                "{},geomean,,{a},ok,,,,,,{},{},,{},{},geometric mean of the ratios over the workloads where both ran\n",
                s.key(),
                opt(geo_ratio(&rs, a, Cell::time), 4),
                opt(geo_best_other(&rs, a, Cell::time), 4),
                opt(geo_ratio(&rs, a, Cell::rss), 4),
                opt(geo_best_other(&rs, a, Cell::rss), 4),
            ));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cell(alloc: &'static str, times: &[f64], rss: &[u64], sum: u64) -> Cell {
        let mut c = Cell::new(alloc, None);
        for (t, r) in times.iter().zip(rss) {
            c.add(Measure {
                secs: *t,
                rss_kib: *r,
                checksum: sum,
            });
        }
        c.outcome = Outcome::Ok;
        c
    }

    /// Workload "a" (glibc, mimalloc at half its time) and "b" (glibc, and umem whose
    /// content check failed): the rows the CSV, table and SVG tests share.
    pub(crate) fn two_rows_one_failed() -> Vec<Row> {
        let mut failed = cell("umem", &[], &[], 0);
        failed.outcome = Outcome::Failed("content check failed, at 0x1".into());
        vec![
            row(
                "a",
                vec![
                    cell("glibc", &[1.0], &[10], 1),
                    cell("mimalloc", &[0.5], &[20], 1),
                ],
            ),
            row("b", vec![cell("glibc", &[2.0], &[10], 1), failed]),
        ]
    }

    pub(crate) fn row(name: &str, cells: Vec<Cell>) -> Row {
        Row {
            section: Section::C,
            name: name.into(),
            threads: 2,
            about: String::new(),
            cells,
        }
    }

    #[test]
    fn medians_and_geomean() {
        assert_eq!(median_f(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_f(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median_f(&[]).is_nan());
        let g = geomean(&[2.0, 8.0]).unwrap();
        assert!((g - 4.0).abs() < 1e-12);
        assert_eq!(geomean(&[]), None);
    }

    #[test]
    fn ratios_to_glibc_and_best_peer() {
        let r = row(
            "w",
            vec![
                cell("glibc", &[2.0, 2.0, 9.0], &[100, 100, 100], 7),
                cell("umem", &[1.0, 3.0, 3.0], &[200, 200, 200], 7),
                cell("mimalloc", &[1.5], &[50], 7),
            ],
        );
        assert_eq!(r.ratio_glibc("umem", Cell::time), Some(1.5));
        // The best other allocator of umem is mimalloc (1.5 s); of mimalloc, umem (3 s):
        // glibc (2 s) is the baseline with its own column, never "the best other".
        assert_eq!(r.best_other("umem", Cell::time), Some((1.5, "mimalloc")));
        assert_eq!(r.ratio_best_other("umem", Cell::time), Some(2.0));
        assert_eq!(r.best_other("mimalloc", Cell::time), Some((3.0, "umem")));
        assert_eq!(r.ratio_best_other("mimalloc", Cell::time), Some(0.5));
        assert_eq!(r.ratio_glibc("umem", Cell::rss), Some(2.0));
        assert_eq!(r.cells[1].time_range(), Some((1.0, 3.0)));
        assert_eq!(r.cells[0].rss_range(), Some((100.0, 100.0)));
    }

    #[test]
    fn glibc_is_never_the_best_other_allocator() {
        // glibc is fastest, but umem's best other allocator is jemalloc; with no other
        // allocator there is none (and the table says "-", not "glibc").
        let r = row(
            "w",
            vec![
                cell("glibc", &[1.0], &[10], 7),
                cell("umem", &[2.0], &[10], 7),
                cell("jemalloc", &[4.0], &[10], 7),
            ],
        );
        assert_eq!(r.best_other("umem", Cell::time), Some((4.0, "jemalloc")));
        assert_eq!(r.ratio_best_other("umem", Cell::time), Some(0.5));
        let alone = row(
            "w",
            vec![
                cell("glibc", &[1.0], &[10], 7),
                cell("umem", &[2.0], &[10], 7),
            ],
        );
        assert_eq!(alone.best_other("umem", Cell::time), None);
        let t = text_tables(&[alone]);
        assert!(t.contains("umem/best other"), "{t}");
        let umem_row = t.lines().find(|l| l.starts_with("| w ")).unwrap();
        assert!(!umem_row.contains("x glibc"), "{umem_row}");
    }

    #[test]
    fn a_different_checksum_is_a_failure() {
        let mut cells = vec![
            cell("glibc", &[1.0], &[1], 7),
            cell("umem", &[0.1], &[1], 8),
            cell("jemalloc", &[1.0], &[1], 7),
        ];
        cross_check(&mut cells);
        assert!(cells[0].ok() && cells[2].ok());
        assert!(matches!(cells[1].outcome, Outcome::Failed(_)));
        assert_eq!(cells[1].time(), None, "a failed cell has no time");
        // Runs of one allocator that disagree are a failure too.
        let mut c = Cell::new("umem", None);
        c.add(Measure {
            secs: 1.0,
            rss_kib: 1,
            checksum: 1,
        });
        c.add(Measure {
            secs: 1.0,
            rss_kib: 1,
            checksum: 2,
        });
        assert!(matches!(c.outcome, Outcome::Failed(_)));
    }

    #[test]
    fn csv_has_one_line_per_cell_plus_geomeans() {
        let rows = two_rows_one_failed();
        let csv = csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 1 + 4 + 3, "{csv}");
        assert!(lines[1].starts_with("c,a,2,glibc,ok,1,1.000000,"));
        assert!(lines.iter().any(|l| l.starts_with("c,b,2,umem,failed,0,")
            && l.ends_with("\"content check failed, at 0x1\"")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("c,geomean,,mimalloc,ok,,,,,,0.5000,")));
        let table = text_tables(&rows);
        assert!(table.contains("| a ") && table.contains("FAIL"));
    }
}
