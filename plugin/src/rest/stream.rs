//! Streamed answers of long calls (commit, checkout, reset, fsck, gc) as JSON lines
//! (`application/x-ndjson`, see [`dvol_api::progress`]).
//!
//! [`answer`] runs the operation in its own task and, when the request asks for a stream,
//! sends [`ChannelProgress`] events as they come, then the outcome as the last line.
//! [`ChannelProgress`] turns the history library's reports into progress lines, at most one
//! every [`MIN_INTERVAL`] per phase plus one when a phase starts and one when it finishes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dvol_api::{ProgressEvent, StreamLine, Unit, NDJSON};
use dvol_snapshot::{NoProgress, Phase, Progress};
use serde::Serialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use super::error::ApiError;
use crate::error::ServiceError;
use crate::service::Reporter;

/// Progress events closer together than this are merged (phase starts and ends are always
/// sent).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Whether the request's `Accept` header asks for `application/x-ndjson`.
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case(NDJSON)
        })
}

/// The next thing a streamed answer has to say.
enum Next<T> {
    /// A progress line.
    Line(Vec<u8>),
    /// The operation is over.
    Done(Result<T, ApiError>),
}

/// An operation running in its own task.
type Outcome<T> = JoinHandle<Result<T, ApiError>>;

fn worker_failed(e: tokio::task::JoinError) -> ApiError {
    ServiceError::Worker {
        message: e.to_string(),
    }
    .into()
}

async fn next<T>(lines: &mut UnboundedReceiver<Vec<u8>>, outcome: &mut Outcome<T>) -> Next<T> {
    tokio::select! {
        biased;
        Some(line) = lines.recv() => Next::Line(line),
        joined = outcome => Next::Done(joined.unwrap_or_else(|e| Err(worker_failed(e)))),
    }
}

/// A streamed answer being sent: lines ready to go, further progress, and the operation.
struct Streaming<T> {
    ready: VecDeque<Vec<u8>>,
    lines: UnboundedReceiver<Vec<u8>>,
    outcome: Option<Outcome<T>>,
}

impl<T: Serialize> Streaming<T> {
    /// Queues the progress lines already sent and then the outcome as the last line.
    fn finish(&mut self, outcome: Result<T, ApiError>) {
        self.outcome = None;
        while let Ok(line) = self.lines.try_recv() {
            self.ready.push_back(line);
        }
        let last = match outcome {
            Ok(value) => StreamLine::Result(value),
            Err(e) => StreamLine::Error(e.detail()),
        };
        self.ready.push_back(last.to_line());
    }

    async fn next_line(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if self.ready.is_empty() {
            let outcome = self.outcome.as_mut()?;
            match next(&mut self.lines, outcome).await {
                Next::Line(line) => self.ready.push_back(line),
                Next::Done(result) => self.finish(result),
            }
        }
        let line = self.ready.pop_front()?;
        Some((Ok(Bytes::from(line)), self))
    }
}

/// Runs a long operation and answers its outcome.
///
/// Without `Accept: application/x-ndjson`, the answer is the JSON value with `status`, or the
/// error. With it, the answer is `200` and a stream of JSON lines: progress events, then one
/// `{"result": ...}` or `{"error": ...}` line. An operation that fails before its first
/// progress event (bad volume, busy, uncommitted changes, containers that cannot be stopped)
/// is answered as without streaming, with the error's status.
///
/// The operation runs in its own task, so it completes (and restarts the containers it
/// stopped) even when the client goes away.
pub async fn answer<T, E, Fut>(
    headers: &HeaderMap,
    status: StatusCode,
    work: impl FnOnce(Reporter) -> Fut,
) -> Response
where
    T: Serialize + Send + 'static,
    E: Into<ApiError>,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let run = |progress: Reporter| {
        let operation = work(progress);
        tokio::spawn(async move { operation.await.map_err(Into::into) })
    };
    if !wants_stream(headers) {
        return match run(Arc::new(NoProgress)).await {
            Ok(Ok(value)) => (status, Json(value)).into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(e) => worker_failed(e).into_response(),
        };
    }
    let (sender, mut lines) = unbounded_channel();
    let mut outcome = run(Arc::new(ChannelProgress::new(sender)));
    let first = next(&mut lines, &mut outcome).await;
    let mut stream = Streaming {
        ready: VecDeque::new(),
        lines,
        outcome: Some(outcome),
    };
    match first {
        Next::Line(line) => stream.ready.push_back(line),
        Next::Done(Err(e)) if stream.lines.is_empty() => return e.into_response(),
        Next::Done(result) => stream.finish(result),
    }
    let body = Body::from_stream(futures_util::stream::unfold(stream, Streaming::next_line));
    ([(header::CONTENT_TYPE, NDJSON)], body).into_response()
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
            unit: match current.phase.unit {
                dvol_snapshot::Unit::Bytes => Unit::Bytes,
                dvol_snapshot::Unit::Items => Unit::Items,
            },
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
    use http_body_util::BodyExt;
    use serde_json::{json, Value};

    fn ndjson() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;q=0.5, application/x-ndjson"
                .parse()
                .unwrap(),
        );
        headers
    }

    async fn lines(response: Response) -> Vec<Value> {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn busy() -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "busy", "volume v is busy; try again")
    }

    fn events(rx: &mut UnboundedReceiver<Vec<u8>>) -> Vec<ProgressEvent> {
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
    fn only_the_ndjson_media_type_asks_for_a_stream() {
        assert!(wants_stream(&ndjson()));
        let mut plain = HeaderMap::new();
        assert!(!wants_stream(&plain));
        plain.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_stream(&plain));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_after_progress_is_the_last_line() {
        let response = answer(&ndjson(), StatusCode::CREATED, |progress| async move {
            tokio::task::spawn_blocking(move || {
                progress.start(Phase::READ, Some(10));
                progress.advance(4);
                progress.finish();
            })
            .await
            .unwrap();
            Err::<(), _>(busy())
        })
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], NDJSON);
        let got = lines(response).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0]["progress"]["phase"], "read");
        assert_eq!(got[1]["progress"]["done"], 4);
        assert_eq!(got[1]["progress"]["finished"], true);
        assert_eq!(
            got[2],
            json!({"error": {"code": "busy", "message": "volume v is busy; try again"}})
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_before_any_progress_keeps_its_status() {
        let response = answer(&ndjson(), StatusCode::CREATED, |_| async {
            Err::<(), _>(busy())
        })
        .await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "busy");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_progress_a_stream_is_just_the_result() {
        let response = answer(&ndjson(), StatusCode::CREATED, |_| async {
            Ok::<_, ApiError>(json!(5))
        })
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(lines(response).await, [json!({"result": 5})]);
        let plain = answer(&HeaderMap::new(), StatusCode::CREATED, |_| async {
            Ok::<_, ApiError>(5)
        })
        .await;
        assert_eq!(plain.status(), StatusCode::CREATED);
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn phases_start_and_finish_and_advances_are_throttled() {
        let (tx, mut rx) = unbounded_channel();
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
        let (tx, mut rx) = unbounded_channel();
        let progress = ChannelProgress::new(tx);
        progress.start(Phase::SWEEP, Some(2));
        std::thread::sleep(MIN_INTERVAL);
        progress.advance(1);
        progress.advance(1);
        progress.finish();
        let done: Vec<u64> = events(&mut rx).iter().map(|e| e.done).collect();
        assert_eq!(done, [0, 1, 2]);
    }
}
