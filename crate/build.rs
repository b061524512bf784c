fn main() {
    // Only the addon needs Node's link setup; pure `cargo test` runs without Node.
    if std::env::var_os("CARGO_FEATURE_BINDING").is_some() {
        napi_build::setup();
    }
}
