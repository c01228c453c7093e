//! The progress of a long operation on stderr: a bar per phase on a terminal, plain lines at
//! a modest rate otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::output::Output;
use super::quote::escape_text;
use crate::client::OnProgress;
use dvol_api::{ProgressEvent, Unit};

/// Plain progress lines are printed at most this often within a phase (besides its start, its
/// end and every tenth of its total).
const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

/// Shows an operation's progress events on stderr: a bar per phase (a spinner when the total
/// is unknown) when stderr is a terminal, otherwise plain lines like
/// `commit demo: read 120.00 MiB of 2.00 GiB (6%)` at a modest rate.
pub struct ProgressMeter {
    /// Names the operation in plain lines, e.g. `commit demo`.
    label: String,
    terminal: bool,
    /// The bar (or spinner) being drawn, on a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// The phase of the last plain line, its tenth of the total, and when it was printed.
    last_line: Option<(String, u64, Instant)>,
}

impl ProgressMeter {
    /// Starts showing `what` is being done (a spinner, or one plain line). Control
    /// characters in `label` and `what` (a revision as the user typed it) are escaped.
    pub fn new(label: String, what: &str) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let what = escape_text(what);
        let what = what.as_ref();
        let mut view = ProgressMeter {
            label: escape_text(&label).into_owned(),
            terminal,
            bar: None,
            last_line: None,
        };
        if terminal {
            view.bar = Some(Self::bar(
                what.to_string(),
                None,
                Unit::Items,
                "{spinner} {prefix} [{elapsed}]",
            ));
        } else {
            eprintln!("{what}...");
        }
        view
    }

    /// A bar (a spinner when `total` is unknown) labelled `prefix`; an empty `template` picks
    /// one for the unit.
    fn bar(
        prefix: String,
        total: Option<u64>,
        unit: Unit,
        template: &str,
    ) -> indicatif::ProgressBar {
        let bar = match total {
            Some(total) => indicatif::ProgressBar::new(total),
            None => indicatif::ProgressBar::new_spinner(),
        }
        .with_prefix(prefix);
        let template = match (template.is_empty(), total, unit) {
            (false, ..) => template,
            (true, Some(_), Unit::Bytes) => {
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
            }
            (true, Some(_), Unit::Items) => "{prefix} [{bar:30}] {pos}/{len} ETA {eta}",
            (true, None, Unit::Bytes) => "{spinner} {prefix} {bytes} [{elapsed}]",
            (true, None, Unit::Items) => "{spinner} {prefix} {pos} [{elapsed}]",
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        if total.is_none() {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        bar
    }

    /// Shows one event.
    pub fn show(&mut self, event: &ProgressEvent) {
        if self.terminal {
            self.draw(event);
        } else if let Some(line) = self.plain_line(event, Instant::now()) {
            eprintln!("{line}");
        }
    }

    fn draw(&mut self, event: &ProgressEvent) {
        let prefix = format!("{}: {}", self.label, event.phase);
        let current = self.bar.as_ref().filter(|b| b.prefix() == prefix);
        let bar = match current {
            Some(bar) => bar.clone(),
            None => {
                if let Some(old) = self.bar.take() {
                    old.finish_and_clear();
                }
                let bar = Self::bar(prefix, event.total, event.unit, "");
                self.bar = Some(bar.clone());
                bar
            }
        };
        bar.set_position(event.done);
        if event.finished {
            bar.finish();
            self.bar = None;
        }
    }

    /// The plain line for `event`, if one is due at `now`: at a phase's start and end, when
    /// another tenth of the total is done, or [`PLAIN_INTERVAL`] after the previous line.
    fn plain_line(&mut self, event: &ProgressEvent, now: Instant) -> Option<String> {
        let tenth = match event.total {
            Some(total) if total > 0 => event.done.saturating_mul(10) / total,
            _ => 0,
        };
        let due = match &self.last_line {
            Some((phase, last_tenth, at)) if *phase == event.phase => {
                event.finished || tenth > *last_tenth || now.duration_since(*at) >= PLAIN_INTERVAL
            }
            _ => true,
        };
        if !due {
            return None;
        }
        self.last_line = Some((event.phase.clone(), tenth, now));
        let amount = |n: u64| match event.unit {
            Unit::Bytes => indicatif::HumanBytes(n).to_string(),
            Unit::Items => n.to_string(),
        };
        let mut line = format!("{}: {} {}", self.label, event.phase, amount(event.done));
        if let Some(total) = event.total {
            let percent = (event.done.saturating_mul(100))
                .checked_div(total)
                .unwrap_or(100);
            line.push_str(&format!(" of {} ({percent}%)", amount(total)));
        }
        if event.finished {
            line.push_str(", done");
        }
        Some(line)
    }

    /// Stops drawing once the operation answered, and hands its `answer` on; an unfinished
    /// bar stays visible after a failure.
    pub fn end<T>(self, answer: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Some(bar) = self.bar {
            if answer.is_ok() {
                bar.finish_and_clear();
            } else {
                bar.abandon();
            }
        }
        answer
    }
}

/// Runs `call` with its progress shown by a [`ProgressMeter`] labelled `label` (a spinner
/// or one plain line saying `what` until the first event), and answers its outcome. Under
/// `--quiet` nothing is shown.
pub async fn with_progress<T>(
    output: Output,
    label: String,
    what: &str,
    call: impl AsyncFnOnce(OnProgress<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if !output.shows_progress() {
        return call(None).await;
    }
    let mut meter = ProgressMeter::new(label, what);
    let answer = call(Some(&mut |event| meter.show(event))).await;
    meter.end(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        phase: &str,
        done: u64,
        total: Option<u64>,
        unit: Unit,
        finished: bool,
    ) -> ProgressEvent {
        ProgressEvent {
            phase: phase.into(),
            done,
            total,
            unit,
            finished,
        }
    }

    #[test]
    fn plain_progress_lines_come_at_a_modest_rate() {
        let mut view = ProgressMeter {
            label: "commit demo".into(),
            terminal: false,
            bar: None,
            last_line: None,
        };
        let t0 = Instant::now();
        let gib = 2u64 << 30;
        let mut line = |done, finished, secs| {
            let e = event("read", done, Some(gib), Unit::Bytes, finished);
            view.plain_line(&e, t0 + Duration::from_secs(secs))
        };
        assert_eq!(
            line(0, false, 0).as_deref(),
            Some("commit demo: read 0 B of 2.00 GiB (0%)")
        );
        assert_eq!(line(100 << 20, false, 1), None, "under a tenth, under 2 s");
        assert_eq!(
            line(120 << 20, false, 3).as_deref(),
            Some("commit demo: read 120.00 MiB of 2.00 GiB (5%)")
        );
        assert_eq!(
            line(gib / 4, false, 3).as_deref(),
            Some("commit demo: read 512.00 MiB of 2.00 GiB (25%)"),
            "another tenth"
        );
        assert_eq!(line(gib / 4 + (1 << 20), false, 4), None);
        assert_eq!(
            line(gib, true, 4).as_deref(),
            Some("commit demo: read 2.00 GiB of 2.00 GiB (100%), done")
        );
        let scan = event("scan", 7, None, Unit::Items, false);
        assert_eq!(
            view.plain_line(&scan, t0).as_deref(),
            Some("commit demo: scan 7"),
            "a new phase always gets a line"
        );
    }
}
