//! The bench's report: a Markdown table for the README and a PNG chart, both from
//! one run's figures (ours, the peer's, and the thread scaling of reads).

use std::error::Error;

use plotters::prelude::*;

/// Reads/s of one task count, each the median of three seconds.
pub(crate) struct AsyncReads {
    pub(crate) tasks: usize,
    /// Cached reads through a `Lazy` checkout.
    pub(crate) lazy: f64,
    /// Cached reads, each holding a connection checked out for it.
    pub(crate) checkout: f64,
    /// Cached reads through a handle with a local tier (`--local`).
    pub(crate) local: Option<f64>,
    /// Plain GETs of the hit payload's size.
    pub(crate) gets: f64,
    /// Plain MGETs of a value and two stamps.
    pub(crate) mgets: f64,
}

/// One run's medians (µs), side by side with the peer's where it has the key.
pub(crate) struct Report<'a> {
    pub(crate) ours: &'a [(String, f64, f64)],
    pub(crate) peer: &'a [(String, f64)],
    /// `(threads, cached reads/s, plain GETs/s)`.
    pub(crate) throughput: &'a [(usize, f64, f64)],
    /// `(threads, local-tier reads/s)` (`--local --throughput`).
    pub(crate) local_reads: &'a [(usize, f64)],
    /// `(tasks, cached async reads/s, plain async GETs/s, pooled async MGETs/s)`
    /// (feature `async`).
    pub(crate) async_reads: &'a [AsyncReads],
}

/// The operations both sides time, in the chart's order, with what bounds ours.
const COMPARED: [(&str, &str); 8] = [
    ("local_hit_get_pk", ""),
    ("hit_get_pk", "redis_get_rtt"),
    ("hit_fetch20", "redis_get_rtt_fetch20"),
    ("hit_count", "redis_get_rtt_count"),
    ("miss_get_pk", ""),
    ("db_get_pk", ""),
    ("db_fetch20", ""),
    ("save_with_invalidation", "db_update_pk"),
];

/// The async hit (feature `async`) and the round trip that bounds it.
const ASYNC_HIT: (&str, &str) = ("async_hit_get_pk", "async_redis_get_rtt");

impl Report<'_> {
    fn ours(&self, key: &str) -> Option<(f64, f64)> {
        self.ours
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, p50, p99)| (*p50, *p99))
    }

    fn peer(&self, key: &str) -> Option<f64> {
        self.peer.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The targets, each with what this run measured and whether it
    /// holds: `(target, measured, holds)`. A target whose figures the run did
    /// not take (no `--compare`, `--scaling`, ...) is left out.
    pub(crate) fn targets(&self) -> Vec<(String, String, bool)> {
        let p50 = |key: &str| self.ours(key).map(|v| v.0);
        let mut out = Vec::new();
        for (hit, get) in COMPARED[1..4].iter().chain([&ASYNC_HIT]) {
            if let (Some(h), Some(g)) = (p50(hit), p50(get)) {
                let measured = format!("{h:.1} / {g:.1} = {:.2}×", h / g);
                out.push((format!("`{hit}` ≤ 1.3 × `{get}`"), measured, h <= 1.3 * g));
            }
        }
        for (hit, _) in &COMPARED[1..4] {
            if let (Some(h), Some(peer)) = (p50(hit), self.peer(hit)) {
                let measured = format!("{peer:.1} / {h:.1} = {:.1}×", peer / h);
                out.push((
                    format!("`{hit}` ≥ 10× faster than the peer"),
                    measured,
                    peer >= 10.0 * h,
                ));
            }
        }
        if let (Some(update), Some(rtt)) = (p50("db_update_pk"), p50("redis_get_rtt_saves")) {
            let bound = update + 2.0 * rtt;
            let saves = [
                "save_with_invalidation",
                "save_with_invalidation_1k",
                "save_with_invalidation_10k",
                "save_with_invalidation_100k",
            ];
            for save in saves.iter().filter(|k| p50(k).is_some()) {
                let s = p50(save).unwrap_or_default();
                let measured = format!("{s:.1} vs {update:.1} + 2 × {rtt:.1} = {bound:.1}");
                out.push((
                    format!("`{save}` ≤ `db_update_pk` + 2 RTT"),
                    measured,
                    s <= bound,
                ));
            }
            let scaled: Vec<f64> = saves[1..].iter().filter_map(|k| p50(k)).collect();
            if scaled.len() == 3 {
                let (lo, hi) = scaled
                    .iter()
                    .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
                let measured = format!("max / min = {hi:.1} / {lo:.1} = {:.2}", hi / lo);
                out.push((
                    "saves flat from 1k to 100k cached queries (max ≤ 1.25 × min)".into(),
                    measured,
                    hi <= 1.25 * lo,
                ));
            }
        }
        for (_, [auto, _, db]) in super::LARGE {
            if let (Some(a), Some(d)) = (p50(auto), p50(db)) {
                let measured = format!("{a:.0} / {d:.0} = {:.2}×", a / d);
                out.push((format!("`{auto}` < `{db}`"), measured, a < d));
            }
        }
        for (threads, cached, plain) in self.throughput {
            let share = cached / plain;
            let measured = format!("{cached:.0} / {plain:.0} = {:.0}%", 100.0 * share);
            out.push((
                format!("cached reads ≥ 80% of plain GETs, {threads} thread(s)"),
                measured,
                share >= 0.8,
            ));
        }
        for AsyncReads {
            tasks,
            lazy: cached,
            gets: plain,
            ..
        } in self.async_reads
        {
            let share = cached / plain;
            let measured = format!("{cached:.0} / {plain:.0} = {:.0}%", 100.0 * share);
            out.push((
                format!("cached async reads ≥ 80% of plain async GETs, {tasks} tasks"),
                measured,
                share >= 0.8,
            ));
        }
        for local in ["local_hit_get_pk", "local_hit_fetch20", "local_hit_count"] {
            if let Some(v) = p50(local) {
                out.push((format!("`{local}` < 2 µs"), format!("{v:.2} µs"), v < 2.0));
            }
        }
        out
    }

    /// [`Report::targets`] as a Markdown table.
    pub(crate) fn targets_markdown(&self) -> String {
        let mut out = String::from("| target | this run | holds |\n|---|---|---|\n");
        for (target, measured, holds) in self.targets() {
            out += &format!(
                "| {target} | {measured} | {} |\n",
                if holds { "yes" } else { "**no**" }
            );
        }
        out
    }

    /// Every figure of ours as a Markdown table, with the peer's and the ratio.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::from(
            "| op | cacheops p50 µs | p99 µs | django-cacheops p50 µs | peer / ours |\n|---|---:|---:|---:|---:|\n",
        );
        for (key, p50, p99) in self.ours {
            let (peer, ratio) = match self.peer(key) {
                Some(v) => (format!("{v:.1}"), format!("{:.1}×", v / p50)),
                None => ("".into(), "".into()),
            };
            out += &format!("| `{key}` | {p50:.1} | {p99:.1} | {peer} | {ratio} |\n");
        }
        for (threads, cached, plain) in self.throughput {
            out += &format!(
                "| reads/s, {threads} thread(s): cached / plain GET | {cached:.0} | {plain:.0} | | {:.0}% |\n",
                100.0 * cached / plain
            );
        }
        for (threads, reads) in self.local_reads {
            out += &format!("| reads/s, {threads} thread(s): local tier | {reads:.0} | | | |\n");
        }
        for r in self.async_reads {
            let (tasks, plain) = (r.tasks, r.gets);
            let rows = [
                ("cached async (Lazy)", Some(r.lazy)),
                ("cached async holding a connection", Some(r.checkout)),
                ("cached async, local tier", r.local),
                ("plain async MGET of 3 keys", Some(r.mgets)),
            ];
            for (what, reads) in rows {
                let Some(reads) = reads else { continue };
                out += &format!(
                    "| reads/s, {tasks} tasks: {what} / plain async GET | {reads:.0} | {plain:.0} | | {:.0}% |\n",
                    100.0 * reads / plain
                );
            }
        }
        out
    }

    /// Two panels: median latency per op (log scale; ours, the peer's, and the
    /// Redis round trip that bounds a hit), and reads/s per thread count.
    pub(crate) fn chart(&self, path: &str) -> Result<(), Box<dyn Error>> {
        let root = BitMapBackend::new(path, (1200, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(760);
        self.latency_panel(&left)?;
        self.throughput_panel(&right)?;
        root.present()?;
        Ok(())
    }

    fn latency_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn Error>>
    where
        DB::ErrorType: 'static,
    {
        let ops: Vec<&(&str, &str)> = COMPARED
            .iter()
            .filter(|(k, _)| self.ours(k).is_some())
            .collect();
        let top = ops
            .iter()
            .flat_map(|(k, _)| [self.ours(k).map(|v| v.0), self.peer(k)])
            .flatten()
            .fold(10.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption("median latency, µs (log scale)", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..ops.len() as f64, (0.5f64..top * 2.0).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(ops.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = (x - 0.5).round();
                match (x - 0.5 - i).abs() < 0.01 && i >= 0.0 {
                    true => ops
                        .get(i as usize)
                        .map_or(String::new(), |o| o.0.to_string()),
                    false => String::new(),
                }
            })
            .x_label_style(("sans-serif", 13))
            .draw()?;
        let bars = [
            ("cacheops", BLUE.mix(0.8), 0.10),
            ("django-cacheops", RED.mix(0.7), 0.40),
            (
                "bound: Redis GET of the same size / uncached UPDATE",
                BLACK.mix(0.35),
                0.70,
            ),
        ];
        for (series, (name, color, offset)) in bars.into_iter().enumerate() {
            let values: Vec<(usize, f64)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, (key, bound))| {
                    let v = match series {
                        0 => self.ours(key).map(|v| v.0),
                        1 => self.peer(key),
                        _ => self.ours(bound).map(|v| v.0),
                    };
                    v.map(|v| (i, v))
                })
                .collect();
            chart
                .draw_series(values.iter().map(|&(i, v)| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x, 0.5), (x + 0.28, v)], color.filled())
                }))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        Ok(())
    }

    fn throughput_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn Error>>
    where
        DB::ErrorType: 'static,
    {
        let top = self
            .throughput
            .iter()
            .map(|t| t.1.max(t.2))
            .fold(1.0, f64::max);
        let most = self.throughput.iter().map(|t| t.0).max().unwrap_or(8) as f64;
        let mut chart = ChartBuilder::on(area)
            .caption("reads per second by threads", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.5f64..most + 0.5, 0f64..top * 1.15)?;
        chart
            .configure_mesh()
            .x_desc("threads")
            .x_labels(self.throughput.len().max(2))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(WHITE)
            .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .draw()?;
        let lines = [
            ("cached reads (hit_get_pk)", BLUE.to_rgba(), 1usize),
            ("plain Redis GETs", BLACK.mix(0.6), 2usize),
        ];
        for (name, color, column) in lines {
            let points: Vec<(f64, f64)> = self
                .throughput
                .iter()
                .map(|t| (t.0 as f64, if column == 1 { t.1 } else { t.2 }))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(3))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        Ok(())
    }
}
