//! The daemon's `--log` filter, checked before it is used: a directive that does not parse, or
//! that names a target nothing in the daemon logs under (`dvol_plugn=debug`), is refused
//! rather than left to log nothing.

use std::str::FromStr;

use anyhow::{bail, Result};
use tracing_subscriber::filter::{Directive, EnvFilter, LevelFilter};

/// The targets of the workspace crates (a target is the module path of the code that logs,
/// starting with its crate's name).
pub const WORKSPACE_TARGETS: &[&str] = &[
    "dvol",
    "dvol_plugin",
    "dvol_api",
    "dvol_backends",
    "dvol_snapshot",
];

/// The libraries in the daemon that log (as built here: axum and hyper are built without
/// their logging, so they have nothing to enable).
pub const LIBRARY_TARGETS: &[&str] = &["bollard", "hyper_util", "rustls"];

/// What `--log` may name, for the error messages.
fn known_targets() -> String {
    format!(
        "targets are {} and the libraries {}; or give a bare level (trace, debug, info, warn, \
         error, off)",
        WORKSPACE_TARGETS.join(", "),
        LIBRARY_TARGETS.join(", ")
    )
}

/// Whether a directive's target selects anything the daemon logs under: as the filter does,
/// a directive target matches every target it is a prefix of (`dvol` covers `dvol_plugin`),
/// and a module path inside a crate (`dvol_plugin::rest`) is that crate's.
fn matches_a_target(target: &str) -> bool {
    WORKSPACE_TARGETS
        .iter()
        .chain(LIBRARY_TARGETS)
        .any(|known| known.starts_with(target) || target.starts_with(&format!("{known}::")))
}

/// The target a directive names: the text before its span filter (`[...]`) or its level
/// (`=LEVEL`); `None` for a bare level (`debug`) or a span filter without a target.
fn directive_target(directive: &str) -> Option<&str> {
    if !directive.contains(['=', '[']) && LevelFilter::from_str(directive).is_ok() {
        return None;
    }
    let target = directive.split(['[', '=']).next().unwrap_or("").trim();
    (!target.is_empty()).then_some(target)
}

/// Parses the `--log` filter `spec`, refusing it when it is empty, when a directive does not
/// parse, or when a directive names a target nothing logs under; the message names the
/// directive and lists the targets.
pub fn parse(spec: &str) -> Result<EnvFilter> {
    let directives: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        bail!("--log is empty, so the daemon would log nothing: give a level such as info");
    }
    for directive in &directives {
        if let Err(e) = Directive::from_str(directive) {
            bail!(
                "--log: cannot parse the directive {directive:?} ({e}): write TARGET=LEVEL \
                 (e.g. dvol_plugin=debug) or a level; {}",
                known_targets()
            );
        }
        if let Some(target) = directive_target(directive) {
            if !matches_a_target(target) {
                bail!(
                    "--log: the directive {directive:?} names the target {target:?}, which \
                     nothing in the daemon logs under, so it would select nothing; {}",
                    known_targets()
                );
            }
        }
    }
    match EnvFilter::try_new(directives.join(",")) {
        Ok(filter) => Ok(filter),
        Err(e) => bail!("--log {spec:?}: {e}; {}", known_targets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(spec: &str) -> String {
        format!("{:#}", parse(spec).expect_err(spec))
    }

    #[test]
    fn bare_levels_and_off_are_accepted() {
        for spec in [
            "info", "debug", "TRACE", "warn", "error", "off", "OFF", " info ",
        ] {
            assert!(parse(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn targets_of_the_workspace_and_its_logging_libraries_are_accepted() {
        for spec in [
            "dvol_plugin=debug",
            "dvol=trace",
            "info,dvol_plugin=debug,dvol_backends=warn",
            "dvol_plugin::rest=debug",
            "rustls=debug",
            "hyper_util=trace",
            "bollard=debug",
            "dvol_snapshot",
            "dvol_plugin[request]=debug",
            "[request]=debug",
            "info,",
        ] {
            assert!(
                parse(spec).is_ok(),
                "{spec}: {:#}",
                parse(spec).unwrap_err()
            );
        }
    }

    #[test]
    fn a_target_nothing_logs_under_is_refused_naming_it_and_the_targets() {
        for (spec, directive) in [
            ("dvol_plugn=debug", "dvol_plugn=debug"),
            ("foo=info", "foo=info"),
            ("info,tower_http=debug", "tower_http=debug"),
            ("dvolplugin", "dvolplugin"),
            ("dvol_plugin_x=debug", "dvol_plugin_x=debug"),
        ] {
            let message = refused(spec);
            assert!(message.contains(&format!("{directive:?}")), "{message}");
            for target in [
                "dvol",
                "dvol_plugin",
                "dvol_backends",
                "dvol_snapshot",
                "rustls",
            ] {
                assert!(message.contains(target), "{message} lacks {target}");
            }
        }
    }

    #[test]
    fn a_directive_that_does_not_parse_is_refused_naming_it() {
        for (spec, directive) in [
            ("dvol_plugin=loud", "dvol_plugin=loud"),
            ("info,dvol=debug=x", "dvol=debug=x"),
        ] {
            let message = refused(spec);
            assert!(
                message.contains("cannot parse") && message.contains(&format!("{directive:?}")),
                "{message}"
            );
        }
    }

    #[test]
    fn an_empty_filter_is_refused() {
        for spec in ["", " ", ","] {
            assert!(refused(spec).contains("empty"), "{spec:?}");
        }
    }
}
