//! `include/mp_throttle.h` must be exactly what the sources generate.
//!
//! On failure, regenerate with `make header` (which runs
//! `MPT_BLESS=1 cargo test --test header`) and commit the result.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let version = format!(
        "\n#define MPT_VERSION_MAJOR {major}\n#define MPT_VERSION_MINOR {minor}\n\
         #define MPT_VERSION_PATCH {patch}\n#define MPT_VERSION_STRING \"{full}\"\n\
         /** The number in the shared library's SONAME (libmp_throttle.so.N). */\n\
         #define MPT_ABI_VERSION {major}\n",
        major = env!("CARGO_PKG_VERSION_MAJOR"),
        minor = env!("CARGO_PKG_VERSION_MINOR"),
        patch = env!("CARGO_PKG_VERSION_PATCH"),
        full = env!("CARGO_PKG_VERSION"),
    );
    let after = config.after_includes.take().unwrap_or_default();
    config.after_includes = Some(format!("{version}{after}"));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

#[test]
fn header_is_in_sync() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/mp_throttle.h");
    let generated = generate();
    if std::env::var_os("MPT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/mp_throttle.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/mp_throttle.h is stale: regenerate it with `make header` \
         (or `MPT_BLESS=1 cargo test --test header`) and commit it"
    );
}

#[test]
fn version_macros_match_cargo() {
    let header = generate();
    for (name, value) in [
        ("MPT_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("MPT_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("MPT_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
        ("MPT_ABI_VERSION", env!("CARGO_PKG_VERSION_MAJOR")),
    ] {
        assert!(
            header.contains(&format!("#define {name} {value}\n")),
            "{name} != {value}"
        );
    }
    assert!(header.contains(&format!(
        "#define MPT_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
}
