//! A benchmark report as one self-contained HTML page: the plan and the summary as tables, and
//! three charts drawn as inline SVG by plotters (throughput over time, latency percentiles by
//! request kind, errors over time); no scripts, no outside resources. Text in the charts is laid
//! out with a system font (DejaVu Sans, or what fontconfig names for sans-serif); without one
//! the page says so and keeps its tables. Must not depend on anything but the report.

use super::report::Report;
use plotters::prelude::*;
use std::fmt::Write as _;

const MIB: f64 = 1024.0 * 1024.0;
const SIZE: (u32, u32) = (760, 320);
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Registers a system font for the charts' text, once; whether there is one.
fn font() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let fc = std::process::Command::new("fc-match")
            .args(["-f", "%{file}", "sans-serif"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let candidates = [
            Some("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".to_owned()),
            fc,
        ];
        candidates.into_iter().flatten().any(|path| {
            std::fs::read(&path).ok().is_some_and(|bytes| {
                // Registered once for the life of the process, as plotters requires.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

/// `s` safe in HTML text and attributes.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// A line chart of `series` (name, points) titled `title`.
fn lines(
    svg: &mut String,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    x_labels: Option<&[&str]>,
) -> Drawn {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc).y_desc(y_desc);
    let label = |x: &f64| {
        x_labels.map_or_else(
            || format!("{x:.0}"),
            |names| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).copied().unwrap_or("").to_owned()
                } else {
                    String::new()
                }
            },
        )
    };
    // Whole seconds (or one label per percentile), at most 12.
    mesh.x_labels(x_labels.map_or((x_max as usize + 1).min(12), <[&str]>::len));
    mesh.x_label_formatter(&label).draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    if series.len() > 1 || x_labels.is_some() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// The three charts, as SVG.
fn charts(report: &Report) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let t = |s: &super::report::Second| f64::from(s.t);
    let throughput = vec![(
        "MiB/s sent".to_owned(),
        report
            .timeline
            .iter()
            .map(|s| (t(s), s.bytes as f64 / MIB))
            .collect(),
    )];
    let names = ["p50", "p90", "p99", "p99.9", "max"];
    let latency: Vec<(String, Vec<(f64, f64)>)> = report
        .requests
        .iter()
        .map(|(kind, p)| {
            let values = [p.p50, p.p90, p.p99, p.p999, p.max];
            (
                kind.clone(),
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64, *v))
                    .collect(),
            )
        })
        .collect();
    let errors = vec![
        (
            "requests refused or unanswered".to_owned(),
            report
                .timeline
                .iter()
                .map(|s| (t(s), s.errors as f64))
                .collect(),
        ),
        (
            "uploads failed".to_owned(),
            report
                .timeline
                .iter()
                .map(|s| (t(s), s.failed as f64))
                .collect(),
        ),
    ];
    let mut out = vec![String::new(), String::new(), String::new()];
    lines(
        &mut out[0],
        "Throughput",
        "seconds",
        "MiB/s",
        &throughput,
        None,
    )?;
    lines(
        &mut out[1],
        "Request latency by kind",
        "percentile",
        "ms",
        &latency,
        Some(&names),
    )?;
    lines(
        &mut out[2],
        "Errors over time",
        "seconds",
        "per second",
        &errors,
        None,
    )?;
    Ok(out)
}

/// The plan, the summary, the latency and the errors, as HTML tables.
fn tables(report: &Report) -> String {
    let mut page = String::new();
    page.push_str("<h2>Plan</h2><table>");
    if let Some(plan) = report.plan.as_object() {
        for (k, v) in plan {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(k),
                escape(&v)
            );
        }
    }
    page.push_str("</table><h2>Summary</h2><table>");
    let rows = [
        (
            "uploads completed and verified",
            report.completed.to_string(),
        ),
        ("uploads failed", report.failed.to_string()),
        (
            "MiB of completed uploads",
            format!("{:.1}", report.bytes as f64 / MIB),
        ),
        ("wall time, s", format!("{:.2}", report.wall_s)),
        (
            "throughput, MiB/s",
            format!("{:.1}", report.throughput_mib_s),
        ),
        ("interruptions", report.interruptions.to_string()),
        ("client CPU, s", format!("{:.2}", report.client_cpu_s)),
    ];
    for (k, v) in rows {
        let _ = write!(page, "<tr><td>{k}</td><td>{v}</td></tr>");
    }
    page.push_str(
        "</table><h2>Latency (ms)</h2><table><tr><th></th><th>count</th><th>p50</th>\
         <th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>",
    );
    for (name, p) in report.latencies() {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            escape(&name), p.count, p.p50, p.p90, p.p99, p.p999, p.max
        );
    }
    page.push_str("</table><h2>Errors</h2>");
    if report.errors.is_empty() && report.failures.is_empty() {
        page.push_str("<p>None.</p>");
    } else {
        page.push_str("<table><tr><th>status</th><th>code</th><th>count</th></tr>");
        for e in &report.errors {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.status,
                escape(&e.code),
                e.count
            );
        }
        page.push_str("</table><ul>");
        for f in &report.failures {
            let _ = write!(page, "<li>{}</li>", escape(f));
        }
        page.push_str("</ul>");
    }
    page
}

/// The report as a self-contained HTML page.
#[must_use]
pub fn render(report: &Report) -> String {
    let mut page = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>uplink bench report</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         td:first-child,th:first-child{text-align:left}\
         figure{margin:1em 0}</style></head><body>\n",
    );
    let _ = writeln!(page, "<h1>uplink bench</h1><p>{}</p>", escape(&report.tool));
    page.push_str(&tables(report));
    page.push_str("<h2>Charts</h2>\n");
    let drawn = if font() {
        charts(report).map_err(|e| e.to_string())
    } else {
        Err("no font was found for the charts' text (install fonts-dejavu-core)".to_owned())
    };
    match drawn {
        Ok(svgs) => {
            for svg in svgs {
                let _ = writeln!(page, "<figure>{svg}</figure>");
            }
        }
        Err(e) => {
            let _ = writeln!(
                page,
                "<p>The charts could not be drawn: {}.</p>",
                escape(&e)
            );
        }
    }
    page.push_str("</body></html>\n");
    page
}
