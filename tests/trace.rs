//! Traces of real frames: the Chrome JSON parses, every poll is a slice, every flow has both
//! ends, times rise on every track, a job that moves between workers keeps one id, the arena
//! counter track shows each frame's `FrameStats::arena_bytes`, and the SVG has one rectangle per
//! poll.

mod common;

use std::collections::HashMap;

use frame_scheduler::{EventKind, Scheduler, yield_now};

fn traced(workers: usize) -> frame_scheduler::Trace {
    let mut s = Scheduler::builder()
        .workers(workers)
        .trace_capacity(1 << 14)
        .build()
        .unwrap();
    let mut bytes = [0u8; 1000];
    s.start_trace();
    for _ in 0..3 {
        s.run_frame(async |frame| {
            let c = frame.counter();
            for i in 0..64u64 {
                frame.spawn_counted(c, async move {
                    if i % 4 == 0 {
                        yield_now().await;
                    }
                    std::hint::black_box(i);
                });
            }
            let h = frame.spawn(async move {
                let inner = frame.spawn(async { 5u32 });
                inner.await
            });
            let sum: u32 = h.await;
            c.await;
            frame
                .for_each_chunk(&mut bytes[..], 16, |_, c| c.fill(1))
                .await;
            sum
        });
    }
    s.take_trace()
}

#[test]
fn a_trace_counts_every_poll_and_spawn_of_its_frames() {
    for workers in [1, 2, 3] {
        let trace = traced(workers);
        assert_eq!(trace.dropped(), 0);
        assert_eq!(trace.frames().count(), 3);
        let mut begins = 0;
        let mut ends = 0;
        let mut spawns = 0;
        for e in trace.events() {
            match e.kind {
                EventKind::PollBegin { .. } => begins += 1,
                EventKind::PollEnd { .. } => ends += 1,
                EventKind::Spawn { .. } => spawns += 1,
                _ => {}
            }
        }
        assert_eq!(begins, ends, "workers({workers})");
        // 64 counted jobs, a job and its child, and at least one loop piece per frame, plus the
        // root (recorded as spawned at frame begin).
        assert!(
            spawns >= 3 * (64 + 2 + 1 + 1),
            "workers({workers}): {spawns} spawns"
        );
        // The 16 yielding jobs are polled twice.
        assert!(
            begins >= 3 * (64 + 16 + 2 + 1 + 1),
            "workers({workers}): {begins} polls"
        );
    }
}

#[test]
fn chrome_json_parses_with_a_slice_per_poll_and_complete_flows() {
    for workers in [1, 2] {
        let trace = traced(workers);
        let polls = trace
            .events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::PollBegin { .. }))
            .count();
        let mut out = Vec::new();
        trace.write_chrome_json(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        let events = v["traceEvents"].as_array().expect("traceEvents");
        let slices = events
            .iter()
            .filter(|e| e["ph"] == "X" && e["args"]["poll"].is_number())
            .count();
        assert_eq!(slices, polls, "workers({workers})");
        // Every flow id has a start and an end.
        let mut flows: HashMap<String, (usize, usize)> = HashMap::new();
        for e in events {
            let ph = e["ph"].as_str().unwrap_or("");
            if ph == "s" || ph == "f" {
                let id = e["id"].to_string();
                let entry = flows.entry(id).or_default();
                if ph == "s" {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        assert!(!flows.is_empty());
        for (id, (s, f)) in &flows {
            assert_eq!((*s, *f), (1, 1), "flow {id}");
        }
        // Slices start in time order on every track.
        let mut last: HashMap<String, f64> = HashMap::new();
        for e in events.iter().filter(|e| e["ph"] == "X") {
            let tid = e["tid"].to_string();
            let ts = e["ts"].as_f64().unwrap();
            let prev = last.insert(tid.clone(), ts).unwrap_or(f64::MIN);
            assert!(ts >= prev, "track {tid} goes back in time");
        }
    }
}

#[test]
fn the_svg_has_a_rectangle_per_poll() {
    let trace = traced(2);
    let polls = trace
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PollBegin { .. }))
        .count();
    let mut out = Vec::new();
    trace.write_svg(&mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("class=\"poll\"").count(), polls);
}

#[test]
fn start_trace_without_capacity_panics_with_a_clear_message() {
    let mut s = common::scheduler(1);
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.start_trace())).unwrap_err();
    assert!(common::payload_str(&*p).contains("trace_capacity"));
    let e = Scheduler::builder()
        .workers(1)
        .trace_capacity(1 << 30)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("trace_capacity"), "{e}");
}

#[test]
fn chrome_json_has_each_frames_arena_bytes_as_a_counter() {
    let mut s = Scheduler::builder()
        .workers(2)
        .trace_capacity(1 << 12)
        .build()
        .unwrap();
    s.start_trace();
    let mut stats = Vec::new();
    for n in [10u32, 200] {
        s.run_frame(async |frame| {
            let c = frame.counter();
            for i in 0..n {
                frame.spawn_counted(c, async move {
                    std::hint::black_box(i);
                });
            }
            c.await;
        });
        stats.push(s.last_frame_stats().arena_bytes);
    }
    let trace = s.take_trace();
    assert!(stats[1] > stats[0], "{stats:?}");
    let ends: Vec<_> = trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::FrameEnd { arena_bytes, .. } => Some(arena_bytes),
            _ => None,
        })
        .collect();
    assert_eq!(ends, stats);
    let mut out = Vec::new();
    trace.write_chrome_json(&mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    let arena: Vec<_> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "arena")
        .map(|e| e["args"]["bytes"].as_u64().unwrap() as usize)
        .collect();
    // Each frame's bytes from its begin, 0 from its end.
    assert_eq!(arena, [stats[0], 0, stats[1], 0]);
}

#[test]
fn an_awaited_counter_is_traced_with_its_id_and_location() {
    // One worker: the root awaits the counter before any of its jobs has run, so the wait
    // registers (an already-zero counter would complete at once, untraced).
    let mut s = Scheduler::builder()
        .workers(1)
        .trace_capacity(1 << 10)
        .build()
        .unwrap();
    s.start_trace();
    let line = line!() + 2;
    s.run_frame(async |frame| {
        let c = frame.counter();
        for _ in 0..3 {
            frame.spawn_counted(c, async {});
        }
        c.await;
        // Already zero: no wait, no event.
        c.await;
    });
    let trace = s.take_trace();
    let created: Vec<_> = trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CounterCreated { counter, location } => Some((counter, location)),
            _ => None,
        })
        .collect();
    let awaited: Vec<_> = trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CounterAwaited { counter, location } => Some((e.worker, counter, location)),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1);
    let (id, location) = created[0];
    let location = location.unwrap();
    assert_eq!((location.file(), location.line()), (file!(), line));
    // Awaited once, by the root on worker 0, with the id and location of its creation.
    assert_eq!(awaited, [(Some(0), id, Some(location))]);
    let zero: Vec<_> = trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CounterZero { counter, location } => Some((counter, location)),
            _ => None,
        })
        .collect();
    assert_eq!(zero, [(id, Some(location))]);
}
