//! Bytes on the wire: the bounded line codec, TLS configuration, development certificates.

pub mod certs;
mod codec;
pub mod tls;

pub use codec::{InboundLine, LineCodec, LineReader};
