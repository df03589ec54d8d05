//! What the examples share: `--quick`, an output folder, a progress bar and line plots.
#![allow(dead_code)]

pub mod grammar;
pub mod steps;

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use std::path::PathBuf;

/// True when the program was started with `--quick` (CI runs every example that way).
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// `target/nabla-examples/<name>/`, created.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/nabla-examples").join(name);
    std::fs::create_dir_all(&dir).expect("create the output folder");
    dir
}

/// A progress bar over `len` steps (hidden when output is not a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}").expect("template").progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

/// One named series of (x, y) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws the series as lines on one chart and writes it as SVG.
pub fn line_plot(path: &std::path::Path, title: &str, x_label: &str, y_label: &str, series: Vec<Series>, log_y: bool) {
    panels(path, &[Panel { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), series, log_y }]);
}

/// One chart of a multi-chart figure.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_y: bool,
}

/// Charts side by side in one SVG.
pub fn panels(path: &std::path::Path, charts: &[Panel]) {
    let root = SVGBackend::new(path, (560 * charts.len() as u32, 460)).into_drawing_area();
    root.fill(&WHITE).expect("draw");
    for (area, panel) in root.split_evenly((1, charts.len())).iter().zip(charts) {
        draw_lines(area, panel);
    }
    root.present().expect("write the plot");
}

fn draw_lines<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, panel: &Panel) {
    let transform = |y: f64| if panel.log_y { y.max(1e-12).log10() } else { y };
    let points = panel.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(transform(y));
        y1 = y1.max(transform(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let y_desc = if panel.log_y { format!("log10 {}", panel.y_label) } else { panel.y_label.clone() };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .expect("chart");
    chart.configure_mesh().x_desc(&panel.x_label).y_desc(y_desc).draw().expect("mesh");
    for (k, s) in panel.series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.iter().map(|&(x, y)| (x, transform(y))), color.stroke_width(2)))
            .expect("series")
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().expect("legend");
}

/// Scatter plots of labelled 2-D points, one chart per stage, in a grid.
pub fn scatter_grid(path: &std::path::Path, columns: usize, stages: &[(String, Vec<(f64, f64)>)], labels: &[usize]) {
    let rows = stages.len().div_ceil(columns);
    let root = SVGBackend::new(path, (300 * columns as u32, 300 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).expect("draw");
    for (area, (title, points)) in root.split_evenly((rows, columns)).iter().zip(stages) {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        let pad = |a: f64, b: f64| if b > a { (b - a) * 0.05 } else { 1.0 };
        let (px, py) = (pad(x0, x1), pad(y0, y1));
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(20)
            .y_label_area_size(30)
            .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
            .expect("chart");
        chart.configure_mesh().x_labels(4).y_labels(4).draw().expect("mesh");
        chart
            .draw_series(points.iter().zip(labels).map(|(&(x, y), &c)| Circle::new((x, y), 2, Palette99::pick(c).filled())))
            .expect("points");
    }
    root.present().expect("write the plot");
}

/// Small matrices drawn as grey-scale cell grids (white = largest), one per panel, in a
/// grid of `columns`; `annotate` writes each cell's value in it.
pub fn heatmaps(path: &std::path::Path, columns: usize, cell: u32, maps: &[(String, Vec<Vec<f64>>)], annotate: bool) {
    let rows = maps.len().div_ceil(columns);
    let (mh, mw) = (maps[0].1.len() as u32, maps[0].1[0].len() as u32);
    let (pw, ph) = (mw * cell + 20, mh * cell + 30);
    let root = SVGBackend::new(path, (pw * columns as u32, ph * rows as u32)).into_drawing_area();
    root.fill(&WHITE).expect("draw");
    for (k, (title, m)) in maps.iter().enumerate() {
        let (ox, oy) = ((k % columns) as i32 * pw as i32 + 10, (k / columns) as i32 * ph as i32 + 22);
        let (lo, hi) = m.iter().flatten().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        root.draw(&Text::new(title.clone(), (ox, oy - 16), ("sans-serif", 12))).expect("title");
        for (i, row) in m.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let grey = (255.0 * t) as u8;
                let (x0, y0) = (ox + j as i32 * cell as i32, oy + i as i32 * cell as i32);
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell as i32, y0 + cell as i32)], RGBColor(grey, grey, grey).filled()))
                    .expect("cell");
                if annotate {
                    let color = if t > 0.5 { BLACK } else { WHITE };
                    root.draw(&Text::new(format!("{v}"), (x0 + 3, y0 + cell as i32 / 3), ("sans-serif", 11).into_font().color(&color)))
                        .expect("label");
                }
            }
        }
    }
    root.present().expect("write the picture");
}

/// The index of the largest value in each row of a `(rows, classes)` tensor.
pub fn argmax_rows(t: &nabla::Tensor) -> Vec<usize> {
    t.value()
        .rows()
        .into_iter()
        .map(|row| row.iter().enumerate().fold((0, f32::MIN), |best, (k, &v)| if v > best.1 { (k, v) } else { best }).0)
        .collect()
}

/// Prints `what` against its target and, in full mode, exits with status 1 when it is missed.
pub fn report_target(what: &str, value: f64, target: f64, higher_is_better: bool) {
    let met = if higher_is_better { value >= target } else { value <= target };
    let relation = if higher_is_better { ">=" } else { "<=" };
    let note = if quick() { " (--quick: a shortened run, the target applies to the full run)" } else { "" };
    if target.abs() < 0.01 {
        println!("{what}: {value:.2e} (target {relation} {target:e}){note}");
    } else {
        println!("{what}: {value:.2} (target {relation} {target}){note}");
    }
    if !quick() && !met {
        eprintln!("{what} missed its target");
        std::process::exit(1);
    }
}

/// Means of `y` over consecutive windows of `k` points, each placed at its window's last `x`
/// (a readable curve from noisy per-step values).
pub fn window_means(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    points.chunks(k.max(1)).map(|c| (c[c.len() - 1].0, c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64)).collect()
}
