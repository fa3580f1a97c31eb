//! Rebuilds when the configuration in the environment changes.
fn main() {
    for var in [
        "WIFI_SSID",
        "WIFI_PASSWORD",
        "TESSERA_PROVIDER",
        "TESSERA_BASE_URL",
        "TESSERA_CLIENT_ID",
        "TESSERA_CLIENT_SECRET",
        "TESSERA_API_URL",
        "TESSERA_SLEEP_S",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}
