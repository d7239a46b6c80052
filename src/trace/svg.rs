//! The SVG timeline: one row per worker, a rectangle per poll, nothing a browser lacks.

use core::fmt::{self, Write as _};
use std::collections::HashMap;
use std::io::{self, Write};

use super::{EventKind, Label, PollResult, Timeline, Trace, track_of};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 130.0;
const RIGHT: f64 = 20.0;
const PLOT: f64 = WIDTH - LEFT - RIGHT;
const ROWS_TOP: f64 = 50.0;
const ROW: f64 = 22.0;
const ROW_GAP: f64 = 6.0;
const LEGEND_ROW: f64 = 18.0;
/// Names the legend lists (those with the most time polled).
const LEGEND_NAMES: usize = 12;

/// Writes `trace` to `w` as a standalone SVG document.
pub(super) fn write(trace: &Trace, w: impl Write) -> io::Result<()> {
    let t = Timeline::new(trace);
    let span = t.end.max(1);
    let x = |ns: u64| LEFT + ns as f64 * PLOT / span as f64;
    // Rows: every worker, and foreign threads only if they polled (they never do today).
    let rows = if t.polls.iter().any(|p| p.track == trace.workers()) {
        trace.workers() + 1
    } else {
        trace.workers()
    };
    let row_y = |track: usize| ROWS_TOP + track as f64 * (ROW + ROW_GAP);
    let rows_bottom = row_y(rows) - ROW_GAP;

    // Time polled per name, for the legend.
    let mut busy: HashMap<Label, (u64, usize)> = HashMap::new();
    for p in &t.polls {
        let entry = busy.entry(t.label(p.job)).or_default();
        entry.0 += p.end.saturating_sub(p.begin);
        entry.1 += 1;
    }
    let mut legend: Vec<_> = busy.into_iter().collect();
    legend.sort_by_key(|&(label, (ns, _))| (core::cmp::Reverse(ns), label.to_string()));
    legend.truncate(LEGEND_NAMES);
    let legend_top = rows_bottom + 40.0;
    let height = legend_top + legend.len() as f64 * LEGEND_ROW + 10.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        s,
        "<rect class=\"page\" x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height:.0}\" fill=\"white\"/>"
    );
    let mut title = format!(
        "frame-scheduler trace: {} workers, {} polls, {} frames, {} ms",
        trace.workers(),
        t.polls.len(),
        t.frames.len(),
        Ms(t.end, 3)
    );
    if trace.dropped() > 0 {
        let _ = write!(title, " ({} events dropped: buffers full)", trace.dropped());
    }
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"20\" font-size=\"14\">{}</text>",
        Xml(&title)
    );

    // Rows: the background is idle time; each poll covers part of it.
    for track in 0..rows {
        let y = row_y(track);
        let name = match track {
            0 => "driver".to_string(),
            w if w == trace.workers() => "foreign threads".to_string(),
            w => format!("frame-worker-{w}"),
        };
        let _ = writeln!(
            s,
            "<rect class=\"row\" x=\"{LEFT}\" y=\"{y}\" width=\"{PLOT}\" height=\"{ROW}\" fill=\"#eceff1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{name}</text>",
            LEFT - 8.0,
            y + ROW * 0.7
        );
    }

    // The time axis: grid lines through the rows, labels under them.
    let step = nice_step(span);
    let decimals = decimals(step);
    let mut tick = 0;
    while tick <= span {
        let tx = x(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.2}\" y1=\"{ROWS_TOP}\" x2=\"{tx:.2}\" y2=\"{rows_bottom}\" stroke=\"#cfd8dc\" stroke-width=\"0.5\"/>\
             <text x=\"{tx:.2}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#455a64\">{}</text>",
            rows_bottom + 14.0,
            Ms(tick, decimals)
        );
        tick += step;
    }
    // The unit, left of the first label (which is centred on the axis's start).
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#455a64\">ms</text>",
        LEFT - 16.0,
        rows_bottom + 14.0
    );

    // Polls.
    for p in &t.polls {
        let label = t.label(p.job);
        let name = label.to_string();
        let (x0, x1) = (x(p.begin), x(p.end));
        let result = p.result.map_or("unfinished", PollResult::as_str);
        let stroke = match p.result {
            Some(PollResult::Panicked) | None => " stroke=\"#b71c1c\" stroke-width=\"1\"",
            _ => "",
        };
        let _ = writeln!(
            s,
            "<rect class=\"poll\" x=\"{x0:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{}\"{stroke}>\
             <title>{} (job {}, poll {}, {result}): {} ms</title></rect>",
            row_y(p.track) + 2.0,
            (x1 - x0).max(0.5),
            ROW - 4.0,
            Colour(&name),
            Xml(&name),
            p.job,
            p.number,
            Ms(p.end.saturating_sub(p.begin), 4),
        );
    }

    // Counters reaching zero: a small red mark at the top of the row where it happened.
    for e in trace.events() {
        if let EventKind::CounterZero { counter, location } = e.kind {
            let track = track_of(trace, e.worker);
            if track >= rows {
                continue;
            }
            let (cx, y) = (x(e.time_ns), row_y(track));
            let at = location.map(|l| format!(" made at {}:{}", l.file(), l.line()));
            let _ = writeln!(
                s,
                "<path class=\"counter\" d=\"M{:.2} {y} l4 0 l-4 6 l-4 -6 z\" fill=\"#d32f2f\">\
                 <title>counter {counter}{} reached zero</title></path>",
                cx,
                Xml(at.as_deref().unwrap_or(""))
            );
        }
    }

    // Frames: a line where each starts (labelled), a dashed one where it ends.
    for f in &t.frames {
        let (bx, ex) = (x(f.begin), x(f.end));
        let _ = writeln!(
            s,
            "<line x1=\"{bx:.2}\" y1=\"{:.1}\" x2=\"{bx:.2}\" y2=\"{rows_bottom}\" stroke=\"#263238\" stroke-width=\"1\"/>\
             <text x=\"{:.2}\" y=\"42\" fill=\"#263238\">frame {}</text>\
             <line x1=\"{ex:.2}\" y1=\"{ROWS_TOP}\" x2=\"{ex:.2}\" y2=\"{rows_bottom}\" stroke=\"#263238\" stroke-width=\"1\" stroke-dasharray=\"3 3\"/>",
            ROWS_TOP - 14.0,
            bx + 3.0,
            f.index
        );
    }

    // Legend.
    if !legend.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{:.1}\" fill=\"#263238\">time polled, by name</text>",
            legend_top - 8.0
        );
    }
    for (i, (label, (ns, polls))) in legend.iter().enumerate() {
        let y = legend_top + i as f64 * LEGEND_ROW;
        let name = label.to_string();
        let shown: String = name.chars().take(80).collect();
        let _ = writeln!(
            s,
            "<rect class=\"swatch\" x=\"{LEFT}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}: {} ms in {polls} polls</text>",
            Colour(&name),
            LEFT + 18.0,
            y + 10.0,
            Xml(&shown),
            Ms(*ns, 3),
        );
    }
    s.push_str("</svg>\n");

    let mut w = w;
    w.write_all(s.as_bytes())?;
    w.flush()
}

/// A grid step of 1, 2 or 5 times a power of ten nanoseconds, giving at most ten steps.
fn nice_step(span: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = base * m;
            if span / step <= 10 {
                return step;
            }
        }
        base *= 10;
    }
}

/// Decimals of milliseconds that tell apart multiples of `step` nanoseconds.
fn decimals(step: u64) -> usize {
    match step {
        1_000_000.. => 0,
        100_000.. => 1,
        10_000.. => 2,
        1_000.. => 3,
        100.. => 4,
        10.. => 5,
        _ => 6,
    }
}

/// Nanoseconds shown as milliseconds with the given decimals.
struct Ms(u64, usize);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.*}", self.1, self.0 as f64 / 1e6)
    }
}

/// Text escaped for XML content and attributes; control characters XML cannot hold become
/// U+FFFD.
struct Xml<'a>(&'a str);

impl fmt::Display for Xml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&apos;")?,
                '\t' | '\n' | '\r' => f.write_char(' ')?,
                c if (c as u32) < 0x20 => f.write_char('\u{fffd}')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A colour picked by a hash of a name (FNV-1a), so that one name is one colour in every
/// picture.
struct Colour<'a>(&'a str);

impl fmt::Display for Colour<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let hue = h % 360;
        let saturation = 50 + (h >> 16) % 30;
        let lightness = 45 + (h >> 32) % 20;
        write!(f, "hsl({hue},{saturation}%,{lightness}%)")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::trace::tests::{Script, begin, end, job, sample, spawn};

    fn svg(trace: &Trace) -> String {
        let mut buf = Vec::new();
        trace.write_svg(&mut buf).unwrap();
        String::from_utf8(buf).expect("UTF-8")
    }

    /// Checks that tags balance and every `&` starts an entity; returns the element names
    /// opened, in order.
    fn check_xml(doc: &str) -> Vec<String> {
        let mut open: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = doc;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            check_text(text);
            let gt = rest[lt..].find('>').expect("a tag is closed") + lt;
            let tag = &rest[lt + 1..gt];
            assert!(!tag.contains('<'), "'<' inside tag {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    open.pop().as_deref(),
                    Some(name),
                    "closing tag out of order"
                );
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                check_text(tag);
                seen.push(name.clone());
                if !tag.ends_with('/') {
                    open.push(name);
                }
            }
            rest = &rest[gt + 1..];
        }
        check_text(rest);
        assert!(open.is_empty(), "unclosed: {open:?}");
        seen
    }

    fn check_text(text: &str) {
        assert!(!text.contains('>'), "raw markup in {text:?}");
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & in {text:?}"
            );
        }
        assert!(
            !text.chars().any(|c| (c as u32) < 0x20 && c != '\n'),
            "control character in {text:?}"
        );
    }

    #[test]
    fn one_rect_per_poll_in_a_well_formed_document() {
        let (s, polls) = sample();
        let doc = svg(&s.trace());
        assert!(doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(doc.ends_with("</svg>\n"));
        let tags = check_xml(&doc);
        assert_eq!(tags[0], "svg");
        assert_eq!(doc.matches("class=\"poll\"").count(), polls);
        // Three rows, one frame (a line where it starts, one where it ends), one counter mark.
        assert_eq!(doc.matches("class=\"row\"").count(), 3);
        assert_eq!(doc.matches(">frame 7<").count(), 1);
        assert_eq!(doc.matches("class=\"counter\"").count(), 1);
        // The awkward names are escaped.
        assert!(doc.contains("physics &quot;step&quot; &lt;1&gt;"));
        assert!(doc.contains("tab new line \\ ☃ \u{fffd}"));
        for row in ["driver", "frame-worker-1", "frame-worker-2"] {
            assert!(doc.contains(&format!(">{row}</text>")), "{row}");
        }
    }

    #[test]
    fn legend_lists_names_by_time_polled() {
        let mut s = Script::new(1);
        // `long` polls 3 us in all, `short` 1 us.
        s.on(0, spawn(job(1), Some("long")))
            .on(0, spawn(job(2), Some("short")))
            .on(0, begin(job(2)))
            .on(0, end(job(2), PollResult::Ready))
            .on(0, begin(job(1)));
        s.now += 2000;
        s.on(0, end(job(1), PollResult::Ready));
        let doc = svg(&s.trace());
        check_xml(&doc);
        assert_eq!(doc.matches("class=\"swatch\"").count(), 2);
        let long = doc
            .find(">long: 0.003 ms in 1 polls<")
            .expect("long in the legend");
        let short = doc
            .find(">short: 0.001 ms in 1 polls<")
            .expect("short in the legend");
        assert!(long < short);
        // One name, one colour: the poll and its swatch.
        let colour = Colour("long").to_string();
        assert_eq!(doc.matches(&format!("fill=\"{colour}\"")).count(), 2);
    }

    #[test]
    fn empty_trace_draws_rows_only() {
        let doc = svg(&Trace::from_events(2, Vec::new(), 5));
        check_xml(&doc);
        assert_eq!(doc.matches("class=\"poll\"").count(), 0);
        assert_eq!(doc.matches("class=\"row\"").count(), 2);
        assert!(doc.contains("(5 events dropped: buffers full)"));
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(1), 1);
        assert_eq!(nice_step(10), 1);
        assert_eq!(nice_step(11), 2);
        assert_eq!(nice_step(16_600_000), 2_000_000);
        assert_eq!(nice_step(40_000), 5_000);
        assert_eq!(Ms(2_000_000, decimals(2_000_000)).to_string(), "2");
        assert_eq!(Ms(15_000, decimals(5_000)).to_string(), "0.015");
    }
}
