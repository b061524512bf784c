//! Shared by the integration tests that read `../shared` (real data, peer oracles).

/// Reports that shared test data are missing: a failure under `CI=true` (CI always runs with
/// `../shared` beside the repository, so a missing directory means the run is not checking what it
/// claims), a printed skip otherwise.
pub fn shared_missing(what: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if ci {
        panic!("{what}; under CI=true ../shared must be present (missing data is a failure, not a skip)");
    }
    println!("SKIPPED: {what}");
}
