//! Running cargo from inside a cargo-run program (an xtask, a test building an image).

use std::process::Command;

/// A `cargo` command without the variables `cargo run` and `cargo test` set for the program
/// itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...). Build scripts such as ring's track some of
/// them, so an inner build that inherited them would not reuse what a plain `cargo build`
/// compiled (and the next plain build would not reuse it either): minutes each time.
pub fn command() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    without_own_vars(&mut cmd);
    cmd
}

/// Removes those variables from `cmd`'s environment (for a cargo started through a wrapper such
/// as `nice`).
pub fn without_own_vars(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}
