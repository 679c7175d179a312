//! The client's config file, `config.toml` in the user's config folder
//! (`~/.config/tlschat/` on Linux, honouring `XDG_CONFIG_HOME`). Every key is optional and
//! a flag on the command line wins over it:
//!
//! ```toml
//! server = "chat.example.org:7777"
//! nick = "alice"
//! ca = "ca.pem"   # relative to this file's folder; "~/" means the home folder
//! ```

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use directories::{BaseDirs, ProjectDirs};
use serde::Deserialize;

/// The config file's name inside [`config_dir`].
const CONFIG_FILE: &str = "config.toml";
/// The file of remembered server fingerprints inside [`config_dir`].
const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// The user's tlschat config folder; `None` when the system names no home folder.
pub fn config_dir() -> Option<PathBuf> {
    ProjectDirs::from("", "", "tlschat").map(|dirs| dirs.config_dir().to_owned())
}

/// Where the config file is read from when `--config` is not given.
pub fn default_config_path() -> Option<PathBuf> {
    config_dir().map(|dir| dir.join(CONFIG_FILE))
}

/// Where the fingerprints of trusted self-signed servers are remembered.
pub fn known_hosts_path() -> Option<PathBuf> {
    config_dir().map(|dir| dir.join(KNOWN_HOSTS_FILE))
}

/// The settings a config file may hold; an absent key is `None`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The server to connect to, `HOST:PORT`, when none is given on the command line.
    pub server: Option<String>,
    /// The nickname to log in as, so the prompt can be skipped.
    pub nick: Option<String>,
    /// A private CA certificate (PEM) to trust instead of the system's roots; already
    /// resolved against the config file's folder by [`load`].
    pub ca: Option<PathBuf>,
}

/// Why the config file could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid config file {}: {error}", .path.display())]
    Invalid {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("{}: cannot expand {}: no home folder", .path.display(), .ca.display())]
    NoHome { path: PathBuf, ca: PathBuf },
}

/// Reads the config file at `path`. A missing file is an empty config unless `must_exist`
/// (the user named the file with `--config`). A syntax error or an unknown key is an error
/// that names the file, the line and the key.
pub fn load(path: &Path, must_exist: bool) -> Result<FileConfig, ConfigFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            return Ok(FileConfig::default());
        }
        Err(error) => {
            let path = path.to_owned();
            return Err(ConfigFileError::Read { path, error });
        }
    };
    let mut config: FileConfig =
        toml::from_str(&text).map_err(|error| ConfigFileError::Invalid {
            path: path.to_owned(),
            error: Box::new(error),
        })?;
    if let Some(ca) = config.ca.take() {
        config.ca = Some(resolve(&ca, path)?);
    }
    Ok(config)
}

/// Expands a leading `~/` to the home folder and makes a relative path relative to the
/// folder of the config file at `config_path`, not to the current folder.
fn resolve(ca: &Path, config_path: &Path) -> Result<PathBuf, ConfigFileError> {
    let mut components = ca.components();
    if components.next() == Some(Component::Normal(OsStr::new("~"))) {
        let dirs = BaseDirs::new().ok_or_else(|| ConfigFileError::NoHome {
            path: config_path.to_owned(),
            ca: ca.to_owned(),
        })?;
        return Ok(dirs.home_dir().join(components.as_path()));
    }
    if ca.is_absolute() {
        return Ok(ca.to_owned());
    }
    let folder = config_path.parent().unwrap_or(Path::new(""));
    Ok(folder.join(ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn missing_file_is_empty_unless_required() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(load(&path, false).unwrap(), FileConfig::default());
        let error = format!("{:#}", load(&path, true).unwrap_err());
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[test]
    fn full_file() {
        let (_dir, path) = write_config(
            "# my server\nserver = \"chat.example.org:7777\"\nnick = \"alice\"\nca = \"/etc/chat/ca.pem\"\n",
        );
        let config = load(&path, true).unwrap();
        assert_eq!(
            config,
            FileConfig {
                server: Some("chat.example.org:7777".into()),
                nick: Some("alice".into()),
                ca: Some(PathBuf::from("/etc/chat/ca.pem")),
            }
        );
    }

    #[test]
    fn partial_file() {
        let (_dir, path) = write_config("nick = \"bob\"\n");
        let config = load(&path, false).unwrap();
        assert_eq!(config.nick.as_deref(), Some("bob"));
        assert_eq!(config.server, None);
        assert_eq!(config.ca, None);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let (_dir, path) = write_config("nick = \"alice\"\nservre = \"x:1\"\n");
        let error = format!("{:#}", load(&path, false).unwrap_err());
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("servre"), "{error}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let (_dir, path) = write_config("server = \"a:1\"\n\nnick = alice\n");
        let error = format!("{:#}", load(&path, false).unwrap_err());
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let (_dir, path) = write_config("nick = 7\n");
        let error = format!("{:#}", load(&path, false).unwrap_err());
        assert!(error.contains("line 1"), "{error}");
    }

    #[test]
    fn relative_ca_is_relative_to_the_config_folder() {
        let (dir, path) = write_config("ca = \"certs/ca.pem\"\n");
        let config = load(&path, false).unwrap();
        assert_eq!(config.ca, Some(dir.path().join("certs").join("ca.pem")));
    }

    #[test]
    fn tilde_is_the_home_folder() {
        let Some(dirs) = BaseDirs::new() else { return };
        let (_dir, path) = write_config("ca = \"~/chat/ca.pem\"\n");
        let config = load(&path, false).unwrap();
        assert_eq!(config.ca, Some(dirs.home_dir().join("chat").join("ca.pem")));
    }
}
