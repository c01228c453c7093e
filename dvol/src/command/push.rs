//! `dvol push` and `dvol clone`: a volume and its history to or from a remote, through this
//! host's daemon (which keeps the remote's credentials).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use dvol_api::{
    CloneRequest, MoveRequest, MoveResult, PullRequest, PushRequest, TransferOutcome,
    TransferResult, UpdateMode,
};

use super::resumed::check_resumed;
use crate::client::Client;
use crate::current;
use crate::render::format::{human_bytes, short_id};
use crate::render::output::Output;
use crate::render::progress::with_progress;

/// What `dvol push` was asked.
#[derive(Debug)]
pub struct Push {
    /// The remote.
    pub remote: String,
    /// The branch to send.
    pub branch: Option<String>,
    /// The name on the remote.
    pub as_name: Option<String>,
    /// How the remote's branch may move.
    pub mode: UpdateMode,
    /// Stop, check out and restart on the remote.
    pub checkout: bool,
    /// Tries after a lost connection.
    pub retries: u32,
}

/// `dvol push REMOTE [BRANCH] [--as NAME] [--stash|--force] [--checkout] [--retries N] [--json]`
pub async fn push(client: &Client, volume: Option<&str>, push: Push, output: Output) -> Result<()> {
    let volume = current::resolve(volume)?;
    let request = PushRequest {
        remote: push.remote.clone(),
        branch: push.branch,
        as_name: push.as_name,
        mode: push.mode,
        checkout: push.checkout,
        retries: Some(push.retries),
    };
    let what = format!("pushing volume {volume} to {}", push.remote);
    let result = with_progress(output, format!("push {volume}"), &what, async |p| {
        client.push(&volume, &request, p).await
    })
    .await?;
    report(&result, output, None)
}

/// How a remote's branch (or the local one, for a pull) may move: `--stash`, `--force`.
pub fn mode(stash: bool, force: bool) -> UpdateMode {
    match (stash, force) {
        (true, _) => UpdateMode::Stash,
        (_, true) => UpdateMode::Force,
        _ => UpdateMode::FastForward,
    }
}

/// What `dvol fetch` and `dvol pull` were asked.
#[derive(Debug)]
pub struct Pull {
    /// The local volume, if named.
    volume: Option<String>,
    request: PullRequest,
}

impl Pull {
    /// From `REMOTE [VOLUME][:BRANCH]`, the volume -V names (when the source names none) and
    /// the flags.
    pub fn new(
        remote: String,
        source: Option<&str>,
        volume_arg: Option<&str>,
        stash: bool,
        force: bool,
        retries: u32,
    ) -> Result<Pull> {
        let (volume, branch) = match source.map(|s| s.split_once(':').unwrap_or((s, ""))) {
            None => (None, None),
            Some((v, b)) => (
                (!v.is_empty()).then(|| v.to_string()),
                (!b.is_empty()).then(|| b.to_string()),
            ),
        };
        Ok(Pull {
            volume: volume.or_else(|| volume_arg.map(str::to_string)),
            request: PullRequest {
                remote,
                volume: None,
                branch,
                mode: mode(stash, force),
                retries: Some(retries),
            },
        })
    }
}

/// `dvol fetch|pull REMOTE [VOLUME][:BRANCH] [--stash|--force] [--retries N] [--json]`
/// (`what`: `fetch` or `pull`).
pub async fn pull(client: &Client, what: &str, pull: Pull, output: Output) -> Result<()> {
    let volume = current::resolve(pull.volume.as_deref())?;
    let doing = format!("{what}ing volume {volume} from {}", pull.request.remote);
    let result = with_progress(output, format!("{what} {volume}"), &doing, async |p| {
        client.pull(&volume, what, &pull.request, p).await
    })
    .await?;
    report(&result, output, None)
}

/// What `dvol clone` copies from where, and how hard it tries.
pub struct CloneTarget {
    /// The remote.
    pub remote: String,
    /// VOLUME or VOLUME:BRANCH there.
    pub source: String,
    /// The local name, if not the remote volume's.
    pub local: Option<String>,
    /// Tries after a lost connection.
    pub retries: u32,
}

/// `dvol clone REMOTE VOLUME[:BRANCH] [LOCAL] [-o KEY=VALUE]... [--retries N] [--json]`
pub async fn clone(
    client: &Client,
    target: CloneTarget,
    opts: &[String],
    output: Output,
) -> Result<()> {
    let CloneTarget {
        remote,
        source,
        local,
        retries,
    } = target;
    let source = source.as_str();
    let (volume, branch) = match source.split_once(':') {
        Some((v, b)) if !b.is_empty() => (v.to_string(), Some(b.to_string())),
        Some(_) => bail!("{source:?}: write VOLUME or VOLUME:BRANCH"),
        None => (source.to_string(), None),
    };
    let mut options = BTreeMap::new();
    for opt in opts {
        let Some((key, value)) = opt.split_once('=') else {
            bail!("option {opt:?} is not KEY=VALUE (e.g. -o profile=silver)");
        };
        options.insert(key.to_string(), value.to_string());
    }
    let request = CloneRequest {
        remote: remote.clone(),
        volume: volume.clone(),
        branch,
        name: local,
        options,
        retries: Some(retries),
    };
    let what = format!("cloning volume {volume} from {remote}");
    let result = with_progress(output, format!("clone {volume}"), &what, async |p| {
        client.clone_remote(&request, p).await
    })
    .await?;
    report(&result, output, Some(&result.volume))
}

/// `800ms`, `5s`, `2m` as milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = match digits.parse() {
        Ok(n) => n,
        Err(_) => bail!("--max-downtime {text:?}: write a duration such as 800ms, 5s or 2m"),
    };
    let factor = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        _ => bail!("--max-downtime {text:?}: the unit is ms, s or m (e.g. 800ms, 5s, 2m)"),
    };
    Ok(n.saturating_mul(factor))
}

/// `dvol move VOLUME REMOTE [--max-downtime D] [--stop|--wait-unmount] [--retries N] [--json]`
pub async fn move_volume(
    client: &Client,
    volume: String,
    remote: String,
    max_downtime: &str,
    wait_unmount: bool,
    retries: u32,
    output: Output,
) -> Result<()> {
    let request = MoveRequest {
        remote: remote.clone(),
        max_downtime_ms: Some(parse_duration_ms(max_downtime)?),
        wait_unmount,
        only_if_unused: false,
        retries: Some(retries),
    };
    let what = format!("moving volume {volume} to {remote}");
    let result = with_progress(output, format!("move {volume}"), &what, async |p| {
        client.move_volume(&volume, &request, p).await
    })
    .await?;
    output.result(&result, None, || print_move(&volume, &remote, &result))
}

/// The text of a move's result: its rounds, its downtime, the containers it stopped.
fn print_move(volume: &str, remote: &str, result: &MoveResult) {
    for (i, round) in result.rounds.iter().enumerate() {
        println!(
            " pre-copy round {}: {} object(s), {} in {} ms",
            i + 1,
            round.objects,
            human_bytes(round.bytes),
            round.millis
        );
    }
    println!(
        "volume {volume} moved to {remote} at {}: final round {} object(s) ({}), downtime {} ms",
        short_id(&result.transfer.commit),
        result.transfer.objects_sent,
        human_bytes(result.transfer.bytes_sent),
        result.downtime_ms
    );
    if !result.stopped.is_empty() {
        println!(
            " stopped here: {}; start them on {remote}",
            result.stopped.join(", ")
        );
    }
}

/// Prints a push's, pull's, fetch's or clone's result (under `--quiet` only `quiet_id`, if
/// any), then fails if containers could not be started again.
fn report(result: &TransferResult, output: Output, quiet_id: Option<&str>) -> Result<()> {
    output.result(result, quiet_id, || print_transfer(result))?;
    check_resumed(&result.not_resumed, false)
}

/// The text of a push's, pull's, fetch's or clone's result.
fn print_transfer(result: &TransferResult) {
    let at = short_id(&result.commit);
    let target = format!("{} {}:{}", result.remote, result.volume, result.branch);
    match result.outcome {
        TransferOutcome::UpToDate => println!("{target} is up to date at {at}; nothing sent"),
        TransferOutcome::Created => println!("{target} created at {at}"),
        TransferOutcome::FastForward => println!(
            "{target}: {} -> {at}",
            result
                .old_commit
                .as_deref()
                .map(short_id)
                .unwrap_or_default()
        ),
        TransferOutcome::Forced => println!(
            "{target}: {} -> {at} (forced)",
            result
                .old_commit
                .as_deref()
                .map(short_id)
                .unwrap_or_default()
        ),
        TransferOutcome::Stashed => println!(
            "{target}: {} -> {at}; the old position is kept as branch {}",
            result
                .old_commit
                .as_deref()
                .map(short_id)
                .unwrap_or_default(),
            result.stashed_as.as_deref().unwrap_or("?")
        ),
    }
    if result.outcome != TransferOutcome::UpToDate {
        println!(
            " {} commit(s), {} object(s) sent ({}), {} already there",
            result.commits,
            result.objects_sent,
            human_bytes(result.bytes_sent),
            result.objects_skipped
        );
    }
    if result.attempts > 1 {
        println!(
            " in {} tries: the connection was lost and tried again",
            result.attempts
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downtimes_are_milliseconds_seconds_or_minutes() {
        assert_eq!(parse_duration_ms("800ms").unwrap(), 800);
        assert_eq!(parse_duration_ms("5s").unwrap(), 5000);
        assert_eq!(parse_duration_ms("2m").unwrap(), 120_000);
        assert_eq!(parse_duration_ms("7").unwrap(), 7000);
        for bad in ["", "s", "5h", "-1s", "1.5s"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
