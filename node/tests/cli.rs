//! Command-line behaviour of the `chaise` binary. (Having an integration test here
//! also makes `cargo test` build the binary that `integration-tests` drives.)

use std::process::Command;

#[test]
fn help_lists_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_chaise"))
        .arg("--help")
        .output()
        .expect("run chaise --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--port",
        "--bind-address",
        "--config",
        "--node-name",
    ] {
        assert!(text.contains(flag), "missing {flag} in help: {text}");
    }
}

#[test]
fn bad_flag_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_chaise"))
        .arg("--no-such-flag")
        .output()
        .expect("run chaise");
    assert!(!out.status.success());
}
