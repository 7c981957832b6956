//! The HTML report in a real headless browser (Debian's chromium through chromedriver): it
//! renders, its charts have data, its deals are the run's, and the page logs no error. A
//! screenshot is written to `target/test-output/backtest-report.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use mtml_test_support::browser::Browser;

#[test]
fn the_html_report_renders_its_charts_in_a_browser_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (html, json) = (dir.path().join("report.html"), dir.path().join("report.json"));
    let output = mtml_test_support::command_in_own_dir(env!("CARGO_BIN_EXE_mtml"))
        .args(["backtest", "--ticks"])
        .arg(common::sample())
        .arg("--html")
        .arg(&html)
        .arg("--report")
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<script"), "self-contained: nothing fetched, nothing run");

    let browser = Browser::start();
    browser.open(&format!("file://{}", html.display()));
    let seen = browser.script(
        "const line = id => document.querySelector('#' + CSS.escape(id) + ' polyline.line');
         const box = document.querySelector('#equity').getBoundingClientRect();
         return {
           title: document.title,
           charts: document.querySelectorAll('svg.chart').length,
           equity: Number(line('equity').dataset.points),
           drawdown: Number(line('drawdown').dataset.points),
           price: Number(line('price-EURUSD').dataset.points),
           deals: document.querySelectorAll('#price-EURUSD polygon.deal').length,
           rows: document.querySelectorAll('table tr').length - 1,
           stages: document.querySelectorAll('#latency rect.p50').length,
           width: box.width, height: box.height,
           pnl: document.querySelector('.figures b').textContent,
         };",
    );
    assert!(seen["title"].as_str().unwrap().starts_with("mtml backtest of "), "{seen}");
    assert_eq!(seen["charts"], 4, "equity, drawdown, EURUSD, latency: {seen}");
    for series in ["equity", "drawdown", "price"] {
        assert!(seen[series].as_u64().unwrap() > 100, "{series} has data: {seen}");
    }
    let deals = report["deals"].as_array().unwrap().len() as u64;
    assert!(deals > 0);
    assert_eq!((seen["deals"].as_u64().unwrap(), seen["rows"].as_u64().unwrap()), (deals, deals), "every deal marked and listed");
    assert!(seen["stages"].as_u64().unwrap() >= 5, "{seen}");
    assert!(seen["width"].as_f64().unwrap() > 500.0 && seen["height"].as_f64().unwrap() > 100.0, "laid out: {seen}");
    assert_eq!(seen["pnl"].as_str().unwrap(), format!("{:.2}", report["figures"]["pnl"].as_f64().unwrap()));
    assert_eq!(browser.console_errors(), Vec::<String>::new());

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output");
    std::fs::create_dir_all(&shots).unwrap();
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots.join("backtest-report.png"), png).unwrap();
}
