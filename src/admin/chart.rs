//! Server-rendered SVG charts: no JavaScript, readable at a glance.

use std::fmt::Write;

use super::views::escape_html;

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<i64>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 24.0; // room for the last date label, centred on the last point
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;

/// A line chart over `labels` (one x position per label), with a legend, a
/// y axis from 0 to a round maximum and every 7th label on the x axis.
pub fn line_chart(title: &str, labels: &[String], series: &[Series]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = if labels.len() > 1 {
        plot_w / (labels.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| LEFT + step * i as f64;
    let y = |v: i64| TOP + plot_h - plot_h * (v.max(0) as f64 / top as f64);

    let mut svg = svg_start(HEIGHT, LEFT, title);
    // Grid lines and y labels at 0, 1/2 and the top.
    for fraction in [0.0, 0.5, 1.0] {
        let value = (top as f64 * fraction).round() as i64;
        let gy = y(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{gy:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end" fill="#666">{value}</text>"##,
            WIDTH - RIGHT,
            LEFT - 4.0,
            gy + 3.0
        );
    }
    for (i, label) in labels.iter().enumerate() {
        // Every 7th day and the last; skip a 7th that would overlap the last.
        let last = i + 1 == labels.len();
        if last || (i % 7 == 0 && i + 4 < labels.len()) {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle" fill="#666">{}</text>"##,
                x(i),
                HEIGHT - BOTTOM + 14.0,
                escape_html(label)
            );
        }
    }
    for s in series {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="series" data-series="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            escape_html(&s.name),
            s.color,
            points.join(" ")
        );
    }
    // Legend along the bottom.
    let mut lx = LEFT;
    for s in series {
        let _ = write!(
            svg,
            r##"<rect x="{lx:.1}" y="{}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{}" font-size="11" fill="#222">{}</text>"##,
            HEIGHT - 12.0,
            s.color,
            lx + 14.0,
            HEIGHT - 3.0,
            escape_html(&s.name)
        );
        lx += 24.0 + 12.0 * s.name.chars().count() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar chart (the lifecycle funnel): one bar per (label, value).
pub fn bar_chart(title: &str, bars: &[(String, i64)]) -> String {
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let row = 26.0;
    let height = TOP + row * bars.len() as f64 + 8.0;
    let label_w = 90.0;
    let plot_w = WIDTH - label_w - 60.0;
    let mut svg = svg_start(height, 4.0, title);
    for (i, (label, value)) in bars.iter().enumerate() {
        let by = TOP + row * i as f64;
        let w = plot_w * (*value).max(0) as f64 / max as f64;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#222">{}</text><rect class="bar" x="{label_w}" y="{by:.1}" width="{w:.1}" height="18" fill="#3b82f6"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#222">{value}</text>"##,
            label_w - 6.0,
            by + 13.0,
            escape_html(label),
            label_w + w + 6.0,
            by + 13.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest of 1, 2, 5 × 10^k at or above `value`, so axes read cleanly.
fn nice_ceiling(value: i64) -> i64 {
    let mut magnitude = 1i64;
    loop {
        for m in [1, 2, 5] {
            let candidate = m * magnitude;
            if candidate >= value {
                return candidate;
            }
        }
        match magnitude.checked_mul(10) {
            Some(next) => magnitude = next,
            None => return value,
        }
    }
}

/// The opening `<svg>` of a chart `WIDTH` wide, with its accessible title and
/// the title drawn at `title_x`.
fn svg_start(height: f64, title_x: f64, title: &str) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"><title>{}</title>"#,
        escape_html(title)
    );
    let _ = write!(
        svg,
        r##"<text x="{title_x}" y="16" font-size="13" font-weight="bold" fill="#222">{}</text>"##,
        escape_html(title)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i}")).collect()
    }

    #[test]
    fn line_chart_draws_one_polyline_per_series_with_a_point_per_label() {
        let svg = line_chart(
            "Joins vs leaves",
            &labels(30),
            &[
                Series {
                    name: "joins".into(),
                    color: "#16a34a",
                    values: vec![3; 30],
                },
                Series {
                    name: "leaves".into(),
                    color: "#dc2626",
                    values: vec![1; 30],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        let first = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(first.split(' ').count(), 30);
    }

    #[test]
    fn text_in_charts_is_escaped() {
        let svg = bar_chart("<b>", &[("<script>".into(), 3)]);
        assert!(!svg.contains("<script>") && !svg.contains("<b>"));
    }

    #[test]
    fn axis_top_is_a_round_number_at_or_above_the_max() {
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(500), 500);
    }

    proptest! {
        #[test]
        fn every_point_stays_inside_the_plot(values in proptest::collection::vec(-5i64..100_000, 1..60)) {
            let n = values.len();
            let svg = line_chart("t", &labels(n), &[Series { name: "s".into(), color: "#000", values }]);
            let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            for point in points.split(' ') {
                let (px, py) = point.split_once(',').unwrap();
                let (px, py): (f64, f64) = (px.parse().unwrap(), py.parse().unwrap());
                prop_assert!((LEFT..=WIDTH - RIGHT).contains(&px));
                prop_assert!((TOP - 0.01..=HEIGHT - BOTTOM + 0.01).contains(&py));
            }
        }

        #[test]
        fn nice_ceiling_is_at_least_value(v in 1i64..1_000_000_000) {
            let c = nice_ceiling(v);
            prop_assert!(c >= v && c <= v.saturating_mul(5));
        }
    }
}
