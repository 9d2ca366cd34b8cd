//! The growth chart: two panels side by side, drawn with plotters' SVG backend.
//!
//! Left: bone age (y) against chronological age (x), in years, with the identity line,
//! the Greulich–Pyle (Brush) mean ±2 SD band at the table's rows, and the patient's
//! exams in time order, each with its 90% interval (bone age ± 1.645 SD, lower end
//! not below 0) as a vertical bar. Right: height against age with the reference
//! percentile lines, each labelled at its right end, the patient's heights, and the
//! predicted adult heights as diamonds at 18 years with value and method.
//!
//! For print: black and greys on white; every line is told apart by its style and a
//! label, never by colour alone; text is at least 11 px (plotters writes `font-size`
//! as its size / 1.24). Non-finite values are left out; an empty series still gets
//! both panels with their axes and a "no data" note.

use std::error::Error;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::text::{method_names, sex_group, text, titled, Words};
use super::Lang;
use crate::growth::height::HeightReference;
use crate::growth::series::GrowthSeries;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 460;
/// The height of the chart inside the report: a little flatter, so that the page
/// stays one A4 sheet with the chart's text at print size.
pub(super) const REPORT_HEIGHT: u32 = 390;
const FONT: &str = "sans-serif";
/// Tick labels, legend and notes: 14 / 1.24 = 11.3 px in the SVG.
const SMALL: f64 = 14.0;
/// Axis titles: 12.1 px.
const MEDIUM: f64 = 15.0;
/// Panel titles: 14.5 px, bold.
const LARGE: f64 = 18.0;
/// Radius of a patient marker (px). Legend markers are smaller, so the markers of
/// the data can be told apart from the legend's.
pub(super) const MARKER_R: i32 = 5;
const LEGEND_R: i32 = 4;
/// Where predicted adult heights are plotted (years).
const ADULT_AGE_YEARS: f64 = 18.0;
/// z of the one-sided 95% point: bone age ± 1.645 SD is the 90% interval.
const Z90: f64 = 1.645;

const INK: RGBColor = RGBColor(0, 0, 0);
const DARK: RGBColor = RGBColor(64, 64, 64);
const MID: RGBColor = RGBColor(120, 120, 120);
const BAND: RGBColor = RGBColor(220, 220, 220);
const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
const GRID_LIGHT: RGBColor = RGBColor(236, 236, 236);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult<T> = Result<T, Box<dyn Error>>;

/// The growth chart of one patient as a standalone SVG document (1000 × 460, with a
/// `viewBox`, so it scales when embedded).
///
/// Never panics: an empty series gives both panels with axes and a "no data" note;
/// non-finite values are skipped. The output is well-formed XML.
pub fn growth_svg(series: &GrowthSeries, lang: Lang) -> String {
    growth_svg_sized(series, lang, (WIDTH, HEIGHT))
}

/// [`growth_svg`] at another size (px; each panel gets half the width).
pub(super) fn growth_svg_sized(series: &GrowthSeries, lang: Lang, size: (u32, u32)) -> String {
    let t = text(lang);
    let mut buf = String::new();
    match draw(&mut buf, series, lang, size) {
        Ok(()) => with_title(buf, &format!("{} · {}", t.ba_title, t.height_title)),
        Err(e) => fallback_svg(t, &e.to_string(), size),
    }
}

fn draw(buf: &mut String, series: &GrowthSeries, lang: Lang, size: (u32, u32)) -> DrawResult<()> {
    let root = SVGBackend::with_string(buf, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(size.0 / 2);
    bone_age_panel(&left, series, lang)?;
    height_panel(&right, series, lang)?;
    root.present()?;
    Ok(())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn small() -> TextStyle<'static> {
    TextStyle::from((FONT, SMALL).into_font()).color(&DARK)
}

/// Text anchored at its right end, vertically centred.
fn small_right() -> TextStyle<'static> {
    small().pos(Pos::new(HPos::Right, VPos::Center))
}

fn small_left() -> TextStyle<'static> {
    small().pos(Pos::new(HPos::Left, VPos::Center))
}

/// Width of `s` in px at [`SMALL`], estimated (no font library): CJK characters
/// are about one em, Latin about 0.55 em.
fn text_width(s: &str) -> i32 {
    let em = SMALL / 1.24;
    let w: f64 = s
        .chars()
        .map(|c| if c.is_ascii() { 0.55 * em } else { 1.0 * em })
        .sum();
    w.ceil() as i32
}

/// Pushes label positions (pixel y, ascending) apart so that neighbours are at
/// least `gap` px apart, keeping their order.
fn spread(ys: &mut [f64], gap: f64) {
    for i in 1..ys.len() {
        if ys[i] < ys[i - 1] + gap {
            ys[i] = ys[i - 1] + gap;
        }
    }
}

/// Upper bound of an axis: `at_least`, or the data's maximum rounded up to an even
/// number.
fn upper(values: impl Iterator<Item = f64>, at_least: f64) -> f64 {
    let max = values.fold(at_least, f64::max);
    (max / 2.0).ceil() * 2.0
}

fn configure_mesh(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x_desc: &str,
    y_desc: &str,
    x_labels: usize,
    y_labels: usize,
) -> DrawResult<()> {
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, MEDIUM).into_font().color(&INK))
        .label_style((FONT, SMALL).into_font().color(&DARK))
        .x_labels(x_labels)
        .y_labels(y_labels)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .max_light_lines(1)
        .axis_style(INK)
        .draw()?;
    Ok(())
}

/// A note in the plotting area, right-aligned at `(x, y)` (px inside the area), one
/// line under the other. Placed where the data leave room (bottom right); drawn
/// without a background so the grid is not cut.
fn note(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    lines: &[&str],
    x: i32,
    y: i32,
) -> DrawResult<()> {
    for (i, line) in lines.iter().enumerate() {
        let yy = y + i as i32 * 15;
        area.draw(&Text::new(line.to_string(), (x, yy), small_right()))?;
    }
    Ok(())
}

/// The legend in the upper-left corner of the plot.
fn legend<'a, 'b: 'a>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> DrawResult<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .margin(6)
        .label_font((FONT, SMALL).into_font().color(&INK))
        .background_style(WHITE.mix(0.92))
        .border_style(MID)
        .draw()?;
    Ok(())
}

fn bone_age_panel(area: &Area<'_>, series: &GrowthSeries, lang: Lang) -> DrawResult<()> {
    let t: &Words = text(lang);
    // (chronological age, bone age, half-width of the 90% interval), years
    let points: Vec<(f64, f64, f64)> = series
        .points
        .iter()
        .filter_map(|p| {
            let ca = finite(p.chronological_age_months?)?;
            let ba = finite(p.bone_age_months)?;
            let half = finite(p.bone_age_sd_months)
                .filter(|sd| *sd > 0.0)
                .map_or(0.0, |sd| Z90 * sd);
            Some((ca / 12.0, ba / 12.0, half / 12.0))
        })
        .collect();
    let band: Vec<(f64, f64, f64)> = series
        .bone_age_band
        .iter()
        .filter_map(|b| {
            Some((
                finite(b.age_months)? / 12.0,
                finite(b.lower_months)? / 12.0,
                finite(b.upper_months)? / 12.0,
            ))
        })
        .collect();
    let hi = upper(
        points
            .iter()
            .flat_map(|&(ca, ba, half)| [ca, ba + half])
            .chain(band.iter().flat_map(|&(a, _, u)| [a, u])),
        18.0,
    );

    let title = titled(t.ba_title, &[sex_group(series.sex, lang)], lang);
    let mut chart = ChartBuilder::on(area)
        .caption(
            title,
            (FONT, LARGE, FontStyle::Bold).into_font().color(&INK),
        )
        .margin(10)
        .margin_right(22)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..hi, 0f64..hi)?;
    let n_labels = (hi / 2.0) as usize + 1;
    configure_mesh(&mut chart, t.ca_axis, t.ba_axis, n_labels, n_labels)?;

    if band.len() >= 2 {
        let polygon: Vec<(f64, f64)> = band
            .iter()
            .map(|&(a, _, u)| (a, u))
            .chain(band.iter().rev().map(|&(a, l, _)| (a, l)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(polygon, BAND.filled())))?
            .label(t.band)
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], BAND.filled()));
        for edge in [
            band.iter().map(|&(a, _, u)| (a, u)).collect::<Vec<_>>(),
            band.iter().map(|&(a, l, _)| (a, l)).collect(),
        ] {
            chart.draw_series(LineSeries::new(edge, MID.stroke_width(1)))?;
        }
    }

    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (hi, hi)],
            DARK.stroke_width(1),
        ))?
        .label(t.identity)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], DARK.stroke_width(1)));

    if !points.is_empty() {
        // 90% intervals, then the path in time order, then the markers on top.
        for &(ca, ba, half) in points.iter().filter(|p| p.2 > 0.0) {
            let (lo, up) = ((ba - half).max(0.0), ba + half);
            chart.draw_series(std::iter::once(PathElement::new(
                [(ca, lo), (ca, up)],
                INK.stroke_width(1),
            )))?;
            for end in [lo, up] {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((ca, end))
                        + PathElement::new([(-4, 0), (4, 0)], INK.stroke_width(1)),
                ))?;
            }
        }
        chart.draw_series(LineSeries::new(
            points.iter().map(|&(ca, ba, _)| (ca, ba)),
            INK.stroke_width(2),
        ))?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(ca, ba, _)| Circle::new((ca, ba), MARKER_R, INK.filled())),
            )?
            .label(t.patient_ba)
            .legend(|(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(9, -6), (9, 6)], INK.stroke_width(1))
                    + Circle::new((9, 0), LEGEND_R, INK.filled())
            });
    }

    legend(&mut chart)?;

    if points.is_empty() {
        let plot = chart.plotting_area();
        let (w, h) = plot.dim_in_pixel();
        note(
            &plot.strip_coord_spec(),
            &[t.no_ba_data],
            w as i32 - 8,
            h as i32 - 20,
        )?;
    }
    Ok(())
}

/// Line style of a percentile curve: P50 bold, P3/P97 solid, P10/P90 dashed,
/// P25/P75 dotted; anything else thin and grey.
enum Dash {
    Solid(u32),
    Dashed,
    Dotted,
}

fn percentile_style(p: f64) -> (RGBColor, Dash) {
    let p = p.round() as i64;
    match p {
        50 => (INK, Dash::Solid(2)),
        3 | 97 => (DARK, Dash::Solid(1)),
        10 | 90 => (DARK, Dash::Dashed),
        25 | 75 => (DARK, Dash::Dotted),
        _ => (MID, Dash::Solid(1)),
    }
}

fn reference_name(r: HeightReference) -> &'static str {
    match r {
        HeightReference::Who => "WHO 2006/2007",
        HeightReference::Cdc => "CDC 2000",
    }
}

fn percentile_label(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 {
        format!("P{p:.0}")
    } else {
        format!("P{p}")
    }
}

fn height_panel(area: &Area<'_>, series: &GrowthSeries, lang: Lang) -> DrawResult<()> {
    let t: &Words = text(lang);
    let curves: Vec<(f64, Vec<(f64, f64)>)> = series
        .height_percentiles
        .iter()
        .filter(|c| c.percentile.is_finite())
        .map(|c| {
            let pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter_map(|p| Some((finite(p.age_months)? / 12.0, finite(p.height_cm)?)))
                .collect();
            (c.percentile, pts)
        })
        .filter(|(_, pts)| pts.len() >= 2)
        .collect();
    let heights: Vec<(f64, f64)> = series
        .points
        .iter()
        .filter_map(|p| {
            let age = finite(p.chronological_age_months?)?;
            Some((age / 12.0, finite(p.height_cm?)?))
        })
        .collect();
    // (method, predicted cm)
    let predictions: Vec<(&str, f64)> = series
        .adult_height
        .iter()
        .flat_map(|a| a.predictions.iter())
        .filter_map(|p| Some((p.method, finite(p.predicted_cm)?)))
        .collect();

    let ages = || {
        curves
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
            .chain(heights.iter().map(|p| p.0))
    };
    let cms = || {
        curves
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
            .chain(heights.iter().map(|p| p.1))
            .chain(predictions.iter().map(|p| p.1))
    };
    let (x_lo, x_hi) = match ages().reduce(f64::min) {
        None => (0.0, 20.0),
        Some(min) => {
            let lo = min.floor().max(0.0);
            let max = ages().fold(lo + 2.0, f64::max);
            let max = if predictions.is_empty() {
                max
            } else {
                max.max(ADULT_AGE_YEARS + 0.5)
            };
            (lo, max.ceil())
        }
    };
    let (y_lo, y_hi) = match (cms().reduce(f64::min), cms().reduce(f64::max)) {
        (Some(min), Some(max)) => {
            let lo = ((min - 5.0) / 10.0).floor() * 10.0;
            let hi = ((max + 5.0) / 10.0).ceil() * 10.0;
            (lo.max(0.0), hi.max(lo + 20.0))
        }
        _ => (40.0, 200.0),
    };

    let title = titled(
        t.height_title,
        &[
            sex_group(series.sex, lang),
            reference_name(series.height_reference),
        ],
        lang,
    );
    let mut chart = ChartBuilder::on(area)
        .caption(
            title,
            (FONT, LARGE, FontStyle::Bold).into_font().color(&INK),
        )
        .margin(10)
        .margin_right(40)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    let x_labels = ((x_hi - x_lo) / 2.0) as usize + 1;
    let y_labels = (((y_hi - y_lo) / 10.0) as usize + 1).min(12);
    configure_mesh(&mut chart, t.age_axis, t.height_axis, x_labels, y_labels)?;

    // Percentile curves; their labels at the right end, pushed apart where crowded.
    let mut labels: Vec<(f64, String, f64, f64)> = Vec::new(); // (pixel y, label, x, y)
    let mut legend_done = false;
    for (p, pts) in &curves {
        let (colour, dash) = percentile_style(*p);
        let drawn = match dash {
            Dash::Solid(w) => {
                chart.draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(w)))?
            }
            Dash::Dashed => chart.draw_series(DashedLineSeries::new(
                pts.iter().copied(),
                7,
                4,
                colour.stroke_width(1),
            ))?,
            Dash::Dotted => chart.draw_series(DashedLineSeries::new(
                pts.iter().copied(),
                2,
                3,
                colour.stroke_width(1),
            ))?,
        };
        if (*p - 50.0).abs() < 1e-9 && !legend_done {
            legend_done = true;
            drawn
                .label(t.percentiles)
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], INK.stroke_width(2)));
        }
        if let Some(&(x, y)) = pts.last() {
            labels.push((
                chart.backend_coord(&(x, y)).1 as f64,
                percentile_label(*p),
                x,
                y,
            ));
        }
    }
    labels.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut ys: Vec<f64> = labels.iter().map(|l| l.0).collect();
    spread(&mut ys, 12.0);
    for ((py, label, x, y), new_y) in labels.into_iter().zip(ys) {
        let dy = (new_y - py).round() as i32;
        chart.draw_series(std::iter::once(
            EmptyElement::at((x, y)) + Text::new(label, (5, dy), small_left()),
        ))?;
    }

    if !heights.is_empty() {
        chart.draw_series(LineSeries::new(
            heights.iter().copied(),
            INK.stroke_width(2),
        ))?;
        chart
            .draw_series(
                heights
                    .iter()
                    .map(|&(a, h)| Circle::new((a, h), MARKER_R, INK.filled())),
            )?
            .label(t.patient_height)
            .legend(|(x, y)| {
                EmptyElement::at((x, y)) + Circle::new((9, 0), LEGEND_R, INK.filled())
            });
    }

    if !predictions.is_empty() {
        let mut marks: Vec<(f64, &str, f64)> = predictions
            .iter()
            .map(|&(m, cm)| (chart.backend_coord(&(ADULT_AGE_YEARS, cm)).1 as f64, m, cm))
            .collect();
        marks.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut ys: Vec<f64> = marks.iter().map(|m| m.0).collect();
        spread(&mut ys, 15.0);
        let mut first = true;
        for ((py, method, cm), new_y) in marks.into_iter().zip(ys) {
            let dy = (new_y - py).round() as i32;
            let label = format!("{} {cm:.1} cm", method_names(method, lang).0);
            let w = text_width(&label);
            let drawn = chart.draw_series(std::iter::once(
                EmptyElement::at((ADULT_AGE_YEARS, cm))
                    + PathElement::new([(-7, 0), (-13, dy)], INK.stroke_width(1))
                    + Rectangle::new([(-17 - w, dy - 8), (-13, dy + 8)], WHITE.mix(0.7).filled())
                    + Text::new(label, (-15, dy), small_right())
                    + diamond(6),
            ))?;
            if first {
                first = false;
                drawn
                    .label(t.adult_legend)
                    .legend(|(x, y)| EmptyElement::at((x + 9, y)) + diamond(5));
            }
        }
    }

    if !curves.is_empty() || !heights.is_empty() || !predictions.is_empty() {
        legend(&mut chart)?;
    }

    // Bottom right of the plot: the method key, and "no data" notes above it.
    let mut lines: Vec<String> = Vec::new();
    if curves.is_empty() {
        lines.push(t.no_curves.to_string());
    }
    if heights.is_empty() {
        lines.push(t.no_height_data.to_string());
    }
    let mut methods: Vec<&str> = predictions.iter().map(|p| p.0).collect();
    methods.sort_unstable();
    methods.dedup();
    if !methods.is_empty() {
        let key: Vec<String> = methods
            .iter()
            .map(|m| {
                let (short, long) = method_names(m, lang);
                format!("{short}: {long}")
            })
            .collect();
        lines.push(key.join(" · "));
    }
    if !lines.is_empty() {
        let plot = chart.plotting_area();
        let (w, h) = plot.dim_in_pixel();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let top = h as i32 - 14 - 15 * (refs.len() as i32 - 1);
        note(&plot.strip_coord_spec(), &refs, w as i32 - 8, top)?;
    }
    Ok(())
}

/// A filled diamond of half-diagonal `r` px around the anchor.
fn diamond(r: i32) -> Polygon<(i32, i32)> {
    Polygon::new(vec![(0, -r), (r, 0), (0, r), (-r, 0)], INK.filled())
}

/// Adds a `<title>` (the accessible name) as the first child of the `<svg>` element.
fn with_title(svg: String, title: &str) -> String {
    let Some(open) = svg.find("<svg") else {
        return svg;
    };
    let Some(end) = svg[open..].find('>').map(|i| open + i + 1) else {
        return svg;
    };
    format!(
        "{}\n<title>{}</title>{}",
        &svg[..end],
        xml_escape(title),
        &svg[end..]
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A valid SVG of the same size that says the chart could not be drawn (plotters
/// writing into a `String` is not expected to fail; this keeps the promise of
/// never panicking and always returning SVG).
fn fallback_svg(t: &Words, reason: &str, (w, h): (u32, u32)) -> String {
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n<title>{title}</title>\n\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#FFFFFF\"/>\n\
         <text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" font-family=\"sans-serif\" \
         font-size=\"14\" fill=\"#000000\">{title}: {reason}</text>\n</svg>\n",
        title = xml_escape(t.chart_failed),
        reason = xml_escape(reason),
        x = w / 2,
        y = h / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::growth::series::GrowthSeries;
    use crate::render::fixtures::{empty_series, two_exam_series};

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"))
    }

    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }

    fn circles_of_radius(doc: &roxmltree::Document<'_>, r: i32) -> usize {
        doc.descendants()
            .filter(|n| n.has_tag_name("circle") && n.attribute("r") == Some(&r.to_string()))
            .count()
    }

    /// Two-point polylines (x0, y0, x1, y1) in pixels drawn in `stroke`.
    fn segments(doc: &roxmltree::Document<'_>, stroke: &str) -> Vec<(f64, f64, f64, f64)> {
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(stroke))
            .filter_map(|n| {
                let v: Vec<f64> = n
                    .attribute("points")?
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().ok())
                    .collect::<Option<_>>()?;
                (v.len() == 4).then(|| (v[0], v[1], v[2], v[3]))
            })
            .collect()
    }

    #[test]
    fn two_panels_with_titles_labels_points_and_identity() {
        let svg = growth_svg(&two_exam_series(), Lang::En);
        let doc = parse(&svg);
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("viewBox"), Some("0 0 1000 460"));
        let texts = texts(&doc);
        let has = |s: &str| texts.iter().any(|t| t == s);
        assert!(has("Bone age vs chronological age (boys)"), "{texts:?}");
        assert!(has("Height-for-age (boys, WHO 2006/2007)"), "{texts:?}");
        assert!(has("Chronological age (years)") && has("Bone age (years)"));
        assert!(has("Age (years)") && has("Height (cm)"));
        for p in ["P3", "P10", "P25", "P50", "P75", "P90", "P97"] {
            assert_eq!(
                texts.iter().filter(|t| *t == p).count(),
                1,
                "{p}: {texts:?}"
            );
        }
        // 2 exams: 2 markers in the bone-age panel, 2 heights in the height panel
        assert_eq!(circles_of_radius(&doc, MARKER_R), 4);
        // legend markers are drawn smaller, one per panel
        assert_eq!(circles_of_radius(&doc, LEGEND_R), 2);
        // the identity line: one straight segment from the bottom-left to the
        // top-right of the left plot (the axes are equal, 0–18 y)
        let identity = segments(&doc, "#404040")
            .into_iter()
            .filter(|&(x0, y0, x1, y1)| x1 - x0 > 300.0 && y0 - y1 > 300.0 && x1 < 500.0)
            .count();
        assert_eq!(identity, 1);
        assert!(has("Bone age = chronological age"));
        // adult-height predictions with their values and methods
        assert!(has("BP 176.5 cm"), "{texts:?}");
        assert!(has("TW 175.9 cm"), "{texts:?}");
        assert!(texts
            .iter()
            .any(|t| t.contains("BP: Bayley–Pinneau (1952)")));
        // the 90% interval bars: 2 vertical segments at the markers' x
        let bars = segments(&doc, "#000000")
            .into_iter()
            .filter(|&(x0, y0, x1, y1)| {
                x0 == x1 && (20.0..150.0).contains(&(y0 - y1).abs()) && x0 < 500.0
            })
            .count();
        assert_eq!(bars, 2);
        // no "no data" note when there is data
        assert!(!texts.iter().any(|t| t.starts_with("No data")), "{texts:?}");
    }

    #[test]
    fn fonts_are_print_readable_and_ink_is_grey() {
        let svg = growth_svg(&two_exam_series(), Lang::En);
        let doc = parse(&svg);
        for n in doc.descendants().filter(|n| n.has_tag_name("text")) {
            let size: f64 = n.attribute("font-size").unwrap().parse().unwrap();
            assert!(size >= 11.0, "{size} px: {:?}", n.text());
        }
        // only greys: no colour carries meaning
        for n in doc.descendants() {
            for a in ["fill", "stroke"] {
                if let Some(c) = n.attribute(a).filter(|c| c.starts_with('#')) {
                    assert!(c[1..3] == c[3..5] && c[3..5] == c[5..7], "{a}={c}");
                }
            }
        }
    }

    #[test]
    fn empty_series_renders_axes_and_a_note() {
        for lang in [Lang::En, Lang::Zh] {
            let svg = growth_svg(&empty_series(), lang);
            let doc = parse(&svg);
            let texts = texts(&doc);
            let t = text(lang);
            assert!(texts.iter().any(|s| s == t.no_ba_data), "{texts:?}");
            assert!(texts.iter().any(|s| s == t.no_height_data), "{texts:?}");
            assert!(texts.iter().any(|s| s == t.no_curves), "{texts:?}");
            assert!(texts.iter().any(|s| s == t.ca_axis));
            assert!(texts.iter().any(|s| s == t.height_axis));
            // default axes: 0–18 y and 0–20 y with tick labels
            assert!(texts.iter().any(|s| s == "18"));
            assert!(texts.iter().any(|s| s == "20"));
            assert_eq!(circles_of_radius(&doc, MARKER_R), 0);
        }
    }

    #[test]
    fn non_finite_values_are_skipped_not_fatal() {
        let mut s: GrowthSeries = two_exam_series();
        s.points[0].bone_age_months = f64::NAN;
        s.points[1].height_cm = Some(f64::INFINITY);
        s.points[1].bone_age_sd_months = f64::NAN;
        s.height_percentiles[0].points[3].height_cm = f64::NAN;
        s.bone_age_band[2].upper_months = f64::INFINITY;
        let svg = growth_svg(&s, Lang::En);
        let doc = parse(&svg);
        assert_eq!(circles_of_radius(&doc, MARKER_R), 2);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn chinese_labels() {
        let svg = growth_svg(&two_exam_series(), Lang::Zh);
        let doc = parse(&svg);
        let texts = texts(&doc);
        for s in [
            "骨龄与生活年龄（男）",
            "年龄别身高（男，WHO 2006/2007）",
            "生活年龄（岁）",
            "骨龄（岁）",
            "身高（cm）",
            "预测成年身高（标于 18 岁）",
            "百分位线 P3–P97（P50 加粗）",
        ] {
            assert!(texts.iter().any(|t| t == s), "{s}: {texts:?}");
        }
    }

    #[test]
    fn title_and_fallback_are_well_formed() {
        let svg = with_title("<svg a=\"1\">\n</svg>\n".into(), "a < b & c");
        assert_eq!(
            svg,
            "<svg a=\"1\">\n<title>a &lt; b &amp; c</title>\n</svg>\n"
        );
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let fb = fallback_svg(text(Lang::En), "<broken> & \"odd\"", (WIDTH, HEIGHT));
        let doc = roxmltree::Document::parse(&fb).unwrap();
        assert!(doc
            .descendants()
            .any(|n| n.text().is_some_and(|t| t.contains("<broken> & \"odd\""))));
    }

    #[test]
    fn label_spreading() {
        let mut ys = vec![100.0, 104.0, 106.0, 200.0];
        spread(&mut ys, 12.0);
        assert_eq!(ys, vec![100.0, 112.0, 124.0, 200.0]);
        assert_eq!(upper([3.0, 18.2].into_iter(), 18.0), 20.0);
        assert_eq!(upper(std::iter::empty(), 18.0), 18.0);
        assert_eq!(percentile_label(3.0), "P3");
        assert_eq!(percentile_label(2.5), "P2.5");
    }
}
