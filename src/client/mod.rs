//! The client side of the protocol: connecting over TLS and exchanging lines. Used by the
//! `chat` binary and by the integration tests.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::FramedRead;

use crate::net::{InboundLine, LineCodec};

pub mod config;
mod render;
pub mod trust;
pub mod tui;

pub use render::{render_line, wrap_rows, CONTINUATION};

/// Server lines can be longer than client lines: a 4096-byte message plus its prefix.
const MAX_SERVER_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server address must be HOST:PORT, got {0:?}")]
    BadAddress(String),
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {server} failed: {source}")]
    Handshake {
        server: String,
        source: std::io::Error,
    },
}

/// Splits `host:port` or `[v6]:port` into the host (for SNI and certificate checks) and port.
pub fn split_host_port(server: &str) -> Result<(String, u16), ClientError> {
    let bad = || ClientError::BadAddress(server.to_owned());
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

type Stream = TlsStream<TcpStream>;

/// Reads server lines.
pub struct LineReader {
    lines: FramedRead<ReadHalf<Stream>, LineCodec>,
}

impl LineReader {
    /// The next line, `None` at the end of the stream. Lines that are too long or not UTF-8
    /// come back lossily converted, so a client can still show them.
    pub async fn next_line(&mut self) -> Option<std::io::Result<String>> {
        match self.lines.next().await? {
            Ok(InboundLine::Line(line)) => Some(Ok(line)),
            Ok(InboundLine::TooLong) => {
                Some(Ok("(an overlong line from the server was dropped)".into()))
            }
            Ok(InboundLine::BadUtf8) => Some(Ok("(a line from the server was not UTF-8)".into())),
            Err(error) => Some(Err(error)),
        }
    }
}

/// Sends lines to the server.
pub struct LineWriter {
    writer: WriteHalf<Stream>,
}

impl LineWriter {
    /// Sends one line; a line ending is added.
    pub async fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await
    }

    /// Sends raw bytes as they are (tests use this for malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Sends TLS close_notify and closes the write side.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.writer.shutdown().await
    }
}

/// Connects to `server` (`HOST:PORT`) and completes the TLS handshake, checking the
/// certificate against `tls`'s roots for HOST.
pub async fn connect(
    server: &str,
    tls: Arc<ClientConfig>,
) -> Result<(LineReader, LineWriter), ClientError> {
    let (host, port) = split_host_port(server)?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| ClientError::Connect {
            server: server.to_owned(),
            source,
        })?;
    handshake(tcp, server, tls).await
}

/// Completes the TLS handshake on a connected socket (one bound to a chosen local address,
/// say) for `server` (`HOST:PORT`).
pub async fn handshake(
    tcp: TcpStream,
    server: &str,
    tls: Arc<ClientConfig>,
) -> Result<(LineReader, LineWriter), ClientError> {
    let (host, _) = split_host_port(server)?;
    let name =
        ServerName::try_from(host).map_err(|_| ClientError::BadAddress(server.to_owned()))?;
    let _ = tcp.set_nodelay(true);
    // A laptop that slept or a NAT that forgot us must not leave the client "connected"
    // to nothing: the kernel probes an idle connection and reports it dead.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|source| ClientError::Handshake {
            server: server.to_owned(),
            source,
        })?;
    let (reader, writer) = tokio::io::split(stream);
    Ok((
        LineReader {
            lines: FramedRead::new(reader, LineCodec::new(MAX_SERVER_LINE)),
        },
        LineWriter { writer },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(
            split_host_port("localhost:7777").unwrap(),
            ("localhost".into(), 7777)
        );
        assert_eq!(split_host_port("[::1]:7").unwrap(), ("::1".into(), 7));
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port(":7").is_err());
        assert!(split_host_port("a:b").is_err());
    }
}
