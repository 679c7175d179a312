//! What the README promises and a new user relies on without reading the code: its first
//! command leaves every binary it later calls by name, and its examples match the defaults.

mod common;

use std::path::Path;
use std::process::Command;

use common::run_bounded;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The lines of the README's ```sh and ```console blocks, prompts and comments removed.
fn command_lines(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if let Some(fence) = line.strip_prefix("```") {
            in_block = !in_block && matches!(fence, "sh" | "console");
            continue;
        }
        if in_block {
            let line = line.strip_prefix("$ ").unwrap_or(line);
            let command = line.split(" #").next().unwrap_or_default().trim();
            if !command.is_empty() && !command.starts_with('#') {
                lines.push(command.to_owned());
            }
        }
    }
    lines
}

/// The tlschat binaries a command line runs by name (not by a path such as
/// `target/release/chat`): at its start, or after `|`, `&&`, `;` or `runuser ... --`.
fn binaries_called(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut called = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let at_command_position =
            i == 0 || matches!(words[i - 1], "|" | "&&" | ";" | "--" | "$(" | "||");
        if at_command_position && word.starts_with("chat") && !word.contains('/') {
            called.push(word.to_string());
        }
    }
    called
}

#[test]
fn the_first_command_installs_every_binary_the_readme_calls_by_name() {
    let readme = readme();
    let lines = command_lines(&readme);
    let first = &lines[0];
    // `cargo install --path .` installs every binary target of the package onto the PATH
    // (~/.cargo/bin), then the server starts.
    assert!(
        first.starts_with("cargo install --locked --path . && chat-server"),
        "the README's first command: {first}"
    );
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    // Binaries that need a feature, or a package that lists its binaries itself, would not
    // all be installed by that command.
    assert!(!manifest.contains("required-features") && !manifest.contains("autobins"));
    let bin_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut called: Vec<String> = lines.iter().flat_map(|l| binaries_called(l)).collect();
    called.sort();
    called.dedup();
    for needed in ["chat", "chat-admin", "chat-server"] {
        assert!(
            called.iter().any(|c| c == needed),
            "{needed} is called: {called:?}"
        );
    }
    for binary in &called {
        assert!(
            bin_dir.join(format!("{binary}.rs")).exists()
                || bin_dir.join(binary).join("main.rs").exists(),
            "the README calls {binary}, which this package does not build"
        );
    }
}

#[test]
fn the_readme_sample_screen_shows_the_default_port() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CHAT_") {
            command.env_remove(name);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    command.current_dir(dir.path()).arg("check-config");
    let run = run_bounded(command, None);
    assert!(run.status.success(), "{run:?}");
    let listen = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("listen = "))
        .expect("listen in check-config");
    let port = listen.trim_matches('"').rsplit(':').next().unwrap();
    let readme = readme();
    let status_bar = readme
        .lines()
        .find(|line| line.starts_with(" connected | localhost:"))
        .expect("the sample screen's status bar");
    assert!(
        status_bar.contains(&format!("localhost:{port} ")),
        "default port {port}: {status_bar}"
    );
}
