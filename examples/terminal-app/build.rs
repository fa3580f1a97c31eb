//! Rebuilds when the configuration in the environment changes (`from_env`).
fn main() {
    for var in [
        "TESSERA_PROVIDER",
        "TESSERA_BASE_URL",
        "TESSERA_CLIENT_ID",
        "TESSERA_CLIENT_SECRET",
        "TESSERA_API_URL",
        "TESSERA_ALLOW_INSECURE_HTTP",
        "TESSERA_TERMINAL",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}
