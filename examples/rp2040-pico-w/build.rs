//! Puts memory.x on the linker's path and rebuilds when the configuration changes.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    for var in [
        "WIFI_SSID",
        "WIFI_PASSWORD",
        "TESSERA_PROVIDER",
        "TESSERA_BASE_URL",
        "TESSERA_CLIENT_ID",
        "TESSERA_CLIENT_SECRET",
        "TESSERA_API_URL",
        "TESSERA_NTP_SERVER",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}
