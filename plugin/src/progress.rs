//! Progress of a long API call as a stream of JSON lines (`application/x-ndjson`).
//!
//! [`ChannelProgress`] is a [`Progress`] that turns the history library's reports into
//! [`StreamLine::Progress`] events on a channel, at most one every [`MIN_INTERVAL`] per phase
//! plus one when a phase starts and one when it finishes. The API handler sends the
//! operation's outcome as the last line, a [`StreamLine::Result`] or [`StreamLine::Error`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dvol_snapshot::{Phase, Progress};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::ErrorDetail;

/// The media type of a streamed answer: one JSON object per line.
pub const NDJSON: &str = "application/x-ndjson";

/// Progress events closer together than this are merged (phase starts and ends are always
/// sent).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// What a phase counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Bytes of file or device data.
    Bytes,
    /// Files, objects or references.
    Items,
}

impl From<dvol_snapshot::Unit> for Unit {
    fn from(unit: dvol_snapshot::Unit) -> Self {
        match unit {
            dvol_snapshot::Unit::Bytes => Unit::Bytes,
            dvol_snapshot::Unit::Items => Unit::Items,
        }
    }
}

/// How far one phase of an operation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// The phase, e.g. `scan`, `read`, `checkout`, `verify objects`, `sweep`.
    pub phase: String,
    /// Units done so far in this phase.
    pub done: u64,
    /// Units in the whole phase, when known.
    pub total: Option<u64>,
    /// What the units are.
    pub unit: Unit,
    /// Whether the phase is over (its last event).
    #[serde(default)]
    pub finished: bool,
}

/// One line of a streamed answer: `{"progress": {...}}`, then `{"result": ...}` or
/// `{"error": {"code", "message"}}` as the last line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamLine<T> {
    /// How far the operation is.
    Progress(ProgressEvent),
    /// The operation's answer, as the call without streaming returns it.
    Result(T),
    /// Why the operation failed, as the call without streaming returns it.
    Error(ErrorDetail),
}

impl<T: Serialize> StreamLine<T> {
    /// The line as bytes, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
            format!(
                r#"{{"error":{{"code":"internal","message":"cannot encode the answer: {e}"}}}}"#
            )
            .into_bytes()
        });
        line.push(b'\n');
        line
    }
}

/// The phase in progress and what was last sent of it.
#[derive(Debug)]
struct Current {
    phase: Phase,
    done: u64,
    total: Option<u64>,
    sent_at: Instant,
}

/// A [`Progress`] that sends throttled [`ProgressEvent`]s, already encoded as lines, to a
/// channel. Sending never blocks; once the receiver is gone, events are dropped.
#[derive(Debug)]
pub struct ChannelProgress {
    lines: UnboundedSender<Vec<u8>>,
    phase: Mutex<Option<Current>>,
}

impl ChannelProgress {
    /// Progress sent as lines to `lines`.
    pub fn new(lines: UnboundedSender<Vec<u8>>) -> Self {
        ChannelProgress {
            lines,
            phase: Mutex::new(None),
        }
    }

    fn send(&self, current: &Current, finished: bool) {
        let event = StreamLine::<()>::Progress(ProgressEvent {
            phase: current.phase.name.to_string(),
            done: current.done,
            total: current.total,
            unit: current.phase.unit.into(),
            finished,
        });
        // A closed channel means the client went away; the operation still completes.
        let _ = self.lines.send(event.to_line());
    }

    fn with_phase(&self, f: impl FnOnce(&mut Option<Current>)) {
        let mut guard = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }
}

impl Progress for ChannelProgress {
    fn start(&self, phase: Phase, total: Option<u64>) {
        self.with_phase(|current| {
            let started = Current {
                phase,
                done: 0,
                total,
                sent_at: Instant::now(),
            };
            self.send(&started, false);
            *current = Some(started);
        });
    }

    fn advance(&self, n: u64) {
        self.with_phase(|current| {
            if let Some(phase) = current {
                phase.done = phase.done.saturating_add(n);
                if phase.sent_at.elapsed() >= MIN_INTERVAL {
                    phase.sent_at = Instant::now();
                    self.send(phase, false);
                }
            }
        });
    }

    fn finish(&self) {
        self.with_phase(|current| {
            if let Some(phase) = current.take() {
                self.send(&phase, true);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<ProgressEvent> {
        let mut out = Vec::new();
        while let Ok(line) = rx.try_recv() {
            assert_eq!(line.last(), Some(&b'\n'));
            match serde_json::from_slice::<StreamLine<()>>(&line).unwrap() {
                StreamLine::Progress(event) => out.push(event),
                other => panic!("unexpected line {other:?}"),
            }
        }
        out
    }

    #[test]
    fn phases_start_and_finish_and_advances_are_throttled() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let progress = ChannelProgress::new(tx);
        progress.start(Phase::READ, Some(1000));
        for _ in 0..1000 {
            progress.advance(1);
        }
        progress.finish();
        progress.start(Phase::SCAN, None);
        progress.advance(3);
        progress.finish();
        let got = events(&mut rx);
        // Everything ran well within MIN_INTERVAL: only starts and finishes.
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            ProgressEvent {
                phase: "read".into(),
                done: 0,
                total: Some(1000),
                unit: Unit::Bytes,
                finished: false
            }
        );
        assert_eq!((got[1].done, got[1].finished), (1000, true));
        assert_eq!((got[2].phase.as_str(), got[2].unit), ("scan", Unit::Items));
        assert_eq!(
            (got[3].done, got[3].total, got[3].finished),
            (3, None, true)
        );
    }

    #[test]
    fn slow_advances_are_reported_between_start_and_finish() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let progress = ChannelProgress::new(tx);
        progress.start(Phase::SWEEP, Some(2));
        std::thread::sleep(MIN_INTERVAL);
        progress.advance(1);
        progress.advance(1);
        progress.finish();
        let done: Vec<u64> = events(&mut rx).iter().map(|e| e.done).collect();
        assert_eq!(done, [0, 1, 2]);
    }

    #[test]
    fn lines_are_externally_tagged() {
        let line = StreamLine::<u32>::Result(7).to_line();
        assert_eq!(line, b"{\"result\":7}\n");
        let error = StreamLine::<u32>::Error(ErrorDetail {
            code: "busy".into(),
            message: "m".into(),
        });
        assert_eq!(
            String::from_utf8(error.to_line()).unwrap(),
            "{\"error\":{\"code\":\"busy\",\"message\":\"m\"}}\n"
        );
    }
}
