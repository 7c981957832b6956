//! The equity curve as a PNG picture (what `/chart` and the daily summary send): the curve in
//! blue over its drawdown from the running high in red, with the zero line, drawn pixel by
//! pixel so nothing beyond the `png` encoder is needed. The figures go in the caption.

/// Picture width, pixels (Telegram shows 640 wide pictures whole on a phone).
pub const WIDTH: u32 = 640;
/// Picture height, pixels.
pub const HEIGHT: u32 = 320;
const MARGIN: f64 = 12.0;

const BACKGROUND: [u8; 3] = [255, 255, 255];
const GRID: [u8; 3] = [225, 228, 232];
const ZERO: [u8; 3] = [140, 140, 140];
const DRAWDOWN: [u8; 3] = [248, 196, 196];
const CURVE: [u8; 3] = [31, 94, 196];

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self { pixels: BACKGROUND.repeat((WIDTH * HEIGHT) as usize) }
    }

    fn set(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if (0..i64::from(WIDTH)).contains(&x) && (0..i64::from(HEIGHT)).contains(&y) {
            let at = ((y as usize) * WIDTH as usize + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// A line two pixels thick (Bresenham).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut error) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, colour);
            self.set(x, y + 1, colour);
            if x == x1 && y == y1 {
                break;
            }
            let twice = 2 * error;
            if twice >= dy {
                error += dy;
                x += sx;
            }
            if twice <= dx {
                error += dx;
                y += sy;
            }
        }
    }

    fn vertical(&mut self, x: i64, from: i64, to: i64, colour: [u8; 3]) {
        for y in from.min(to)..=from.max(to) {
            self.set(x, y, colour);
        }
    }

    fn horizontal(&mut self, y: i64, colour: [u8; 3]) {
        for x in 0..i64::from(WIDTH) {
            self.set(x, y, colour);
        }
    }
}

/// The curve of `points` (time, equity) as a PNG file's bytes. An empty curve is a flat line at
/// zero, so there is always a picture to send.
pub fn equity_png(points: &[(i64, f64)]) -> Vec<u8> {
    let mut canvas = Canvas::new();
    let points: Vec<(i64, f64)> = match points {
        [] => vec![(0, 0.0), (1, 0.0)],
        [only] => vec![*only, (only.0 + 1, only.1)],
        many => many.iter().copied().filter(|(_, v)| v.is_finite()).collect(),
    };
    let (t0, t1) = (points[0].0, points[points.len() - 1].0.max(points[0].0 + 1));
    let low = points.iter().map(|p| p.1).fold(0.0_f64, f64::min);
    let high = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let span = if high - low > f64::EPSILON { high - low } else { 1.0 };
    let (w, h) = (f64::from(WIDTH) - 2.0 * MARGIN, f64::from(HEIGHT) - 2.0 * MARGIN);
    let x_of = |t: i64| (MARGIN + (t - t0) as f64 / (t1 - t0) as f64 * w).round() as i64;
    let y_of = |v: f64| (MARGIN + (high - v) / span * h).round() as i64;
    for quarter in 0..=4 {
        canvas.horizontal((MARGIN + h * f64::from(quarter) / 4.0).round() as i64, GRID);
    }
    canvas.horizontal(y_of(0.0), ZERO);
    let mut running_high = f64::NEG_INFINITY;
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        running_high = running_high.max(a.1);
        if b.1 < running_high {
            for x in x_of(a.0)..=x_of(b.0) {
                canvas.vertical(x, y_of(running_high), y_of(b.1), DRAWDOWN);
            }
        }
    }
    for pair in points.windows(2) {
        canvas.line((x_of(pair[0].0), y_of(pair[0].1)), (x_of(pair[1].0), y_of(pair[1].1)), CURVE);
    }
    encode(&canvas.pixels)
}

fn encode(pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing to a Vec cannot fail, and the header and data sizes agree by construction.
    if let Ok(mut writer) = encoder.write_header() {
        let _ = writer.write_image_data(pixels);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        (info, pixels)
    }

    fn count(pixels: &[u8], colour: [u8; 3]) -> usize {
        pixels.chunks(3).filter(|p| *p == colour).count()
    }

    #[test]
    fn the_curve_and_its_drawdown_are_drawn() {
        let curve = [(0, 0.0), (1_000, 50.0), (2_000, 20.0), (3_000, 80.0)];
        let (info, pixels) = decode(&equity_png(&curve));
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        assert!(count(&pixels, CURVE) > usize::try_from(WIDTH).unwrap(), "the curve crosses the picture");
        assert!(count(&pixels, DRAWDOWN) > 100, "the fall from 50 to 20 is shaded");
    }

    #[test]
    fn a_rising_curve_has_no_drawdown_and_an_empty_one_is_still_a_picture() {
        let (_, pixels) = decode(&equity_png(&[(0, 0.0), (1, 1.0), (2, 2.0)]));
        assert_eq!(count(&pixels, DRAWDOWN), 0);
        let (info, pixels) = decode(&equity_png(&[]));
        assert_eq!(info.width, WIDTH);
        assert!(count(&pixels, CURVE) > 0);
    }
}
