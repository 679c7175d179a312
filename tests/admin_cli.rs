//! `chat-admin`, the real binary: accounts (adduser, deluser, passwd, list, import), its
//! refusals, `gen-cert`, and account changes taking effect while a server runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::admin::{admin, admin_async, assert_failure, assert_success, login_fails, new_db};
use common::{run_bounded, Run, ServerProcess, TestClient, TestServer, WAIT};
use tlschat::net::{certs::CertPaths, tls};

/// The nicknames `chat-admin list` shows, in order.
fn listed_nicks(db: &Path) -> Vec<String> {
    let run = admin(db, &["list"], None);
    assert_success(&run);
    if run.stdout.contains("No accounts yet") {
        return Vec::new();
    }
    run.stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn adduser_prints_a_message_and_list_shows_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    assert_eq!(listed_nicks(&db), Vec::<String>::new());

    let run = admin(
        &db,
        &["adduser", "alice", "--password-stdin"],
        Some("correct horse battery staple\n"),
    );
    assert_success(&run);
    assert!(
        run.stdout.contains("alice"),
        "adduser says what it did:\n{run:?}"
    );

    let list = admin(&db, &["list"], None);
    assert_success(&list);
    let line = list
        .stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some("alice"))
        .unwrap_or_else(|| panic!("alice not listed:\n{list:?}"));
    assert!(line.contains("created"), "list line {line:?}");
    // A new account starts in #general: one room.
    assert!(line.contains("in 1 room"), "list line {line:?}");
}

#[test]
fn duplicate_nickname_is_refused_case_insensitively() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    assert_success(&admin(
        &db,
        &["adduser", "alice", "--password-stdin"],
        Some("password-one\n"),
    ));
    for nick in ["alice", "ALICE", "Alice"] {
        let run = admin(
            &db,
            &["adduser", nick, "--password-stdin"],
            Some("password-two\n"),
        );
        assert_failure(&run);
        assert!(
            run.stderr.contains("taken"),
            "the message names the problem:\n{run:?}"
        );
    }
    assert_eq!(listed_nicks(&db), vec!["alice".to_owned()]);
}

#[test]
fn bad_nicknames_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let too_long = "a".repeat(33);
    for nick in [
        "9lives",
        "a b",
        "",
        "-dash",
        "_under",
        "al!ce",
        "émile",
        too_long.as_str(),
    ] {
        let run = admin(
            &db,
            // `--` so that "-dash" reaches the name check rather than the option parser.
            &["adduser", "--password-stdin", "--", nick],
            Some("password-one\n"),
        );
        assert_failure(&run);
        assert!(
            run.stderr.contains("invalid nickname"),
            "nickname {nick:?}:\n{run:?}"
        );
    }
    assert_eq!(listed_nicks(&db), Vec::<String>::new());
    // The longest allowed nickname is fine.
    let longest = format!("a{}", "b".repeat(31));
    assert_success(&admin(
        &db,
        &["adduser", &longest, "--password-stdin"],
        Some("password-one\n"),
    ));
    assert_eq!(listed_nicks(&db), vec![longest]);
}

#[test]
fn short_password_is_refused_and_no_account_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    for password in ["1234567", "", "short"] {
        let run = admin(
            &db,
            &["adduser", "alice", "--password-stdin"],
            Some(&format!("{password}\n")),
        );
        assert_failure(&run);
        assert!(
            run.stderr.contains('8'),
            "the message names the minimum:\n{run:?}"
        );
        assert_eq!(
            listed_nicks(&db),
            Vec::<String>::new(),
            "after {password:?}"
        );
    }
    // Exactly 8 characters is enough.
    assert_success(&admin(
        &db,
        &["adduser", "alice", "--password-stdin"],
        Some("12345678\n"),
    ));
    assert_eq!(listed_nicks(&db), vec!["alice".to_owned()]);
    // passwd applies the same rule.
    let run = admin(
        &db,
        &["passwd", "alice", "--password-stdin"],
        Some("1234567\n"),
    );
    assert_failure(&run);
}

#[test]
fn deluser_of_a_missing_user_fails_and_of_an_existing_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let run = admin(&db, &["deluser", "nobody"], None);
    assert_failure(&run);
    assert!(run.stderr.contains("nobody"), "{run:?}");

    assert_success(&admin(
        &db,
        &["adduser", "alice", "--password-stdin"],
        Some("password-one\n"),
    ));
    let run = admin(&db, &["deluser", "alice"], None);
    assert_success(&run);
    assert_eq!(listed_nicks(&db), Vec::<String>::new());
    // Deleting twice: the second time the user is missing.
    assert_failure(&admin(&db, &["deluser", "alice"], None));
}

#[test]
fn passwd_of_a_missing_user_fails_and_of_an_existing_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let run = admin(
        &db,
        &["passwd", "nobody", "--password-stdin"],
        Some("password-one\n"),
    );
    assert_failure(&run);
    assert!(run.stderr.contains("nobody"), "{run:?}");
    assert_eq!(
        listed_nicks(&db),
        Vec::<String>::new(),
        "passwd creates nothing"
    );

    assert_success(&admin(
        &db,
        &["adduser", "alice", "--password-stdin"],
        Some("password-one\n"),
    ));
    let run = admin(
        &db,
        &["passwd", "alice", "--password-stdin"],
        Some("password-two\n"),
    );
    assert_success(&run);
    assert!(run.stdout.contains("alice"), "{run:?}");
}

#[test]
fn adduser_without_password_stdin_and_no_terminal_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    // Standard input is /dev/null: not a terminal.
    let run = admin(&db, &["adduser", "alice"], None);
    assert_failure(&run);
    assert!(run.stderr.contains("--password-stdin"), "{run:?}");
    // A pipe is not a terminal either; the password in it must not be used silently.
    let run = admin(&db, &["adduser", "alice"], Some("password-one\n"));
    assert_failure(&run);
    assert!(run.stderr.contains("--password-stdin"), "{run:?}");
    assert_eq!(listed_nicks(&db), Vec::<String>::new());

    assert_success(&admin(
        &db,
        &["adduser", "alice", "--password-stdin"],
        Some("password-one\n"),
    ));
    let run = admin(&db, &["passwd", "alice"], None);
    assert_failure(&run);
    assert!(run.stderr.contains("--password-stdin"), "{run:?}");
}

fn gen_cert(dir: &Path) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    command
        .env_remove("CHAT_DB")
        .env_remove("CHAT_CERTS_DIR")
        .current_dir(dir)
        .arg("gen-cert")
        // The server's name for the same folder.
        .arg("--certs-dir")
        .arg(dir.join("certs"))
        .args(["--hostname", "chat.example.org"]);
    let run = run_bounded(command, None);
    assert_success(&run);
    run
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn server_fingerprint(paths: &CertPaths) -> String {
    let chain = tls::load_certs(&paths.server_cert).expect("server.pem parses");
    tls::fingerprint_sha256(&chain[0])
}

#[test]
fn gen_cert_creates_the_files_with_private_keys_0600() {
    let dir = tempfile::tempdir().unwrap();
    let run = gen_cert(dir.path());
    let paths = CertPaths::in_dir(&dir.path().join("certs"));
    for path in [
        &paths.ca_cert,
        &paths.ca_key,
        &paths.server_cert,
        &paths.server_key,
    ] {
        assert!(path.is_file(), "{} missing:\n{run:?}", path.display());
    }
    assert_eq!(mode(&paths.ca_key), 0o600, "ca-key.pem mode");
    assert_eq!(mode(&paths.server_key), 0o600, "server-key.pem mode");
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "files in the folder: {names:?}");

    assert!(run.stdout.contains("SHA-256"), "{run:?}");
    assert!(
        run.stdout.contains(&server_fingerprint(&paths)),
        "the printed fingerprint is the server certificate's:\n{run:?}"
    );
    assert!(run.stdout.contains("openssl s_client"), "{run:?}");
    assert!(run.stdout.contains("chat.example.org"), "{run:?}");
    assert!(run.stdout.contains("-verify_hostname"), "{run:?}");
    // gen-cert does not touch the database.
    assert!(!dir.path().join("chat.db").exists());
}

/// A TLS handshake with the server at `port` that checks the certificate for `name`.
async fn handshake_as(ca: &Path, name: &str, port: u16) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let config = tls::client_config(Some(ca)).expect("client TLS");
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp connect");
    let connect = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp);
    let mut stream = tokio::time::timeout(WAIT, connect)
        .await
        .expect("handshake finishes")
        .map_err(|e| e.to_string())?;
    let mut first = [0u8; 5];
    tokio::time::timeout(WAIT, stream.read_exact(&mut first))
        .await
        .expect("first line arrives")
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&first).into_owned())
}

#[tokio::test]
async fn gen_cert_again_keeps_the_ca_and_the_new_certificate_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    let paths = CertPaths::in_dir(&certs_dir);
    let first = gen_cert(dir.path());
    let ca_before = std::fs::read(&paths.ca_cert).unwrap();
    let ca_key_before = std::fs::read(&paths.ca_key).unwrap();
    let server_before = std::fs::read(&paths.server_cert).unwrap();
    let fingerprint_before = server_fingerprint(&paths);

    let second = gen_cert(dir.path());
    assert_eq!(
        std::fs::read(&paths.ca_cert).unwrap(),
        ca_before,
        "ca.pem must be reused byte for byte:\n{first:?}\n{second:?}"
    );
    assert_eq!(std::fs::read(&paths.ca_key).unwrap(), ca_key_before);
    assert_ne!(
        std::fs::read(&paths.server_cert).unwrap(),
        server_before,
        "a new server.pem"
    );
    let fingerprint_after = server_fingerprint(&paths);
    assert_ne!(fingerprint_after, fingerprint_before);
    assert!(second.stdout.contains(&fingerprint_after), "{second:?}");
    assert_eq!(mode(&paths.ca_key), 0o600);
    assert_eq!(mode(&paths.server_key), 0o600);

    // The real server on the regenerated files, trusted through the unchanged ca.pem.
    let server = ServerProcess::spawn_in(dir.path(), &dir.path().join("chat.db"), &certs_dir, &[]);
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains(&fingerprint_after),
        "the server uses the new certificate; log:\n{log}"
    );
    let mut client = TestClient::connect(
        &server.server(),
        tls::client_config(Some(&paths.ca_cert)).expect("client TLS"),
    )
    .await;
    client.expect("NICK").await;

    // The certificate covers the --hostname, and only the names it lists.
    let port = server.addr.port();
    assert_eq!(
        handshake_as(&paths.ca_cert, "chat.example.org", port).await,
        Ok("NICK\n".to_owned())
    );
    assert_eq!(
        handshake_as(&paths.ca_cert, "127.0.0.1", port).await,
        Ok("NICK\n".to_owned())
    );
    assert!(handshake_as(&paths.ca_cert, "other.example.org", port)
        .await
        .is_err());
}

/// Logs in and leaves with `/quit`.
async fn login_and_quit(server: &TestServer, nick: &str, password: &str) {
    let mut client = server.login(nick, password).await;
    client.send("/quit").await;
    client.skip_until("BYE quit").await;
}

#[tokio::test]
async fn account_changes_take_effect_while_the_server_runs() {
    let server = TestServer::start().await;
    let db = server.files.db();
    login_fails(&server, "carol", "carols-first-password").await;

    let run = admin_async(
        &db,
        &["adduser", "carol", "--password-stdin"],
        Some("carols-first-password\n"),
    )
    .await;
    assert_success(&run);
    login_and_quit(&server, "carol", "carols-first-password").await;

    let run = admin_async(
        &db,
        &["passwd", "carol", "--password-stdin"],
        Some("carols-second-password\n"),
    )
    .await;
    assert_success(&run);
    login_fails(&server, "carol", "carols-first-password").await;
    login_and_quit(&server, "carol", "carols-second-password").await;

    let run = admin_async(&db, &["deluser", "carol"], None).await;
    assert_success(&run);
    login_fails(&server, "carol", "carols-second-password").await;

    // The server itself is unharmed and the database still usable by both.
    let run = admin_async(&db, &["list"], None).await;
    assert_success(&run);
    assert!(!run.stdout.contains("carol"), "{run:?}");
    server.stop().await;
}

/// Writes `contents` to `name` next to `db` (where `chat-admin` runs), for `import NAME`.
fn write_list(db: &Path, name: &str, contents: &str) {
    std::fs::write(db.parent().unwrap().join(name), contents).unwrap();
}

/// `chat-admin import team.txt` (written with `contents`), beside a running server.
async fn import_file_async(db: &Path, contents: &str) -> Run {
    write_list(db, "team.txt", contents);
    admin_async(db, &["import", "team.txt"], None).await
}

fn assert_imported(run: &Run, imported: usize, skipped: usize) {
    assert_success(run);
    let summary = format!("imported {imported} accounts (skipped {skipped} existing) in ");
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&summary) && first.ends_with('s'),
        "expected {summary:?}...:\n{run:?}"
    );
}

#[tokio::test]
async fn import_from_stdin_and_from_a_file_then_the_users_log_in() {
    let server = TestServer::start().await;
    let db = server.files.db();
    let run = admin_async(
        &db,
        &["import"],
        Some("# from standard input\n\nalice alices-password\nbob bobs-password\n"),
    )
    .await;
    assert_imported(&run, 2, 0);
    let run = import_file_async(&db, "carol carols-password\r\ndave daves-password").await;
    assert_imported(&run, 2, 0);
    let run = admin_async(&db, &["import", "-"], Some("erin erins-password\n")).await;
    assert_imported(&run, 1, 0);

    let list = admin_async(&db, &["list"], None).await;
    for nick in ["alice", "bob", "carol", "dave", "erin"] {
        let line = list
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(nick))
            .unwrap_or_else(|| panic!("{nick} not listed:\n{list:?}"));
        assert!(
            line.contains("in 1 room"),
            "{nick} starts in #general: {line:?}"
        );
    }
    for (nick, password) in [
        ("alice", "alices-password"),
        ("bob", "bobs-password"),
        ("carol", "carols-password"),
        ("dave", "daves-password"),
        ("erin", "erins-password"),
    ] {
        login_and_quit(&server, nick, password).await;
    }
    login_fails(&server, "bob", "alices-password").await;
    server.stop().await;
}

#[tokio::test]
async fn import_keeps_spaces_inside_passwords_and_trims_the_ends() {
    let server = TestServer::start().await;
    let db = server.files.db();
    let run = import_file_async(
        &db,
        "alice correct horse battery staple\n  bob \t two  spaces\there \t \r\n",
    )
    .await;
    assert_imported(&run, 2, 0);
    login_fails(&server, "alice", "correct").await;
    login_fails(&server, "bob", " two  spaces\there").await;
    login_and_quit(&server, "alice", "correct horse battery staple").await;
    login_and_quit(&server, "bob", "two  spaces\there").await;
    server.stop().await;
}

#[test]
fn import_reports_every_bad_line_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    write_list(
        &db,
        "team.txt",
        "alice alices-password\n\
         # a comment\n\
         bob secret7\n\
         carol carols-password\n\
         9lives nines-password\n\
         dave\n",
    );
    let run = admin(&db, &["import", "team.txt"], None);
    assert_failure(&run);
    for (line, says) in [
        ("team.txt:3: ", "8 characters"),
        ("team.txt:5: ", "invalid nickname"),
        ("team.txt:6: ", "no password"),
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(line) && l.contains(says)),
            "{line} {says}:\n{run:?}"
        );
    }
    let reported = run.stderr.lines().filter(|l| l.starts_with("team.txt:"));
    assert_eq!(reported.count(), 3, "only the bad lines:\n{run:?}");
    for password in [
        "alices-password",
        "secret7",
        "carols-password",
        "nines-password",
    ] {
        assert!(
            !run.stderr.contains(password) && !run.stdout.contains(password),
            "{password} shown:\n{run:?}"
        );
    }
    assert_eq!(listed_nicks(&db), Vec::<String>::new());

    // Standard input is named as such.
    let run = admin(
        &db,
        &["import"],
        Some("alice alices-password\nbob secret7\n"),
    );
    assert_failure(&run);
    assert!(run.stderr.contains("<stdin>:2: "), "{run:?}");
    assert_eq!(listed_nicks(&db), Vec::<String>::new());
}

#[test]
fn import_refuses_a_nickname_twice_in_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let run = admin(
        &db,
        &["import"],
        Some("alice alices-password\nbob bobs-password\nALICE other-password\n"),
    );
    assert_failure(&run);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("<stdin>:3: ") && l.contains("line 1")),
        "{run:?}"
    );
    assert_eq!(listed_nicks(&db), Vec::<String>::new());
}

#[tokio::test]
async fn import_refuses_existing_accounts_unless_told_to_skip_them() {
    let server = TestServer::start().await;
    let db = server.files.db();
    server.add_user("Alice", "alices-own-password").await;
    let list = "bob bobs-password\nalice replaced-password\ncarol carols-password\n";

    let run = admin_async(&db, &["import"], Some(list)).await;
    assert_failure(&run);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("<stdin>:2: ") && l.contains("taken")),
        "{run:?}"
    );
    assert!(run.stderr.contains("--skip-existing"), "{run:?}");
    assert_eq!(
        admin_async(&db, &["list"], None)
            .await
            .stdout
            .lines()
            .count(),
        1,
        "nothing imported"
    );

    let run = admin_async(&db, &["import", "--skip-existing"], Some(list)).await;
    assert_imported(&run, 2, 1);
    login_and_quit(&server, "bob", "bobs-password").await;
    login_and_quit(&server, "carol", "carols-password").await;
    // The existing account is left as it was.
    login_and_quit(&server, "Alice", "alices-own-password").await;
    login_fails(&server, "alice", "replaced-password").await;
    server.stop().await;
}

// ---- which database chat-admin opens ------------------------------------------------------

/// `chat-admin ARGS` run by the shell with the file-creation mask `umask`.
fn admin_with_umask(db: &Path, umask: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_chat-admin"))
        .env_remove("CHAT_DB")
        .arg("--db")
        .arg(db)
        .args(args);
    run_bounded(command, stdin)
}

/// The database and the `-wal` and `-shm` files beside it.
fn database_files(db: &Path) -> Vec<std::path::PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            std::path::PathBuf::from(name)
        })
        .collect()
}

/// `chat-admin --create adduser alice` under the common umask 022, which must succeed.
fn create_with_umask_022(db: &Path) {
    let run = admin_with_umask(
        db,
        "022",
        &["--create", "adduser", "alice", "--password-stdin"],
        Some("password-one\n"),
    );
    assert_success(&run);
}

#[test]
fn chat_admin_creates_the_database_0600_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    create_with_umask_022(&db);
    assert_eq!(mode(&db), 0o600, "it holds password hashes");
}

/// An empty file made beforehand (`touch chat.db`, mode 0644) becomes the database: it is
/// made private before anything is written into it.
#[test]
fn an_empty_file_made_beforehand_becomes_a_private_database() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    create_with_umask_022(&db);
    for file in database_files(&db).into_iter().filter(|file| file.exists()) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn the_server_creates_the_database_and_its_wal_and_shm_0600_whatever_the_umask() {
    let files = common::ServerFiles::new();
    let server = ServerProcess::spawn_with_umask(&files, "022", &[]);
    // While the server runs, SQLite keeps the -wal and -shm files beside the database.
    let mut client = TestClient::connect(&server.server(), files.client_tls()).await;
    client.expect("NICK").await;
    for file in database_files(&files.db()) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn a_missing_database_is_refused_naming_it_unless_create_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    for args in [
        &["list"][..],
        &["status"],
        &["backup", "copy.db"],
        &["invite", "carol"],
        &["lock", "carol"],
        &["import", "-"],
    ] {
        let run = admin(&db, args, Some("carol a long password\n"));
        assert_failure(&run);
        assert!(
            run.stderr.contains(db.to_str().unwrap()) && run.stderr.contains("--create"),
            "{args:?} names the database and the way to create one:\n{run:?}"
        );
        assert!(!db.exists(), "{args:?} created the database");
    }
    let created = admin(
        &db,
        &["--create", "adduser", "carol", "--password-stdin"],
        Some("password-one\n"),
    );
    assert_success(&created);
    assert!(
        created
            .stdout
            .contains(&format!("Database created: {}", db.display())),
        "{created:?}"
    );
    let changed = admin(&db, &["lock", "carol"], None);
    assert_success(&changed);
    assert!(
        changed
            .stdout
            .contains(&format!("Database changed: {}", db.display())),
        "{changed:?}"
    );
    // A command that only reads says nothing about changes.
    assert!(!admin(&db, &["list"], None).stdout.contains("Database"));
}

/// Writes a SQLite database of some other program (rollback journal, one table) at `path`.
async fn foreign_database(path: &Path, with_sqlx_migrations: bool) {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    let mut statements = vec![
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)",
        "INSERT INTO notes (text) VALUES ('keep me')",
    ];
    if with_sqlx_migrations {
        // Another sqlx program: the same bookkeeping table, its own first migration.
        statements.extend([
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
            "INSERT INTO _sqlx_migrations VALUES (1, 'init', 0, 1, x'00', 1)",
        ]);
    }
    for statement in statements {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_tlschat_database_is_refused_and_keeps_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let backup = new_db(dir.path()).with_file_name("backup.db");
    assert_success(&admin(
        &dir.path().join("chat.db"),
        &["backup", "backup.db"],
        None,
    ));
    let other = dir.path().join("other.db");
    foreign_database(&other, false).await;
    let sqlx_app = dir.path().join("sqlx-app.db");
    foreign_database(&sqlx_app, true).await;
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, but long enough to look like one\n".repeat(40),
    )
    .unwrap();
    write_list(&other, "team.txt", "dave a long password\n");
    let commands: [&[&str]; 13] = [
        &["list"],
        &["status"],
        &["backup", "copy.db"],
        &["adduser", "dave", "--password-stdin"],
        &["invite", "dave"],
        &["import", "team.txt"],
        &["deluser", "dave"],
        &["passwd", "dave", "--password-stdin"],
        &["role", "dave", "admin"],
        &["lock", "dave"],
        &["unlock", "dave"],
        &["restore", backup.to_str().unwrap()],
        &["restore", backup.to_str().unwrap(), "--force"],
    ];
    for file in [&other, &sqlx_app, &text] {
        let before = std::fs::read(file).unwrap();
        for args in commands {
            for create in [false, true] {
                let mut args = args.to_vec();
                if create {
                    args.insert(0, "--create");
                }
                let run = admin(file, &args, Some("a long password\n"));
                assert_failure(&run);
                assert!(
                    run.stderr.contains("not a tlschat database"),
                    "{} {args:?}:\n{run:?}",
                    file.display()
                );
                assert_eq!(
                    std::fs::read(file).unwrap(),
                    before,
                    "{} changed by {args:?}",
                    file.display()
                );
                for beside in &database_files(file)[1..] {
                    assert!(
                        !beside.exists(),
                        "{} left {}",
                        file.display(),
                        beside.display()
                    );
                }
            }
        }
    }
    assert!(!dir.path().join("copy.db").exists());
}

#[tokio::test]
async fn commands_that_only_read_never_migrate_and_say_what_to_do() {
    // A database of an older tlschat: only the first migration applied.
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let first = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/0001_initial.sql");
    std::fs::copy(&first, migrations.join("0001_initial.sql")).unwrap();
    let db = dir.path().join("chat.db");
    {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(migrations.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    for args in [&["list"][..], &["status"], &["backup", "copy.db"]] {
        let run = admin(&db, args, None);
        assert_failure(&run);
        assert!(
            run.stderr.contains("upgrade") && run.stderr.contains(db.to_str().unwrap()),
            "{args:?}:\n{run:?}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), before, "{args:?} wrote to it");
    }
    // A command that changes the database brings it up to date first.
    assert_success(&admin(
        &db,
        &["adduser", "alice", "--password-stdin"],
        Some("password-one\n"),
    ));
    assert_eq!(listed_nicks(&db), vec!["alice".to_owned()]);
}

#[test]
fn an_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // The certificate folder is a file: creating it fails with EEXIST.
    let not_a_folder = dir.path().join("certs");
    std::fs::write(&not_a_folder, "").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    command
        .env_remove("CHAT_CERTS_DIR")
        .arg("gen-cert")
        // The name older scripts use still works.
        .arg("--dir")
        .arg(&not_a_folder);
    let run = run_bounded(command, None);
    assert_failure(&run);
    assert_eq!(
        run.stderr.matches("os error 17").count(),
        1,
        "the cause once:\n{run:?}"
    );
    assert!(
        run.stderr.contains(not_a_folder.to_str().unwrap()),
        "{run:?}"
    );
}

/// `chat-admin ARGS` on a terminal (a pseudo-terminal of `script`), with `typed` typed ahead.
fn admin_on_a_terminal(db: &Path, args: &str, typed: &str) -> Run {
    let mut command = Command::new("script");
    command.env_remove("CHAT_DB").args([
        "-qec",
        &format!(
            "'{}' --db '{}' {args}",
            env!("CARGO_BIN_EXE_chat-admin"),
            db.display()
        ),
        "/dev/null",
    ]);
    run_bounded(command, Some(typed))
}

#[test]
fn adduser_asks_again_for_a_short_password_before_asking_to_repeat_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let run = admin_on_a_terminal(
        &db,
        "adduser alice",
        "short\na long password\na long password\n",
    );
    assert_success(&run);
    let output = run.stdout.replace('\r', "");
    let problem = output
        .find("at least 8 characters")
        .unwrap_or_else(|| panic!("the rule is said:\n{output}"));
    let repeat = output.find("Repeat it:").expect("asked to repeat");
    assert!(problem < repeat, "refused before the repetition:\n{output}");
    assert_eq!(
        output.matches("New password for alice:").count(),
        2,
        "{output}"
    );
    assert_eq!(listed_nicks(&db), vec!["alice".to_owned()]);
}
