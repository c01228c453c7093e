//! Section `docker`: `docker run --rm --network none -v VOL:/data IMG true` with the dvol driver
//! against Docker's `local` driver, alternating in one run; the aim is on the ratio of medians.

use anyhow::Result;
use dvol_tests::{Daemon, TEST_IMAGE};
use serde_json::json;

use crate::{docker_run, median, millis, round3, rounded, spread, Args, DockerCleanup, Report};

const AIM_RUN_RATIO: f64 = 1.10;

/// Section `docker`: `docker run ... true` with a dvol volume against a `local` one,
/// alternating which goes first.
pub fn run(
    args: &Args,
    report: &mut Report,
    daemon: &Daemon,
    cleanup: &mut DockerCleanup,
    run_id: &str,
) -> Result<()> {
    let dvol_volume = format!("dvolbench-{run_id}-dvol");
    let local_volume = format!("dvolbench-{run_id}-local");
    cleanup.create_volume(&dvol_volume, &daemon.driver, &[])?;
    cleanup.create_volume(&local_volume, "local", &[])?;
    let label = cleanup.label.clone();
    let timed_run = |volume: &str| docker_run(volume, &label, &["true"]).map(|(took, _)| took);
    for _ in 0..args.warmups {
        timed_run(&dvol_volume)?;
        timed_run(&local_volume)?;
    }
    let mut run_dvol = Vec::with_capacity(args.rounds);
    let mut run_local = Vec::with_capacity(args.rounds);
    let mut round_ratios = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        // Alternate which driver goes first so neither always follows the other.
        let (d, l) = if round % 2 == 0 {
            let d = timed_run(&dvol_volume)?;
            (d, timed_run(&local_volume)?)
        } else {
            let l = timed_run(&local_volume)?;
            (timed_run(&dvol_volume)?, l)
        };
        eprintln!(
            "  round {:>2}: dvol {:>7.1} ms  local {:>7.1} ms",
            round + 1,
            d.as_secs_f64() * 1e3,
            l.as_secs_f64() * 1e3
        );
        run_dvol.push(d);
        run_local.push(l);
        round_ratios.push(d.as_secs_f64() / l.as_secs_f64());
    }
    cleanup.remove_volume(&dvol_volume)?;
    cleanup.remove_volume(&local_volume)?;

    let (dvol_ms, local_ms) = (millis(&run_dvol), millis(&run_local));
    let (dvol_med, local_med) = (median(&dvol_ms), median(&local_ms));
    let ((dvol_p10, dvol_p90), (local_p10, local_p90)) = (spread(&dvol_ms), spread(&local_ms));
    let ratio = dvol_med / local_med;
    let ratio_of_rounds = median(&round_ratios);
    let ratio_pass = ratio <= AIM_RUN_RATIO;
    report.line(format!(
        "docker run: `docker run --rm --network none -v VOL:/data {TEST_IMAGE} true`, {} rounds + {} warm-ups per driver, alternating which goes first",
        args.rounds, args.warmups
    ));
    report.line(format!(
        "docker run dvol  driver    n={:<3} median {dvol_med:>7.1} ms  (p10 {dvol_p10:.1}, p90 {dvol_p90:.1})",
        run_dvol.len()
    ));
    report.line(format!(
        "docker run local driver    n={:<3} median {local_med:>7.1} ms  (p10 {local_p10:.1}, p90 {local_p90:.1})",
        run_local.len()
    ));
    let verdict = report.aim("docker run ratio", ratio_pass);
    report.line(format!(
        "docker run ratio dvol/local of medians {ratio:.3}  aim <= {AIM_RUN_RATIO:.2}  {verdict}   (median of per-round ratios {ratio_of_rounds:.3}; for information)"
    ));
    report.json.insert(
        "docker_run".into(),
        json!({
            "rounds": args.rounds,
            "warmups": args.warmups,
            "dvol": {"median_ms": round3(dvol_med), "p10_ms": round3(dvol_p10), "p90_ms": round3(dvol_p90),
                     "samples_ms": rounded(&dvol_ms)},
            "local": {"median_ms": round3(local_med), "p10_ms": round3(local_p10), "p90_ms": round3(local_p90),
                      "samples_ms": rounded(&local_ms)},
            "ratio_of_medians": round3(ratio),
            "median_of_round_ratios": round3(ratio_of_rounds),
            "aim_ratio_max": AIM_RUN_RATIO,
            "pass": ratio_pass,
        }),
    );
    Ok(())
}
