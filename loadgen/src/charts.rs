//! SVG charts of a run and of a sweep, drawn with plotters.
//!
//! Only plotters' SVG backend is used: it writes `<text>` elements and leaves fonts to the
//! viewer, so no font files or system font libraries are needed (plotters' `ttf` and `ab_glyph`
//! features stay off; label sizes are estimated).

use std::error::Error;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use plotters::backend::SVGBackend;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::op::Outcome;
use crate::record::{Recorder, SeriesRow};

/// Chart size in pixels.
const SIZE: (u32, u32) = (1000, 560);
/// Caption font size.
const CAPTION_PX: u32 = 22;
/// Percentile ticks per half distance for the latency curves (finer than `.hgrm`'s 5, for a
/// smooth line).
const CURVE_TICKS: u32 = 20;

/// One step of a rate sweep.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// Operations per second asked for.
    pub target_rate: f64,
    /// Successful operations per second achieved.
    pub achieved_rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency, ms.
    pub p999_ms: f64,
    /// Failed operations.
    pub errors: u64,
    /// Whether the step met the SLO (and its target rate).
    pub met_slo: bool,
}

type DrawResult = Result<(), Box<dyn Error>>;

/// Writes `<dir>/latency.svg` — latency (ms) by percentile, one line per op kind (and its
/// uncorrected latency in open loop), x on the usual `1/(1-p)` log scale labelled 50%, 90%, 99%,
/// 99.9%, ... — and `<dir>/throughput.svg` — successful ops/s and errors/s over time, from
/// `series`. Returns the paths written.
///
/// # Errors
///
/// A message naming the file that could not be written.
pub fn write_run_charts(dir: &Path, rec: &Recorder, series: &[SeriesRow], title: &str) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let latency = dir.join("latency.svg");
    draw_latency(&latency, rec, title).map_err(|e| format!("cannot draw {}: {e}", latency.display()))?;
    let throughput = dir.join("throughput.svg");
    draw_throughput(&throughput, series, title).map_err(|e| format!("cannot draw {}: {e}", throughput.display()))?;
    Ok(vec![latency, throughput])
}

/// Writes the sweep's latency-vs-throughput curve to `path`: x achieved ops/s, y p50 and p99 ms,
/// and a horizontal line at `slo_ms` if given.
///
/// # Errors
///
/// A message naming the file that could not be written.
pub fn write_sweep_chart(path: &Path, points: &[SweepPoint], slo_ms: Option<f64>, title: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    draw_sweep(path, points, slo_ms, title).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

/// `log10(1/(1-q))`: the x position of quantile `q` (0 at 0%, 1 at 90%, 2 at 99%, ...).
fn percentile_x(q: f64) -> f64 {
    (1.0 / (1.0 - q)).log10()
}

/// The percentile label at x position `x` (see [`percentile_x`]): `50%`, `90%`, `99.9%`.
fn percentile_label(x: f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = usize::try_from((x.round() as i64 - 2).max(0)).unwrap_or(0);
    format!("{pct:.decimals$}%")
}

/// The percentile axis: linear in [`percentile_x`], with ticks and labels at 50%, 90%, 99%, ...
struct PercentileAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl PercentileAxis {
    /// From 0% to `x_top` (in [`percentile_x`] units, a whole number).
    fn new(x_top: f64) -> PercentileAxis {
        let mut ticks = vec![2f64.log10()];
        ticks.extend((1..=x_top as u32).map(f64::from));
        PercentileAxis { inner: (0.0..x_top).into(), ticks }
    }
}

impl Ranged for PercentileAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Grid lines and labels at the named percentiles only.
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for PercentileAxis {
    fn format(value: &f64) -> String {
        percentile_label(*value)
    }
}

/// Points (x, ms) of `h`'s percentile curve, without the final 100% (infinitely far right).
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    h.iter_quantiles(CURVE_TICKS)
        .filter(|v| v.quantile_iterated_to() < 1.0)
        .map(|v| (percentile_x(v.quantile_iterated_to()), v.value_iterated_to() as f64 / 1000.0))
        .collect()
}

/// Upper end of an axis holding `max`, with some headroom; 1 when there is nothing.
fn axis_top(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 { max * 1.1 } else { 1.0 }
}

/// One line of a chart: its legend name, (x, y) points and style.
type Curve = (String, Vec<(f64, f64)>, ShapeStyle);

fn draw_latency(path: &Path, rec: &Recorder, title: &str) -> DrawResult {
    // A kind's uncorrected curve shares its colour, fainter and thinner.
    let mut curves: Vec<Curve> = Vec::new();
    for (i, kind) in rec.kinds().into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if let Some(h) = rec.histogram(kind, &Outcome::Ok) {
            curves.push((kind.to_string(), percentile_curve(h), color.stroke_width(2)));
        }
        if let Some(h) = rec.uncorrected(kind) {
            curves.push((format!("{kind} (uncorrected)"), percentile_curve(h), color.mix(0.45).stroke_width(1)));
        }
    }
    let points = || curves.iter().flat_map(|(_, pts, _)| pts.iter());
    // At least to 99.99%, further if the data reaches there.
    let x_top = points().map(|p| p.0).fold(4.0, f64::max).ceil();
    let y_top = axis_top(points().map(|p| p.1).fold(0.0, f64::max));

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} — latency by percentile"), ("sans-serif", CAPTION_PX))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(PercentileAxis::new(x_top), 0f64..y_top)?;
    chart.configure_mesh().x_desc("percentile").y_desc("latency (ms)").draw()?;
    for &(ref name, ref pts, style) in &curves {
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn draw_throughput(path: &Path, series: &[SeriesRow], title: &str) -> DrawResult {
    // Rows are about a second apart; divide by the real gap so a late tick does not look like a
    // spike.
    let mut ok = Vec::with_capacity(series.len());
    let mut err = Vec::with_capacity(series.len());
    let mut prev_t = 0.0;
    for r in series {
        let dt = r.t - prev_t;
        let dt = if dt > 0.0 { dt } else { 1.0 };
        ok.push((r.t, r.ops.saturating_sub(r.errors) as f64 / dt));
        err.push((r.t, r.errors as f64 / dt));
        prev_t = r.t;
    }
    let x_top = series.last().map_or(1.0, |r| r.t.max(1.0));
    // Extra headroom keeps the legend off the lines.
    let y_top = 1.2 * axis_top(ok.iter().chain(&err).map(|p| p.1).fold(0.0, f64::max));

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} — throughput"), ("sans-serif", CAPTION_PX))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_top, 0f64..y_top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since measurement start")
        .y_desc("per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let lines = [("successful ops/s", ok, BLUE.stroke_width(2)), ("errors/s", err, RED.stroke_width(2))];
    for (name, pts, style) in lines {
        chart
            .draw_series(LineSeries::new(pts, style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn draw_sweep(path: &Path, points: &[SweepPoint], slo_ms: Option<f64>, title: &str) -> DrawResult {
    let x_top = axis_top(points.iter().map(|p| p.achieved_rate).fold(0.0, f64::max));
    let y_max = points.iter().map(|p| p.p99_ms.max(p.p50_ms)).fold(slo_ms.unwrap_or(0.0), f64::max);
    let y_top = axis_top(y_max);

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} — latency vs throughput"), ("sans-serif", CAPTION_PX))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_top, 0f64..y_top)?;
    chart
        .configure_mesh()
        .x_desc("achieved ops/s")
        .y_desc("latency (ms)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let curves = [
        ("p50", BLUE.to_rgba(), points.iter().map(|p| (p.achieved_rate, p.p50_ms)).collect::<Vec<_>>()),
        ("p99", RED.to_rgba(), points.iter().map(|p| (p.achieved_rate, p.p99_ms)).collect()),
    ];
    for (name, color, pts) in curves {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        // Filled dots where the step met the SLO, hollow where it did not.
        chart.draw_series(
            points
                .iter()
                .zip(&pts)
                .map(|(p, &xy)| Circle::new(xy, 4, if p.met_slo { color.filled() } else { color.stroke_width(2) })),
        )?;
    }
    if let Some(slo) = slo_ms {
        let style = BLACK.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(0.0, slo), (x_top, slo)], 10, 6, style))?
            .label(format!("SLO {slo} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_recorder;

    fn assert_svg(path: &Path, needles: &[&str]) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.is_empty());
        assert!(text.starts_with("<svg") || text.starts_with("<?xml"), "{}", &text[..text.len().min(200)]);
        assert!(text.trim_end().ends_with("</svg>"));
        for n in needles {
            assert!(text.contains(n), "no {n:?} in {}", path.display());
        }
    }

    #[test]
    fn run_charts_are_svg_with_titles() {
        let dir = tempfile::tempdir().unwrap();
        let rec = sample_recorder(true);
        let series: Vec<SeriesRow> = (1..=30)
            .map(|i: u32| SeriesRow {
                t: f64::from(i),
                ops: 1000 + u64::from(i),
                errors: u64::from(i % 3),
                p50_ms: 1.0,
                p99_ms: 5.0,
                max_ms: 9.0,
            })
            .collect();
        let out = dir.path().join("charts");
        let paths = write_run_charts(&out, &rec, &series, "ycsb-a on conflux").unwrap();
        assert_eq!(paths, vec![out.join("latency.svg"), out.join("throughput.svg")]);
        assert_svg(
            &paths[0],
            &["ycsb-a on conflux", "latency by percentile", "get", "get (uncorrected)", "99.9%", "50%"],
        );
        assert_svg(&paths[1], &["ycsb-a on conflux", "throughput", "successful ops/s", "errors/s"]);
    }

    #[test]
    fn empty_run_still_charts() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_run_charts(dir.path(), &Recorder::new(), &[], "empty run").unwrap();
        assert_svg(&paths[0], &["empty run"]);
        assert_svg(&paths[1], &["empty run"]);
    }

    #[test]
    fn sweep_chart_is_svg_with_title() {
        let dir = tempfile::tempdir().unwrap();
        let points: Vec<SweepPoint> = [1000.0, 2000.0, 4000.0, 8000.0]
            .into_iter()
            .map(|r: f64| SweepPoint {
                target_rate: r,
                achieved_rate: r.min(6000.0),
                p50_ms: r / 4000.0,
                p99_ms: r / 500.0,
                p999_ms: r / 200.0,
                errors: 0,
                met_slo: r < 5000.0,
            })
            .collect();
        let path = dir.path().join("sweep.svg");
        write_sweep_chart(&path, &points, Some(10.0), "sweep of ycsb-a").unwrap();
        assert_svg(&path, &["sweep of ycsb-a", "latency vs throughput", "p50", "p99", "SLO 10 ms"]);
        let bare = dir.path().join("nested/empty.svg");
        write_sweep_chart(&bare, &[], None, "no points").unwrap();
        assert_svg(&bare, &["no points"]);
    }

    #[test]
    fn percentile_axis_labels() {
        let labels: Vec<String> =
            [0.5, 0.9, 0.99, 0.999, 0.9999].into_iter().map(|q| percentile_label(percentile_x(q))).collect();
        assert_eq!(labels, ["50%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(percentile_label(2f64.log10()), "50%");
    }
}
