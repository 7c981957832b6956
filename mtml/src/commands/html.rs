//! A run's report as one self-contained HTML file: the figures, the equity curve and its
//! drawdown, each symbol's price with the deals marked, the latency of each stage, and the model
//! comparison when a challenger was on trial. Charts are inline SVG drawn here, with no script,
//! font or file from anywhere else, so the page opens offline and shows the same everywhere.

use std::fmt::Write as _;

use crate::commands::report::Report;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 220.0;
const PAD: f64 = 48.0;

/// The report as an HTML page.
pub fn html(report: &Report) -> String {
    let f = &report.figures;
    let kind = if report.run.transport == "none" { "backtest" } else { "replay" };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>mtml {kind} of {}</title><style>{STYLE}</style></head><body>\n<h1>mtml {kind} of {}</h1>\n<p class=\"sub\">{} · model {} · {} ticks · {:.2} s</p>\n",
        escape(&report.run.input),
        escape(&report.run.input),
        escape(&report.run.symbols.join(", ")),
        escape(&report.run.model),
        report.run.ticks_read,
        report.run.wall_time_secs
    );
    let ratio = |r: Option<f64>| r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"));
    let cells = [
        ("PnL", format!("{:.2}", f.pnl)),
        ("Return", format!("{:.3}%", f.return_pct)),
        ("Sharpe", ratio(f.sharpe)),
        ("Sortino", ratio(f.sortino)),
        ("Max drawdown", format!("{:.2} ({:.3}%)", f.max_drawdown, f.max_drawdown_pct)),
        ("Drawdown duration", format!("{:.0} min", f.max_drawdown_duration_ms as f64 / 60_000.0)),
        ("Trades", f.trades.to_string()),
        ("Hit rate", f.hit_rate.map_or_else(|| "–".to_owned(), |h| format!("{:.0}%", h * 100.0))),
        ("Avg holding", f.average_holding_ms.map_or_else(|| "–".to_owned(), |ms| format!("{:.0} min", ms / 60_000.0))),
        ("Exposure", format!("{:.0}%", f.exposure * 100.0)),
        ("Lots traded", format!("{:.2}", f.lots_traded)),
        ("Commission", format!("{:.2}", f.commission)),
        ("Orders", report.orders_sent.to_string()),
        ("Avg slippage", format!("{} points", report.avg_slippage_points)),
    ];
    page.push_str("<section class=\"figures\">");
    for (name, value) in cells {
        let _ = write!(page, "<div><span>{name}</span><b>{}</b></div>", escape(&value));
    }
    page.push_str("</section>\n");

    // Equity, and below it how far it stood under its peak.
    let mut peak = f64::NEG_INFINITY;
    let drawdown: Vec<(i64, f64)> = f.equity_curve.iter().map(|&(t, e)| {
        peak = peak.max(e);
        (t, e - peak)
    }).collect();
    page.push_str("<h2>Equity <small>(the last value of each minute, or of longer intervals in long runs)</small></h2>\n");
    page.push_str(&chart("equity", &[("equity", &f.equity_curve, "#1f6feb")], &[], false));
    page.push_str("<h2>Drawdown</h2>\n");
    page.push_str(&chart("drawdown", &[("drawdown", &drawdown, "#cf222e")], &[], true));
    for (symbol, prices) in &f.prices {
        let deals: Vec<(i64, f64, bool)> = report.deals.iter().filter(|d| &d.symbol == symbol).map(|d| (d.time_msc, d.price, d.lots > 0.0)).collect();
        let _ = writeln!(page, "<h2>{} with its deals (▲ buy, ▼ sell)</h2>", escape(symbol));
        page.push_str(&chart(&format!("price-{symbol}"), &[("mid", prices, "#57606a")], &deals, false));
    }
    page.push_str("<h2>Latency by stage (µs, p50 and p99)</h2>\n");
    page.push_str(&latency_bars(report));
    if let Some(rollout) = &report.rollout {
        let _ = write!(page, "<h2>Champion and challenger</h2>\n<pre>{}</pre>\n", escape(&rollout.text()));
    }
    let _ = write!(page, "<h2>Deals</h2>\n<table><tr><th>order</th><th>symbol</th><th>time (UTC)</th><th>lots</th><th>price</th></tr>");
    for d in &report.deals {
        let _ = write!(page, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:+.2}</td><td>{}</td></tr>", d.order, escape(&d.symbol), mtml_core::text::utc(d.time_msc), d.lots, d.price);
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

/// A named series of (time, value) and its colour.
type Line<'a> = (&'a str, &'a [(i64, f64)], &'a str);

/// A line chart of `lines` with `markers` (time, price, buy), scaled to their values, with the
/// first and last time and the lowest and highest value written on the axes.
fn chart(id: &str, lines: &[Line<'_>], markers: &[(i64, f64, bool)], area: bool) -> String {
    let points = lines.iter().flat_map(|(_, series, _)| series.iter().copied()).chain(markers.iter().map(|&(t, p, _)| (t, p)));
    let (mut t0, mut t1, mut lo, mut hi) = (i64::MAX, i64::MIN, f64::INFINITY, f64::NEG_INFINITY);
    for (t, v) in points {
        (t0, t1, lo, hi) = (t0.min(t), t1.max(t), lo.min(v), hi.max(v));
    }
    let mut svg = format!("<svg id=\"{}\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">", escape(id), escape(id));
    if t0 > t1 {
        svg.push_str("<text x=\"50%\" y=\"50%\" text-anchor=\"middle\">no data</text></svg>\n");
        return svg;
    }
    if hi - lo < 1e-12 {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let x = |t: i64| PAD + (t - t0) as f64 / ((t1 - t0).max(1)) as f64 * (WIDTH - 2.0 * PAD);
    let y = |v: f64| HEIGHT - PAD / 2.0 - (v - lo) / (hi - lo) * (HEIGHT - PAD);
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><text x=\"{PAD}\" y=\"{HEIGHT}\">{}</text><text x=\"{r}\" y=\"{HEIGHT}\" text-anchor=\"end\">{}</text>\
         <text x=\"2\" y=\"{top}\">{}</text><text x=\"2\" y=\"{b}\">{}</text>",
        mtml_core::text::utc(t0),
        mtml_core::text::utc(t1),
        short(hi),
        short(lo),
        b = HEIGHT - PAD / 2.0,
        r = WIDTH - PAD,
        top = PAD / 2.0 + 4.0,
    );
    for (name, series, colour) in lines {
        let path: Vec<String> = series.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
        if area && let (Some(first), Some(last)) = (series.first(), series.last()) {
            let _ = write!(svg, "<polygon class=\"area\" fill=\"{colour}\" points=\"{:.1},{:.1} {} {:.1},{:.1}\"/>", x(first.0), y(0.0_f64.min(hi)), path.join(" "), x(last.0), y(0.0_f64.min(hi)));
        }
        let _ = write!(svg, "<polyline class=\"line\" data-name=\"{}\" data-points=\"{}\" stroke=\"{colour}\" points=\"{}\"/>", escape(name), series.len(), path.join(" "));
    }
    for &(t, price, buy) in markers {
        let (cx, cy) = (x(t), y(price));
        let (colour, tip) = if buy { ("#1a7f37", cy + 6.0) } else { ("#cf222e", cy - 6.0) };
        let _ = write!(svg, "<polygon class=\"deal\" fill=\"{colour}\" points=\"{:.1},{:.1} {:.1},{tip:.1} {:.1},{tip:.1}\"/>", cx, cy, cx - 4.0, cx + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Each stage's p50 and p99 as horizontal bars on one scale.
fn latency_bars(report: &Report) -> String {
    let stages: Vec<(&str, f64, f64)> = report.latency.iter().filter(|(_, l)| l.count > 0).map(|(stage, l)| (*stage, l.p50_us, l.p99_us)).collect();
    let most = stages.iter().map(|s| s.2).fold(1e-9, f64::max);
    let row = 22.0;
    let height = row * stages.len() as f64 + 10.0;
    let mut svg = format!("<svg id=\"latency\" class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"latency\">");
    for (i, (stage, p50, p99)) in stages.iter().enumerate() {
        let top = i as f64 * row + 5.0;
        let scale = |us: f64| us / most * (WIDTH - 260.0);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect class=\"p99\" x=\"130\" y=\"{top:.1}\" width=\"{:.1}\" height=\"16\"/><rect class=\"p50\" x=\"130\" y=\"{top:.1}\" width=\"{:.1}\" height=\"16\"/><text x=\"{:.1}\" y=\"{:.1}\">{p50:.1} / {p99:.1}</text>",
            top + 13.0,
            escape(stage),
            scale(*p99).max(1.0),
            scale(*p50).max(1.0),
            136.0 + scale(*p99).max(1.0),
            top + 13.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn short(v: f64) -> String {
    if v.abs() >= 1_000.0 { format!("{v:.0}") } else { format!("{v:.5}") }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:960px;padding:0 1em;color:#24292f}\
h1{font-size:1.4em;margin-bottom:0}h2{font-size:1.1em;margin-top:1.6em}.sub{color:#57606a;margin-top:.3em}\
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.5em}\
.figures div{border:1px solid #d0d7de;border-radius:6px;padding:.4em .6em}.figures span{display:block;color:#57606a;font-size:.85em}\
svg.chart{width:100%;height:auto;border:1px solid #d0d7de;border-radius:6px;background:#fff}svg text{font-size:11px;fill:#57606a}\
.axis{stroke:#d0d7de}.line{fill:none;stroke-width:1.5}.area{opacity:.2}.p99{fill:#d0d7de}.p50{fill:#1f6feb}\
table{border-collapse:collapse;width:100%;font-size:.9em}td,th{border-bottom:1px solid #d0d7de;padding:.2em .5em;text-align:right}pre{overflow-x:auto}";
