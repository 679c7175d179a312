//! The full-screen `chat` as a person uses it: the real binary inside `tmux`, keys typed
//! with `send-keys`, the screen read with `capture-pane`. Against the real server, which is
//! restarted under the client to check that it reconnects and catches up exactly once.
//!
//! Skipped (with a note) when `tmux` is missing; CI installs it, and there a missing
//! binary is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::admin::issue_code;
use common::TestServer;

const ALICE_PASSWORD: &str = "alices password 1";
const BOB_PASSWORD: &str = "bobs password 123";
const CAROL_PASSWORD: &str = "carols password 1";
/// Messages said in #general while the clients are away: more than the server's login
/// replay of 20, fewer than fit on the screen.
const AWAY_MESSAGES: u32 = 25;
/// Longest wait for something to appear on the screen.
const SCREEN_WAIT: Duration = Duration::from_secs(20);

fn tmux_available() -> bool {
    match Command::new("tmux").arg("-V").output() {
        Ok(output) if output.status.success() => true,
        _ if std::env::var_os("CI").is_some() => panic!("CI must provide the `tmux` binary"),
        _ => {
            eprintln!("SKIPPED: no tmux binary");
            false
        }
    }
}

/// One tmux server of our own (its own socket), so tests never touch a user's sessions.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Starts `command` in a detached 100x50 session named `name`.
    fn start(&self, name: &str, command: &str) {
        self.start_sized(name, command, 100);
    }

    /// Starts `command` in a detached session `columns` wide and 50 rows high.
    fn start_sized(&self, name: &str, command: &str, columns: u16) {
        let columns = columns.to_string();
        let output = self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &columns,
            "-y",
            "50",
            command,
        ]);
        assert!(output.status.success(), "tmux: {output:?}");
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        let output = self.run(&args);
        assert!(output.status.success(), "tmux send-keys: {output:?}");
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, name: &str, text: &str) {
        self.keys(name, &["-l", text]);
        self.keys(name, &["Enter"]);
    }

    fn screen(&self, name: &str) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", name]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen satisfies `check`; fails with the last screen otherwise.
    async fn wait_for(&self, name: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = self.screen(name);
            if check(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what}:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The command line of `nick`'s `chat`; without `password`, chat asks for it.
fn chat_command(
    port: u16,
    ca: &Path,
    config_home: &Path,
    nick: &str,
    password: Option<&str>,
) -> String {
    // `env` takes its `-u`s before any assignment.
    let (unset, password) = match password {
        Some(password) => ("", format!("CHAT_PASSWORD='{password}'")),
        None => ("-u CHAT_PASSWORD", String::new()),
    };
    // The environment is the person's: a terminal, a home for config and known_hosts.
    // The shell stays after `chat` ends, to show how it ended.
    format!(
        "env -u CHAT_SERVER -u CHAT_CA -u CHAT_NICK {unset} TERM=xterm-256color TZ=UTC \
         XDG_CONFIG_HOME='{}' {password} '{}' localhost:{port} --ca '{}' --nick {nick}; \
         echo chat exited with $?; sleep 600",
        config_home.display(),
        env!("CARGO_BIN_EXE_chat"),
        ca.display(),
    )
}

fn occurrences(screen: &str, text: &str) -> usize {
    screen.matches(text).count()
}

/// Starts `nick`'s `chat` in a tmux session of that name and waits for its chat screen.
async fn open_chat(
    tmux: &Tmux,
    server: &TestServer,
    config_home: &Path,
    nick: &str,
    password: &str,
) {
    let ca = server.files.certs().ca_cert;
    tmux.start(
        nick,
        &chat_command(server.addr.port(), &ca, config_home, nick, Some(password)),
    );
    let screen = tmux
        .wait_for(nick, "the logged-in chat", |s| {
            s.contains("connected | localhost:") && s.contains("#general>")
        })
        .await;
    assert!(screen.contains("1 #general"), "the room list:\n{screen}");
    assert!(!screen.contains("WELCOME"), "no raw protocol:\n{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_in_two_rooms_and_a_dm_and_survive_a_server_restart() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", ALICE_PASSWORD).await;
    server.add_user("bob", BOB_PASSWORD).await;
    server.add_user("carol", CAROL_PASSWORD).await;
    let addr = server.addr;
    let config_home = tempfile::tempdir().unwrap();
    // Carol speaks the protocol directly: she checks what the terminals send.
    let mut carol = server.login("carol", CAROL_PASSWORD).await;

    let tmux = Tmux::new();
    open_chat(&tmux, &server, config_home.path(), "alice", ALICE_PASSWORD).await;
    open_chat(&tmux, &server, config_home.path(), "bob", BOB_PASSWORD).await;

    // A message typed into the room reaches everyone, and both screens show it.
    tmux.type_line("alice", "hello from the terminal");
    let line = carol.skip_until("MSG #general ").await;
    assert!(line.ends_with(" alice hello from the terminal"), "{line}");
    for nick in ["alice", "bob"] {
        tmux.wait_for(nick, "alice's message", |s| {
            s.contains("<alice> hello from the terminal")
        })
        .await;
    }
    tmux.type_line("bob", "hi alice");
    let screen = tmux
        .wait_for("alice", "bob's reply", |s| s.contains("<bob> hi alice"))
        .await;
    assert!(screen.contains("online: alice, bob, carol"), "{screen}");

    // /join makes a room and switches to it; both join the second room.
    for nick in ["alice", "bob"] {
        tmux.type_line(nick, "/join #tmux");
        tmux.wait_for(nick, "the new room", |s| {
            s.contains("2 #tmux") && s.contains("#tmux>")
        })
        .await;
    }
    tmux.type_line("bob", "second room works");
    tmux.wait_for("alice", "bob in #tmux", |s| {
        s.contains("<bob> second room works")
    })
    .await;

    // Bob writes privately while alice looks at #tmux: a conversation of its own, unread.
    tmux.type_line("bob", "/msg alice are you there?");
    tmux.wait_for("alice", "the DM in the room list", |s| {
        s.contains("@bob 1!")
    })
    .await;
    tmux.keys("alice", &["M-3"]);
    tmux.wait_for("alice", "the DM conversation", |s| {
        s.contains("<bob> are you there?") && s.contains("@bob>")
    })
    .await;
    tmux.type_line("alice", "yes");
    tmux.wait_for("bob", "alice's answer", |s| s.contains("<alice> yes"))
        .await;

    // The server restarts. Both clients lose it; once they have failed to reconnect at
    // least once, carol says something in each room: they must catch up, not hear it live.
    // More than the 20 messages the login replay brings, so the catch-up must fetch the rest.
    carol.close().await;
    let files = server.stop().await;
    for nick in ["alice", "bob"] {
        tmux.wait_for(nick, "a failed reconnect", |s| s.contains("(attempt 2)"))
            .await;
    }
    let server = TestServer::restart_at(files, addr).await;
    let mut carol = server.login("carol", CAROL_PASSWORD).await;
    for n in 1..=AWAY_MESSAGES {
        carol.send(&format!("/say #general away-{n:02}")).await;
    }
    carol.send("/say #general said while you were away").await;
    loop {
        let line = carol.skip_until("MSG #general ").await;
        if line.ends_with("said while you were away") {
            break;
        }
    }
    carol.send("/join #tmux").await;
    carol.send("/say #tmux also in this room").await;
    carol.skip_until("MSG #tmux ").await;

    for nick in ["alice", "bob"] {
        tmux.wait_for(nick, "the reconnection", |s| {
            s.contains(" connected | ") && s.contains("Reconnected")
        })
        .await;
        tmux.keys(nick, &["M-1"]);
        let away: Vec<String> = (1..=AWAY_MESSAGES)
            .map(|n| format!("away-{n:02}"))
            .collect();
        let texts = [
            "said while you were away",
            "hello from the terminal",
            "hi alice",
        ];
        // The catch-up streams in while the screen is read, and a capture can catch a frame
        // half drawn: wait for the finished picture (the oldest only the catch-up brings,
        // the newest the login replay), then check it. A message lost or shown twice never
        // gives that picture, and the wait fails with the screen.
        let screen = tmux
            .wait_for(nick, "what was said in #general meanwhile", |s| {
                s.contains("#general>")
                    && texts
                        .iter()
                        .copied()
                        .chain(away.iter().map(String::as_str))
                        .all(|text| occurrences(s, text) == 1)
            })
            .await;
        for text in texts.iter().copied().chain(away.iter().map(String::as_str)) {
            assert_eq!(
                occurrences(&screen, text),
                1,
                "{nick} sees {text:?} exactly once:\n{screen}"
            );
        }
        tmux.keys(nick, &["M-2"]);
        let screen = tmux
            .wait_for(nick, "what was said in #tmux meanwhile", |s| {
                s.contains("also in this room") && s.contains("#tmux>")
            })
            .await;
        for text in ["also in this room", "second room works"] {
            assert_eq!(
                occurrences(&screen, text),
                1,
                "{nick} sees {text:?} exactly once:\n{screen}"
            );
        }
    }

    // Ctrl+C leaves cleanly, and the others see her go.
    tmux.keys("alice", &["C-c"]);
    let leave = carol.skip_until("LEAVE #general ").await;
    assert!(leave.contains(" alice "), "{leave}");
    tmux.wait_for("alice", "a clean exit", |s| {
        s.contains("chat exited with 0")
    })
    .await;
    tmux.wait_for("bob", "alice leaving", |s| {
        s.contains("<-- alice left (quit)")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_teammate_logs_in_with_an_invite_code_and_chooses_a_password() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start().await;
    let code = issue_code(&server.files.db(), &["invite", "carol"]).await;
    let config_home = tempfile::tempdir().unwrap();
    let ca = server.files.certs().ca_cert;
    let tmux = Tmux::new();
    tmux.start(
        "carol",
        &chat_command(server.addr.port(), &ca, config_home.path(), "carol", None),
    );
    tmux.wait_for("carol", "the password prompt", |s| s.contains("Password:"))
        .await;
    tmux.type_line("carol", &code);
    tmux.wait_for("carol", "the new password prompt", |s| {
        s.contains("one-time code") && s.contains("New password:")
    })
    .await;
    tmux.type_line("carol", "short");
    tmux.wait_for("carol", "the length rule", |s| s.contains("at least 8"))
        .await;
    tmux.type_line("carol", "carols own passphrase");
    tmux.wait_for("carol", "the repeat prompt", |s| s.contains("Repeat it:"))
        .await;
    tmux.type_line("carol", "carols own passphrase");
    tmux.wait_for("carol", "the logged-in chat", |s| {
        s.contains("connected | localhost:") && s.contains("#general>")
    })
    .await;
    tmux.type_line("carol", "hello, I am new here");
    // On the screen once the server has stored it and echoed it back.
    tmux.wait_for("carol", "her message", |s| {
        s.contains("<carol> hello, I am new here")
    })
    .await;

    let mut again = server.login("carol", "carols own passphrase").await;
    again.send("/history #general 5").await;
    let history = again.collect_until("END history").await;
    assert!(
        history
            .iter()
            .any(|l| l.ends_with(" carol hello, I am new here")),
        "{history:#?}"
    );
}

/// Puts `text` in a tmux paste buffer and pastes it into `name`: as a bracketed paste when
/// `bracketed` (the terminal tells the program where the paste starts and ends), else as
/// typed keys, line breaks as Enter, as a terminal without bracketed paste does.
fn paste(tmux: &Tmux, name: &str, text: &str, bracketed: bool) {
    let output = tmux.run(&["set-buffer", "-b", "paste", text]);
    assert!(output.status.success(), "tmux set-buffer: {output:?}");
    let mut args = vec!["paste-buffer", "-b", "paste", "-t", name];
    if bracketed {
        args.push("-p");
    }
    let output = tmux.run(&args);
    assert!(output.status.success(), "tmux paste-buffer: {output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_line_paste_arrives_as_thirty_messages_with_or_without_bracketed_paste() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", ALICE_PASSWORD).await;
    server.add_user("carol", CAROL_PASSWORD).await;
    let config_home = tempfile::tempdir().unwrap();
    let mut carol = server.login("carol", CAROL_PASSWORD).await;
    let tmux = Tmux::new();
    open_chat(&tmux, &server, config_home.path(), "alice", ALICE_PASSWORD).await;

    for (round, bracketed) in [(1, true), (2, false)] {
        let text: String = (1..=30)
            .map(|n| format!("paste {round} line {n:02}\n"))
            .collect();
        paste(&tmux, "alice", &text, bracketed);
        tmux.wait_for("alice", "the question before a large paste", |s| {
            s.contains("Send 30 pasted lines to #general? y: send")
        })
        .await;
        tmux.keys("alice", &["y"]);
        // Every line, in order, as a message of its own; none refused for flooding.
        for n in 1..=30 {
            let line = carol.skip_until("MSG #general ").await;
            assert!(
                line.ends_with(&format!(" alice paste {round} line {n:02}")),
                "{line}"
            );
        }
        let screen = tmux
            .wait_for("alice", "the last pasted line", |s| {
                s.contains(&format!("<alice> paste {round} line 30"))
            })
            .await;
        assert!(!screen.contains("rate-limited"), "{screen}");
    }
    carol.send("/history #general 100").await;
    let history = carol.collect_until("END history").await;
    assert_eq!(history.len() - 1, 60, "{history:#?}");

    // A line longer than the server takes is refused by the client, and stays in the input.
    paste(&tmux, "alice", &"x".repeat(5000), true);
    tmux.wait_for("alice", "the pasted line in the input", |s| {
        s.contains("#general> xxxxxxxxxx")
    })
    .await;
    tmux.keys("alice", &["Enter"]);
    let screen = tmux
        .wait_for("alice", "the refusal", |s| {
            s.contains("Not sent: that line is 5014 bytes")
        })
        .await;
    assert!(screen.contains("#general> xxxxxxxxxx"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_asks_without_showing_or_remembering_the_passwords() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start().await;
    // The README's kind of passphrase: with spaces.
    server.add_user("alice", ALICE_PASSWORD).await;
    let config_home = tempfile::tempdir().unwrap();
    let tmux = Tmux::new();
    open_chat(&tmux, &server, config_home.path(), "alice", ALICE_PASSWORD).await;
    const NEW_PASSWORD: &str = "a brand new passphrase";

    tmux.type_line("alice", "/passwd");
    tmux.wait_for("alice", "the question for the current password", |s| {
        s.contains("Current password (hidden")
    })
    .await;
    tmux.type_line("alice", ALICE_PASSWORD);
    tmux.wait_for("alice", "the question for the new one", |s| {
        s.contains("New password (hidden")
    })
    .await;
    tmux.keys("alice", &["-l", NEW_PASSWORD]);
    let screen = tmux.screen("alice");
    assert!(!screen.contains(NEW_PASSWORD), "{screen}");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "the question to repeat it", |s| {
        s.contains("Repeat the new password")
    })
    .await;
    tmux.type_line("alice", NEW_PASSWORD);
    let screen = tmux
        .wait_for("alice", "the server's confirmation", |s| {
            s.contains("-- Password changed.")
        })
        .await;
    for secret in [ALICE_PASSWORD, NEW_PASSWORD, "brand new"] {
        assert!(!screen.contains(secret), "{secret:?} on screen:\n{screen}");
    }
    // Up brings back no password.
    tmux.keys("alice", &["Up"]);
    let screen = tmux.screen("alice");
    for secret in [ALICE_PASSWORD, NEW_PASSWORD, "/passwd"] {
        assert!(!screen.contains(secret), "{secret:?} on screen:\n{screen}");
    }
    server.login("alice", NEW_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_bar_tells_how_reconnecting_goes_and_why_a_session_ended() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", ALICE_PASSWORD).await;
    server.add_user("carol", CAROL_PASSWORD).await;
    let addr = server.addr;
    let db = server.files.db();
    common::admin::assert_success(
        &common::admin::admin_async(&db, &["role", "carol", "admin"], None).await,
    );
    let config_home = tempfile::tempdir().unwrap();
    let tmux = Tmux::new();
    open_chat(&tmux, &server, config_home.path(), "alice", ALICE_PASSWORD).await;

    // The server goes away: failures are told in the status bar, not piled up as lines.
    let files = server.stop().await;
    let screen = tmux
        .wait_for("alice", "failed attempts in the status bar", |s| {
            s.contains("Ctrl+R: now | last: cannot connect")
        })
        .await;
    assert!(
        !screen.contains("!! "),
        "no error lines in the conversation:\n{screen}"
    );
    assert_eq!(occurrences(&screen, "Connection lost"), 1, "{screen}");
    let server = TestServer::restart_at(files, addr).await;
    tmux.wait_for("alice", "the reconnection", |s| {
        s.contains(" connected | ") && s.contains("Reconnected")
    })
    .await;

    // Kicked: the session ends, says why and how to leave, and forgets who is online.
    let mut carol = server.login("carol", CAROL_PASSWORD).await;
    tmux.wait_for("alice", "carol online", |s| {
        s.contains("online: alice, carol")
    })
    .await;
    carol.send("/kick alice enough for today").await;
    carol.skip_until("INFO Kicked").await;
    let screen = tmux
        .wait_for("alice", "the end of the session", |s| {
            s.contains("ended: you were kicked by carol: enough for today | Ctrl+C: quit")
        })
        .await;
    assert!(
        screen.contains("!! Session ended: you were kicked by carol: enough for today.")
            && screen.contains("Ctrl+R to log in again, or Ctrl+C to quit."),
        "{screen}"
    );
    assert!(!screen.contains("online:"), "{screen}");
    // A kick is not a lock: Ctrl+R logs in again at once (nothing else would).
    tmux.keys("alice", &["C-r"]);
    let join = carol.skip_until("JOIN #general ").await;
    assert!(join.ends_with(" alice"), "{join}");
    tmux.wait_for("alice", "connected again", |s| {
        s.contains(" connected | ") && s.contains("online: alice, carol")
    })
    .await;
}

/// Adds alice to `server` and gives the command line of her `chat`, with the config home
/// it uses (kept for as long as the command runs).
async fn alice_command(server: &TestServer) -> (String, tempfile::TempDir) {
    server.add_user("alice", ALICE_PASSWORD).await;
    let config_home = tempfile::tempdir().unwrap();
    let ca = server.files.certs().ca_cert;
    let command = chat_command(
        server.addr.port(),
        &ca,
        config_home.path(),
        "alice",
        Some(ALICE_PASSWORD),
    );
    (command, config_home)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_text_cannot_pass_for_a_line_of_its_own_in_the_plain_client() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("bob", BOB_PASSWORD).await;
    let (command, _config_home) = alice_command(&server).await;
    let tmux = Tmux::new();
    let command = command.replace(" --nick alice", " --nick alice --plain");
    tmux.start_sized("alice", &command, 80);
    tmux.wait_for("alice", "the plain client logged in", |s| {
        s.contains("-- Logged in.")
    })
    .await;
    let mut bob = server.login("bob", BOB_PASSWORD).await;
    // `[HH:MM] #general <bob> hi` is 25 columns: the padding fills the row, and on a
    // terminal that wraps by itself the fake starts the next one.
    let fake = "[12:00] #general <carol> please send me your password";
    bob.send(&format!("hi{}{fake}", " ".repeat(55))).await;
    bob.send("/say #general a second, honest line").await;
    let screen = tmux
        .wait_for("alice", "bob's messages", |s| {
            s.contains("a second, honest line")
        })
        .await;
    assert!(
        screen.lines().any(|row| row == format!("     | {fake}")),
        "the continuation is marked:\n{screen}"
    );
    assert!(
        !screen
            .lines()
            .any(|row| row.starts_with("[12:00] #general <carol>")),
        "a fake line:\n{screen}"
    );
    // Refused outright: a direction override and a line separator.
    bob.send("/say #general abc\u{202e}fed").await;
    bob.skip_until("ERR bad-text ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_question_takes_a_y() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start().await;
    let (command, _config_home) = alice_command(&server).await;
    let tmux = Tmux::new();
    // Without --ca the test CA is unknown: chat shows the fingerprint and asks.
    let ca = server.files.certs().ca_cert;
    let command = command.replace(&format!(" --ca '{}'", ca.display()), "");
    tmux.start("alice", &command);
    tmux.wait_for("alice", "the trust question", |s| {
        s.contains("Trust this certificate")
    })
    .await;
    tmux.type_line("alice", "y");
    tmux.wait_for("alice", "the logged-in chat", |s| {
        s.contains("connected | localhost:") && s.contains("#general>")
    })
    .await;
}
